// NEON KV kernels (-march=armv8-a), used with both aarch64 tables: attention's loops are fp32
// arithmetic, which the dot-product extension does not speed up.
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "backends/cpu/kernels/kv_kernels.h"
#include "backends/cpu/kernels/kv_rows.h"
#include "backends/cpu/kernels/neon/neon.h"
#include "formats/blocks.h"

namespace lfmrt::cpu {

namespace {

float32x4_t load_f16x4(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

float f16(uint16_t bits) {
    __fp16 h;
    __builtin_memcpy(&h, &bits, sizeof h);
    return static_cast<float>(h);
}

// 16 int8 values widened to fp32, four vectors.
void load_i8x16(const int8_t* p, float32x4_t out[4]) {
    const int8x16_t bytes = vld1q_s8(p);
    const int16x8_t lo = vmovl_s8(vget_low_s8(bytes)), hi = vmovl_high_s8(bytes);
    out[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
    out[1] = vcvtq_f32_s32(vmovl_high_s16(lo));
    out[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
    out[3] = vcvtq_f32_s32(vmovl_high_s16(hi));
}

float dot_f32(const float* q, const void* k, size_t n) {
    const auto* key = static_cast<const float*>(k);
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = vfmaq_f32(acc0, vld1q_f32(q + i), vld1q_f32(key + i));
        acc1 = vfmaq_f32(acc1, vld1q_f32(q + i + 4), vld1q_f32(key + i + 4));
    }
    for (; i + 4 <= n; i += 4) acc0 = vfmaq_f32(acc0, vld1q_f32(q + i), vld1q_f32(key + i));
    float sum = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; ++i) sum += q[i] * key[i];
    return sum;
}

float dot_f16(const float* q, const void* k, size_t n) {
    const auto* key = static_cast<const uint16_t*>(k);
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = vfmaq_f32(acc0, vld1q_f32(q + i), load_f16x4(key + i));
        acc1 = vfmaq_f32(acc1, vld1q_f32(q + i + 4), load_f16x4(key + i + 4));
    }
    for (; i + 4 <= n; i += 4) acc0 = vfmaq_f32(acc0, vld1q_f32(q + i), load_f16x4(key + i));
    float sum = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; ++i) sum += q[i] * f16(key[i]);
    return sum;
}

float dot_q8_0(const float* q, const void* k, size_t n) {
    const auto* blocks = static_cast<const quant::BlockQ8_0*>(k);
    float32x4_t total = vdupq_n_f32(0.0f);
    for (size_t b = 0; b < n / quant::kQ32; ++b, q += quant::kQ32) {
        float32x4_t block = vdupq_n_f32(0.0f);
        for (size_t h = 0; h < 2; ++h) {
            float32x4_t v[4];
            load_i8x16(blocks[b].qs + 16 * h, v);
            for (size_t i = 0; i < 4; ++i) block = vfmaq_f32(block, vld1q_f32(q + 16 * h + 4 * i), v[i]);
        }
        total = vfmaq_n_f32(total, block, f16(blocks[b].d));
    }
    return vaddvq_f32(total);
}

void axpy_f32(float a, const void* v, float* out, size_t n) {
    const auto* value = static_cast<const float*>(v);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(out + i, vfmaq_n_f32(vld1q_f32(out + i), vld1q_f32(value + i), a));
    for (; i < n; ++i) out[i] += a * value[i];
}

void axpy_f16(float a, const void* v, float* out, size_t n) {
    const auto* value = static_cast<const uint16_t*>(v);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(out + i, vfmaq_n_f32(vld1q_f32(out + i), load_f16x4(value + i), a));
    for (; i < n; ++i) out[i] += a * f16(value[i]);
}

void axpy_q8_0(float a, const void* v, float* out, size_t n) {
    const auto* blocks = static_cast<const quant::BlockQ8_0*>(v);
    for (size_t b = 0; b < n / quant::kQ32; ++b, out += quant::kQ32) {
        const float scale = a * f16(blocks[b].d);
        for (size_t h = 0; h < 2; ++h) {
            float32x4_t values[4];
            load_i8x16(blocks[b].qs + 16 * h, values);
            for (size_t i = 0; i < 4; ++i) {
                float* o = out + 16 * h + 4 * i;
                vst1q_f32(o, vfmaq_n_f32(vld1q_f32(o), values[i], scale));
            }
        }
    }
}

constexpr KvKernels kNeonKvKernels =
    kv_rows::make_table<kv_rows::scores<DType::F32, dot_f32>, kv_rows::scores<DType::F16, dot_f16>,
                         kv_rows::scores<DType::Q8_0, dot_q8_0>, kv_rows::mix_rows<DType::F32, axpy_f32>,
                         kv_rows::mix_rows<DType::F16, axpy_f16>, kv_rows::mix_rows<DType::Q8_0, axpy_q8_0>, neon::exp_sum>("neon");

}  // namespace

const KvKernels& neon_kv_kernels() { return kNeonKvKernels; }

}  // namespace lfmrt::cpu
