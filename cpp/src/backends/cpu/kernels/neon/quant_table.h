// The NEON quantized matmuls (block weights times BlockQ8A activations, see kernels.h) and the
// KernelTable that combines them with the shared kernels of neon.h.
//
// One implementation, built twice: neon_kernels.cpp includes this with -march=armv8-a, where an
// integer dot of 16 byte pairs is SMULL + SADALP; neon_dotprod_kernels.cpp includes it with
// -march=armv8.2-a+dotprod, where it is one SDOT (__ARM_FEATURE_DOTPROD). (The neon_i8mm table is
// the dotprod one with SMMLA panel GEMMs.) Q4_0, Q8_0, Q4_K and Q6_K matrices are read in 16-row
// panels (panel_kernels.h); the row kernels here are the fallback for a matrix left in GGUF's rows,
// and Q5_K's kernels. Everything here has
// internal linkage, so each translation unit keeps its own copy compiled with its own flags,
// and no STL is included (see avx2_kernels.cpp for why).
//
// All integer sums are exact (|level| <= 128, |activation| <= 127, at most 32 products per
// sum before scaling); only the fp32 scaling and summing round. One row is decoded once per
// block and dotted with up to kTileTokens tokens; each token has its own accumulator and the
// same operations whatever the number of tokens beside it, so GEMV, GEMM and any row split
// give the same bits.
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "backends/cpu/kernels/kernels.h"
#include "backends/cpu/kernels/neon/neon.h"
#include "backends/cpu/kernels/neon/panel_kernels.h"
#include "formats/blocks.h"

namespace lfmrt::cpu {
namespace {

namespace quant_table {

using quant::BlockQ4_0;
using quant::BlockQ4_K;
using quant::BlockQ5_K;
using quant::BlockQ6_K;
using quant::BlockQ8_0;
using quant::BlockQ8A;
using quant::kQ32;

float f16(uint16_t bits) {
    __fp16 h;
    __builtin_memcpy(&h, &bits, sizeof h);
    return static_cast<float>(h);
}

// acc[i] += the sum of a[4i..4i+3] * b[4i..4i+3] (signed bytes).
int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
#endif
}

// The integer dot of 32 levels (lo: values 0..15, hi: 16..31) with an activation block.
int32x4_t dot32(int8x16_t lo, int8x16_t hi, const BlockQ8A& x) {
    return dot16(dot16(vdupq_n_s32(0), lo, vld1q_s8(x.qs)), hi, vld1q_s8(x.qs + 16));
}

constexpr size_t kTileTokens = 4;
// Tokens whose activation rows stay in L2 while every weight row of the range passes over them.
constexpr size_t kTokenChunk = 64;

// Q8_0 and Q4_0: one fp16 scale per block of 32.
template <DType D, size_t kT>
void dot_q8_0_q4_0(const void* row, const BlockQ8A* const x[kT], size_t blocks, float out[kT]) {
    float32x4_t acc[kT];
    for (size_t t = 0; t < kT; ++t) acc[t] = vdupq_n_f32(0.0f);
    for (size_t b = 0; b < blocks; ++b) {
        int8x16_t lo, hi;
        float d;
        if constexpr (D == DType::Q8_0) {
            const BlockQ8_0& w = static_cast<const BlockQ8_0*>(row)[b];
            lo = vld1q_s8(w.qs);
            hi = vld1q_s8(w.qs + 16);
            d = f16(w.d);
        } else {
            const BlockQ4_0& w = static_cast<const BlockQ4_0*>(row)[b];
            const uint8x16_t raw = vld1q_u8(w.qs);
            const int8x16_t eight = vdupq_n_s8(8);
            lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0F))), eight);
            hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), eight);
            d = f16(w.d);
        }
        for (size_t t = 0; t < kT; ++t) {
            acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(dot32(lo, hi, x[t][b])), d * x[t][b].d);
        }
    }
    for (size_t t = 0; t < kT; ++t) out[t] = vaddvq_f32(acc[t]);
}

// Q4_K and Q5_K: super-blocks of 8 sub-blocks of 32, levels 0..15 (0..31) with a 6-bit scale
// and minimum each; the minima meet the activations' sums (dsum) once per sub-block.
template <DType D, size_t kT>
void dot_q4_k_q5_k(const void* row, const BlockQ8A* const x[kT], size_t blocks, float out[kT]) {
    const auto* base = static_cast<const uint8_t*>(row);
    float32x4_t acc[kT];
    float minima[kT];
    for (size_t t = 0; t < kT; ++t) {
        acc[t] = vdupq_n_f32(0.0f);
        minima[t] = 0.0f;
    }
    const uint8x16_t nibble = vdupq_n_u8(0x0F);
    for (size_t sb = 0; sb < blocks / 8; ++sb) {
        const auto* header = reinterpret_cast<const BlockQ4_K*>(base + sb * block_bytes(D));
        const uint8_t* qs = D == DType::Q4_K ? header->qs : reinterpret_cast<const BlockQ5_K*>(header)->qs;
        const float d = f16(header->d), dmin = f16(header->dmin);
        uint8x16_t high_bits[2] = {vdupq_n_u8(0), vdupq_n_u8(0)};
        if constexpr (D == DType::Q5_K) {
            const uint8_t* qh = reinterpret_cast<const BlockQ5_K*>(header)->qh;
            high_bits[0] = vld1q_u8(qh);
            high_bits[1] = vld1q_u8(qh + 16);
        }
        for (size_t j = 0; j < 8; ++j) {
            uint8_t sc, m;
            quant::scale_min_k4(j, header->scales, &sc, &m);
            uint8x16_t levels[2];
            for (size_t h = 0; h < 2; ++h) {
                const uint8x16_t bytes = vld1q_u8(qs + 32 * (j / 2) + 16 * h);
                levels[h] = j % 2 ? vshrq_n_u8(bytes, 4) : vandq_u8(bytes, nibble);
                if constexpr (D == DType::Q5_K) {  // bit j of qh[l] is bit 4 of level l
                    const uint8x16_t set = vtstq_u8(high_bits[h], vdupq_n_u8(static_cast<uint8_t>(1u << j)));
                    levels[h] = vorrq_u8(levels[h], vandq_u8(set, vdupq_n_u8(16)));
                }
            }
            const int8x16_t lo = vreinterpretq_s8_u8(levels[0]), hi = vreinterpretq_s8_u8(levels[1]);
            const float scale = d * sc, min = dmin * m;
            for (size_t t = 0; t < kT; ++t) {
                const BlockQ8A& xb = x[t][8 * sb + j];
                acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(dot32(lo, hi, xb)), scale * xb.d);
                minima[t] += min * xb.dsum;
            }
        }
    }
    for (size_t t = 0; t < kT; ++t) out[t] = vaddvq_f32(acc[t]) - minima[t];
}

// Q6_K: levels 0..63 offset by 32, an 8-bit scale per 16 values, applied in int32 (exact:
// |16-value sum| <= 16 * 32 * 127 and |scale| <= 128).
template <size_t kT>
void dot_q6_k(const void* row, const BlockQ8A* const x[kT], size_t blocks, float out[kT]) {
    const auto* w = static_cast<const BlockQ6_K*>(row);
    float32x4_t acc[kT];
    for (size_t t = 0; t < kT; ++t) acc[t] = vdupq_n_f32(0.0f);
    const uint8x16_t nibble = vdupq_n_u8(0x0F), two_bits = vdupq_n_u8(0x03);
    const int8x16_t offset = vdupq_n_s8(32);
    for (size_t sb = 0; sb < blocks / 8; ++sb) {
        const float d = f16(w[sb].d);
        for (size_t half = 0; half < 2; ++half) {
            const uint8_t* ql = w[sb].ql + 64 * half;
            const uint8_t* qh = w[sb].qh + 32 * half;
            for (size_t k = 0; k < 4; ++k) {
                const size_t j = 4 * half + k;
                int8x16_t levels[2];
                for (size_t h = 0; h < 2; ++h) {
                    const uint8x16_t low_bytes = vld1q_u8(ql + 32 * (k % 2) + 16 * h);
                    const uint8x16_t low = k / 2 ? vshrq_n_u8(low_bytes, 4) : vandq_u8(low_bytes, nibble);
                    const int8x16_t shift = vdupq_n_s8(static_cast<int8_t>(-2 * static_cast<int>(k)));
                    const uint8x16_t high = vandq_u8(vshlq_u8(vld1q_u8(qh + 16 * h), shift), two_bits);
                    levels[h] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low, vshlq_n_u8(high, 4))), offset);
                }
                const int32_t scale_lo = w[sb].scales[2 * j], scale_hi = w[sb].scales[2 * j + 1];
                for (size_t t = 0; t < kT; ++t) {
                    const BlockQ8A& xb = x[t][8 * sb + j];
                    const int32x4_t lo = dot16(vdupq_n_s32(0), levels[0], vld1q_s8(xb.qs));
                    const int32x4_t hi = dot16(vdupq_n_s32(0), levels[1], vld1q_s8(xb.qs + 16));
                    const int32x4_t sum = vmlaq_n_s32(vmulq_n_s32(lo, scale_lo), hi, scale_hi);
                    acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(sum), d * xb.d);
                }
            }
        }
    }
    for (size_t t = 0; t < kT; ++t) out[t] = vaddvq_f32(acc[t]);
}

// out[t] = dot(row, x[t]) for kT tokens over `blocks` 32-value blocks.
template <DType D, size_t kT>
void dot_row(const void* row, const BlockQ8A* const x[kT], size_t blocks, float out[kT]) {
    if constexpr (D == DType::Q8_0 || D == DType::Q4_0) {
        dot_q8_0_q4_0<D, kT>(row, x, blocks, out);
    } else if constexpr (D == DType::Q4_K || D == DType::Q5_K) {
        dot_q4_k_q5_k<D, kT>(row, x, blocks, out);
    } else {
        static_assert(D == DType::Q6_K);
        dot_q6_k<kT>(row, x, blocks, out);
    }
}

// y[t][r] for tokens [t0, t0 + kT) and one weight row r.
template <DType D, size_t kT>
void row_tile(const uint8_t* row, size_t r, const uint8_t* x, size_t x_stride, size_t t0, size_t blocks, float* y,
              size_t ldy) {
    const BlockQ8A* xt[kT];
    for (size_t t = 0; t < kT; ++t) xt[t] = reinterpret_cast<const BlockQ8A*>(x + (t0 + t) * x_stride);
    float out[kT];
    dot_row<D, kT>(row, xt, blocks, out);
    for (size_t t = 0; t < kT; ++t) y[(t0 + t) * ldy + r] = out[t];
}

template <DType D>
using RowTileFn = void (*)(const uint8_t*, size_t, const uint8_t*, size_t, size_t, size_t, float*, size_t);

template <DType D>
constexpr RowTileFn<D> kRowTiles[kTileTokens] = {row_tile<D, 1>, row_tile<D, 2>, row_tile<D, 3>, row_tile<D, 4>};

template <DType D>
void gemm(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
          size_t row_begin, size_t row_end, void* /*scratch*/) {
    const auto* weights = static_cast<const uint8_t*>(w);
    const auto* xq = static_cast<const uint8_t*>(x);
    const size_t row_size = row_bytes(D, cols);
    const size_t blocks = cols / kQ32;
    for (size_t c0 = 0; c0 < n; c0 += kTokenChunk) {
        const size_t chunk_end = n - c0 < kTokenChunk ? n : c0 + kTokenChunk;
        for (size_t r = row_begin; r < row_end; ++r) {
            for (size_t t = c0; t < chunk_end; t += kTileTokens) {
                const size_t tokens = chunk_end - t < kTileTokens ? chunk_end - t : kTileTokens;
                kRowTiles<D>[tokens - 1](weights + r * row_size, r, xq, x_stride, t, blocks, y, ldy);
            }
        }
    }
}

template <DType D>
void gemv(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemm<D>(w, cols, x, 0, 1, y, 0, row_begin, row_end, nullptr);
}

// The per-dtype arrays below are listed in DType order.
static_assert(static_cast<int>(DType::F32) == 0 && static_cast<int>(DType::F16) == 1 &&
              static_cast<int>(DType::BF16) == 2 && static_cast<int>(DType::Q8_0) == 3 &&
              static_cast<int>(DType::Q4_0) == 4 && static_cast<int>(DType::Q4_K) == 5 &&
              static_cast<int>(DType::Q5_K) == 6 && static_cast<int>(DType::Q6_K) == 7 && kNumDTypes == 8);

// constexpr, so the table is constant-initialised: no code built with the dotprod flags runs
// before dispatch has checked that the CPU has the instructions.
constexpr KernelTable make_table(const char* name) {
    return KernelTable{
        name,
        {neon::gemv_f32, neon::gemv_f16, neon::gemv_bf16, gemv<DType::Q8_0>, gemv<DType::Q4_0>, gemv<DType::Q4_K>,
         gemv<DType::Q5_K>, gemv<DType::Q6_K>},
        {neon::gemm_f32, neon::gemm_f16, neon::gemm_bf16, gemm<DType::Q8_0>, gemm<DType::Q4_0>, gemm<DType::Q4_K>,
         gemm<DType::Q5_K>, gemm<DType::Q6_K>},
        {nullptr, nullptr, nullptr, neon_panels::gemv<DType::Q8_0>, neon_panels::gemv<DType::Q4_0>,
         neon_panels::gemv<DType::Q4_K>, nullptr, neon_panels::gemv<DType::Q6_K>},
        {nullptr, nullptr, nullptr, neon_panels::gemm<DType::Q8_0>, neon_panels::gemm<DType::Q4_0>,
         neon_panels::gemm<DType::Q4_K>, nullptr, neon_panels::gemm<DType::Q6_K>},
        neon::quantize_q8a,
        neon::quantize_q8a_k,
        neon::dot,
        neon::axpy,
        neon::rmsnorm,
        neon::silu_mul,
        neon::mul,
    };
}

}  // namespace quant_table

}  // namespace
}  // namespace lfmrt::cpu
