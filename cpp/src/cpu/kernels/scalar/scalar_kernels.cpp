// The scalar kernel table: the specification every SIMD table is tested against.
//
// Plain loops, written for clarity rather than speed: fp32 accumulation in index order, weights
// widened one element at a time with the exact conversions from lfmrt/tensor.h.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "cpu/kernels/kernels.h"

namespace lfmrt::cpu {
namespace {

// Element i of a weight matrix of dtype D, widened to fp32.
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
void gemv(const void* w, size_t cols, const float* x, float* y, size_t row_begin, size_t row_end) {
    for (size_t r = row_begin; r < row_end; ++r) {
        float acc = 0.0f;
        for (size_t k = 0; k < cols; ++k) acc += weight_at<D>(w, r * cols + k) * x[k];
        y[r] = acc;
    }
}

// By definition a GEMM is one GEMV per token; the scalar table says exactly that.
template <DType D>
void gemm(const void* w, size_t cols, const float* x, size_t ldx, size_t n, float* y, size_t ldy,
          size_t row_begin, size_t row_end, float* /*scratch*/) {
    for (size_t t = 0; t < n; ++t) gemv<D>(w, cols, x + t * ldx, y + t * ldy, row_begin, row_end);
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

void softmax(float* x, size_t n) {
    if (n == 0) return;
    float max = x[0];
    for (size_t i = 1; i < n; ++i) max = std::fmax(max, x[i]);
    float sum = 0.0f;
    for (size_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - max);
        sum += x[i];
    }
    for (size_t i = 0; i < n; ++i) x[i] /= sum;
}

void mul(const float* a, const float* b, float* out, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}

// The per-dtype arrays below are listed in DType order.
static_assert(static_cast<int>(DType::F32) == 0 && static_cast<int>(DType::F16) == 1 &&
              static_cast<int>(DType::BF16) == 2 && kNumDTypes == 3);

constexpr KernelTable kScalarTable{
    "scalar",
    {gemv<DType::F32>, gemv<DType::F16>, gemv<DType::BF16>},
    {gemm<DType::F32>, gemm<DType::F16>, gemm<DType::BF16>},
    dot,
    axpy,
    rmsnorm,
    silu_mul,
    softmax,
    mul,
};

}  // namespace

const KernelTable& scalar_kernels() { return kScalarTable; }

}  // namespace lfmrt::cpu
