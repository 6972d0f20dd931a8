// The scalar kernel table: the specification every SIMD table is tested against.
//
// Plain loops, written for clarity rather than speed: fp32 accumulation in index order, weights
// widened one element at a time with the exact conversions from lfmrt/tensor.h. Block weights
// are dotted with BlockQ8A activations one 32-value block at a time: an exact integer dot per
// half block, scaled in fp32 (block_decode.h gives every type that one shape).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "backends/cpu/kernels/block_decode.h"
#include "backends/cpu/kernels/kernels.h"
#include "backends/cpu/panels.h"
#include "formats/quantize.h"

namespace lfmrt::cpu {
namespace {

template <DType D>
constexpr size_t block_elems_of() {
    return D == DType::F32 || D == DType::F16 || D == DType::BF16 ? 1 : 32;
}

// Element i of a weight matrix of float dtype D, widened to fp32.
template <DType D>
float weight_at(const void* w, size_t i) {
    if constexpr (D == DType::F32) {
        return static_cast<const float*>(w)[i];
    } else if constexpr (D == DType::F16) {
        return f16_to_f32(static_cast<const uint16_t*>(w)[i]);
    } else {
        return bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
    }
}

template <DType D>
void gemv_float(const void* w, size_t cols, const void* x_row, float* y, size_t row_begin, size_t row_end) {
    const auto* x = static_cast<const float*>(x_row);
    for (size_t r = row_begin; r < row_end; ++r) {
        float acc = 0.0f;
        for (size_t k = 0; k < cols; ++k) acc += weight_at<D>(w, r * cols + k) * x[k];
        y[r] = acc;
    }
}

// dot(W[r, :], x) for block weights: per 32-value block, sum over halves of
// (scale[h] * integer dot) * x.d, minus min * x.dsum.
template <DType D>
float dot_row_blocks(const void* row, const quant::BlockQ8A* x, size_t blocks) {
    float acc = 0.0f;
    for (size_t b = 0; b < blocks; ++b) {
        Block32 w;
        decode_block32<D>(row, b, &w);
        for (size_t h = 0; h < 2; ++h) {
            int32_t dot = 0;
            for (size_t i = 16 * h; i < 16 * h + 16; ++i) dot += w.q[i] * x[b].qs[i];
            acc += (w.scale[h] * static_cast<float>(dot)) * x[b].d;
        }
        acc -= w.min * x[b].dsum;
    }
    return acc;
}

template <DType D>
void gemv_blocks(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    const size_t row_size = row_bytes(D, cols);
    const auto* xq = static_cast<const quant::BlockQ8A*>(x);
    for (size_t r = row_begin; r < row_end; ++r) {
        y[r] = dot_row_blocks<D>(static_cast<const uint8_t*>(w) + r * row_size, xq, cols / quant::kQ32);
    }
}

template <DType D>
void gemv(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    if constexpr (block_elems_of<D>() > 1) {
        gemv_blocks<D>(w, cols, x, y, row_begin, row_end);
    } else {
        gemv_float<D>(w, cols, x, y, row_begin, row_end);
    }
}

// The panel layout's GEMV: each row back in GGUF's layout (cpu::unpack_panel_row), then the
// row kernel's arithmetic, so its results equal the row kernel's bit for bit.
template <DType D>
void gemv_panels(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    const auto* xq = static_cast<const quant::BlockQ8A*>(x);
    std::vector<uint8_t> row(row_bytes(D, cols));
    for (size_t r = row_begin; r < row_end; ++r) {
        cpu::unpack_panel_row(D, w, cols, r, row.data());
        y[r] = dot_row_blocks<D>(row.data(), xq, cols / quant::kQ32);
    }
}

// By definition a GEMM is one GEMV per token; the scalar table says exactly that, for either
// layout.
template <GemvFn gemv_of>
void gemm_by_gemv(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
                  size_t row_begin, size_t row_end, void* /*scratch*/) {
    for (size_t t = 0; t < n; ++t) {
        gemv_of(w, cols, static_cast<const uint8_t*>(x) + t * x_stride, y + t * ldy, row_begin, row_end);
    }
}

template <DType D>
constexpr GemmFn gemm = gemm_by_gemv<gemv<D>>;
template <DType D>
constexpr GemmFn gemm_panels = gemm_by_gemv<gemv_panels<D>>;

void quantize_q8a(const float* x, void* dst, size_t cols) {
    quant::quantize_row_q8a(x, static_cast<quant::BlockQ8A*>(dst), cols);
}

void quantize_q8a_k(const float* x, void* dst, size_t cols) {
    quant::quantize_row_q8a_k(x, static_cast<quant::BlockQ8A*>(dst), cols);
}

float dot(const float* a, const float* b, size_t n) {
    float acc = 0.0f;
    for (size_t i = 0; i < n; ++i) acc += a[i] * b[i];
    return acc;
}

void axpy(float a, const float* x, float* y, size_t n) {
    for (size_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void rmsnorm(const float* x, const float* weight, size_t n, float eps, float* y) {
    float sum_squares = 0.0f;
    for (size_t i = 0; i < n; ++i) sum_squares += x[i] * x[i];
    const float inv_rms = 1.0f / std::sqrt(sum_squares / static_cast<float>(n) + eps);
    for (size_t i = 0; i < n; ++i) y[i] = x[i] * inv_rms * weight[i];
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

void silu_mul(const float* gate, const float* up, float* out, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = silu(gate[i]) * up[i];
}

void mul(const float* a, const float* b, float* out, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}

// The per-dtype arrays below are listed in DType order.
static_assert(static_cast<int>(DType::F32) == 0 && static_cast<int>(DType::F16) == 1 &&
              static_cast<int>(DType::BF16) == 2 && static_cast<int>(DType::Q8_0) == 3 &&
              static_cast<int>(DType::Q4_0) == 4 && static_cast<int>(DType::Q4_K) == 5 &&
              static_cast<int>(DType::Q5_K) == 6 && static_cast<int>(DType::Q6_K) == 7 && kNumDTypes == 8);

constexpr KernelTable kScalarTable{
    "scalar",
    {gemv<DType::F32>, gemv<DType::F16>, gemv<DType::BF16>, gemv<DType::Q8_0>, gemv<DType::Q4_0>,
     gemv<DType::Q4_K>, gemv<DType::Q5_K>, gemv<DType::Q6_K>},
    {gemm<DType::F32>, gemm<DType::F16>, gemm<DType::BF16>, gemm<DType::Q8_0>, gemm<DType::Q4_0>,
     gemm<DType::Q4_K>, gemm<DType::Q5_K>, gemm<DType::Q6_K>},
    {nullptr, nullptr, nullptr, gemv_panels<DType::Q8_0>, gemv_panels<DType::Q4_0>, gemv_panels<DType::Q4_K>,
     nullptr, gemv_panels<DType::Q6_K>},
    {nullptr, nullptr, nullptr, gemm_panels<DType::Q8_0>, gemm_panels<DType::Q4_0>, gemm_panels<DType::Q4_K>,
     nullptr, gemm_panels<DType::Q6_K>},
    quantize_q8a,
    quantize_q8a_k,
    dot,
    axpy,
    rmsnorm,
    silu_mul,
    mul,
};

}  // namespace

const KernelTable& scalar_kernels() { return kScalarTable; }

}  // namespace lfmrt::cpu
