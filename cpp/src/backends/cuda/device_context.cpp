#include "backends/cuda/device_context.h"

#include <stdexcept>

#include "lfmrt/error.h"

namespace lfmrt::cuda {

void throw_cuda_error(cudaError_t status, const std::string& label, const std::string& what) {
    const std::string message =
        label + ": " + what + " failed: " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")";
    cudaGetLastError();  // clears a non-sticky error, so the next call does not report it again
    if (status == cudaErrorMemoryAllocation) throw OutOfDeviceMemory(message);
    throw std::runtime_error(message);
}

DeviceMemory& DeviceMemory::operator=(DeviceMemory&& other) noexcept {
    if (this != &other) {
        reset();
        context_ = std::move(other.context_);
        pointer_ = other.pointer_;
        bytes_ = other.bytes_;
        other.pointer_ = nullptr;
        other.bytes_ = 0;
    }
    return *this;
}

void DeviceMemory::reset() noexcept {
    if (pointer_ != nullptr) context_->release(pointer_, bytes_);
    context_.reset();
    pointer_ = nullptr;
    bytes_ = 0;
}

DeviceContext::DeviceContext(int ordinal) : ordinal_(ordinal) {
    label_ = "cuda:" + std::to_string(ordinal);
    check(cudaGetDeviceProperties(&properties_, ordinal), "reading the device's properties");
    label_ += std::string(" (") + properties_.name + ")";
    activate();
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating a stream");
}

std::shared_ptr<DeviceContext> DeviceContext::open(int ordinal) {
    return std::shared_ptr<DeviceContext>(new DeviceContext(ordinal));
}

DeviceContext::~DeviceContext() {
    if (stream_ != nullptr) {
        cudaSetDevice(ordinal_);
        cudaStreamSynchronize(stream_);
        cudaStreamDestroy(stream_);
    }
}

void DeviceContext::activate() const { check(cudaSetDevice(ordinal_), "making the device current"); }

DeviceMemory DeviceContext::allocate(size_t bytes, const std::string& what, const void* host) {
    activate();
    void* pointer = nullptr;
    const size_t size = bytes == 0 ? 1 : bytes;
    const cudaError_t status = cudaMalloc(&pointer, size);
    if (status == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        size_t free = 0, total = 0;
        cudaMemGetInfo(&free, &total);
        throw OutOfDeviceMemory(label_ + ": out of device memory allocating " + std::to_string(size) + " bytes for " +
                                what + " (" + std::to_string(allocated_bytes() >> 20) + " MiB held by lfmrt, " +
                                std::to_string(free >> 20) + " of " + std::to_string(total >> 20) + " MiB free)");
    }
    check(status, "allocating " + std::to_string(size) + " bytes for " + what);
    allocated_bytes_ += size;
    DeviceMemory memory(shared_from_this(), pointer, size);
    if (host != nullptr && bytes > 0) {
        check(cudaMemcpy(pointer, host, bytes, cudaMemcpyHostToDevice), "copying " + what + " to the device");
    }
    return memory;
}

// Work queued on the stream may still use the memory: wait for it first, whatever cudaFree itself
// waits for.
void DeviceContext::release(void* pointer, size_t bytes) noexcept {
    cudaSetDevice(ordinal_);
    cudaStreamSynchronize(stream_);
    cudaFree(pointer);
    allocated_bytes_ -= bytes;
}

void DeviceContext::upload_async(void* device, const void* host, size_t bytes, const std::string& what) {
    if (bytes == 0) return;
    activate();
    // From pageable memory the copy has taken the host bytes when it returns, so `host` may be
    // reused at once.
    check(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream_), "copying " + what + " to the device");
}

void DeviceContext::download(void* host, const void* device, size_t bytes, const std::string& what) {
    activate();
    if (bytes > 0) {
        check(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream_), "copying " + what + " to the host");
    }
    synchronize("copying " + what + " to the host");
}

void DeviceContext::synchronize(const std::string& what) { check(cudaStreamSynchronize(stream_), what); }

}  // namespace lfmrt::cuda
