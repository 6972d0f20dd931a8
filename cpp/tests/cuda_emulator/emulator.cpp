// The CUDA emulator's runtime (cuda_runtime.h says what it emulates and why).
#include "cuda_runtime.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace lfmrt_emu {

namespace {

[[noreturn]] void fail(const std::string& message) {
    std::fprintf(stderr, "CUDA emulator: %s\n", message.c_str());
    std::abort();
}

thread_local cudaError_t last_error = cudaSuccess;

cudaError_t record(cudaError_t error) {
    if (error != cudaSuccess) last_error = error;
    return error;
}

size_t env_size(const char* name, size_t fallback) {
    const char* text = std::getenv(name);
    if (text == nullptr || *text == '\0') return fallback;
    char* end = nullptr;
    const unsigned long long value = std::strtoull(text, &end, 10);
    if (end == text || *end != '\0') fail(std::string(name) + " must be a whole number, not '" + text + "'");
    return static_cast<size_t>(value);
}

int device_count() { return static_cast<int>(env_size("LFMRT_CUDA_EMULATOR_DEVICES", 1)); }
size_t device_memory() { return env_size("LFMRT_CUDA_EMULATOR_MEMORY", size_t{4} << 30); }
constexpr size_t kSharedPerBlock = 48 * 1024;
constexpr size_t kSharedPerBlockOptin = 99 * 1024;

// --- device memory -------------------------------------------------------------------------

struct Memory {
    std::mutex mutex;
    std::map<uintptr_t, size_t> allocations;  // start -> bytes
    size_t used = 0;
};
Memory& memory() {
    static Memory m;
    return m;
}

// Whether [p, p + bytes) lies in one live allocation.
bool is_device_range(const void* p, size_t bytes) {
    Memory& m = memory();
    std::lock_guard<std::mutex> lock(m.mutex);
    const auto address = reinterpret_cast<uintptr_t>(p);
    auto it = m.allocations.upper_bound(address);
    if (it == m.allocations.begin()) return false;
    --it;
    return address >= it->first && address + bytes <= it->first + it->second;
}

// --- streams and graphs --------------------------------------------------------------------

using Operation = std::function<void()>;

// Every queued operation runs under this lock, one at a time (kernels' __shared__ statics and
// the fiber scheduler are not reentrant), whichever host thread synchronizes.
std::mutex& execution_mutex() {
    static std::mutex m;
    return m;
}

}  // namespace

struct Graph {
    std::vector<Operation> operations;
};
struct GraphExec {
    std::vector<Operation> operations;
};

struct Stream {
    std::mutex mutex;
    std::deque<Operation> queue;
    Graph* capture = nullptr;  // while capturing: operations go here instead
    bool capture_invalidated = false;
};

namespace {

Stream& default_stream() {
    static Stream s;
    return s;
}
Stream& stream_of(cudaStream_t stream) { return stream == nullptr ? default_stream() : *stream; }

std::mutex& streams_mutex() {
    static std::mutex m;
    return m;
}
std::vector<Stream*>& live_streams() {
    static std::vector<Stream*> streams{&default_stream()};
    return streams;
}

bool is_capturing(Stream& s) {
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.capture != nullptr;
}

cudaError_t enqueue(cudaStream_t stream, Operation operation) {
    Stream& s = stream_of(stream);
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.capture != nullptr) {
        s.capture->operations.push_back(std::move(operation));
    } else {
        s.queue.push_back(std::move(operation));
    }
    return cudaSuccess;
}

void drain(Stream& s) {
    std::lock_guard<std::mutex> run(execution_mutex());
    for (;;) {
        Operation next;
        {
            std::lock_guard<std::mutex> lock(s.mutex);
            if (s.queue.empty()) return;
            next = std::move(s.queue.front());
            s.queue.pop_front();
        }
        next();
    }
}

bool any_work_queued() {
    std::lock_guard<std::mutex> lock(streams_mutex());
    for (Stream* s : live_streams()) {
        std::lock_guard<std::mutex> stream_lock(s->mutex);
        if (!s->queue.empty()) return true;
    }
    return false;
}

// A synchronous call made while `stream` captures invalidates the capture, as on a GPU.
cudaError_t refuse_during_capture(Stream& s) {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.capture == nullptr) return cudaSuccess;
    s.capture_invalidated = true;
    return cudaErrorStreamCaptureUnsupported;
}

// --- fibers --------------------------------------------------------------------------------

// A fiber's saved machine context. On x86-64 a hand-written switch saves the callee-saved
// registers on the fiber's stack; ucontext's swapcontext also saves the signal mask with a
// system call per switch (2000 blocks of 256 threads, 11 switches each: 3.2 s of CPU time with
// swapcontext, 0.4 s with this). Elsewhere ucontext.
#if defined(__x86_64__)
struct Context {
    void* sp = nullptr;
};
extern "C" void lfmrt_emu_switch(void** save_sp, void* load_sp);
asm(R"(
.text
.globl lfmrt_emu_switch
.type lfmrt_emu_switch, @function
lfmrt_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size lfmrt_emu_switch, .-lfmrt_emu_switch
.section .note.GNU-stack,"",@progbits
.text
)");

void switch_context(Context& from, Context& to) { lfmrt_emu_switch(&from.sp, to.sp); }

// A context that starts `entry` on the stack [stack, stack + bytes): the switch pops six
// registers and returns into `entry` as if called (the stack 16-byte aligned plus the return
// address slot, which holds 0: entry never returns).
void make_context(Context& context, unsigned char* stack, size_t bytes, void (*entry)()) {
    auto top = reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t{15};
    auto* slots = reinterpret_cast<uintptr_t*>(top);
    slots[-1] = 0;
    slots[-2] = reinterpret_cast<uintptr_t>(entry);
    for (int i = 3; i <= 8; ++i) slots[-i] = 0;
    context.sp = slots - 8;
}
#else
struct Context {
    ucontext_t context;
};
void switch_context(Context& from, Context& to) { swapcontext(&from.context, &to.context); }
void make_context(Context& context, unsigned char* stack, size_t bytes, void (*entry)()) {
    getcontext(&context.context);
    context.context.uc_stack.ss_sp = stack;
    context.context.uc_stack.ss_size = bytes;
    context.context.uc_link = nullptr;
    makecontext(&context.context, entry, 0);
}
#endif

enum class FiberState { Runnable, AtBlockBarrier, AtWarpBarrier, Done };

struct Fiber {
    Context context;
    dim3 thread_idx;
    int lane = 0, warp = 0;
    FiberState state = FiberState::Runnable;
    unsigned wait_mask = 0;
    uint64_t exchange = 0;  // a shuffle's value, read by the other lanes
};

constexpr size_t kStackBytes = 128 * 1024;

// Fiber stacks, kept for the next launch on this OS thread (uninitialised: only the pages a
// fiber touches are ever committed).
std::vector<std::unique_ptr<unsigned char[]>>& stacks_for(size_t threads) {
    thread_local std::vector<std::unique_ptr<unsigned char[]>> stacks;
    while (stacks.size() < threads) stacks.push_back(std::make_unique_for_overwrite<unsigned char[]>(kStackBytes));
    return stacks;
}

struct BlockRun {
    const std::function<void()>* body = nullptr;
    dim3 block_idx, block_dim, grid_dim;
    unsigned char* dynamic_shared = nullptr;
    size_t dynamic_shared_bytes = 0;
    std::vector<Fiber> fibers;
    std::vector<std::unique_ptr<unsigned char[]>>* stacks = nullptr;
    Context scheduler;
    std::string kernel_name;
};

thread_local BlockRun* current_run = nullptr;
thread_local Fiber* current_fiber = nullptr;

Fiber& fiber() {
    if (current_fiber == nullptr) fail("a device function was called outside a kernel");
    return *current_fiber;
}

void block_on(FiberState state, unsigned mask) {
    Fiber& f = fiber();
    f.state = state;
    f.wait_mask = mask;
    switch_context(f.context, current_run->scheduler);
}

void fiber_entry() {
    (*current_run->body)();
    current_fiber->state = FiberState::Done;
    switch_context(current_fiber->context, current_run->scheduler);
}

// Releases the barriers every waiting fiber has reached; false when none could be released.
bool release_barriers(BlockRun& run) {
    bool released = false;
    size_t waiting_block = 0, live = 0;
    for (const Fiber& f : run.fibers) {
        if (f.state == FiberState::Done) continue;
        ++live;
        if (f.state == FiberState::AtBlockBarrier) ++waiting_block;
    }
    if (live > 0 && waiting_block == live) {
        for (Fiber& f : run.fibers) {
            if (f.state == FiberState::AtBlockBarrier) f.state = FiberState::Runnable;
        }
        return true;
    }
    const size_t n_warps = (run.fibers.size() + 31) / 32;
    for (size_t w = 0; w < n_warps; ++w) {
        Fiber* first = nullptr;
        bool complete = true;
        for (size_t i = w * 32; i < std::min(run.fibers.size(), w * 32 + 32); ++i) {
            Fiber& f = run.fibers[i];
            if (f.state != FiberState::AtWarpBarrier) continue;
            if (first == nullptr) first = &f;
            if (f.wait_mask != first->wait_mask) {
                fail(run.kernel_name + ": lanes of warp " + std::to_string(w) + " wait at __syncwarp / a shuffle with different masks");
            }
        }
        if (first == nullptr) continue;
        for (int lane = 0; lane < 32; ++lane) {
            if (!(first->wait_mask >> lane & 1u)) continue;
            const size_t i = w * 32 + static_cast<size_t>(lane);
            if (i >= run.fibers.size() || run.fibers[i].state == FiberState::Done) {
                fail(run.kernel_name + ": a shuffle or __syncwarp names lane " + std::to_string(lane) + " of warp " +
                     std::to_string(w) + ", which has exited or does not exist");
            }
            if (run.fibers[i].state != FiberState::AtWarpBarrier) complete = false;
        }
        if (!complete) continue;
        for (int lane = 0; lane < 32; ++lane) {
            if (first->wait_mask >> lane & 1u) run.fibers[w * 32 + static_cast<size_t>(lane)].state = FiberState::Runnable;
        }
        released = true;
    }
    return released;
}

void run_block(BlockRun& run) {
    std::memset(run.dynamic_shared, 0xFF, run.dynamic_shared_bytes);
    const size_t n = run.fibers.size();
    for (size_t i = 0; i < n; ++i) {
        Fiber& f = run.fibers[i];
        f.state = FiberState::Runnable;
        make_context(f.context, (*run.stacks)[i].get(), kStackBytes, fiber_entry);
    }
    // Passes alternate between ascending and descending thread order, so that a missing barrier
    // is caught whichever side of it a thread is on.
    for (size_t pass = 0;; ++pass) {
        bool ran = false;
        for (size_t k = 0; k < n; ++k) {
            Fiber& f = run.fibers[pass % 2 == 0 ? k : n - 1 - k];
            if (f.state != FiberState::Runnable) continue;
            current_fiber = &f;
            threadIdx = f.thread_idx;
            blockIdx = run.block_idx;
            blockDim = run.block_dim;
            gridDim = run.grid_dim;
            switch_context(run.scheduler, f.context);
            current_fiber = nullptr;
            ran = true;
        }
        if (std::all_of(run.fibers.begin(), run.fibers.end(), [](const Fiber& f) { return f.state == FiberState::Done; })) {
            return;
        }
        if (!release_barriers(run) && !ran) {
            fail(run.kernel_name + ": deadlock in block (" + std::to_string(run.block_idx.x) + ", " +
                 std::to_string(run.block_idx.y) + ", " + std::to_string(run.block_idx.z) +
                 "): threads wait at barriers that cannot complete (a __syncthreads some threads skip?)");
        }
    }
}

std::map<const void*, size_t>& shared_optin() {
    static std::map<const void*, size_t> limits;
    return limits;
}
std::mutex& attributes_mutex() {
    static std::mutex m;
    return m;
}

}  // namespace

unsigned char* dynamic_shared() { return fiber(), current_run->dynamic_shared; }
int lane_id() { return fiber().lane; }

void syncthreads() { block_on(FiberState::AtBlockBarrier, 0); }

void syncwarp(unsigned mask) {
    if (!(mask >> fiber().lane & 1u)) fail(current_run->kernel_name + ": __syncwarp's mask leaves out the calling lane");
    block_on(FiberState::AtWarpBarrier, mask);
}

uint64_t shuffle(unsigned mask, uint64_t value, int source_lane) {
    Fiber& f = fiber();
    if (!(mask >> f.lane & 1u)) fail(current_run->kernel_name + ": a shuffle's mask leaves out the calling lane");
    if (source_lane < 0 || source_lane >= 32 || !(mask >> source_lane & 1u)) {
        fail(current_run->kernel_name + ": a shuffle reads lane " + std::to_string(source_lane) + ", outside its mask");
    }
    f.exchange = value;
    block_on(FiberState::AtWarpBarrier, mask);  // every lane has written
    const uint64_t result = current_run->fibers[static_cast<size_t>(f.warp) * 32 + static_cast<size_t>(source_lane)].exchange;
    block_on(FiberState::AtWarpBarrier, mask);  // every lane has read
    return result;
}

cudaError_t enqueue_launch(const cudaLaunchConfig_t& config, const void* kernel, const char* signature,
                           std::function<void()> thread_body) {
    const dim3 grid = config.gridDim, block = config.blockDim;
    const size_t threads = size_t{block.x} * block.y * block.z;
    size_t shared_limit = kSharedPerBlock;
    {
        std::lock_guard<std::mutex> lock(attributes_mutex());
        auto it = shared_optin().find(kernel);
        if (it != shared_optin().end()) shared_limit = it->second;
    }
    if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 ||
        grid.z > 65535 || config.dynamicSmemBytes > shared_limit) {
        return record(cudaErrorInvalidConfiguration);
    }
    const size_t shared_bytes = config.dynamicSmemBytes;
    return enqueue(config.stream, [grid, block, threads, shared_bytes, name = std::string(signature),
                                   body = std::move(thread_body)] {
        BlockRun run;
        run.body = &body;
        run.block_dim = block;
        run.grid_dim = grid;
        run.kernel_name = "kernel " + name;
        std::vector<unsigned char> shared(std::max<size_t>(shared_bytes, 16) + 16);
        run.dynamic_shared = shared.data() + (16 - reinterpret_cast<uintptr_t>(shared.data()) % 16) % 16;
        run.dynamic_shared_bytes = shared_bytes;
        run.fibers.resize(threads);
        run.stacks = &stacks_for(threads);
        for (size_t i = 0; i < threads; ++i) {
            Fiber& f = run.fibers[i];
            f.thread_idx = dim3(static_cast<unsigned>(i % block.x), static_cast<unsigned>(i / block.x % block.y),
                                static_cast<unsigned>(i / (size_t{block.x} * block.y)));
            f.lane = static_cast<int>(i % 32);
            f.warp = static_cast<int>(i / 32);
        }
        BlockRun* outer = current_run;
        current_run = &run;
        for (unsigned z = 0; z < grid.z; ++z) {
            for (unsigned y = 0; y < grid.y; ++y) {
                for (unsigned x = 0; x < grid.x; ++x) {
                    run.block_idx = dim3(x, y, z);
                    run_block(run);
                }
            }
        }
        current_run = outer;
    });
}

}  // namespace lfmrt_emu

using namespace lfmrt_emu;

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

// --- devices ---------------------------------------------------------------------------------

cudaError_t cudaGetDeviceCount(int* count) {
    *count = device_count();
    return record(*count > 0 ? cudaSuccess : cudaErrorNoDevice);
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
    if (device < 0 || device >= device_count()) return record(cudaErrorInvalidDevice);
    std::memset(prop, 0, sizeof *prop);
    std::snprintf(prop->name, sizeof prop->name, "lfmrt CUDA emulator (on the CPU)");
    prop->totalGlobalMem = device_memory();
    prop->sharedMemPerBlock = kSharedPerBlock;
    prop->sharedMemPerBlockOptin = kSharedPerBlockOptin;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    prop->major = 8;
    prop->minor = 0;
    prop->multiProcessorCount = 4;
    prop->l2CacheSize = 4 << 20;
    return cudaSuccess;
}

namespace {
thread_local int current_device = 0;
}

cudaError_t cudaSetDevice(int device) {
    if (device < 0 || device >= device_count()) return record(cudaErrorInvalidDevice);
    current_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
    *device = current_device;
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* version) {
    *version = 13000;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* version) {
    *version = 13000;
    return cudaSuccess;
}

// --- memory ----------------------------------------------------------------------------------

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
    Memory& m = memory();
    std::lock_guard<std::mutex> lock(m.mutex);
    *total = device_memory();
    *free = *total - std::min(*total, m.used);
    return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
    Memory& m = memory();
    {
        std::lock_guard<std::mutex> lock(m.mutex);
        if (m.used + bytes > device_memory()) return record(cudaErrorMemoryAllocation);
        m.used += bytes;
    }
    // 256-byte aligned as cudaMalloc's, and filled with 0xFF bytes (NaN as floats): device memory
    // starts as garbage, so a kernel that reads what nobody wrote goes wrong here too.
    const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
    void* p = std::aligned_alloc(256, rounded);
    if (p == nullptr) {
        std::lock_guard<std::mutex> lock(m.mutex);
        m.used -= bytes;
        return record(cudaErrorMemoryAllocation);
    }
    std::memset(p, 0xFF, rounded);
    std::lock_guard<std::mutex> lock(m.mutex);
    m.allocations[reinterpret_cast<uintptr_t>(p)] = bytes;
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
    if (ptr == nullptr) return cudaSuccess;
    if (any_work_queued()) {
        fail("cudaFree while work is still queued on a stream (synchronize before freeing memory a kernel may use)");
    }
    Memory& m = memory();
    std::lock_guard<std::mutex> lock(m.mutex);
    auto it = m.allocations.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == m.allocations.end()) return record(cudaErrorInvalidDevicePointer);
    m.used -= it->second;
    m.allocations.erase(it);
    std::free(ptr);
    return cudaSuccess;
}

namespace {

cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind == cudaMemcpyHostToHost || kind == cudaMemcpyDefault) return record(cudaErrorInvalidValue);
    if (bytes == 0) return cudaSuccess;
    if ((dst_device && !is_device_range(dst, bytes)) || (src_device && !is_device_range(src, bytes))) {
        fail("cudaMemcpy of " + std::to_string(bytes) + " bytes outside device memory (" +
             (dst_device && !is_device_range(dst, bytes) ? "destination" : "source") + ")");
    }
    if ((!dst_device && is_device_range(dst, 1)) || (!src_device && is_device_range(src, 1))) {
        fail("cudaMemcpy's kind does not match its pointers");
    }
    return cudaSuccess;
}

}  // namespace

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
    if (cudaError_t error = check_copy(dst, src, bytes, kind); error != cudaSuccess) return error;
    if (bytes == 0) return cudaSuccess;
    Stream& s = stream_of(stream);
    if (kind != cudaMemcpyDeviceToDevice && is_capturing(s)) {
        // Copies from or to pageable host memory cannot be captured.
        std::lock_guard<std::mutex> lock(s.mutex);
        s.capture_invalidated = true;
        return record(cudaErrorStreamCaptureUnsupported);
    }
    if (kind == cudaMemcpyHostToDevice) {
        // Pageable host memory: the bytes are taken now.
        auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                                   static_cast<const unsigned char*>(src) + bytes);
        return enqueue(stream, [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
    }
    return enqueue(stream, [dst, src, bytes] { std::memmove(dst, src, bytes); });
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    if (cudaError_t error = refuse_during_capture(default_stream()); error != cudaSuccess) return record(error);
    if (cudaError_t error = cudaMemcpyAsync(dst, src, bytes, kind, nullptr); error != cudaSuccess) return error;
    // A synchronous copy runs on the legacy default stream, which does not wait for streams
    // created non-blocking (the backend's): work queued there may still be pending.
    drain(default_stream());
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
    if (bytes == 0) return cudaSuccess;
    if (!is_device_range(ptr, bytes)) fail("cudaMemsetAsync of " + std::to_string(bytes) + " bytes outside device memory");
    return enqueue(stream, [ptr, value, bytes] { std::memset(ptr, value, bytes); });
}

// --- streams and graphs ----------------------------------------------------------------------

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
    auto created = std::make_unique<Stream>();
    std::lock_guard<std::mutex> lock(streams_mutex());
    live_streams().push_back(created.get());
    *stream = created.release();  // owned by the live_streams list until cudaStreamDestroy
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    if (stream == nullptr) return record(cudaErrorInvalidValue);
    drain(*stream);  // as on a GPU, queued work still completes
    std::unique_ptr<Stream> owned(stream);
    std::lock_guard<std::mutex> lock(streams_mutex());
    auto& streams = live_streams();
    streams.erase(std::remove(streams.begin(), streams.end(), stream), streams.end());
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    Stream& s = stream_of(stream);
    if (cudaError_t error = refuse_during_capture(s); error != cudaSuccess) return record(error);
    drain(s);
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
    Stream& s = stream_of(stream);
    if (stream == nullptr) return record(cudaErrorStreamCaptureUnsupported);
    auto graph = std::make_unique<Graph>();
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.capture != nullptr) return record(cudaErrorInvalidValue);
    s.capture = graph.release();  // owned by the capture until cudaStreamEndCapture
    s.capture_invalidated = false;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
    Stream& s = stream_of(stream);
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.capture == nullptr) return record(cudaErrorInvalidValue);
    std::unique_ptr<Graph> captured(s.capture);
    s.capture = nullptr;
    if (s.capture_invalidated) {
        *graph = nullptr;
        return record(cudaErrorStreamCaptureInvalidated);
    }
    *graph = captured.release();
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
    Stream& s = stream_of(stream);
    std::lock_guard<std::mutex> lock(s.mutex);
    *status = s.capture == nullptr ? cudaStreamCaptureStatusNone
                                   : (s.capture_invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive);
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
    if (graph == nullptr) return record(cudaErrorInvalidValue);
    auto instance = std::make_unique<GraphExec>();
    instance->operations = graph->operations;
    *exec = instance.release();  // owned by the caller until cudaGraphExecDestroy
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
    if (exec == nullptr) return record(cudaErrorInvalidValue);
    for (const Operation& operation : exec->operations) enqueue(stream, operation);
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    std::unique_ptr<Graph> owned(graph);
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    std::unique_ptr<GraphExec> owned(exec);
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || static_cast<size_t>(value) > kSharedPerBlockOptin) {
        return record(cudaErrorInvalidValue);
    }
    std::lock_guard<std::mutex> lock(attributes_mutex());
    shared_optin()[func] = static_cast<size_t>(value);
    return cudaSuccess;
}

// --- errors ----------------------------------------------------------------------------------

cudaError_t cudaGetLastError() {
    const cudaError_t error = last_error;
    last_error = cudaSuccess;
    return error;
}

cudaError_t cudaPeekAtLastError() { return last_error; }

const char* cudaGetErrorName(cudaError_t error) {
    switch (error) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
        case cudaErrorInitializationError: return "cudaErrorInitializationError";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
        case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
        case cudaErrorNoDevice: return "cudaErrorNoDevice";
        case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
        case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
        case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
        default: return "cudaErrorUnknown";
    }
}

const char* cudaGetErrorString(cudaError_t error) {
    switch (error) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInitializationError: return "initialization error";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorInvalidDevicePointer: return "invalid device pointer";
        case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
        case cudaErrorNoDevice: return "no CUDA-capable device is detected";
        case cudaErrorInvalidDevice: return "invalid device ordinal";
        case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
        case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
        default: return "unknown error";
    }
}
