#include "backends/opencl/opencl_device.h"

#include <cstdlib>
#include <cstring>

#include "backends/opencl/opencl_backend.h"
#include "lfmrt/error.h"

namespace lfmrt::opencl {

namespace {

// A string property of a platform or device (GetPlatformInfo / GetDeviceInfo), "" if absent.
template <typename Object, typename Info>
std::string info_string(cl_int (*get)(Object, Info, size_t, void*, size_t*), Object object, Info what) {
    size_t size = 0;
    if (get(object, what, 0, nullptr, &size) != CL_SUCCESS || size == 0) return "";
    std::string value(size, '\0');
    if (get(object, what, size, value.data(), nullptr) != CL_SUCCESS) return "";
    value.resize(std::strlen(value.c_str()));
    // Some drivers pad names with spaces.
    while (!value.empty() && value.back() == ' ') value.pop_back();
    return value;
}

template <typename T>
T device_value(const ClApi& cl, cl_device_id device, cl_device_info what) {
    T value{};
    if (cl.GetDeviceInfo(device, what, sizeof value, &value, nullptr) != CL_SUCCESS) return T{};
    return value;
}

// "OpenCL C 1.2 PoCL" -> 1, 2.
void parse_c_version(const std::string& text, int* major, int* minor) {
    const size_t at = text.find("OpenCL C ");
    if (at == std::string::npos) return;
    int a = 0, b = 0;
    if (std::sscanf(text.c_str() + at + 9, "%d.%d", &a, &b) == 2) {
        *major = a;
        *minor = b;
    }
}

bool has_subgroups_feature(const ClApi& cl, cl_device_id device) {
    size_t size = 0;
    if (cl.GetDeviceInfo(device, CL_DEVICE_OPENCL_C_FEATURES, 0, nullptr, &size) != CL_SUCCESS) return false;
    std::vector<cl_name_version> features(size / sizeof(cl_name_version));
    if (features.empty() ||
        cl.GetDeviceInfo(device, CL_DEVICE_OPENCL_C_FEATURES, size, features.data(), nullptr) != CL_SUCCESS) {
        return false;
    }
    for (const cl_name_version& feature : features) {
        if (std::strncmp(feature.name, "__opencl_c_subgroups", sizeof feature.name) == 0) return true;
    }
    return false;
}

DeviceDescription describe_device(const ClApi& cl, cl_platform_id platform, cl_device_id device, size_t index) {
    DeviceDescription d;
    d.platform = platform;
    d.device = device;
    d.index = index;
    d.platform_name = info_string(cl.GetPlatformInfo, platform, CL_PLATFORM_NAME);
    d.platform_version = info_string(cl.GetPlatformInfo, platform, CL_PLATFORM_VERSION);
    d.name = info_string(cl.GetDeviceInfo, device, CL_DEVICE_NAME);
    d.driver_version = info_string(cl.GetDeviceInfo, device, CL_DRIVER_VERSION);
    d.device_version = info_string(cl.GetDeviceInfo, device, CL_DEVICE_VERSION);
    d.c_version = info_string(cl.GetDeviceInfo, device, CL_DEVICE_OPENCL_C_VERSION);
    d.extensions = info_string(cl.GetDeviceInfo, device, CL_DEVICE_EXTENSIONS);
    d.extensions.insert(d.extensions.begin(), ' ');
    d.extensions.push_back(' ');
    d.type = device_value<cl_device_type>(cl, device, CL_DEVICE_TYPE);
    d.global_memory = device_value<cl_ulong>(cl, device, CL_DEVICE_GLOBAL_MEM_SIZE);
    d.max_allocation = device_value<cl_ulong>(cl, device, CL_DEVICE_MAX_MEM_ALLOC_SIZE);
    d.local_memory = device_value<cl_ulong>(cl, device, CL_DEVICE_LOCAL_MEM_SIZE);
    d.images = device_value<cl_bool>(cl, device, CL_DEVICE_IMAGE_SUPPORT) != CL_FALSE;
    d.image_max_texels = device_value<size_t>(cl, device, CL_DEVICE_IMAGE_MAX_BUFFER_SIZE);
    d.little_endian = device_value<cl_bool>(cl, device, CL_DEVICE_ENDIAN_LITTLE) != CL_FALSE;
    d.correctly_rounded_divide_sqrt =
        (device_value<cl_device_fp_config>(cl, device, CL_DEVICE_SINGLE_FP_CONFIG) & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
    parse_c_version(d.c_version, &d.c_major, &d.c_minor);
    if (d.device_version.rfind("OpenCL 3.", 0) == 0) d.subgroups_feature = has_subgroups_feature(cl, device);
    return d;
}

// An environment switch: false only when set to "0" (or true only when set to "1", for
// `default_on` false).
bool env_switch(const char* name, bool default_on) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') return default_on;
    return default_on ? std::strcmp(value, "0") != 0 : std::strcmp(value, "1") == 0;
}

std::string type_name(cl_device_type type) {
    if (type & CL_DEVICE_TYPE_GPU) return "GPU";
    if (type & CL_DEVICE_TYPE_CPU) return "CPU";
    if (type & CL_DEVICE_TYPE_ACCELERATOR) return "accelerator";
    return "other";
}

std::string present_devices(const std::vector<DeviceDescription>& devices) {
    std::string text;
    for (const DeviceDescription& d : devices) {
        text += (text.empty() ? "" : ", ") + d.id() + " (" + d.name + ", " + d.platform_name + ")";
    }
    return text;
}

}  // namespace

bool DeviceDescription::has(const char* extension) const {
    std::string word(1, ' ');  // (appended, not " " + ...: GCC 12 warns falsely on that, bug 105329)
    word.append(extension).push_back(' ');
    return extensions.find(word) != std::string::npos;
}

std::vector<DeviceDescription> enumerate_devices(std::string* why) {
    std::vector<DeviceDescription> devices;
    std::string loader_problem;
    const ClApi* cl = cl_api(&loader_problem);
    if (cl == nullptr) {
        if (why) *why = loader_problem;
        return devices;
    }
    cl_uint n_platforms = 0;
    const cl_int status = cl->GetPlatformIDs(0, nullptr, &n_platforms);
    if (status != CL_SUCCESS || n_platforms == 0) {
        if (why) {
            *why = "the OpenCL ICD loader found no platform (" + cl_error_name(status) +
                   "; drivers are listed by .icd files in /etc/OpenCL/vendors or the folder OCL_ICD_VENDORS names)";
        }
        return devices;
    }
    std::vector<cl_platform_id> platforms(n_platforms);
    cl->GetPlatformIDs(n_platforms, platforms.data(), nullptr);
    for (cl_platform_id platform : platforms) {
        cl_uint n_devices = 0;
        if (cl->GetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 0, nullptr, &n_devices) != CL_SUCCESS || n_devices == 0) {
            continue;
        }
        std::vector<cl_device_id> ids(n_devices);
        cl->GetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, n_devices, ids.data(), nullptr);
        for (cl_device_id id : ids) devices.push_back(describe_device(*cl, platform, id, devices.size()));
    }
    if (devices.empty() && why) *why = "the OpenCL platforms present have no device";
    return devices;
}

KernelPaths choose_paths(const DeviceDescription& device) {
    KernelPaths paths;
    paths.fp16 = device.has("cl_khr_fp16") && env_switch("LFMRT_OPENCL_FP16", true);
    if (env_switch("LFMRT_OPENCL_SUBGROUPS", true)) {
        // cl_khr_subgroups' built-ins are OpenCL C 2.0 functions; cl_intel_subgroups brings its
        // own (also on 1.2); OpenCL C 3.0 has them as an optional feature.
        if (device.has("cl_khr_subgroups") && device.c_major >= 2) {
            paths.subgroups = Subgroups::Khr;
        } else if (device.has("cl_intel_subgroups")) {
            paths.subgroups = Subgroups::Intel;
        } else if (device.subgroups_feature && device.c_major >= 3) {
            paths.subgroups = Subgroups::Feature;
        }
    }
    if (paths.subgroups != Subgroups::None) {
        // Intel: 16 lanes, the width of its GPUs' SIMD16 mode and of AVX-512's floats on its CPU
        // runtime. Qualcomm: half waves, as llama.cpp's Adreno kernels ask.
        if (device.has("cl_intel_required_subgroup_size")) paths.intel_subgroup_size = 16;
        paths.qcom_half_subgroups = device.has("cl_qcom_reqd_sub_group_size");
    }
    paths.images = device.images && env_switch("LFMRT_OPENCL_IMAGES", false);
    return paths;
}

std::string KernelPaths::build_options(const DeviceDescription& device) const {
    std::string options = device.c_major >= 3 ? "-cl-std=CL3.0" : device.c_major == 2 ? "-cl-std=CL2.0" : "-cl-std=CL1.2";
    // Exact fp32 division and square root where the device offers them (the KV cache's Q8_0 scale
    // and rmsnorm's 1 / sqrt then round as the CPU's do); never fast-math or -cl-mad-enable.
    if (device.correctly_rounded_divide_sqrt) options += " -cl-fp32-correctly-rounded-divide-sqrt";
    if (fp16) options += " -DLFMRT_FP16";
    switch (subgroups) {
        case Subgroups::None: break;
        case Subgroups::Khr: options += " -DLFMRT_SUBGROUPS_KHR"; break;
        case Subgroups::Intel: options += " -DLFMRT_SUBGROUPS_INTEL"; break;
        case Subgroups::Feature: options += " -DLFMRT_SUBGROUPS_FEATURE"; break;
    }
    if (intel_subgroup_size > 0) options += " -DLFMRT_SUBGROUP_SIZE_INTEL=" + std::to_string(intel_subgroup_size);
    if (qcom_half_subgroups) options += " -DLFMRT_SUBGROUP_QCOM_HALF";
    if (images) options += " -DLFMRT_IMAGES";
    return options;
}

std::string KernelPaths::describe() const {
    std::string text = "reductions: ";
    switch (subgroups) {
        case Subgroups::None: text += "local memory"; break;
        case Subgroups::Khr: text += "subgroups (cl_khr_subgroups"; break;
        case Subgroups::Intel: text += "subgroups (cl_intel_subgroups"; break;
        case Subgroups::Feature: text += "subgroups (__opencl_c_subgroups"; break;
    }
    if (subgroups != Subgroups::None) {
        if (intel_subgroup_size > 0) text += ", " + std::to_string(intel_subgroup_size) + " lanes required";
        if (qcom_half_subgroups) text += ", half waves required";
        text += ")";
    }
    text += fp16 ? "; halves: cl_khr_fp16 loads" : "; halves: vload_half";
    text += images ? "; quantized weights: image1d_buffer_t" : "; weights: buffers";
    return text;
}

std::vector<DeviceInfo> opencl_device_infos() {
    std::vector<DeviceInfo> infos;
    for (const DeviceDescription& d : enumerate_devices(nullptr)) {
        DeviceInfo info;
        info.id = d.id();
        info.name = d.name;
        info.kind = "opencl";
        info.memory_bytes = d.global_memory;
        info.fp16 = d.has("cl_khr_fp16");
        info.subgroups = d.has("cl_khr_subgroups") || d.has("cl_intel_subgroups") || d.subgroups_feature ||
                         d.has("cl_qcom_reqd_sub_group_size");
        info.details = "platform: " + d.platform_name + " (" + d.platform_version + "); driver: " + d.driver_version +
                       "; " + d.c_version + "; type: " + type_name(d.type) + "; " + choose_paths(d).describe() +
                       (d.images ? "" : " (no image support)");
        infos.push_back(std::move(info));
    }
    return infos;
}

std::unique_ptr<backend::Backend> make_opencl_backend(const std::string& index) {
    std::string why;
    std::vector<DeviceDescription> devices = enumerate_devices(&why);
    const std::string asked = index.empty() ? "opencl" : "opencl:" + index;
    if (devices.empty()) throw InvalidArgument("device '" + asked + "': " + why);
    size_t chosen = 0;
    if (index.empty()) {
        for (size_t i = devices.size(); i-- > 0;) {
            if (devices[i].is_gpu()) chosen = i;
        }
    } else {
        char* end = nullptr;
        const unsigned long value = std::strtoul(index.c_str(), &end, 10);
        if (end == index.c_str() || *end != '\0' || index[0] == '-' || value >= devices.size()) {
            throw InvalidArgument("device '" + asked + "': no such OpenCL device; present: " + present_devices(devices));
        }
        chosen = value;
    }
    return std::make_unique<OpenClBackend>(devices[chosen], choose_paths(devices[chosen]));
}

}  // namespace lfmrt::opencl
