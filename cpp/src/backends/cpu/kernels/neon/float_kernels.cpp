// NEON kernels for float weights, the activation quantizer and the vector ops, shared by both
// aarch64 tables and tested against the scalar table. Compiled with -march=armv8-a: plain
// Advanced SIMD, which every aarch64 CPU has (f16 -> f32 conversion included).
//
// Like the x86 SIMD files it includes no STL headers and keeps its helpers in an anonymous
// namespace, so no inline function with external linkage is emitted here; no alignment is
// assumed (weights come from memory-mapped files).
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "backends/cpu/kernels/kernels.h"
#include "backends/cpu/kernels/neon/neon.h"
#include "formats/blocks.h"

namespace lfmrt::cpu::neon {
namespace {

// ---------------------------------------------------------------------------------------------
// Loads of 4 consecutive elements of a weight row, widened to fp32.

template <DType D>
constexpr size_t kElemBytes = D == DType::F32 ? 4 : 2;

template <DType D>
const void* weight_row(const void* w, size_t cols, size_t r) {
    return static_cast<const char*>(w) + r * cols * kElemBytes<D>;
}

template <DType D>
float32x4_t load4(const void* row, size_t k) {
    if constexpr (D == DType::F32) {
        return vld1q_f32(static_cast<const float*>(row) + k);
    } else if constexpr (D == DType::F16) {
        return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(static_cast<const uint16_t*>(row) + k)));
    } else {  // bf16 is the top half of an fp32
        return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(static_cast<const uint16_t*>(row) + k), 16));
    }
}

// The first `count` (< 4) elements at k widened to fp32, the other lanes zero.
template <DType D>
float32x4_t load_partial4(const void* row, size_t k, size_t count) {
    unsigned char bytes[4 * kElemBytes<D>] = {};
    __builtin_memcpy(bytes, static_cast<const char*>(row) + k * kElemBytes<D>, count * kElemBytes<D>);
    return load4<D>(bytes, 0);
}

// ---------------------------------------------------------------------------------------------
// Matrix products. Both GEMV and GEMM are tiles of kR weight rows x kT tokens; each (row, token)
// pair has one accumulator fed 4 columns per step in column order, the same steps whatever the
// tile, so a result does not depend on the row split, the tile shape or GEMV versus GEMM. A 4x4
// tile loads 8 vectors per 16 FMAs (GEMV, one token, is bound by memory anyway).

constexpr size_t kTileRows = 4;
constexpr size_t kTileTokens = 4;
// Tokens whose inputs stay in L2 while every weight row of the range passes over them.
constexpr size_t kTokenChunk = 64;

template <DType D, size_t kR, size_t kT>
void tile(const void* w, size_t cols, size_t r0, const float* x, size_t ldx, float* y, size_t ldy) {
    const void* rows[kR];
    for (size_t i = 0; i < kR; ++i) rows[i] = weight_row<D>(w, cols, r0 + i);
    float32x4_t acc[kR][kT];
    for (size_t i = 0; i < kR; ++i) {
        for (size_t t = 0; t < kT; ++t) acc[i][t] = vdupq_n_f32(0.0f);
    }
    size_t k = 0;
    for (; k + 4 <= cols; k += 4) {
        float32x4_t xv[kT];
        for (size_t t = 0; t < kT; ++t) xv[t] = vld1q_f32(x + t * ldx + k);
        for (size_t i = 0; i < kR; ++i) {
            const float32x4_t wv = load4<D>(rows[i], k);
            for (size_t t = 0; t < kT; ++t) acc[i][t] = vfmaq_f32(acc[i][t], wv, xv[t]);
        }
    }
    if (k < cols) {
        float32x4_t xv[kT];
        for (size_t t = 0; t < kT; ++t) xv[t] = load_partial4<DType::F32>(x + t * ldx, k, cols - k);
        for (size_t i = 0; i < kR; ++i) {
            const float32x4_t wv = load_partial4<D>(rows[i], k, cols - k);
            for (size_t t = 0; t < kT; ++t) acc[i][t] = vfmaq_f32(acc[i][t], wv, xv[t]);
        }
    }
    for (size_t i = 0; i < kR; ++i) {
        for (size_t t = 0; t < kT; ++t) y[t * ldy + r0 + i] = vaddvq_f32(acc[i][t]);
    }
}

template <DType D>
using TileFn = void (*)(const void*, size_t, size_t, const float*, size_t, float*, size_t);

// kTiles<D>[rows - 1][tokens - 1]
template <DType D>
constexpr TileFn<D> kTiles[kTileRows][kTileTokens] = {
    {tile<D, 1, 1>, tile<D, 1, 2>, tile<D, 1, 3>, tile<D, 1, 4>},
    {tile<D, 2, 1>, tile<D, 2, 2>, tile<D, 2, 3>, tile<D, 2, 4>},
    {tile<D, 3, 1>, tile<D, 3, 2>, tile<D, 3, 3>, tile<D, 3, 4>},
    {tile<D, 4, 1>, tile<D, 4, 2>, tile<D, 4, 3>, tile<D, 4, 4>},
};

template <DType D>
void gemm(const void* w, size_t cols, const void* x_rows, size_t x_stride, size_t n, float* y, size_t ldy,
          size_t row_begin, size_t row_end) {
    const auto* x = static_cast<const float*>(x_rows);
    const size_t ldx = x_stride / sizeof(float);
    for (size_t t0 = 0; t0 < n; t0 += kTokenChunk) {
        const size_t chunk_end = n - t0 < kTokenChunk ? n : t0 + kTokenChunk;
        for (size_t r = row_begin; r < row_end; r += kTileRows) {
            const size_t rows = row_end - r < kTileRows ? row_end - r : kTileRows;
            for (size_t t = t0; t < chunk_end; t += kTileTokens) {
                const size_t tokens = chunk_end - t < kTileTokens ? chunk_end - t : kTileTokens;
                kTiles<D>[rows - 1][tokens - 1](w, cols, r, x + t * ldx, ldx, y + t * ldy, ldy);
            }
        }
    }
}

template <DType D>
void gemv(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemm<D>(w, cols, x, cols * sizeof(float), 1, y, 0, row_begin, row_end);
}

// ---------------------------------------------------------------------------------------------
// exp: the same Cephes-style approximation as the AVX2 table (see avx2_kernels.cpp): about
// 1-2 ulp, 0 below ln(FLT_MIN), +inf above ln(FLT_MAX), NaN stays NaN (FMIN/FMAX propagate it).

float32x4_t exp4(float32x4_t x) {
    const float32x4_t kMinInput = vdupq_n_f32(-87.33654f);  // ln(FLT_MIN): n >= -126
    const float32x4_t kOverflow = vdupq_n_f32(88.72284f);   // ln(FLT_MAX)

    const float32x4_t clamped = vmaxq_f32(kMinInput, vminq_f32(vdupq_n_f32(88.37f), x));  // n <= 127
    const float32x4_t n = vrndnq_f32(vmulq_f32(clamped, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(clamped, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));

    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));

    const int32x4_t biased = vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127));
    float32x4_t result = vmulq_f32(p, vreinterpretq_f32_s32(vshlq_n_s32(biased, 23)));

    result = vbslq_f32(vcltq_f32(x, kMinInput), vdupq_n_f32(0.0f), result);
    return vbslq_f32(vcgtq_f32(x, kOverflow), vdupq_n_f32(__builtin_inff()), result);
}

// out[i] = op(a[i], b[i]); the tail goes through a zero-padded copy. out may alias a or b.
template <typename Op>
void map2(const float* a, const float* b, float* out, size_t n, Op op) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(out + i, op(vld1q_f32(a + i), vld1q_f32(b + i)));
    if (i < n) {
        float ta[4] = {}, tb[4] = {}, to[4];
        __builtin_memcpy(ta, a + i, (n - i) * sizeof(float));
        __builtin_memcpy(tb, b + i, (n - i) * sizeof(float));
        vst1q_f32(to, op(vld1q_f32(ta), vld1q_f32(tb)));
        __builtin_memcpy(out + i, to, (n - i) * sizeof(float));
    }
}

}  // namespace

void gemv_f32(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv<DType::F32>(w, cols, x, y, row_begin, row_end);
}
void gemv_f16(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv<DType::F16>(w, cols, x, y, row_begin, row_end);
}
void gemv_bf16(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv<DType::BF16>(w, cols, x, y, row_begin, row_end);
}
// The float GEMMs need no scratch: tiles widen weights in registers instead of packing them.
void gemm_f32(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
              size_t row_begin, size_t row_end, void* /*scratch*/) {
    gemm<DType::F32>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end);
}
void gemm_f16(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
              size_t row_begin, size_t row_end, void* /*scratch*/) {
    gemm<DType::F16>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end);
}
void gemm_bf16(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* /*scratch*/) {
    gemm<DType::BF16>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end);
}

// Bit for bit quant::quantize_row_q8a and quantize_row_q8a_k: the same max, the same level
// factor, one rounding product per value, FCVTNS rounds to nearest even as the reference does,
// and the same scales.
namespace {

float abs_max(const float* x, size_t n) {
    float32x4_t amax = vdupq_n_f32(0.0f);
    for (size_t i = 0; i < n; i += 4) amax = vmaxq_f32(amax, vabsq_f32(vld1q_f32(x + i)));
    return vmaxvq_f32(amax);
}

// `blocks` activation blocks with levels round(x * level_factor) and the scale d.
void quantize_blocks_q8a(const float* x, quant::BlockQ8A* y, size_t blocks, float level_factor, float d) {
    for (size_t b = 0; b < blocks; ++b, x += quant::kQ32) {
        int32x4_t q[8];
        int32x4_t sum = vdupq_n_s32(0);
        for (size_t i = 0; i < 8; ++i) {
            q[i] = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 4 * i), level_factor));
            sum = vaddq_s32(sum, q[i]);
        }
        for (size_t h = 0; h < 2; ++h) {
            const int16x8_t lo = vcombine_s16(vqmovn_s32(q[4 * h]), vqmovn_s32(q[4 * h + 1]));
            const int16x8_t hi = vcombine_s16(vqmovn_s32(q[4 * h + 2]), vqmovn_s32(q[4 * h + 3]));
            vst1q_s8(y[b].qs + 16 * h, vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)));
        }
        y[b].d = d;
        y[b].dsum = d * static_cast<float>(vaddvq_s32(sum));
    }
}

}  // namespace

void quantize_q8a(const float* x, void* dst, size_t cols) {
    auto* y = static_cast<quant::BlockQ8A*>(dst);
    for (size_t b = 0; b < cols / quant::kQ32; ++b, x += quant::kQ32) {
        const float amax = abs_max(x, quant::kQ32);
        quantize_blocks_q8a(x, y + b, 1, quant::activation_level_factor(amax), quant::activation_scale(amax));
    }
}

void quantize_q8a_k(const float* x, void* dst, size_t cols) {
    auto* y = static_cast<quant::BlockQ8A*>(dst);
    for (size_t g = 0; g < cols / quant::kQK; ++g, x += quant::kQK) {
        const float factor = quant::activation_level_factor(abs_max(x, quant::kQK));
        quantize_blocks_q8a(x, y + g * quant::kQ8AKBlocks, quant::kQ8AKBlocks, factor,
                            quant::activation_scale_k(factor));
    }
}

float dot(const float* a, const float* b, size_t n) {
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (size_t j = 0; j < 4; ++j) acc[j] = vfmaq_f32(acc[j], vld1q_f32(a + i + 4 * j), vld1q_f32(b + i + 4 * j));
    }
    for (; i + 4 <= n; i += 4) acc[0] = vfmaq_f32(acc[0], vld1q_f32(a + i), vld1q_f32(b + i));
    if (i < n) {
        acc[1] = vfmaq_f32(acc[1], load_partial4<DType::F32>(a, i, n - i), load_partial4<DType::F32>(b, i, n - i));
    }
    return vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
}

void axpy(float a, const float* x, float* y, size_t n) {
    map2(x, y, y, n, [a](float32x4_t xv, float32x4_t yv) { return vfmaq_n_f32(yv, xv, a); });
}

void rmsnorm(const float* x, const float* weight, size_t n, float eps, float* y) {
    const float inv_rms = 1.0f / __builtin_sqrtf(dot(x, x, n) / static_cast<float>(n) + eps);
    map2(x, weight, y, n, [inv_rms](float32x4_t xv, float32x4_t wv) { return vmulq_f32(vmulq_n_f32(xv, inv_rms), wv); });
}

void silu_mul(const float* gate, const float* up, float* out, size_t n) {
    map2(gate, up, out, n, [](float32x4_t g, float32x4_t u) {
        return vmulq_f32(vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(g)))), u);
    });
}

void mul(const float* a, const float* b, float* out, size_t n) {
    map2(a, b, out, n, [](float32x4_t av, float32x4_t bv) { return vmulq_f32(av, bv); });
}

float exp_sum(float* x, size_t n, float shift) {
    // Padding lanes of the tail hold -inf, whose exp is 0, so they add nothing to the sum.
    float32x4_t sum = vdupq_n_f32(0.0f);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), vdupq_n_f32(shift)));
        vst1q_f32(x + i, e);
        sum = vaddq_f32(sum, e);
    }
    if (i < n) {
        float tail[4] = {-__builtin_inff(), -__builtin_inff(), -__builtin_inff(), -__builtin_inff()};
        __builtin_memcpy(tail, x + i, (n - i) * sizeof(float));
        const float32x4_t e = exp4(vsubq_f32(vld1q_f32(tail), vdupq_n_f32(shift)));
        vst1q_f32(tail, e);
        __builtin_memcpy(x + i, tail, (n - i) * sizeof(float));
        sum = vaddq_f32(sum, e);
    }
    return vaddvq_f32(sum);
}


}  // namespace lfmrt::cpu::neon
