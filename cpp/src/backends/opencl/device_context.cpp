#include "backends/opencl/device_context.h"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "lfmrt/error.h"

namespace lfmrt::opencl {

template <>
void ClHandle<cl_mem>::reset() {
    if (handle_) cl_api()->ReleaseMemObject(std::exchange(handle_, nullptr));
}
template <>
void ClHandle<cl_context>::reset() {
    if (handle_) cl_api()->ReleaseContext(std::exchange(handle_, nullptr));
}
template <>
void ClHandle<cl_command_queue>::reset() {
    if (handle_) cl_api()->ReleaseCommandQueue(std::exchange(handle_, nullptr));
}
template <>
void ClHandle<cl_program>::reset() {
    if (handle_) cl_api()->ReleaseProgram(std::exchange(handle_, nullptr));
}
template <>
void ClHandle<cl_kernel>::reset() {
    if (handle_) cl_api()->ReleaseKernel(std::exchange(handle_, nullptr));
}
template <>
void ClHandle<cl_event>::reset() {
    if (handle_) cl_api()->ReleaseEvent(std::exchange(handle_, nullptr));
}

namespace {

std::string mib(uint64_t bytes) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return text;
}

bool out_of_memory(cl_int status) {
    return status == CL_MEM_OBJECT_ALLOCATION_FAILURE || status == CL_OUT_OF_RESOURCES ||
           status == CL_OUT_OF_HOST_MEMORY || status == CL_INVALID_BUFFER_SIZE;
}

// LFMRT_OPENCL_MEMORY_LIMIT: bytes, with an optional K, M or G (binary) suffix; unset: none.
uint64_t memory_limit_from_env() {
    const char* text = std::getenv("LFMRT_OPENCL_MEMORY_LIMIT");
    if (text == nullptr || *text == '\0') return UINT64_MAX;
    char* end = nullptr;
    const double value = std::strtod(text, &end);
    uint64_t unit = 1;
    if (*end == 'K' || *end == 'k') unit = 1ull << 10;
    if (*end == 'M' || *end == 'm') unit = 1ull << 20;
    if (*end == 'G' || *end == 'g') unit = 1ull << 30;
    if (unit != 1) ++end;
    if (end == text || *end != '\0' || !(value >= 0)) {
        throw InvalidArgument(std::string("LFMRT_OPENCL_MEMORY_LIMIT='") + text +
                              "' is not a byte count (e.g. 512M, 2G or 1000000)");
    }
    return static_cast<uint64_t>(value * static_cast<double>(unit));
}

}  // namespace

DeviceMemory& DeviceMemory::operator=(DeviceMemory&& other) noexcept {
    if (this != &other) {
        release();
        context_ = std::move(other.context_);
        mem_ = std::move(other.mem_);
        bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
}

DeviceMemory::~DeviceMemory() { release(); }

void DeviceMemory::release() {
    if (mem_ && context_) context_->released(bytes_);
    mem_.reset();
    context_.reset();
    bytes_ = 0;
}

DeviceContext::DeviceContext(DeviceDescription description, KernelPaths paths)
    : cl_(*cl_api()), description_(std::move(description)), paths_(paths), memory_limit_(memory_limit_from_env()) {
    if (!description_.little_endian) {
        throw InvalidArgument(label() + " is big-endian; lfmrt's OpenCL kernels read little-endian weights");
    }
    cl_int status = CL_SUCCESS;
    const cl_context_properties properties[] = {CL_CONTEXT_PLATFORM,
                                                reinterpret_cast<cl_context_properties>(description_.platform), 0};
    context_ = ClHandle<cl_context>(cl_.CreateContext(properties, 1, &description_.device, nullptr, nullptr, &status));
    check(status, "creating a context");
    queue_ = ClHandle<cl_command_queue>(cl_.CreateCommandQueue(context_.get(), description_.device, 0, &status));
    check(status, "creating a command queue");
}

std::string DeviceContext::label() const { return description_.id() + " (" + description_.name + ")"; }

void DeviceContext::check(cl_int status, const std::string& what) const {
    if (status == CL_SUCCESS) return;
    if (out_of_memory(status)) {
        throw OutOfDeviceMemory(label() + ": out of device memory " + what + " (" + cl_error_name(status) + "; " +
                                mib(bytes_in_use()) + " of lfmrt's buffers in use)");
    }
    throw std::runtime_error(label() + ": " + what + " failed: " + cl_error_name(status));
}

size_t DeviceContext::bytes_in_use() const {
    std::lock_guard<std::mutex> lock(memory_mutex_);
    return in_use_;
}

void DeviceContext::released(size_t bytes) {
    std::lock_guard<std::mutex> lock(memory_mutex_);
    in_use_ -= bytes;
}

DeviceMemory DeviceContext::allocate(size_t bytes, const std::string& what, const void* initial) {
    const size_t size = std::max<size_t>(bytes, 16);  // OpenCL refuses empty buffers
    {
        std::lock_guard<std::mutex> lock(memory_mutex_);
        const char* refusal = nullptr;
        if (size > description_.max_allocation) refusal = "larger than the device's largest allocation";
        if (in_use_ + size > memory_limit_) refusal = "over LFMRT_OPENCL_MEMORY_LIMIT";
        if (refusal != nullptr) {
            const uint64_t limit = std::min<uint64_t>(memory_limit_, description_.global_memory);
            throw OutOfDeviceMemory(label() + ": out of device memory: " + mib(size) + " for " + what + " is " +
                                    refusal + " (" + mib(in_use_) + " in use of " + mib(limit) + "; largest allocation " +
                                    mib(description_.max_allocation) + ")");
        }
        in_use_ += size;
    }
    cl_int status = CL_SUCCESS;
    cl_mem mem = cl_.CreateBuffer(context_.get(), CL_MEM_READ_WRITE, size, nullptr, &status);
    if (status != CL_SUCCESS) {
        released(size);
        check(status, "allocating " + mib(size) + " for " + what);
    }
    DeviceMemory memory(shared_from_this(), ClHandle<cl_mem>(mem), size);  // gives the bytes back however this ends
    if (initial != nullptr) {
        write(mem, 0, bytes, initial);
    } else {
        fill_zero(mem, 0, size);
        finish();
    }
    return memory;
}

void DeviceContext::set_arg(cl_kernel kernel, const char* name, cl_uint index, const void* value, size_t size) const {
    const cl_int status = cl_.SetKernelArg(kernel, index, size, value);
    if (status != CL_SUCCESS) check(status, std::string("setting argument ") + std::to_string(index) + " of " + name);
}

void DeviceContext::wait(ClHandle<cl_event> event, const std::string& what) const {
    if (!event) return;
    cl_event handle = event.get();
    cl_int status = cl_.WaitForEvents(1, &handle);
    if (status == CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST) {
        cl_int execution = 0;  // a negative execution status is the command's error
        cl_.GetEventInfo(handle, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof execution, &execution, nullptr);
        if (execution < 0) status = execution;
    }
    check(status, what);
}

ClHandle<cl_event> DeviceContext::enqueue_read(cl_mem mem, size_t offset, size_t bytes, void* host) {
    if (bytes == 0) return {};
    cl_event event = nullptr;
    std::lock_guard<std::mutex> lock(queue_mutex_);
    check(cl_.EnqueueReadBuffer(queue_.get(), mem, CL_FALSE, offset, bytes, host, 0, nullptr, &event),
          "reading from the device");
    return ClHandle<cl_event>(event);
}

ClHandle<cl_event> DeviceContext::enqueue_write(cl_mem mem, size_t offset, size_t bytes, const void* host) {
    if (bytes == 0) return {};
    cl_event event = nullptr;
    std::lock_guard<std::mutex> lock(queue_mutex_);
    check(cl_.EnqueueWriteBuffer(queue_.get(), mem, CL_FALSE, offset, bytes, host, 0, nullptr, &event),
          "writing to the device");
    return ClHandle<cl_event>(event);
}

void DeviceContext::read(cl_mem mem, size_t offset, size_t bytes, void* host) {
    wait(enqueue_read(mem, offset, bytes, host), "reading from the device");
}

void DeviceContext::write(cl_mem mem, size_t offset, size_t bytes, const void* host) {
    wait(enqueue_write(mem, offset, bytes, host), "writing to the device");
}

void DeviceContext::copy(cl_mem from, size_t from_offset, cl_mem to, size_t to_offset, size_t bytes) {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    check(cl_.EnqueueCopyBuffer(queue_.get(), from, to, from_offset, to_offset, bytes, 0, nullptr, nullptr),
          "copying on the device");
}

void DeviceContext::fill_zero(cl_mem mem, size_t offset, size_t bytes) {
    const uint32_t zero = 0;
    std::lock_guard<std::mutex> lock(queue_mutex_);
    // A pattern of 4 bytes needs offset and size in multiples of 4 (state blocks and buffers are).
    const size_t pattern = bytes % 4 == 0 && offset % 4 == 0 ? 4 : 1;
    check(cl_.EnqueueFillBuffer(queue_.get(), mem, &zero, pattern, offset, bytes, 0, nullptr, nullptr),
          "filling device memory");
}

void DeviceContext::finish() {
    cl_int status;
    {
        std::lock_guard<std::mutex> lock(queue_mutex_);
        status = cl_.Flush(queue_.get());
    }
    if (status == CL_SUCCESS) status = cl_.Finish(queue_.get());
    check(status, "waiting for the device");
}

}  // namespace lfmrt::opencl
