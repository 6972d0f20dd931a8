// Row and elementwise kernels: RMSNorm, residual adds, SwiGLU, row gathers, argmax and RoPE, each
// the CPU scalar kernel's arithmetic with fp32 accumulation (reductions in tree order).
#include "backends/cuda/kernels/device_common.cuh"
#include "backends/cuda/kernels/kernels.h"

namespace lfmrt::cuda::kernels {

namespace {

constexpr unsigned kThreads = 256;
constexpr unsigned kWarps = kThreads / kWarpSize;

// The block's sum of v (every thread gets it); `partials` holds kWarps floats of shared memory.
__device__ float block_sum(float v, float* partials) {
    v = warp_sum(v);
    const unsigned warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    if (lane == 0) partials[warp] = v;
    __syncthreads();
    float total = lane < kWarps ? partials[lane] : 0.0f;
    total = warp_sum(total);
    __syncthreads();  // partials may be reused after
    return total;
}

// One block per row.
__global__ void rmsnorm_kernel(const float* x, const float* weight, size_t width, float eps, float* y) {
    float* partials = shared_as<float>();
    const float* in = x + size_t{blockIdx.x} * width;
    float* out = y + size_t{blockIdx.x} * width;
    float squares = 0.0f;
    for (size_t i = threadIdx.x; i < width; i += blockDim.x) squares += in[i] * in[i];
    const float inv_rms = 1.0f / sqrtf(block_sum(squares, partials) / static_cast<float>(width) + eps);
    for (size_t i = threadIdx.x; i < width; i += blockDim.x) out[i] = in[i] * inv_rms * weight[i];
}

__global__ void add_kernel(float* y, const float* x, size_t count) {
    const size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x;
    if (i < count) y[i] += x[i];
}

__global__ void add_bias_kernel(float* y, const float* bias, size_t width, size_t count) {
    const size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x;
    if (i < count) y[i] += bias[i % width];
}

__global__ void silu_mul_kernel(const float* gate, const float* up, float* out, size_t count) {
    const size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x;
    if (i >= count) return;
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
}

__global__ void gather_rows_kernel(const float* x, size_t width, const uint32_t* rows, size_t count, float* out) {
    const size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x;
    if (i < count) out[i] = x[size_t{rows[i / width]} * width + i % width];
}

// (value, index) with the larger value winning, the lower index on ties; NaN never wins.
struct Best {
    float value;
    unsigned index;
};

__device__ __forceinline__ Best better(Best a, Best b) {
    if (b.value > a.value || (b.value == a.value && b.index < a.index)) return b;
    return a;
}

// One block per row.
__global__ void argmax_kernel(const float* x, size_t width, int32_t* ids) {
    Best* partials = shared_as<Best>();
    const float* row = x + size_t{blockIdx.x} * width;
    Best best{-INFINITY, 0xFFFFFFFFu};
    for (size_t i = threadIdx.x; i < width; i += blockDim.x) best = better(best, Best{row[i], static_cast<unsigned>(i)});
    for (int offset = 16; offset > 0; offset >>= 1) {
        const Best other{__shfl_xor_sync(kFullMask, best.value, offset), __shfl_xor_sync(kFullMask, best.index, offset)};
        best = better(best, other);
    }
    const unsigned warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    if (lane == 0) partials[warp] = best;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (unsigned w = 1; w < kWarps; ++w) best = better(best, partials[w]);
        ids[blockIdx.x] = best.index == 0xFFFFFFFFu ? 0 : static_cast<int32_t>(best.index);
    }
}

// Thread (i, head, row) rotates pair (i, i + head_dim / 2) of one head of q (heads below
// n_q_heads) or k.
__global__ void rope_kernel(float* q, unsigned n_q_heads, float* k, unsigned n_k_heads, unsigned head_dim,
                            const float* inv_freq, StepView step) {
    const unsigned half = head_dim / 2, i = blockIdx.x * blockDim.x + threadIdx.x, head = blockIdx.y;
    const size_t r = blockIdx.z;
    if (i >= half) return;
    float* x = head < n_q_heads ? q + (r * n_q_heads + head) * head_dim
                                : k + (r * n_k_heads + (head - n_q_heads)) * head_dim;
    const float angle = static_cast<float>(step.positions[r]) * inv_freq[i];
    const float cos_a = cosf(angle), sin_a = sinf(angle);
    const float x1 = x[i], x2 = x[i + half];
    x[i] = x1 * cos_a - x2 * sin_a;
    x[i + half] = x2 * cos_a + x1 * sin_a;
}

}  // namespace

cudaError_t rmsnorm(cudaStream_t stream, const float* x, const float* weight, size_t width, size_t n_rows, float eps,
                    float* y) {
    return launch(stream, dim3(static_cast<unsigned>(n_rows)), dim3(kThreads), kWarps * sizeof(float), rmsnorm_kernel,
                  x, weight, width, eps, y);
}

cudaError_t add(cudaStream_t stream, float* y, const float* x, size_t count) {
    return launch(stream, dim3(blocks_for(count, kThreads)), dim3(kThreads), 0, add_kernel, y, x, count);
}

cudaError_t add_bias(cudaStream_t stream, float* y, const float* bias, size_t width, size_t n) {
    return launch(stream, dim3(blocks_for(n * width, kThreads)), dim3(kThreads), 0, add_bias_kernel, y, bias, width,
                  n * width);
}

cudaError_t silu_mul(cudaStream_t stream, const float* gate, const float* up, float* out, size_t count) {
    return launch(stream, dim3(blocks_for(count, kThreads)), dim3(kThreads), 0, silu_mul_kernel, gate, up, out, count);
}

cudaError_t gather_rows(cudaStream_t stream, const float* x, size_t width, const uint32_t* rows, size_t n_rows,
                        float* out) {
    return launch(stream, dim3(blocks_for(n_rows * width, kThreads)), dim3(kThreads), 0, gather_rows_kernel, x, width,
                  rows, n_rows * width, out);
}

cudaError_t argmax(cudaStream_t stream, const float* x, size_t width, size_t n_rows, int32_t* ids) {
    return launch(stream, dim3(static_cast<unsigned>(n_rows)), dim3(kThreads), kWarps * sizeof(Best), argmax_kernel, x,
                  width, ids);
}

cudaError_t rope(cudaStream_t stream, float* q, size_t n_q_heads, float* k, size_t n_k_heads, size_t head_dim,
                 const float* inv_freq, const StepView& step) {
    constexpr unsigned kRopeThreads = 64;
    const auto half = static_cast<unsigned>(head_dim / 2);
    return launch(stream, dim3(blocks_for(half, kRopeThreads), static_cast<unsigned>(n_q_heads + n_k_heads), step.rows),
                  dim3(kRopeThreads), 0, rope_kernel, q, static_cast<unsigned>(n_q_heads), k,
                  static_cast<unsigned>(n_k_heads), static_cast<unsigned>(head_dim), inv_freq, step);
}

}  // namespace lfmrt::cuda::kernels
