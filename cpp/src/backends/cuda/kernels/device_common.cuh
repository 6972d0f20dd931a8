// What every kernel file shares: warp reductions, shared memory, element conversions, launches.
//
// Compiled by nvcc, or as plain C++ against the emulator's headers (cpp/tests/cuda_emulator/)
// in test builds, so kernels keep to what both accept: shared memory is dynamic only (one array
// per kernel at shared_as<T>()), launches go through cudaLaunchKernelEx (no <<< >>>), math is
// the accurate library functions (no fast-math intrinsics: results are compared with the CPU's
// scalar kernels), and no device lambdas.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace lfmrt::cuda::kernels {

inline constexpr unsigned kFullMask = 0xffffffffu;
inline constexpr int kWarpSize = 32;

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
    return v;
}

__device__ __forceinline__ int warp_sum(int v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
    return v;
}

// fmaxf ignores NaN and is exact, so any order gives the same maximum.
__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
    return v;
}

// The kernel's dynamic shared memory as an array of T (sized by the launch).
#if defined(LFMRT_CUDA_EMULATOR)
template <typename T>
__device__ __forceinline__ T* shared_as() {
    return reinterpret_cast<T*>(lfmrt_emu::dynamic_shared());
}
#else
extern __shared__ __align__(16) unsigned char lfmrt_shared_memory[];
template <typename T>
__device__ __forceinline__ T* shared_as() {
    return reinterpret_cast<T*>(lfmrt_shared_memory);
}
#endif

// Exact widenings of stored halves (as lfmrt::f16_to_f32 and bf16_to_f32).
__device__ __forceinline__ float f16_to_float(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
__device__ __forceinline__ float bf16_to_float(uint16_t bits) { return __uint_as_float(static_cast<uint32_t>(bits) << 16); }
// Round to nearest even, as lfmrt::f32_to_f16.
__device__ __forceinline__ uint16_t float_to_f16(float x) { return __half_as_ushort(__float2half_rn(x)); }

inline unsigned blocks_for(size_t items, unsigned per_block) {
    return static_cast<unsigned>((items + per_block - 1) / per_block);
}

// Queues `kernel` over `grid` x `block` with `shared` bytes of dynamic shared memory.
template <typename... Params, typename... Args>
cudaError_t launch(cudaStream_t stream, dim3 grid, dim3 block, size_t shared, void (*kernel)(Params...),
                   Args&&... args) {
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) return cudaSuccess;
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = shared;
    config.stream = stream;
    config.attrs = nullptr;
    config.numAttrs = 0;
    const cudaError_t queued = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
    return queued != cudaSuccess ? queued : cudaGetLastError();
}

}  // namespace lfmrt::cuda::kernels
