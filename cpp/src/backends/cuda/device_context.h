// One CUDA device as the backend uses it: its ordinal, properties and one non-blocking stream,
// error checking that names the device and the operation, and device memory as RAII.
//
// The CUDA runtime is linked statically (cudart_static); it loads the driver (libcuda.so.1) at
// the first call, so lfmrt imports and runs on the CPU where no driver is installed, and a CUDA
// device string there fails with the runtime's own reason (cuda_device.cpp).
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

namespace lfmrt::cuda {

// The device's CUDA error as an exception: OutOfDeviceMemory for cudaErrorMemoryAllocation,
// std::runtime_error otherwise, each naming `label` and `what`.
[[noreturn]] void throw_cuda_error(cudaError_t status, const std::string& label, const std::string& what);

class DeviceContext;

// Device memory of one allocation, freed (after the stream's work) with its owner.
class DeviceMemory {
public:
    DeviceMemory() = default;
    DeviceMemory(std::shared_ptr<DeviceContext> context, void* pointer, size_t bytes)
        : context_(std::move(context)), pointer_(pointer), bytes_(bytes) {}
    DeviceMemory(DeviceMemory&& other) noexcept { *this = std::move(other); }
    DeviceMemory& operator=(DeviceMemory&& other) noexcept;
    DeviceMemory(const DeviceMemory&) = delete;
    DeviceMemory& operator=(const DeviceMemory&) = delete;
    ~DeviceMemory() { reset(); }

    template <typename T = void>
    T* get() const {
        return static_cast<T*>(pointer_);
    }
    size_t bytes() const { return bytes_; }

private:
    void reset() noexcept;

    std::shared_ptr<DeviceContext> context_;
    void* pointer_ = nullptr;
    size_t bytes_ = 0;
};

class DeviceContext : public std::enable_shared_from_this<DeviceContext> {
public:
    // Makes the device current and its stream. Throws as throw_cuda_error.
    static std::shared_ptr<DeviceContext> open(int ordinal);
    ~DeviceContext();
    DeviceContext(const DeviceContext&) = delete;
    DeviceContext& operator=(const DeviceContext&) = delete;

    int ordinal() const { return ordinal_; }
    const cudaDeviceProp& properties() const { return properties_; }
    cudaStream_t stream() const { return stream_; }
    // "cuda:N (NAME)", for messages.
    const std::string& label() const { return label_; }

    // Makes this device current on the calling thread (CUDA's current device is per thread, and
    // sessions use the pools from threads of their own).
    void activate() const;
    void check(cudaError_t status, const std::string& what) const {
        if (status != cudaSuccess) throw_cuda_error(status, label_, what);
    }

    // `bytes` of device memory (at least one byte), filled from `host` when given.
    DeviceMemory allocate(size_t bytes, const std::string& what, const void* host = nullptr);
    // Copies on the stream; `download` waits for it (and everything before it).
    void upload_async(void* device, const void* host, size_t bytes, const std::string& what);
    void download(void* host, const void* device, size_t bytes, const std::string& what);
    void synchronize(const std::string& what);
    size_t allocated_bytes() const { return allocated_bytes_.load(); }

private:
    explicit DeviceContext(int ordinal);
    friend class DeviceMemory;
    void release(void* pointer, size_t bytes) noexcept;

    int ordinal_;
    cudaDeviceProp properties_{};
    cudaStream_t stream_ = nullptr;
    std::string label_;
    std::atomic<size_t> allocated_bytes_{0};  // every DeviceMemory alive
};

}  // namespace lfmrt::cuda
