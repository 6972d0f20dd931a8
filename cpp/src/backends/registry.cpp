#include "backends/registry.h"

#include "backends/cpu/cpu_device.h"
#include "lfmrt/error.h"

#if defined(LFMRT_HAVE_OPENCL)
#include "backends/opencl/opencl_device.h"
#endif
#if defined(LFMRT_HAVE_CUDA)
#include "backends/cuda/cuda_device.h"
#endif

namespace lfmrt {

namespace {

// "kind" and what follows its colon ("" when there is none).
std::pair<std::string, std::string> split_device(const std::string& device) {
    const size_t colon = device.find(':');
    if (colon == std::string::npos) return {device, ""};
    return {device.substr(0, colon), device.substr(colon + 1)};
}

}  // namespace

std::unique_ptr<backend::Backend> make_backend(const std::string& device, const BackendOptions& options) {
    const auto [kind, rest] = split_device(device.empty() ? "cpu" : device);
    if (kind == "cpu") return cpu::make_cpu_backend(rest, options.n_threads);
    if (kind == "opencl") {
#if defined(LFMRT_HAVE_OPENCL)
        return opencl::make_opencl_backend(rest);
#else
        throw InvalidArgument("device '" + device + "': this build of lfmrt has no OpenCL backend (built with LFMRT_OPENCL=OFF)");
#endif
    }
    if (kind == "cuda") {
#if defined(LFMRT_HAVE_CUDA)
        return cuda::make_cuda_backend(rest);
#else
        throw InvalidArgument("device '" + device +
                              "': this build of lfmrt has no CUDA backend (build it with "
                              "CMAKE_ARGS=\"-DLFMRT_CUDA=ON\" pip install lfmrt --no-binary lfmrt)");
#endif
    }
    throw InvalidArgument("unknown device '" + device + "' (expected cpu, cpu:<kernel set>, opencl[:N] or cuda[:N])");
}

std::vector<DeviceInfo> list_devices() {
    std::vector<DeviceInfo> devices{cpu::cpu_device_info()};
#if defined(LFMRT_HAVE_OPENCL)
    for (DeviceInfo& info : opencl::opencl_device_infos()) devices.push_back(std::move(info));
#endif
#if defined(LFMRT_HAVE_CUDA)
    for (DeviceInfo& info : cuda::cuda_device_infos()) devices.push_back(std::move(info));
#endif
    return devices;
}

}  // namespace lfmrt
