// Scalar KV kernels: the specification the SIMD versions are tested against.
#include "backends/cpu/kernels/kv_kernels.h"
#include "backends/cpu/kernels/kv_rows.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "formats/blocks.h"

namespace lfmrt::cpu {

namespace {

float dot_f32(const float* q, const void* k, size_t n) {
    const auto* key = static_cast<const float*>(k);
    float sum = 0.0f;
    for (size_t i = 0; i < n; ++i) sum += q[i] * key[i];
    return sum;
}

float dot_f16(const float* q, const void* k, size_t n) {
    const auto* key = static_cast<const uint16_t*>(k);
    float sum = 0.0f;
    for (size_t i = 0; i < n; ++i) sum += q[i] * f16_to_f32(key[i]);
    return sum;
}

// Q8_0: blocks of 32 int8 values sharing one f16 scale; the block's sum is scaled once.
float dot_q8_0(const float* q, const void* k, size_t n) {
    const auto* blocks = static_cast<const quant::BlockQ8_0*>(k);
    float sum = 0.0f;
    for (size_t b = 0; b < n / quant::kQ32; ++b) {
        float block_sum = 0.0f;
        for (size_t i = 0; i < quant::kQ32; ++i) block_sum += q[b * quant::kQ32 + i] * blocks[b].qs[i];
        sum += f16_to_f32(blocks[b].d) * block_sum;
    }
    return sum;
}

void axpy_f32(float a, const void* v, float* out, size_t n) {
    const auto* value = static_cast<const float*>(v);
    for (size_t i = 0; i < n; ++i) out[i] += a * value[i];
}

void axpy_f16(float a, const void* v, float* out, size_t n) {
    const auto* value = static_cast<const uint16_t*>(v);
    for (size_t i = 0; i < n; ++i) out[i] += a * f16_to_f32(value[i]);
}

void axpy_q8_0(float a, const void* v, float* out, size_t n) {
    const auto* blocks = static_cast<const quant::BlockQ8_0*>(v);
    for (size_t b = 0; b < n / quant::kQ32; ++b) {
        const float scale = a * f16_to_f32(blocks[b].d);
        for (size_t i = 0; i < quant::kQ32; ++i) out[b * quant::kQ32 + i] += scale * blocks[b].qs[i];
    }
}

float exp_sum(float* x, size_t n, float shift) {
    float sum = 0.0f;
    for (size_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - shift);
        sum += x[i];
    }
    return sum;
}

constexpr KvKernels kScalarKvKernels =
    kv_rows::make_table<kv_rows::scores<DType::F32, dot_f32>, kv_rows::scores<DType::F16, dot_f16>,
                         kv_rows::scores<DType::Q8_0, dot_q8_0>, kv_rows::mix_rows<DType::F32, axpy_f32>,
                         kv_rows::mix_rows<DType::F16, axpy_f16>, kv_rows::mix_rows<DType::Q8_0, axpy_q8_0>, exp_sum>("scalar");

}  // namespace

const KvKernels& scalar_kv_kernels() { return kScalarKvKernels; }

}  // namespace lfmrt::cpu
