// A CUDA emulator for testing lfmrt's CUDA backend on a machine without a GPU: this header stands
// in for the toolkit's <cuda_runtime.h> when the backend's .cu files are compiled as plain C++
// (CMake option LFMRT_CUDA_EMULATOR, test builds only; never part of a wheel).
//
// What it emulates, and how:
//  - Kernels are the backend's own source, compiled by the host compiler. A launch runs its
//    blocks one after another; each CUDA thread of a block is a fiber (ucontext) on the calling
//    OS thread, switched only at __syncthreads, __syncwarp and the warp shuffles, whose barrier
//    semantics the scheduler enforces (a block whose threads wait at different barriers, or a
//    shuffle whose lanes are absent, aborts with a message instead of hanging). A fiber runs
//    until it blocks, so a missing barrier shows up as a thread reading shared memory that
//    another thread has not written yet (or has already overwritten): wrong results, not luck.
//  - Shared memory is dynamic shared memory only (the backend keeps each kernel's shared data in
//    one struct there): a buffer per launch, refilled with 0xFF bytes (NaN as floats) before each
//    block, so a block that reads what it has not written gets garbage, as on a GPU. __shared__
//    is left undefined, so a static __shared__ array does not compile here.
//  - Streams are asynchronous as on a GPU: every copy, memset and launch is queued and runs only
//    when the host synchronizes (cudaStreamSynchronize, a synchronous cudaMemcpy). Host memory
//    is pageable: a host-to-device copy takes its source bytes when it is queued (as the driver
//    stages pageable memory), a device-to-host copy writes the host only when it runs, so a host
//    read without a synchronization sees stale bytes here too.
//  - Device memory is host memory; every allocation is tracked, and copies or frees outside a
//    live allocation are errors. cudaFree with work still queued on a stream is an error (the
//    backend synchronizes before it frees). The device's memory size is LFMRT_CUDA_EMULATOR_MEMORY
//    bytes (default 4 GiB), so out-of-memory paths can be tested.
//  - Graphs: capture records a stream's queued operations; a launch of the instantiated graph
//    queues them again.
//
// What it cannot tell: real timing, races between threads of a warp that a GPU would run in
// lockstep differently, the memory model across blocks, or anything about the hardware's
// arithmetic beyond IEEE fp32 (device math functions are the host's: expf, sinf, ... agree with
// CUDA's to a few ulp; fused multiply-adds are whatever the host compiler emits).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#define LFMRT_CUDA_EMULATOR 1

// --- qualifiers ------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __constant__ static

// --- vector types ----------------------------------------------------------------------------
struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) uint2 { unsigned int x, y; };
struct alignas(16) uint4 { unsigned int x, y, z, w; };

// --- runtime types ---------------------------------------------------------------------------
enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorUnknown = 999,
};
typedef cudaError_t cudaError;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1, cudaStreamCaptureModeRelaxed = 2 };
enum cudaStreamCaptureStatus { cudaStreamCaptureStatusNone = 0, cudaStreamCaptureStatusActive = 1, cudaStreamCaptureStatusInvalidated = 2 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

#define cudaStreamNonBlocking 0x01

namespace lfmrt_emu {
struct Stream;
struct Graph;
struct GraphExec;
}  // namespace lfmrt_emu
typedef lfmrt_emu::Stream* cudaStream_t;
typedef lfmrt_emu::Graph* cudaGraph_t;
typedef lfmrt_emu::GraphExec* cudaGraphExec_t;

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    int warpSize;
    int maxThreadsPerBlock;
    int major, minor;
    int multiProcessorCount;
    int l2CacheSize;
};

struct cudaLaunchAttribute;
struct cudaLaunchConfig_t {
    dim3 gridDim;
    dim3 blockDim;
    size_t dynamicSmemBytes;
    cudaStream_t stream;
    cudaLaunchAttribute* attrs;
    unsigned int numAttrs;
};

// --- the runtime API subset the backend uses --------------------------------------------------
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaMemGetInfo(size_t* free, size_t* total);
cudaError_t cudaMalloc(void** ptr, size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t error);
const char* cudaGetErrorName(cudaError_t error);

// --- kernels ---------------------------------------------------------------------------------
namespace lfmrt_emu {

unsigned char* dynamic_shared();

void syncthreads();
void syncwarp(unsigned mask);
// Every lane of `mask` passes its value and gets the value lane `source_lane` passed.
uint64_t shuffle(unsigned mask, uint64_t value, int source_lane);
int lane_id();

// Queues a launch of `config`'s grid of `kernel` (described by `signature` in messages);
// `thread_body` runs it for the calling fiber.
cudaError_t enqueue_launch(const cudaLaunchConfig_t& config, const void* kernel, const char* signature,
                           std::function<void()> thread_body);

}  // namespace lfmrt_emu

// The running fiber's indices: the scheduler sets them before it switches to a fiber (all fibers
// of a launch share the OS thread that runs it).
extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
inline constexpr int warpSize = 32;

inline void __syncthreads() { lfmrt_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { lfmrt_emu::syncwarp(mask); }

namespace lfmrt_emu {
template <typename T>
T shuffle_value(unsigned mask, T value, int source_lane) {
    static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable_v<T>);
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof value);
    bits = shuffle(mask, bits, source_lane);
    T out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
}
}  // namespace lfmrt_emu

// The shuffles' source lanes, as CUDA defines them for segments of `width` lanes.
template <typename T>
T __shfl_sync(unsigned mask, T value, int src_lane, int width = 32) {
    const int lane = lfmrt_emu::lane_id();
    return lfmrt_emu::shuffle_value(mask, value, (lane & ~(width - 1)) + (src_lane & (width - 1)));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
    const int lane = lfmrt_emu::lane_id();
    int source = lane ^ lane_mask;
    if (source >= (lane & ~(width - 1)) + width) source = lane;
    return lfmrt_emu::shuffle_value(mask, value, source);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
    const int lane = lfmrt_emu::lane_id();
    const int source = (lane & (width - 1)) + static_cast<int>(delta) >= width ? lane : lane + static_cast<int>(delta);
    return lfmrt_emu::shuffle_value(mask, value, source);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = 32) {
    const int lane = lfmrt_emu::lane_id();
    const int source = (lane & (width - 1)) < static_cast<int>(delta) ? lane : lane - static_cast<int>(delta);
    return lfmrt_emu::shuffle_value(mask, value, source);
}

// --- device intrinsics -----------------------------------------------------------------------
inline int __dp4a(int a, int b, int c) {
    for (int i = 0; i < 4; ++i) {
        c += static_cast<int>(static_cast<int8_t>(a >> (8 * i))) * static_cast<int>(static_cast<int8_t>(b >> (8 * i)));
    }
    return c;
}
inline unsigned int __vsub4(unsigned int a, unsigned int b) {
    unsigned int out = 0;
    for (int i = 0; i < 4; ++i) out |= ((((a >> (8 * i)) & 0xFF) - ((b >> (8 * i)) & 0xFF)) & 0xFF) << (8 * i);
    return out;
}
inline int __float2int_rn(float x) { return static_cast<int>(__builtin_rintf(x)); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline unsigned int __float_as_uint(float x) {
    unsigned int u;
    std::memcpy(&u, &x, sizeof u);
    return u;
}
inline float __uint_as_float(unsigned int u) {
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}
inline int __float_as_int(float x) { return static_cast<int>(__float_as_uint(x)); }
inline float __int_as_float(int i) { return __uint_as_float(static_cast<unsigned int>(i)); }
template <typename T>
T __ldg(const T* p) {
    return *p;
}
// One block runs at a time, on one OS thread: a read-modify-write cannot interleave.
inline float atomicAdd(float* address, float value) {
    const float old = *address;
    *address = old + value;
    return old;
}
inline unsigned int atomicAdd(unsigned int* address, unsigned int value) {
    const unsigned int old = *address;
    *address = old + value;
    return old;
}
inline void __threadfence() {}

// The launch API the backend calls (cuda_runtime.h's type-safe template, same signature).
template <typename... ExpTypes, typename... ActTypes>
cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t* config, void (*kernel)(ExpTypes...), ActTypes&&... args) {
    // The arguments are converted to the kernel's parameter types and kept by value until the
    // launch runs, as the runtime copies them at launch.
    std::tuple<std::decay_t<ExpTypes>...> values(static_cast<ExpTypes>(std::forward<ActTypes>(args))...);
    return lfmrt_emu::enqueue_launch(*config, reinterpret_cast<const void*>(kernel), __PRETTY_FUNCTION__, [kernel, values] { std::apply(kernel, values); });
}
