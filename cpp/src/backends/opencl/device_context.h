// One OpenCL device opened for a backend: its context and in-order queue, the mutex that
// serialises every use of the queue and of kernel arguments (the forward pass and the state
// pools, which sessions use from other threads), device memory with an account of what is in
// use, and the error translation (out of memory becomes lfmrt::OutOfDeviceMemory).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "backends/opencl/cl_api.h"
#include "backends/opencl/opencl_device.h"

namespace lfmrt::opencl {

// An owned OpenCL object, released when destroyed.
template <typename T>
class ClHandle {
public:
    ClHandle() = default;
    explicit ClHandle(T handle) : handle_(handle) {}
    ClHandle(ClHandle&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    ClHandle& operator=(ClHandle&& other) noexcept {
        if (this != &other) {
            reset();
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    ClHandle(const ClHandle&) = delete;
    ClHandle& operator=(const ClHandle&) = delete;
    ~ClHandle() { reset(); }

    T get() const { return handle_; }
    explicit operator bool() const { return handle_ != nullptr; }
    void reset();

private:
    T handle_ = nullptr;
};

// Each releases through its own clRelease* (device_context.cpp).
template <> void ClHandle<cl_mem>::reset();
template <> void ClHandle<cl_context>::reset();
template <> void ClHandle<cl_command_queue>::reset();
template <> void ClHandle<cl_program>::reset();
template <> void ClHandle<cl_kernel>::reset();
template <> void ClHandle<cl_event>::reset();

class DeviceContext;

// A device buffer, counted in its context's memory account while it lives.
class DeviceMemory {
public:
    DeviceMemory() = default;
    DeviceMemory(std::shared_ptr<DeviceContext> context, ClHandle<cl_mem> mem, size_t bytes)
        : context_(std::move(context)), mem_(std::move(mem)), bytes_(bytes) {}
    DeviceMemory(DeviceMemory&&) noexcept = default;
    DeviceMemory& operator=(DeviceMemory&& other) noexcept;
    ~DeviceMemory();

    cl_mem get() const { return mem_.get(); }
    size_t bytes() const { return bytes_; }

private:
    void release();
    std::shared_ptr<DeviceContext> context_;
    ClHandle<cl_mem> mem_;
    size_t bytes_ = 0;
};

// A __local kernel argument of `bytes`.
struct LocalBytes {
    size_t bytes;
};

class DeviceContext : public std::enable_shared_from_this<DeviceContext> {
public:
    DeviceContext(DeviceDescription description, KernelPaths paths);

    const DeviceDescription& description() const { return description_; }
    const KernelPaths& paths() const { return paths_; }
    const ClApi& cl() const { return cl_; }
    cl_context context() const { return context_.get(); }
    cl_command_queue queue() const { return queue_.get(); }
    // "opencl:0 (NAME)", for messages.
    std::string label() const;

    // Every enqueue and every clSetKernelArg happens under this lock.
    std::mutex& queue_mutex() { return queue_mutex_; }

    // Device memory: `what` names it in messages. Throws OutOfDeviceMemory when the device (or
    // the limit LFMRT_OPENCL_MEMORY_LIMIT sets, in bytes, with an optional K/M/G suffix) has no
    // room. The memory is touched at once (filled with zeros, or written from `initial`), so a
    // driver that allocates lazily fails here rather than in a later kernel.
    DeviceMemory allocate(size_t bytes, const std::string& what, const void* initial = nullptr);
    size_t bytes_in_use() const;

    // Throws for a failed call: OutOfDeviceMemory for the out-of-memory statuses, otherwise a
    // std::runtime_error naming the device and what failed.
    void check(cl_int status, const std::string& what) const;

    // Copies between the host and device memory, waiting for the copy (and so for every command
    // before it): the wait happens outside the queue lock.
    void read(cl_mem mem, size_t offset, size_t bytes, void* host);
    void write(cl_mem mem, size_t offset, size_t bytes, const void* host);
    // The same in two halves, for callers that must enqueue under a lock of their own (a state
    // pool, whose buffer may be replaced once the lock is dropped) but not wait under it. The
    // host memory must stay valid until wait() returns.
    ClHandle<cl_event> enqueue_read(cl_mem mem, size_t offset, size_t bytes, void* host);
    ClHandle<cl_event> enqueue_write(cl_mem mem, size_t offset, size_t bytes, const void* host);
    void wait(ClHandle<cl_event> event, const std::string& what) const;
    // Device-side copy and fill, queued (not waited for); callers hold no lock.
    void copy(cl_mem from, size_t from_offset, cl_mem to, size_t to_offset, size_t bytes);
    void fill_zero(cl_mem mem, size_t offset, size_t bytes);

    // Sets the arguments and enqueues `kernel` over `global` (rounded up to whole work-groups by
    // the caller) in work-groups of `local` (null: the driver's choice).
    template <typename... Args>
    void launch(cl_kernel kernel, const char* name, cl_uint dims, const size_t* global, const size_t* local,
                const Args&... args) {
        std::lock_guard<std::mutex> lock(queue_mutex_);
        cl_uint index = 0;
        (set_arg(kernel, name, index++, args), ...);
        check(cl_.EnqueueNDRangeKernel(queue_.get(), kernel, dims, nullptr, global, local, 0, nullptr, nullptr),
              std::string("enqueueing kernel ") + name);
    }

    void finish();

private:
    void set_arg(cl_kernel kernel, const char* name, cl_uint index, const void* value, size_t size) const;
    void set_arg(cl_kernel kernel, const char* name, cl_uint index, cl_mem value) const {
        set_arg(kernel, name, index, &value, sizeof value);
    }
    void set_arg(cl_kernel kernel, const char* name, cl_uint index, const DeviceMemory& value) const {
        set_arg(kernel, name, index, value.get());
    }
    void set_arg(cl_kernel kernel, const char* name, cl_uint index, cl_uint value) const {
        set_arg(kernel, name, index, &value, sizeof value);
    }
    void set_arg(cl_kernel kernel, const char* name, cl_uint index, cl_ulong value) const {
        set_arg(kernel, name, index, &value, sizeof value);
    }
    void set_arg(cl_kernel kernel, const char* name, cl_uint index, float value) const {
        set_arg(kernel, name, index, &value, sizeof value);
    }
    void set_arg(cl_kernel kernel, const char* name, cl_uint index, LocalBytes value) const {
        set_arg(kernel, name, index, nullptr, value.bytes);
    }
    friend class DeviceMemory;
    void released(size_t bytes);

    const ClApi& cl_;
    DeviceDescription description_;
    KernelPaths paths_;
    ClHandle<cl_context> context_;
    ClHandle<cl_command_queue> queue_;
    std::mutex queue_mutex_;
    uint64_t memory_limit_;
    mutable std::mutex memory_mutex_;
    size_t in_use_ = 0;
};

}  // namespace lfmrt::opencl
