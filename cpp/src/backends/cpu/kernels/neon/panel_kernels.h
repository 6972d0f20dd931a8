// NEON kernels for Q4_0, Q8_0, Q4_K and Q6_K weights in 16-row panels (backends/cpu/panels.h) times
// BlockQ8A activations: KernelTable::gemv_panels and gemm_panels of the aarch64 tables.
//
// Like quant_table.h, which includes it, one implementation built once per aarch64 table with that
// table's flags: internal linkage only, no STL. A 16-byte vector of a panel word holds 4 rows'
// 4 levels (rows 4q..4q+3 of word g), the unit of one SDOT by element: vdotq_laneq_s32 dots each
// row's 4 levels with activation word g, picked from the activation block's vector by lane, so no
// broadcast is needed. The baseline table (no dot product) does the same with SMLAL into int16
// lanes (4 per row, widened and added pairwise at the end of each call), or for Q8_0, whose
// products do not fit int16 sums, SMULL and SADALP into int32 pairs. Levels are made
// signed before the dot (Q4_0 level - 8, Q8_0 level ^ 0x80, Q6_K level - 32; Q4_K's 0..15 are
// already), so every integer sum is the exact dot of a scale's values.
//
// With the matrix-multiply instructions (__ARM_FEATURE_MATMUL_INT8, the neon_i8mm table) the GEMM
// uses SMMLA instead: one instruction multiplies 2 rows x 8 levels by 2 tokens x 8 activations
// into a 2 x 2 block of int32 sums. A row pair's 8 consecutive levels are two panel words zipped
// (rows 4q..4q+1 of words g and g + 1), a token pair's 8 activations two activation halves zipped
// (once per tile and column chunk, before the tile's panel-rows are walked).
// Its sums are the same exact integers as the SDOT kernels', so its GEMM equals the GEMV per token.
//
// Then acc += float(dot) * (scale * x.d) per row, scale and token, one fused multiply-add (Q4_K
// also acc -= min * x.dsum); the x86 panel kernels form the same products. That arithmetic is the
// same for a row whatever the token count, the tile, the row range or the chunking, so each
// table's GEMM equals its GEMV per token bit for bit, and row splits change nothing.
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "backends/cpu/kernels/kernels.h"
#include "backends/cpu/panels.h"
#include "formats/blocks.h"

namespace lfmrt::cpu {
namespace {

namespace neon_panels {

using quant::BlockQ8A;
using quant::kQ32;

template <DType D>
struct PanelTraits;
template <>
struct PanelTraits<DType::Q4_0> {
    using Panel = PanelQ4_0;
    static constexpr size_t kBlocks = 1;
};
template <>
struct PanelTraits<DType::Q8_0> {
    using Panel = PanelQ8_0;
    static constexpr size_t kBlocks = 1;
};
template <>
struct PanelTraits<DType::Q4_K> {
    using Panel = PanelQ4_K;
    static constexpr size_t kBlocks = 8;
};
template <>
struct PanelTraits<DType::Q6_K> {
    using Panel = PanelQ6_K;
    static constexpr size_t kBlocks = 8;
};
template <DType D>
using Panel = typename PanelTraits<D>::Panel;
template <DType D>
constexpr size_t kBlocks = PanelTraits<D>::kBlocks;

// Select<C, A, B>::Type: A if C, else B.
template <bool C, typename A, typename B>
struct Select {
    using Type = A;
};
template <typename A, typename B>
struct Select<false, A, B> {
    using Type = B;
};

// A compile-time index, for the intrinsics whose lane must be a constant.
template <size_t I>
struct Index {
    static constexpr size_t value = I;
};
// f(Index<0>{}), ..., f(Index<N - 1>{}).
template <size_t N, size_t I = 0, typename F>
[[gnu::always_inline]] inline void unroll(F f) {
    if constexpr (I < N) {
        f(Index<I>{});
        unroll<N, I + 1>(f);
    }
}

// ---------------------------------------------------------------------------------------------
// Level vectors: rows 4q..4q+3 of one panel word, as signed bytes.

// Q4_0 word g, low (values 4g..) or high nibbles (values 16 + 4g..), level - 8.
int8x16_t q4_0_levels(const PanelQ4_0& p, size_t q, size_t g, bool high) {
    const uint8x16_t v = vld1q_u8(p.qs[g][4 * q]);
    return vsubq_s8(vreinterpretq_s8_u8(high ? vshrq_n_u8(v, 4) : vandq_u8(v, vdupq_n_u8(0x0F))), vdupq_n_s8(8));
}
int8x16_t q8_0_levels(const PanelQ8_0& p, size_t q, size_t g) {
    return vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p.qs[g][4 * q]), vdupq_n_u8(0x80)));
}
// Q4_K block j's word g (low nibbles of pair j / 2 for even j, high for odd), 0..15.
int8x16_t q4_k_levels(const PanelQ4_K& p, size_t q, size_t j, size_t g) {
    const uint8x16_t v = vld1q_u8(p.qs[j / 2][g][4 * q]);
    return vreinterpretq_s8_u8(j % 2 ? vshrq_n_u8(v, 4) : vandq_u8(v, vdupq_n_u8(0x0F)));
}
// Q6_K block j, values 16h + 4g..: nibble h of the 4-bit plane's word g or-ed with bits 2g..2g+1
// of the 2-bit plane's word h as bits 4-5, level - 32.
int8x16_t q6_k_levels(const PanelQ6_K& p, size_t q, size_t j, size_t h, size_t g) {
    const uint8x16_t ql = vld1q_u8(p.blocks[j].ql[g][4 * q]);
    const uint8x16_t qh = vld1q_u8(p.blocks[j].qh[h][4 * q]);
    const uint8x16_t low = h ? vshrq_n_u8(ql, 4) : vandq_u8(ql, vdupq_n_u8(0x0F));
    const int8x16_t right = vdupq_n_s8(static_cast<int8_t>(-2 * static_cast<int>(g)));
    const uint8x16_t high = vandq_u8(vshlq_u8(qh, right), vdupq_n_u8(3));
    return vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low, vshlq_n_u8(high, 4))), vdupq_n_s8(32));
}

// ---------------------------------------------------------------------------------------------
// Per-row dots of 4 rows against activation words: SDOT by element, or its baseline equivalent,
// which with kInt16 (products and their sums over the words of one call fit in int16: every type
// but Q8_0) accumulates with SMLAL in int16 lanes and widens once at the end.

template <bool kInt16>
struct RowDots {
#if defined(__ARM_FEATURE_DOTPROD)
    int32x4_t sum = vdupq_n_s32(0);
    // sum[r] += levels' row r (4 bytes) . activation word L of x (a 16-byte half block).
    template <int L>
    [[gnu::always_inline]] void add(int8x16_t levels, int8x16_t x) {
        sum = vdotq_laneq_s32(sum, levels, x, L);
    }
    int32x4_t result() const { return sum; }
#else
    // Products of rows 0-1 and 2-3, by byte: int16 lanes (kInt16) or int32 pairs of them.
    using Lanes = typename Select<kInt16, int16x8_t, int32x4_t>::Type;
    Lanes rows01 = zero(), rows23 = zero();
    static Lanes zero() {
        if constexpr (kInt16) {
            return vdupq_n_s16(0);
        } else {
            return vdupq_n_s32(0);
        }
    }
    template <int L>
    [[gnu::always_inline]] void add(int8x16_t levels, int8x16_t x) {
        const int8x16_t word = vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8(x), L));
        if constexpr (kInt16) {
            rows01 = vmlal_s8(rows01, vget_low_s8(levels), vget_low_s8(word));
            rows23 = vmlal_high_s8(rows23, levels, word);
        } else {
            rows01 = vpadalq_s16(rows01, vmull_s8(vget_low_s8(levels), vget_low_s8(word)));
            rows23 = vpadalq_s16(rows23, vmull_high_s8(levels, word));
        }
    }
    int32x4_t result() const {
        if constexpr (kInt16) {
            return vpaddq_s32(vpaddlq_s16(rows01), vpaddlq_s16(rows23));
        } else {
            return vpaddq_s32(rows01, rows23);
        }
    }
#endif
};

// The activation block's two 16-byte halves (words 0-3 and 4-7).
struct Halves {
    int8x16_t v[2];
    Halves() = default;
    explicit Halves(const BlockQ8A& x) : v{vld1q_s8(x.qs), vld1q_s8(x.qs + 16)} {}
};

// acc[q][t] (+)= the 4-row groups q of a tile (rows 4(q0 + q)..) dotted with token t. The block
// functions take the panel block, the group offset q0 and token t's activation block xb[t].

// 4 fp16 scales of rows 4q.. as fp32.
float32x4_t scales4(const uint16_t* d, size_t q) {
    float16x4_t h;
    __builtin_memcpy(&h, d + 4 * q, sizeof h);
    return vcvt_f32_f16(h);
}

// Lanes 4q..4q+3 of 16 per-row bytes, widened to fp32 (unsigned or signed bytes).
float32x4_t group_u8(uint8x16_t v, size_t q) {
    const uint16x8_t half = q < 2 ? vmovl_u8(vget_low_u8(v)) : vmovl_high_u8(v);
    return vcvtq_f32_u32(q % 2 ? vmovl_high_u16(half) : vmovl_u16(vget_low_u16(half)));
}
float32x4_t group_s8(int8x16_t v, size_t q) {
    const int16x8_t half = q < 2 ? vmovl_s8(vget_low_s8(v)) : vmovl_high_s8(v);
    return vcvtq_f32_s32(q % 2 ? vmovl_high_s16(half) : vmovl_s16(vget_low_s16(half)));
}

// Q4_K's 6-bit scales and minima of block j (0..7) for the 16 rows: quant::scale_min_k4, 16 rows
// at a time (the 12 packed bytes are 12 vectors of 16 rows in the panel).
void q4_k_scales_minima(const PanelQ4_K& p, size_t j, uint8x16_t* sc, uint8x16_t* m) {
    const uint8x16_t low6 = vdupq_n_u8(63), low4 = vdupq_n_u8(0x0F);
    if (j < 4) {
        *sc = vandq_u8(vld1q_u8(p.scales[j]), low6);
        *m = vandq_u8(vld1q_u8(p.scales[j + 4]), low6);
        return;
    }
    const uint8x16_t packed = vld1q_u8(p.scales[j + 4]);
    *sc = vorrq_u8(vandq_u8(packed, low4), vshlq_n_u8(vshrq_n_u8(vld1q_u8(p.scales[j - 4]), 6), 4));
    *m = vorrq_u8(vshrq_n_u8(packed, 4), vshlq_n_u8(vshrq_n_u8(vld1q_u8(p.scales[j]), 6), 4));
}

template <size_t kQ, size_t kT>
[[gnu::always_inline]] inline void add_scaled(const int32x4_t (&sum)[kQ][kT], const float32x4_t (&scale)[kQ],
                                              const BlockQ8A* const* xb, float32x4_t (&acc)[kQ][kT]) {
    for (size_t q = 0; q < kQ; ++q) {
        for (size_t t = 0; t < kT; ++t) {
            acc[q][t] = vfmaq_f32(acc[q][t], vcvtq_f32_s32(sum[q][t]), vmulq_n_f32(scale[q], xb[t]->d));
        }
    }
}

// Words [0, N) of a 32-value block (activation word w(g) of each), levels from levels_of(q, g).
template <size_t kQ, size_t kT, size_t N, bool kInt16 = true, typename LevelsOf, typename WordOf>
[[gnu::always_inline]] inline void dot_words(const Halves* x, LevelsOf levels_of, WordOf,
                                             int32x4_t (&sum)[kQ][kT]) {
    RowDots<kInt16> dots[kQ][kT];
    unroll<N>([&](auto g) {
        constexpr size_t w = WordOf::template of<decltype(g)::value>;
        for (size_t q = 0; q < kQ; ++q) {
            const int8x16_t levels = levels_of(q, decltype(g)::value);
            for (size_t t = 0; t < kT; ++t) dots[q][t].template add<w % 4>(levels, x[t].v[w / 4]);
        }
    });
    for (size_t q = 0; q < kQ; ++q) {
        for (size_t t = 0; t < kT; ++t) sum[q][t] = dots[q][t].result();
    }
}

// Activation word of level word g: g itself, or g + kShift.
template <size_t kShift>
struct WordShift {
    template <size_t G>
    static constexpr size_t of = G + kShift;
};

template <DType D, size_t kQ, size_t kT>
[[gnu::always_inline]] inline void dot_block(const Panel<D>& p, size_t q0, size_t j, const BlockQ8A* const* xb,
                                             float32x4_t (&acc)[kQ][kT]) {
    Halves x[kT];
    for (size_t t = 0; t < kT; ++t) x[t] = Halves(*xb[t]);
    int32x4_t sum[kQ][kT];
    float32x4_t scale[kQ];
    if constexpr (D == DType::Q4_0) {
        int32x4_t high[kQ][kT];
        dot_words<kQ, kT, 4>(x, [&](size_t q, size_t g) { return q4_0_levels(p, q0 + q, g, false); }, WordShift<0>{},
                             sum);
        dot_words<kQ, kT, 4>(x, [&](size_t q, size_t g) { return q4_0_levels(p, q0 + q, g, true); }, WordShift<4>{},
                             high);
        for (size_t q = 0; q < kQ; ++q) {
            scale[q] = scales4(p.d, q0 + q);
            for (size_t t = 0; t < kT; ++t) sum[q][t] = vaddq_s32(sum[q][t], high[q][t]);
        }
        add_scaled(sum, scale, xb, acc);
    } else if constexpr (D == DType::Q8_0) {
        dot_words<kQ, kT, 8, false>(x, [&](size_t q, size_t g) { return q8_0_levels(p, q0 + q, g); }, WordShift<0>{},
                                    sum);
        for (size_t q = 0; q < kQ; ++q) scale[q] = scales4(p.d, q0 + q);
        add_scaled(sum, scale, xb, acc);
    } else if constexpr (D == DType::Q6_K) {
        for (size_t h = 0; h < 2; ++h) {
            const auto levels = [&](size_t q, size_t g) { return q6_k_levels(p, q0 + q, j, h, g); };
            if (h == 0) {
                dot_words<kQ, kT, 4>(x, levels, WordShift<0>{}, sum);
            } else {
                dot_words<kQ, kT, 4>(x, levels, WordShift<4>{}, sum);
            }
            const int8x16_t group_scales = vld1q_s8(p.scales[2 * j + h]);
            for (size_t q = 0; q < kQ; ++q) scale[q] = vmulq_f32(group_s8(group_scales, q0 + q), scales4(p.d, q0 + q));
            add_scaled(sum, scale, xb, acc);
        }
    } else {
        static_assert(D == DType::Q4_K);
        dot_words<kQ, kT, 8>(x, [&](size_t q, size_t g) { return q4_k_levels(p, q0 + q, j, g); }, WordShift<0>{}, sum);
        uint8x16_t sc, m;
        q4_k_scales_minima(p, j, &sc, &m);
        for (size_t q = 0; q < kQ; ++q) {
            const float32x4_t row_scale = vmulq_f32(group_u8(sc, q0 + q), scales4(p.d, q0 + q));
            const float32x4_t row_min = vmulq_f32(group_u8(m, q0 + q), scales4(p.dmin, q0 + q));
            for (size_t t = 0; t < kT; ++t) {
                acc[q][t] = vfmaq_f32(acc[q][t], vcvtq_f32_s32(sum[q][t]), vmulq_n_f32(row_scale, xb[t]->d));
                acc[q][t] = vfmsq_f32(acc[q][t], row_min, vdupq_n_f32(xb[t]->dsum));
            }
        }
    }
}

// acc (+)= the tile's rows over 32-value blocks [0, n_blocks) of the chunk; block_of(b, xb) gives
// each token's activation block b.
template <DType D, size_t kQ, size_t kT, typename BlockOf>
[[gnu::always_inline]] inline void dot_panels(const Panel<D>* panel, size_t q0, size_t n_blocks, BlockOf block_of,
                                              float32x4_t (&acc)[kQ][kT]) {
    for (size_t b = 0; b < n_blocks; ++b) {
        const BlockQ8A* xb[kT];
        block_of(b, xb);
        dot_block<D, kQ, kT>(panel[b / kBlocks<D>], q0, b % kBlocks<D>, xb, acc);
    }
}

// Rows [row_begin, row_end) of 4-row group q of panel-row p, as lanes: stores and loads go lane by
// lane where a group is partial.
struct GroupRows {
    size_t first, count;  // lanes first..first+count-1 are in the range
};
GroupRows group_rows(size_t p, size_t q, size_t row_begin, size_t row_end) {
    const size_t base = p * kPanelRows + 4 * q;
    const size_t lo = row_begin > base ? row_begin - base : 0;
    const size_t hi = row_end > base ? (row_end - base < 4 ? row_end - base : 4) : 0;
    return {lo, hi > lo ? hi - lo : 0};
}

float32x4_t load_rows(const float* y, GroupRows g) {
    if (g.first == 0 && g.count == 4) return vld1q_f32(y);
    float v[4] = {0, 0, 0, 0};
    for (size_t i = g.first; i < g.first + g.count; ++i) v[i] = y[i];
    return vld1q_f32(v);
}
void store_rows(float* y, GroupRows g, float32x4_t v) {
    if (g.first == 0 && g.count == 4) return vst1q_f32(y, v);
    float out[4];
    vst1q_f32(out, v);
    for (size_t i = g.first; i < g.first + g.count; ++i) y[i] = out[i];
}

// Activation blocks per chunk: 8192 values, every LFM2 row in one.
constexpr size_t kGemvChunkBlocks = 256;

template <DType D>
void gemv(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    const size_t blocks = cols / kQ32;
    const auto* xq = static_cast<const BlockQ8A*>(x);
    if (row_begin >= row_end) return;
    if (blocks == 0) {
        for (size_t r = row_begin; r < row_end; ++r) y[r] = 0.0f;
        return;
    }
    for (size_t kb = 0; kb < blocks; kb += kGemvChunkBlocks) {
        const size_t kc = blocks - kb < kGemvChunkBlocks ? blocks - kb : kGemvChunkBlocks;
        const auto block_of = [&](size_t b, const BlockQ8A** xb) { xb[0] = xq + kb + b; };
        for (size_t p = row_begin / kPanelRows; p * kPanelRows < row_end; ++p) {
            const Panel<D>* panel = panel_row<Panel<D>>(w, blocks / kBlocks<D>, p) + kb / kBlocks<D>;
            float* out = y + p * kPanelRows;
            float32x4_t acc[4][1];
            for (size_t q = 0; q < 4; ++q) {
                acc[q][0] = kb > 0 ? load_rows(out + 4 * q, group_rows(p, q, row_begin, row_end)) : vdupq_n_f32(0.0f);
            }
            dot_panels<D, 4, 1>(panel, 0, kc, block_of, acc);
            for (size_t q = 0; q < 4; ++q) store_rows(out + 4 * q, group_rows(p, q, row_begin, row_end), acc[q][0]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GEMM: per panel-row, column chunk and tile of tokens, the tile's rows dotted with its tokens.

constexpr size_t kMcPanels = 8;   // panel-rows per row block: their column chunk stays in L2
constexpr size_t kKcBlocks = 32;  // blocks per column chunk: a tile's activations stay in L1

#if defined(__ARM_FEATURE_MATMUL_INT8)
// SMMLA tiles: one 4-row group (2 row pairs) x up to 8 tokens (4 token pairs; an odd last token is
// paired with itself and its copy dropped). Each token pair's activations are zipped once per
// tile and column chunk (pack_pairs), not once per panel-row: per block, 4 vectors of 2 tokens x
// 8 values, and the pair's scales and sums laid out as SMMLA's result lanes.
constexpr size_t kTileGroups = 1, kMaxTileTokens = 8, kMaxPairs = kMaxTileTokens / 2;

struct PairBlock {
    int8x16_t x[4];    // x[m]: token a's values 8m..8m+7, then token b's
    float32x4_t d;     // [a.d, b.d, a.d, b.d]: the lanes [r0 a, r0 b, r1 a, r1 b] of a row pair
    float32x4_t dsum;  // the same for dsum
};
using TileActivations = PairBlock[kKcBlocks][kMaxPairs];

// Tokens [0, kT) of the chunk (token t's block b at x + t * x_stride + b * 40), blocks [0, n_blocks).
template <size_t kT>
void pack_pairs(const uint8_t* x, size_t x_stride, size_t n_blocks, TileActivations& out) {
    constexpr size_t kP = (kT + 1) / 2;
    for (size_t b = 0; b < n_blocks; ++b) {
        for (size_t tp = 0; tp < kP; ++tp) {
            const size_t second = 2 * tp + 1 < kT ? 2 * tp + 1 : 2 * tp;
            const BlockQ8A& a = reinterpret_cast<const BlockQ8A*>(x + 2 * tp * x_stride)[b];
            const BlockQ8A& c = reinterpret_cast<const BlockQ8A*>(x + second * x_stride)[b];
            PairBlock& pair = out[b][tp];
            for (size_t h = 0; h < 2; ++h) {
                const int64x2_t a64 = vreinterpretq_s64_s8(vld1q_s8(a.qs + 16 * h));
                const int64x2_t c64 = vreinterpretq_s64_s8(vld1q_s8(c.qs + 16 * h));
                pair.x[2 * h] = vreinterpretq_s8_s64(vzip1q_s64(a64, c64));
                pair.x[2 * h + 1] = vreinterpretq_s8_s64(vzip2q_s64(a64, c64));
            }
            pair.d = float32x4_t{a.d, c.d, a.d, c.d};
            pair.dsum = float32x4_t{a.dsum, c.dsum, a.dsum, c.dsum};
        }
    }
}

// sum[tp][pr] (row pair pr of the group x token pair tp) += level words g, g + 1 (rows' values
// 4g..4g+7, zipped into SMMLA's 2 x 8 operand) . the pairs' activation vector m.
template <size_t kP>
[[gnu::always_inline]] inline void mmla_words(int8x16_t words_g, int8x16_t words_g1, const PairBlock* pairs, size_t m,
                                              int32x4_t (&sum)[kP][2]) {
    const int32x4_t g32 = vreinterpretq_s32_s8(words_g), g132 = vreinterpretq_s32_s8(words_g1);
    const int8x16_t rows01 = vreinterpretq_s8_s32(vzip1q_s32(g32, g132));
    const int8x16_t rows23 = vreinterpretq_s8_s32(vzip2q_s32(g32, g132));
    for (size_t tp = 0; tp < kP; ++tp) {
        const int8x16_t x = pairs[tp].x[m];
        sum[tp][0] = vmmlaq_s32(sum[tp][0], rows01, x);
        sum[tp][1] = vmmlaq_s32(sum[tp][1], rows23, x);
    }
}

// acc[tp][pr] += float(sum) * (scale * x.d) on SMMLA's lanes [r0 a, r0 b, r1 a, r1 b].
template <size_t kP>
[[gnu::always_inline]] inline void add_scaled_pairs(const int32x4_t (&sum)[kP][2], float32x4_t row_scale,
                                                    const PairBlock* pairs, float32x4_t (&acc)[kP][2]) {
    const float32x4_t lanes[2] = {vzip1q_f32(row_scale, row_scale), vzip2q_f32(row_scale, row_scale)};
    for (size_t tp = 0; tp < kP; ++tp) {
        for (size_t pr = 0; pr < 2; ++pr) {
            acc[tp][pr] = vfmaq_f32(acc[tp][pr], vcvtq_f32_s32(sum[tp][pr]), vmulq_f32(lanes[pr], pairs[tp].d));
        }
    }
}

// Y[t][rows of group q0 of panel-row p] (+)= panel . X[t] for kT tokens over n_blocks blocks.
template <DType D, size_t kT>
void tile(const Panel<D>* panel, size_t q0, size_t n_blocks, const TileActivations& pairs, float* y, size_t ldy,
          bool accumulate, size_t p, size_t row_begin, size_t row_end) {
    constexpr size_t kP = (kT + 1) / 2;
    float32x4_t acc[kP][2];
    float* rows_of = y + p * kPanelRows + 4 * q0;
    const GroupRows rows = group_rows(p, q0, row_begin, row_end);
    const auto token = [&](size_t t) { return rows_of + (t < kT ? t : kT - 1) * ldy; };
    for (size_t tp = 0; tp < kP; ++tp) {
        float32x4_t a = vdupq_n_f32(0.0f), b = vdupq_n_f32(0.0f);
        if (accumulate) {
            a = load_rows(token(2 * tp), rows);
            b = load_rows(token(2 * tp + 1), rows);
        }
        acc[tp][0] = vzip1q_f32(a, b);  // [r0 a, r0 b, r1 a, r1 b]
        acc[tp][1] = vzip2q_f32(a, b);
    }
    for (size_t b = 0; b < n_blocks; ++b) {
        const Panel<D>& pb = panel[b / kBlocks<D>];
        const size_t j = b % kBlocks<D>;
        const PairBlock* x = pairs[b];
        int32x4_t sum[kP][2];
        const auto zero = [&] {
            for (size_t tp = 0; tp < kP; ++tp) sum[tp][0] = sum[tp][1] = vdupq_n_s32(0);
        };
        zero();
        if constexpr (D == DType::Q4_0) {
            for (size_t g = 0; g < 4; g += 2) {  // low nibbles: values 4g..4g+7 = activation vector g / 2
                mmla_words<kP>(q4_0_levels(pb, q0, g, false), q4_0_levels(pb, q0, g + 1, false), x, g / 2, sum);
                mmla_words<kP>(q4_0_levels(pb, q0, g, true), q4_0_levels(pb, q0, g + 1, true), x, 2 + g / 2, sum);
            }
            add_scaled_pairs<kP>(sum, scales4(pb.d, q0), x, acc);
        } else if constexpr (D == DType::Q8_0) {
            for (size_t g = 0; g < 8; g += 2) mmla_words<kP>(q8_0_levels(pb, q0, g), q8_0_levels(pb, q0, g + 1), x, g / 2, sum);
            add_scaled_pairs<kP>(sum, scales4(pb.d, q0), x, acc);
        } else if constexpr (D == DType::Q6_K) {
            for (size_t h = 0; h < 2; ++h) {
                if (h == 1) zero();
                for (size_t g = 0; g < 4; g += 2) {
                    mmla_words<kP>(q6_k_levels(pb, q0, j, h, g), q6_k_levels(pb, q0, j, h, g + 1), x, 2 * h + g / 2, sum);
                }
                add_scaled_pairs<kP>(sum, vmulq_f32(group_s8(vld1q_s8(pb.scales[2 * j + h]), q0), scales4(pb.d, q0)), x,
                                     acc);
            }
        } else {
            static_assert(D == DType::Q4_K);
            for (size_t g = 0; g < 8; g += 2) {
                mmla_words<kP>(q4_k_levels(pb, q0, j, g), q4_k_levels(pb, q0, j, g + 1), x, g / 2, sum);
            }
            uint8x16_t sc, m;
            q4_k_scales_minima(pb, j, &sc, &m);
            add_scaled_pairs<kP>(sum, vmulq_f32(group_u8(sc, q0), scales4(pb.d, q0)), x, acc);
            const float32x4_t row_min = vmulq_f32(group_u8(m, q0), scales4(pb.dmin, q0));
            const float32x4_t min_lanes[2] = {vzip1q_f32(row_min, row_min), vzip2q_f32(row_min, row_min)};
            for (size_t tp = 0; tp < kP; ++tp) {
                for (size_t pr = 0; pr < 2; ++pr) acc[tp][pr] = vfmsq_f32(acc[tp][pr], min_lanes[pr], x[tp].dsum);
            }
        }
    }
    for (size_t tp = 0; tp < kP; ++tp) {
        store_rows(token(2 * tp), rows, vuzp1q_f32(acc[tp][0], acc[tp][1]));
        if (2 * tp + 1 < kT) store_rows(token(2 * tp + 1), rows, vuzp2q_f32(acc[tp][0], acc[tp][1]));
    }
}

// What a tile reads its activations from: the chunk's blocks zipped in token pairs.
using TileInput = TileActivations;
template <size_t kT>
void prepare_tile_input(const uint8_t* x, size_t x_stride, size_t n_blocks, TileInput& input) {
    pack_pairs<kT>(x, x_stride, n_blocks, input);
}
#else
// SDOT (or baseline) tiles: 4-row groups q0.. (kTileGroups of them) x kT tokens, reading the
// activation rows where they lie. The shapes with the fewest instructions per token under QEMU
// (350M step, 24 tokens; 1 x 4, 1 x 6, 2 x 3, 2 x 4 tried): SDOT keeps a token's activations in 2
// registers and its sums in 1, so one group x 6 tokens; the baseline's int16 pairs take 2, so 2 x 3.
#if defined(__ARM_FEATURE_DOTPROD)
constexpr size_t kTileGroups = 1, kMaxTileTokens = 6;
#else
constexpr size_t kTileGroups = 2, kMaxTileTokens = 3;
#endif

struct TileInput {
    const uint8_t* x;  // token 0's first block of the chunk
    size_t x_stride;
};
template <size_t kT>
void prepare_tile_input(const uint8_t* x, size_t x_stride, size_t, TileInput& input) {
    input = {x, x_stride};
}

template <DType D, size_t kT>
void tile(const Panel<D>* panel, size_t q0, size_t n_blocks, const TileInput& input, float* y, size_t ldy,
          bool accumulate, size_t p, size_t row_begin, size_t row_end) {
    float32x4_t acc[kTileGroups][kT];
    for (size_t q = 0; q < kTileGroups; ++q) {
        const GroupRows rows = group_rows(p, q0 + q, row_begin, row_end);
        for (size_t t = 0; t < kT; ++t) {
            acc[q][t] = accumulate ? load_rows(y + t * ldy + p * kPanelRows + 4 * (q0 + q), rows) : vdupq_n_f32(0.0f);
        }
    }
    const auto block_of = [&](size_t b, const BlockQ8A** xb) {
        for (size_t t = 0; t < kT; ++t) xb[t] = reinterpret_cast<const BlockQ8A*>(input.x + t * input.x_stride) + b;
    };
    dot_panels<D, kTileGroups, kT>(panel, q0, n_blocks, block_of, acc);
    for (size_t q = 0; q < kTileGroups; ++q) {
        const GroupRows rows = group_rows(p, q0 + q, row_begin, row_end);
        for (size_t t = 0; t < kT; ++t) store_rows(y + t * ldy + p * kPanelRows + 4 * (q0 + q), rows, acc[q][t]);
    }
}
#endif

template <DType D>
using TileFn = void (*)(const Panel<D>*, size_t, size_t, const TileInput&, float*, size_t, bool, size_t, size_t,
                        size_t);
using PrepareFn = void (*)(const uint8_t*, size_t, size_t, TileInput&);

// The tile kernel and its input's preparation for tiles of kT tokens (2 to kMaxTileTokens: one
// token goes to the GEMV).
template <DType D, size_t kT>
constexpr TileFn<D> tile_for() {
    if constexpr (kT >= 2 && kT <= kMaxTileTokens) {
        return tile<D, kT>;
    } else {
        return nullptr;
    }
}
template <size_t kT>
constexpr PrepareFn prepare_for() {
    if constexpr (kT >= 2 && kT <= kMaxTileTokens) {
        return prepare_tile_input<kT>;
    } else {
        return nullptr;
    }
}
// Indexed by the tile's token count.
template <DType D>
constexpr TileFn<D> kTiles[9] = {tile_for<D, 0>(), tile_for<D, 1>(), tile_for<D, 2>(), tile_for<D, 3>(), tile_for<D, 4>(),
                                 tile_for<D, 5>(), tile_for<D, 6>(), tile_for<D, 7>(), tile_for<D, 8>()};
constexpr PrepareFn kPrepare[9] = {prepare_for<0>(), prepare_for<1>(), prepare_for<2>(), prepare_for<3>(), prepare_for<4>(),
                                   prepare_for<5>(), prepare_for<6>(), prepare_for<7>(), prepare_for<8>()};
// With n >= 2 tokens and tiles of at most kMaxTileTokens >= 3, ceil(n / kMaxTileTokens) near-equal
// tiles have at least 2 tokens each (gemm below), so the 1-token entry is never taken.
static_assert(kMaxTileTokens >= 3 && kMaxTileTokens <= 8);

template <DType D>
void gemm(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
          size_t row_begin, size_t row_end, void* /*scratch*/) {
    const auto* xq = static_cast<const uint8_t*>(x);
    const size_t blocks = cols / kQ32;
    if (n == 1 || blocks == 0 || row_begin >= row_end) {
        for (size_t t = 0; t < n; ++t) gemv<D>(w, cols, xq + t * x_stride, y + t * ldy, row_begin, row_end);
        return;
    }
    TileInput input;
    const size_t p_end = (row_end + kPanelRows - 1) / kPanelRows;
    for (size_t pb = row_begin / kPanelRows; pb < p_end; pb += kMcPanels) {
        const size_t pe = p_end - pb < kMcPanels ? p_end : pb + kMcPanels;
        for (size_t kb = 0; kb < blocks; kb += kKcBlocks) {
            const size_t kc = blocks - kb < kKcBlocks ? blocks - kb : kKcBlocks;
            // Tokens in ceil(n / kMaxTileTokens) tiles of near-equal size, so no tile has 1 token.
            const size_t tiles = (n + kMaxTileTokens - 1) / kMaxTileTokens;
            for (size_t t_index = 0, t0 = 0; t_index < tiles; ++t_index) {
                const size_t tokens = (n - t0) / (tiles - t_index);
                kPrepare[tokens](xq + t0 * x_stride + kb * sizeof(BlockQ8A), x_stride, kc, input);
                for (size_t p = pb; p < pe; ++p) {
                    const Panel<D>* panel = panel_row<Panel<D>>(w, blocks / kBlocks<D>, p) + kb / kBlocks<D>;
                    for (size_t q0 = 0; q0 < 4; q0 += kTileGroups) {
                        const size_t first = p * kPanelRows + 4 * q0;
                        if (first >= row_end || first + 4 * kTileGroups <= row_begin) continue;
                        kTiles<D>[tokens](panel, q0, kc, input, y + t0 * ldy, ldy, kb > 0, p, row_begin, row_end);
                    }
                }
                t0 += tokens;
            }
        }
    }
}

}  // namespace neon_panels

}  // namespace
}  // namespace lfmrt::cpu
