// OpenCL devices: what each one is and offers, which kernel paths the backend takes on it, and
// the registry's entry point into backends/opencl/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/opencl/cl_api.h"
#include "lfmrt/backend.h"

namespace lfmrt::opencl {

// One OpenCL device as its driver describes it.
struct DeviceDescription {
    cl_platform_id platform = nullptr;
    cl_device_id device = nullptr;
    size_t index = 0;  // "opencl:<index>": its place among all platforms' devices, in order
    std::string name, platform_name, platform_version, driver_version, device_version, c_version;
    std::string extensions;  // space-separated, with a space at each end
    cl_device_type type = 0;
    uint64_t global_memory = 0, max_allocation = 0, local_memory = 0;
    bool images = false;
    size_t image_max_texels = 0;  // CL_DEVICE_IMAGE_MAX_BUFFER_SIZE
    bool little_endian = true;
    bool correctly_rounded_divide_sqrt = false;
    int c_major = 1, c_minor = 2;  // OpenCL C version
    bool subgroups_feature = false;  // OpenCL C 3.0's __opencl_c_subgroups

    bool has(const char* extension) const;
    bool is_gpu() const { return (type & CL_DEVICE_TYPE_GPU) != 0; }
    std::string id() const { return "opencl:" + std::to_string(index); }
};

// Every OpenCL device present, platform after platform. Empty, with `why` saying what was looked
// for, when there is no ICD loader, no platform or no device.
std::vector<DeviceDescription> enumerate_devices(std::string* why);

// How the reductions are done.
enum class Subgroups { None, Khr, Intel, Feature };

// The kernel paths the backend takes on one device: the device's capabilities, less what the
// environment turns off (LFMRT_OPENCL_FP16=0, LFMRT_OPENCL_SUBGROUPS=0, so the fallbacks can be
// tested on a device that has more), plus the opt-in image path (LFMRT_OPENCL_IMAGES=1).
struct KernelPaths {
    bool fp16 = false;               // cl_khr_fp16 half loads (else vload_half)
    Subgroups subgroups = Subgroups::None;
    int intel_subgroup_size = 0;     // cl_intel_required_subgroup_size: lanes asked for (0: none)
    bool qcom_half_subgroups = false;  // cl_qcom_reqd_sub_group_size("half")
    bool images = false;             // quantized weights through image1d_buffer_t

    // The options the program is built with (also part of its cache key).
    std::string build_options(const DeviceDescription& device) const;
    // For lfmrt.devices() and Model.kernel_set: e.g. "subgroups (cl_intel_subgroups, 16 lanes),
    // fp16 loads, buffers".
    std::string describe() const;
};

KernelPaths choose_paths(const DeviceDescription& device);

// lfmrt.devices()' entries for every OpenCL device.
std::vector<DeviceInfo> opencl_device_infos();

// An OpenCL backend for "opencl" (`index` empty: the first GPU, else the first device) or
// "opencl:N". Throws InvalidArgument when there is no such device, saying what is present.
std::unique_ptr<backend::Backend> make_opencl_backend(const std::string& index);

}  // namespace lfmrt::opencl
