// Matrix kernels: activation quantization, the GEMV-style matmul (one warp per weight row, up to
// kTokenTile tokens per pass so each weight row is read once per tile), and embedding lookups.
//
// Block weights are dotted with int8 activations by __dp4a, one 32-value group at a time, with the
// CPU scalar kernels' arithmetic (dot_row_blocks in backends/cpu/kernels/scalar): an exact
// integer dot per half group, scaled in fp32, minus min * the activations' scaled level sum; only
// the order of the fp32 sums differs. Float weights are widened exactly and accumulated in fp32.
//
// Not here yet: tensor-core (mma) tiles for prefill and batched decode; a prefill of n tokens
// reads each weight row ceil(n / kTokenTile) times.
#include "backends/cuda/kernels/device_common.cuh"
#include "backends/cuda/kernels/kernels.h"
#include "backends/cuda/packed_format.h"

namespace lfmrt::cuda::kernels {

namespace {

constexpr int kTokenTile = 8;      // tokens one warp serves per pass over a weight row
constexpr int kRowsPerBlock = 4;   // warps (weight rows) per block
constexpr unsigned kThreads = kRowsPerBlock * kWarpSize;

// activation_scale (formats/blocks.h): amax / 127 rounded to 11 significant bits.
__device__ __forceinline__ float activation_scale(float amax) {
    const float d = amax / 127;
    uint32_t bits = __float_as_uint(d);
    bits = (bits + 0xfffu + ((bits >> 13) & 1u)) & ~0x1fffu;
    return __uint_as_float(bits);
}

__device__ __forceinline__ float activation_level_factor(float amax) { return amax >= 0x1p-100f ? 127 / amax : 0.0f; }

// One warp per 32 values: lane i quantizes value i.
__global__ void quantize_per_32_kernel(const float* x, size_t groups, QuantizedRows out) {
    const size_t g = (size_t{blockIdx.x} * blockDim.x + threadIdx.x) / kWarpSize;
    if (g >= groups) return;
    const int lane = static_cast<int>(threadIdx.x % kWarpSize);
    const float v = x[g * 32 + lane];
    const float amax = warp_max(fabsf(v));
    const int q = __float2int_rn(v * activation_level_factor(amax));
    const int sum = warp_sum(q);
    out.levels[g * 32 + lane] = static_cast<int8_t>(q);
    if (lane == 0) {
        const float d = activation_scale(amax);
        out.scales[g] = d;
        out.scaled_sums[g] = d * static_cast<float>(sum);
    }
}

// One warp per 256 values sharing a scale: lane l quantizes values 8l .. 8l + 7, so lanes 4j ..
// 4j + 3 hold group j.
__global__ void quantize_per_256_kernel(const float* x, size_t super_groups, QuantizedRows out) {
    const size_t s = (size_t{blockIdx.x} * blockDim.x + threadIdx.x) / kWarpSize;
    if (s >= super_groups) return;
    const int lane = static_cast<int>(threadIdx.x % kWarpSize);
    const float* v = x + s * 256 + lane * 8;
    float amax = 0.0f;
    for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(v[i]));
    amax = warp_max(amax);
    const float factor = activation_level_factor(amax);
    int sum = 0;
    for (int i = 0; i < 8; ++i) {
        const int q = __float2int_rn(v[i] * factor);
        out.levels[s * 256 + lane * 8 + i] = static_cast<int8_t>(q);
        sum += q;
    }
    sum += __shfl_xor_sync(kFullMask, sum, 1);
    sum += __shfl_xor_sync(kFullMask, sum, 2);
    if (lane % 4 == 0) {
        const float d = factor > 0 ? 1 / factor : 0.0f;  // activation_scale_k
        const size_t g = s * 8 + lane / 4;
        out.scales[g] = d;
        out.scaled_sums[g] = d * static_cast<float>(sum);
    }
}

template <DType D>
__device__ __forceinline__ float float_weight(const uint8_t* row, size_t i) {
    if constexpr (D == DType::F32) {
        return reinterpret_cast<const float*>(row)[i];
    } else if constexpr (D == DType::F16) {
        return f16_to_float(reinterpret_cast<const uint16_t*>(row)[i]);
    } else {
        return bf16_to_float(reinterpret_cast<const uint16_t*>(row)[i]);
    }
}

// Warp w of block (bx, by) computes weight row 4 bx + w for tokens kTokenTile by .. + kTokenTile.
template <DType D>
__global__ void matmul_float_kernel(PackedWeights w, const float* x, size_t n, float* y) {
    const size_t r = size_t{blockIdx.x} * kRowsPerBlock + threadIdx.x / kWarpSize;
    if (r >= w.rows) return;
    const int lane = static_cast<int>(threadIdx.x % kWarpSize);
    const size_t t0 = size_t{blockIdx.y} * kTokenTile;
    const int tokens = static_cast<int>(n - t0 < kTokenTile ? n - t0 : kTokenTile);
    const uint8_t* row = w.quants + r * quant_row_bytes(D, w.cols);
    const size_t per_chunk = float_chunk_elems(D);
    const size_t chunks = (w.cols + per_chunk - 1) / per_chunk;
    float acc[kTokenTile] = {};
    for (size_t c = lane; c < chunks; c += kWarpSize) {
        const size_t begin = c * per_chunk;
        const size_t end = begin + per_chunk < w.cols ? begin + per_chunk : w.cols;
        for (size_t i = begin; i < end; ++i) {
            const float wi = float_weight<D>(row, i);
            for (int t = 0; t < tokens; ++t) acc[t] += wi * x[(t0 + t) * w.cols + i];
        }
    }
    for (int t = 0; t < kTokenTile; ++t) {
        const float sum = warp_sum(acc[t]);
        if (lane == 0 && t < tokens) y[(t0 + t) * w.rows + r] = sum;
    }
}

template <DType D>
__global__ void matmul_quantized_kernel(PackedWeights w, QuantizedRows x, size_t n, float* y) {
    const size_t r = size_t{blockIdx.x} * kRowsPerBlock + threadIdx.x / kWarpSize;
    if (r >= w.rows) return;
    const int lane = static_cast<int>(threadIdx.x % kWarpSize);
    const size_t t0 = size_t{blockIdx.y} * kTokenTile;
    const int tokens = static_cast<int>(n - t0 < kTokenTile ? n - t0 : kTokenTile);
    const uint8_t* quants = w.quants + r * quant_row_bytes(D, w.cols);
    const float* side = w.side + r * side_row_floats(D, w.cols);
    const size_t groups = w.cols / kGroup;
    float acc[kTokenTile] = {};
    for (size_t g = lane; g < groups; g += kWarpSize) {
        GroupLevels levels;
        decode_group<D>(quants, side, g, levels);
        for (int t = 0; t < tokens; ++t) {
            const size_t a = (t0 + t) * groups + g;  // the token's group g
            const Chunk lo = load_chunk(reinterpret_cast<const uint8_t*>(x.levels) + a * 32);
            const Chunk hi = load_chunk(reinterpret_cast<const uint8_t*>(x.levels) + a * 32 + 16);
            int dot0 = 0, dot1 = 0;
            for (int i = 0; i < 4; ++i) {
                dot0 = __dp4a(static_cast<int>(levels.levels[i]), static_cast<int>(lo.w[i]), dot0);
                dot1 = __dp4a(static_cast<int>(levels.levels[4 + i]), static_cast<int>(hi.w[i]), dot1);
            }
            const float d = x.scales[a];
            acc[t] += (levels.scale[0] * static_cast<float>(dot0)) * d + (levels.scale[1] * static_cast<float>(dot1)) * d;
            acc[t] -= levels.min * x.scaled_sums[a];
        }
    }
    for (int t = 0; t < kTokenTile; ++t) {
        const float sum = warp_sum(acc[t]);
        if (lane == 0 && t < tokens) y[(t0 + t) * w.rows + r] = sum;
    }
}

// Thread (x, row) writes element x of output row `row`.
template <DType D>
__global__ void embed_kernel(PackedWeights table, StepView step, float* out) {
    const size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x;
    const size_t r = blockIdx.y;
    if (i >= table.cols) return;
    const auto token = static_cast<size_t>(step.tokens[r]);
    const uint8_t* quants = table.quants + token * quant_row_bytes(D, table.cols);
    float value;
    if constexpr (D == DType::F32 || D == DType::F16 || D == DType::BF16) {
        value = float_weight<D>(quants, i);
    } else {
        GroupLevels levels;
        decode_group<D>(quants, table.side + token * side_row_floats(D, table.cols), i / kGroup, levels);
        const int k = static_cast<int>(i % kGroup);
        value = levels.scale[k / 16] * static_cast<float>(level_at(levels, k)) - levels.min;
    }
    out[r * table.cols + i] = value;
}

// The kernel of a dtype, by a table over DType (every weight type has one).
template <template <DType> class Pick>
auto by_dtype(DType dtype) {
    switch (dtype) {
        case DType::F32: return Pick<DType::F32>::value;
        case DType::F16: return Pick<DType::F16>::value;
        case DType::BF16: return Pick<DType::BF16>::value;
        case DType::Q8_0: return Pick<DType::Q8_0>::value;
        case DType::Q4_0: return Pick<DType::Q4_0>::value;
        case DType::Q4_K: return Pick<DType::Q4_K>::value;
        case DType::Q5_K: return Pick<DType::Q5_K>::value;
        case DType::Q6_K: return Pick<DType::Q6_K>::value;
    }
    return Pick<DType::F32>::value;
}

// Each table has an entry for every DType; the backend sends float types to matmul_float and
// block types to matmul_quantized only, so the entries of the other kind are never launched.
template <DType D>
struct FloatMatmul {
    static constexpr auto value = D == DType::F32 || D == DType::F16 || D == DType::BF16 ? matmul_float_kernel<D>
                                                                                           : matmul_float_kernel<DType::F32>;
};
template <DType D>
struct QuantizedMatmul {
    static constexpr auto value = D == DType::F32 || D == DType::F16 || D == DType::BF16
                                      ? matmul_quantized_kernel<DType::Q8_0>
                                      : matmul_quantized_kernel<D>;
};
template <DType D>
struct Embed {
    static constexpr auto value = embed_kernel<D>;
};

dim3 matmul_grid(size_t rows, size_t n) { return dim3(blocks_for(rows, kRowsPerBlock), blocks_for(n, kTokenTile)); }

}  // namespace

cudaError_t quantize_activations(cudaStream_t stream, const float* x, size_t n, size_t cols, bool shared_scale,
                                 const QuantizedRows& out) {
    const size_t warps = n * cols / (shared_scale ? 256 : 32);
    const unsigned blocks = blocks_for(warps, kThreads / kWarpSize);
    return shared_scale ? launch(stream, dim3(blocks), dim3(kThreads), 0, quantize_per_256_kernel, x, warps, out)
                        : launch(stream, dim3(blocks), dim3(kThreads), 0, quantize_per_32_kernel, x, warps, out);
}

cudaError_t matmul_float(cudaStream_t stream, const PackedWeights& w, const float* x, size_t n, float* y) {
    return launch(stream, matmul_grid(w.rows, n), dim3(kThreads), 0, by_dtype<FloatMatmul>(w.dtype), w, x, n, y);
}

cudaError_t matmul_quantized(cudaStream_t stream, const PackedWeights& w, const QuantizedRows& x, size_t n, float* y) {
    return launch(stream, matmul_grid(w.rows, n), dim3(kThreads), 0, by_dtype<QuantizedMatmul>(w.dtype), w, x, n, y);
}

cudaError_t embed(cudaStream_t stream, const PackedWeights& table, const StepView& step, float* out) {
    constexpr unsigned kEmbedThreads = 128;
    return launch(stream, dim3(blocks_for(table.cols, kEmbedThreads), step.rows), dim3(kEmbedThreads), 0,
                  by_dtype<Embed>(table.dtype), table, step, out);
}

}  // namespace lfmrt::cuda::kernels
