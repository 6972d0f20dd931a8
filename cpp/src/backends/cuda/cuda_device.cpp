#include "backends/cuda/cuda_device.h"

#include <cuda_runtime.h>

#include "backends/cuda/cuda_backend.h"
#include "lfmrt/error.h"

namespace lfmrt::cuda {

namespace {

// The oldest compute capability the build's kernels run on (CMake's CUDA_ARCHITECTURES start at
// sm_80: Ampere, for bf16 and the integer dot products).
constexpr int kMinMajor = 8;

// The device count, or why there is none: the runtime's reason (no driver, a driver older than
// the runtime, no device).
int device_count(std::string* why) {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        cudaGetLastError();
        if (why != nullptr) *why = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
        return 0;
    }
    if (count == 0 && why != nullptr) *why = "the driver reports no device";
    return count;
}

std::string version_string(int version) {
    return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

}  // namespace

std::vector<DeviceInfo> cuda_device_infos() {
    std::vector<DeviceInfo> infos;
    const int count = device_count(nullptr);
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    for (int i = 0; i < count; ++i) {
        cudaDeviceProp p{};
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
            cudaGetLastError();
            continue;
        }
        DeviceInfo info;
        info.id = "cuda:" + std::to_string(i);
        info.name = p.name;
        info.kind = "cuda";
        info.memory_bytes = p.totalGlobalMem;
        info.fp16 = true;
        info.subgroups = true;  // warps
        info.details = "compute capability " + std::to_string(p.major) + "." + std::to_string(p.minor) + ", " +
                       std::to_string(p.multiProcessorCount) + " SMs, driver " + version_string(driver) + ", runtime " +
                       version_string(runtime) + (p.major < kMinMajor ? " (older than sm_80: not supported)" : "");
        infos.push_back(std::move(info));
    }
    return infos;
}

std::unique_ptr<backend::Backend> make_cuda_backend(const std::string& index) {
    std::string why;
    const int count = device_count(&why);
    const std::string device = index.empty() ? "cuda" : "cuda:" + index;
    if (count == 0) {
        throw InvalidArgument("device '" + device + "': no CUDA device is usable (" + why +
                              "; the CUDA backend needs an NVIDIA driver, libcuda.so.1, and a GPU of compute capability "
                              "8.0 or newer); lfmrt.devices() lists what this machine has");
    }
    int ordinal = 0;
    if (!index.empty()) {
        size_t used = 0;
        try {
            ordinal = std::stoi(index, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used != index.size() || ordinal < 0) {
            throw InvalidArgument("device '" + device + "': expected cuda or cuda:N with N a device index");
        }
        if (ordinal >= count) {
            throw InvalidArgument("device '" + device + "': there is no CUDA device " + index + " (" +
                                  std::to_string(count) + " present: cuda:0 .. cuda:" + std::to_string(count - 1) + ")");
        }
    }
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, ordinal) == cudaSuccess && p.major < kMinMajor) {
        throw InvalidArgument("device '" + device + "' (" + p.name + ") has compute capability " +
                              std::to_string(p.major) + "." + std::to_string(p.minor) +
                              "; lfmrt's CUDA kernels are built for 8.0 (Ampere) and newer");
    }
    return std::make_unique<CudaBackend>(DeviceContext::open(ordinal));
}

}  // namespace lfmrt::cuda
