// AVX2 kernels for Q4_0, Q8_0, Q4_K and Q6_K weights in 16-row panels (backends/cpu/panels.h) times
// BlockQ8A activations: the GEMV (decode) and the GEMM (batched decode, prefill), both reading the
// panels where they lie (but for the Q6_K GEMM over many tokens, which unpacks each row block's
// levels once into its scratch: Levels32). Compiled with -mavx2 -mfma -mf16c; like avx2_kernels.cpp
// it instantiates no STL and keeps every helper in an anonymous namespace.
//
// A panel block's 16 rows are two ymm halves of 8 rows (lanes), each lane 4 levels of its row
// against the token's 4 activation bytes broadcast. Without VNNI the byte dot is vpmaddubsw
// (u8 x s8 -> pairs summed to s16) then vpmaddwd with ones (-> s32). An int16 lane of the
// vpmaddubsw output gathers the products of one row's bytes 0-1 (even lanes) or 2-3 (odd lanes)
// of each 4-byte word, and wrapping int16 adds are exact as long as the final sum fits, however
// far the partial sums wander: so the offset of unsigned levels is folded into the int16 sums'
// starting value (corrections_of: -offset * the sum of the activations that lane meets, as a
// pair of int16), and one vpmaddwd per scale turns the exact int16 lanes into the int32 dot.
// - Q4_0: levels 0..15 (offset 8); a pair is at most 2 * 15 * 127 = 3810 (no saturation), and an
//   int16 lane ends at the dot of 16 signed levels (level - 8), at most 16 * 8 * 127 = 16256.
// - Q6_K: levels 0..63 (offset 32, one int8 scale per 16 values); a pair is at most 16002, a lane
//   ends at the dot of 8 signed levels, at most 8 * 32 * 127 = 32512.
// - Q4_K: levels 0..15 with no offset (its minima come off in fp32, as in the AVX-512 kernels);
//   the 8 words of a 32-value block add up to at most 8 * 3810 = 30480.
// - Q8_0: the signed level s = (level + 128) ^ 0x80 is taken apart as |s| (unsigned, <= 128) and
//   its sign moved onto the activation (vpsignb, |x| <= 127), as llama.cpp's AVX2 Q8_0 does: a
//   pair is at most 2 * 128 * 127 = 32512, so each vpmaddubsw is exact but cannot be summed in
//   int16: one vpmaddwd per word.
// Then acc += float(dot) * (scale * x.d), one fmadd per 8 rows, scale and token (Q4_K also
// acc -= min * x.dsum, with the AVX-512 kernels' products: it matches them bit for bit). That
// arithmetic is the same for a row whatever the token count, the tile shape, the row range or the
// chunking (partial sums go through y unchanged), so the GEMM equals the GEMV per token bit for
// bit, and row splits change nothing.
#include "backends/cpu/kernels/avx2/panel_kernels.h"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "backends/cpu/kernels/avx2/prefetch.h"
#include "backends/cpu/kernels/kernels.h"
#include "formats/blocks.h"
#include "backends/cpu/panels.h"

namespace lfmrt::cpu::avx2 {
namespace {

using quant::BlockQ8A;
using cpu::kPanelRows;
using quant::kQ32;
using cpu::PanelQ4_0;
using cpu::PanelQ4_K;
using cpu::PanelQ6_K;
using cpu::PanelQ8_0;

// kBlocks: 32-value blocks per panel block; kCorrections: int16-pair corrections per 32-value
// block (0: the type has none), each over 32 / kCorrections values, taking out kOffset (a
// stored level stands for level - kOffset; only types with corrections have one).
// The GEMM's micro-tile is kRowHalves halves of 8 rows x up to kMaxTileTokens tokens: the shape
// that measured fastest (Zen 5 running this file, 4608 x 1024, 16-512 tokens; 2 x 3, 1 x 4, 1 x 6
// and 2 x 2 tried) where int16 sums and fp32 accumulators share the 16 ymm registers.
template <DType D>
struct PanelTraits;
template <>
struct PanelTraits<DType::Q4_0> {
    using Panel = PanelQ4_0;
    static constexpr size_t kBlocks = 1, kCorrections = 1, kRowHalves = 2, kMaxTileTokens = 3;
    static constexpr int16_t kOffset = 8;
};
template <>
struct PanelTraits<DType::Q8_0> {
    using Panel = PanelQ8_0;
    static constexpr size_t kBlocks = 1, kCorrections = 0, kRowHalves = 1, kMaxTileTokens = 6;
};
template <>
struct PanelTraits<DType::Q4_K> {
    using Panel = PanelQ4_K;
    static constexpr size_t kBlocks = 8, kCorrections = 0, kRowHalves = 1, kMaxTileTokens = 6;
};
template <>
struct PanelTraits<DType::Q6_K> {
    using Panel = PanelQ6_K;
    static constexpr size_t kBlocks = 8, kCorrections = 2, kRowHalves = 1, kMaxTileTokens = 6;
    static constexpr int16_t kOffset = 32;
};
template <DType D>
using Panel = typename PanelTraits<D>::Panel;

// A 32-value block of 16 panel rows as unsigned levels: word g of every row as 4 bytes,
// [word][row][byte], as a micro-kernel feeds them to vpmaddubsw. The Q6_K GEMM unpacks a row
// block's column chunk once into its scratch (unpack_q6_k) and every token tile reads the levels
// there, instead of each tile putting them together again from the two bit planes: that is 5 of
// the 17 vector operations a tile spends per level vector.
struct Levels32 {
    uint8_t q[8][kPanelRows][4];
};
template <DType D>
constexpr size_t kBlocks = PanelTraits<D>::kBlocks;
template <DType D>
constexpr size_t kCorrections = PanelTraits<D>::kCorrections;

__m128i load8(const void* p) { return _mm_loadl_epi64(static_cast<const __m128i*>(p)); }
__m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
__m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Activation bytes 4g..4g+3 of a block in every lane.
[[gnu::always_inline]] inline __m256i broadcast_word(const BlockQ8A* x, size_t g) {
    int32_t word;
    __builtin_memcpy(&word, x->qs + 4 * g, sizeof word);
    return _mm256_set1_epi32(word);
}

// Keeps a running sum a chain: without it GCC reassociates the adds of a block into a tree that
// keeps every product live at once, and spills them (measured: 84 -> 131 GMAC/s, Q4_0).
[[gnu::always_inline]] inline void keep_chain(__m256i& v) { asm("" : "+x"(v)); }

// Lanes 4w + 0..1 and 4w + 2..3 of 8 words summed: the int16 pair (even, odd) in every word.
__m128i sum_words_epi16(__m128i v) {
    v = _mm_add_epi16(v, _mm_shuffle_epi32(v, 0x4E));
    return _mm_add_epi16(v, _mm_shuffle_epi32(v, 0xB1));
}

// The starting int16 pair of each corrected sum: -offset * (sum of the activation bytes the even
// and the odd int16 lanes meet), for blocks [0, n_blocks) of x: out[b] per block (Q4_0), or
// out[2b + h] per 16 values (Q6_K).
template <DType D>
void corrections_of(const BlockQ8A* x, size_t n_blocks, int32_t* out) {
    const __m256i pairs_of = _mm256_set1_epi8(1);
    const __m128i minus_offset = _mm_set1_epi16(static_cast<int16_t>(-PanelTraits<D>::kOffset));
    for (size_t b = 0; b < n_blocks; ++b) {
        const __m256i pairs = _mm256_maddubs_epi16(pairs_of, load32(x[b].qs));  // bytes 2i + 2i+1
        const __m128i first = _mm256_castsi256_si128(pairs), second = _mm256_extracti128_si256(pairs, 1);
        if constexpr (kCorrections<D> == 2) {
            out[2 * b] = _mm_cvtsi128_si32(_mm_mullo_epi16(sum_words_epi16(first), minus_offset));
            out[2 * b + 1] = _mm_cvtsi128_si32(_mm_mullo_epi16(sum_words_epi16(second), minus_offset));
        } else {
            out[b] = _mm_cvtsi128_si32(_mm_mullo_epi16(sum_words_epi16(_mm_add_epi16(first, second)), minus_offset));
        }
    }
}

// Lanes of half h (rows 8h..8h+7) of panel-row p that fall in [row_begin, row_end), as a
// maskload / maskstore mask.
__m256i lane_mask(size_t p, size_t h, size_t row_begin, size_t row_end) {
    const __m256i lane = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm256_set1_epi32(static_cast<int32_t>(p * kPanelRows + 8 * h)));
    const __m256i lo = _mm256_set1_epi32(static_cast<int32_t>(row_begin) - 1);
    const __m256i hi = _mm256_set1_epi32(static_cast<int32_t>(row_end));
    return _mm256_and_si256(_mm256_cmpgt_epi32(lane, lo), _mm256_cmpgt_epi32(hi, lane));
}

// The block functions below, GEMV (kR = 2, kT = 1) and GEMM alike: acc[r][t] (+)= rows
// 8(h0 + r)..8(h0 + r) + 7 of a panel block dotted with token t's activation block xb[t].
// Corrected sums start at corrections[t * stride + ...].

// acc[r][t] += float(sum[r][t] as int16 pairs) * (scale[r] * xb[t]->d).
template <size_t kR, size_t kT>
[[gnu::always_inline]] inline void scale_pairs(const __m256i (&sum)[kR][kT], const __m256 (&scale)[kR],
                                               const BlockQ8A* const* xb, __m256 (&acc)[kR][kT]) {
    const __m256i ones16 = _mm256_set1_epi16(1);
#pragma GCC unroll 2
    for (size_t r = 0; r < kR; ++r) {
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) {
            acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(sum[r][t], ones16)),
                                        _mm256_mul_ps(scale[r], _mm256_set1_ps(xb[t]->d)), acc[r][t]);
        }
    }
}

// sum[r][t] += the level vectors levels[r] against activation word g of every token.
template <size_t kR, size_t kT>
[[gnu::always_inline]] inline void add_word(const __m256i (&levels)[kR], const BlockQ8A* const* xb, size_t g,
                                            __m256i (&sum)[kR][kT]) {
#pragma GCC unroll 8
    for (size_t t = 0; t < kT; ++t) {
        const __m256i x = broadcast_word(xb[t], g);
#pragma GCC unroll 2
        for (size_t r = 0; r < kR; ++r) {
            sum[r][t] = _mm256_add_epi16(sum[r][t], _mm256_maddubs_epi16(levels[r], x));
            keep_chain(sum[r][t]);
        }
    }
}

template <size_t kR, size_t kT>
[[gnu::always_inline]] inline void start_sums(const int32_t* corrections, size_t stride, __m256i (&sum)[kR][kT]) {
#pragma GCC unroll 8
    for (size_t t = 0; t < kT; ++t) {
        const __m256i start = corrections ? _mm256_set1_epi32(corrections[t * stride]) : _mm256_setzero_si256();
#pragma GCC unroll 2
        for (size_t r = 0; r < kR; ++r) sum[r][t] = start;
    }
}

template <size_t kR>
[[gnu::always_inline]] inline void half_scales(const uint16_t* d, size_t h0, __m256 (&scale)[kR]) {
#pragma GCC unroll 2
    for (size_t r = 0; r < kR; ++r) scale[r] = _mm256_cvtph_ps(load16(d + 8 * (h0 + r)));
}

template <size_t kR, size_t kT>
[[gnu::always_inline]] inline void q4_0_block(const PanelQ4_0& p, size_t h0, const BlockQ8A* const* xb,
                                              const int32_t* corrections, size_t stride, __m256 (&acc)[kR][kT]) {
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    __m256i sum[kR][kT];
    start_sums<kR, kT>(corrections, stride, sum);
#pragma GCC unroll 4
    for (size_t g = 0; g < 4; ++g) {
        __m256i levels[kR];
#pragma GCC unroll 2
        for (size_t r = 0; r < kR; ++r) levels[r] = _mm256_and_si256(load32(p.qs[g][8 * (h0 + r)]), nibble);
        add_word<kR, kT>(levels, xb, g, sum);
#pragma GCC unroll 2
        for (size_t r = 0; r < kR; ++r) {
            levels[r] = _mm256_and_si256(_mm256_srli_epi16(load32(p.qs[g][8 * (h0 + r)]), 4), nibble);
        }
        add_word<kR, kT>(levels, xb, g + 4, sum);
    }
    __m256 scale[kR];
    half_scales<kR>(p.d, h0, scale);
    scale_pairs<kR, kT>(sum, scale, xb, acc);
}

template <size_t kR, size_t kT>
[[gnu::always_inline]] inline void q8_0_block(const PanelQ8_0& p, size_t h0, const BlockQ8A* const* xb,
                                              __m256 (&acc)[kR][kT]) {
    const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80)), ones16 = _mm256_set1_epi16(1);
    __m256i sum[kR][kT];
#pragma GCC unroll 8
    for (size_t g = 0; g < 8; ++g) {
        __m256i level[kR], magnitude[kR];
#pragma GCC unroll 2
        for (size_t r = 0; r < kR; ++r) {
            level[r] = _mm256_xor_si256(load32(p.qs[g][8 * (h0 + r)]), bias);
            magnitude[r] = _mm256_abs_epi8(level[r]);
        }
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) {
            const __m256i x = broadcast_word(xb[t], g);
#pragma GCC unroll 2
            for (size_t r = 0; r < kR; ++r) {
                const __m256i dot = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(magnitude[r], _mm256_sign_epi8(x, level[r])), ones16);
                sum[r][t] = g == 0 ? dot : _mm256_add_epi32(sum[r][t], dot);
                keep_chain(sum[r][t]);
            }
        }
    }
    __m256 scale[kR];
    half_scales<kR>(p.d, h0, scale);
#pragma GCC unroll 2
    for (size_t r = 0; r < kR; ++r) {
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) {
            acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r][t]), _mm256_mul_ps(scale[r], _mm256_set1_ps(xb[t]->d)),
                                        acc[r][t]);
        }
    }
}

// Q6_K levels 16h+4g..16h+4g+3 of block j, rows 8 half..8 half+7 of panel `p`: nibble h of the
// 4-bit plane's word g, or-ed with bits 2g..2g+1 of the 2-bit plane's word h moved to bits 4-5 (the
// 16-bit shifts carry bits across bytes only into bits the 0x30 mask drops).
[[gnu::always_inline]] inline __m256i q6_k_levels(const PanelQ6_K& p, size_t j, size_t h, size_t g, size_t half) {
    const __m256i low_bits = _mm256_set1_epi8(0x0F), high_bits = _mm256_set1_epi8(0x30);
    const __m256i ql = load32(p.blocks[j].ql[g][8 * half]);
    const __m256i qh = load32(p.blocks[j].qh[h][8 * half]);
    const __m256i low = _mm256_and_si256(h == 0 ? ql : _mm256_srli_epi16(ql, 4), low_bits);
    const __m256i high = g == 0   ? _mm256_slli_epi16(qh, 4)
                         : g == 1 ? _mm256_slli_epi16(qh, 2)
                         : g == 2 ? qh
                                  : _mm256_srli_epi16(qh, 2);
    return _mm256_or_si256(low, _mm256_and_si256(high, high_bits));
}

// Q6_K: 32-value block j of super-block panel `p` (d: the halves' fp16 scales, converted). With
// kUnpacked, the levels are read from `unpacked` (the block's Levels32).
template <size_t kR, size_t kT, bool kUnpacked>
[[gnu::always_inline]] inline void q6_k_block(const PanelQ6_K& p, const Levels32* unpacked, const __m256 (&d)[kR],
                                              size_t h0, size_t j, const BlockQ8A* const* xb,
                                              const int32_t* corrections, size_t stride, __m256 (&acc)[kR][kT]) {
#pragma GCC unroll 2
    for (size_t h = 0; h < 2; ++h) {
        __m256i sum[kR][kT];
        start_sums<kR, kT>(corrections + h, stride, sum);
#pragma GCC unroll 4
        for (size_t g = 0; g < 4; ++g) {
            __m256i levels[kR];
#pragma GCC unroll 2
            for (size_t r = 0; r < kR; ++r) {
                levels[r] = kUnpacked ? load32(unpacked->q[4 * h + g][8 * (h0 + r)]) : q6_k_levels(p, j, h, g, h0 + r);
            }
            add_word<kR, kT>(levels, xb, 4 * h + g, sum);
        }
        __m256 scale[kR];
#pragma GCC unroll 2
        for (size_t r = 0; r < kR; ++r) {
            scale[r] = _mm256_mul_ps(
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(load8(p.scales[2 * j + h] + 8 * (h0 + r)))), d[r]);
        }
        scale_pairs<kR, kT>(sum, scale, xb, acc);
    }
}

// Q4_K's 6-bit scales and minima of 32-value block j (0..7) as bytes, the unpacking of
// quant::scale_min_k4 for the rows whose bytes load(k) gives of each scale byte k (load8 at 8h:
// rows 8h..8h+7; load16: all 16).
template <typename Load>
[[gnu::always_inline]] inline void q4_k_scale_min_bytes(size_t j, Load load, __m128i* sc, __m128i* m) {
    const __m128i low6 = _mm_set1_epi8(63), low4 = _mm_set1_epi8(0x0F), bits45 = _mm_set1_epi8(0x30);
    if (j < 4) {
        *sc = _mm_and_si128(load(j), low6);
        *m = _mm_and_si128(load(j + 4), low6);
    } else {
        // Low 4 bits from byte j + 4, the top 2 from bits 6-7 of bytes j - 4 (scale) and j
        // (minimum): a 16-bit shift by 2 moves them to bits 4-5, where nothing of the
        // neighbouring byte lands.
        const __m128i packed = load(j + 4);
        *sc = _mm_or_si128(_mm_and_si128(packed, low4), _mm_and_si128(_mm_srli_epi16(load(j - 4), 2), bits45));
        *m = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(packed, 4), low4),
                          _mm_and_si128(_mm_srli_epi16(load(j), 2), bits45));
    }
}

// The low 8 bytes of scale and minimum bytes as fp32 times d and dmin (the AVX-512 kernels' products).
[[gnu::always_inline]] inline void q4_k_scale_min_fp32(__m128i sc, __m128i m, __m256 d, __m256 dmin, __m256* scale,
                                                       __m256* min) {
    *scale = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sc)), d);
    *min = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(m)), dmin);
}

// Q4_K's scale and minimum of 32-value block j of rows 8h..8h+7, as fp32 times d and dmin.
[[gnu::always_inline]] inline void q4_k_scale_min(const PanelQ4_K& p, size_t h, size_t j, __m256 d, __m256 dmin,
                                                  __m256* scale, __m256* min) {
    __m128i sc, m;
    q4_k_scale_min_bytes(j, [&](size_t k) { return load8(p.scales[k] + 8 * h); }, &sc, &m);
    q4_k_scale_min_fp32(sc, m, d, dmin, scale, min);
}

// The same for both halves at once: each scale byte is loaded for all 16 rows together.
[[gnu::always_inline]] inline void q4_k_scales_mins(const PanelQ4_K& p, size_t j, const __m256 (&d)[2],
                                                    const __m256 (&dmin)[2], __m256 (&scale)[2], __m256 (&min)[2]) {
    __m128i sc, m;
    q4_k_scale_min_bytes(j, [&](size_t k) { return load16(p.scales[k]); }, &sc, &m);
    q4_k_scale_min_fp32(sc, m, d[0], dmin[0], &scale[0], &min[0]);
    q4_k_scale_min_fp32(_mm_unpackhi_epi64(sc, sc), _mm_unpackhi_epi64(m, m), d[1], dmin[1], &scale[1], &min[1]);
}

// Q4_K: 32-value block j of super-block panel `p` (d, dmin: the halves' fp16 scales, converted):
// the low nibbles of block pair j / 2's words for even j, the high ones for odd j (kOdd, fixed at
// compile time so that no word's unpacking tests it).
template <size_t kR, size_t kT, bool kOdd>
[[gnu::always_inline]] inline void q4_k_block(const PanelQ4_K& p, const __m256 (&d)[kR], const __m256 (&dmin)[kR],
                                              size_t h0, size_t j, const BlockQ8A* const* xb, __m256 (&acc)[kR][kT]) {
    const __m256i nibble = _mm256_set1_epi8(0x0F), ones16 = _mm256_set1_epi16(1);
    __m256i sum[kR][kT];
    start_sums<kR, kT>(nullptr, 0, sum);
#pragma GCC unroll 8
    for (size_t g = 0; g < 8; ++g) {
        __m256i levels[kR];
#pragma GCC unroll 2
        for (size_t r = 0; r < kR; ++r) {
            const __m256i v = load32(p.qs[j / 2][g][8 * (h0 + r)]);
            levels[r] = _mm256_and_si256(kOdd ? _mm256_srli_epi16(v, 4) : v, nibble);
        }
        add_word<kR, kT>(levels, xb, g, sum);
    }
#pragma GCC unroll 2
    for (size_t r = 0; r < kR; ++r) {
        __m256 scale, min;
        q4_k_scale_min(p, h0 + r, j, d[r], dmin[r], &scale, &min);
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) {
            acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(sum[r][t], ones16)),
                                        _mm256_mul_ps(scale, _mm256_set1_ps(xb[t]->d)), acc[r][t]);
            acc[r][t] = _mm256_fnmadd_ps(min, _mm256_set1_ps(xb[t]->dsum), acc[r][t]);
        }
    }
}

// Q4_K in the GEMV (both halves, one token): 32-value blocks 2 kPair and 2 kPair + 1 of
// super-block panel `p` together, so that each word's load serves both (its low nibbles are the
// first block's, its high ones the second's) and each block's nibble and scale layout are fixed at
// compile time. The fp32 steps are q4_k_block's, in its order, so the GEMV still equals the GEMM
// (and the AVX-512 kernels) bit for bit.
template <size_t kPair>
[[gnu::always_inline]] inline void q4_k_gemv_pair(const PanelQ4_K& p, const __m256 (&d)[2], const __m256 (&dmin)[2],
                                                  const BlockQ8A* const (&xb)[2], __m256 (&acc)[2][1]) {
    const __m256i nibble = _mm256_set1_epi8(0x0F), ones16 = _mm256_set1_epi16(1);
    __m256i sum[2][2] = {};  // [block of the pair][half]
#pragma GCC unroll 8
    for (size_t g = 0; g < 8; ++g) {
        const __m256i x[2] = {broadcast_word(xb[0], g), broadcast_word(xb[1], g)};
#pragma GCC unroll 2
        for (size_t r = 0; r < 2; ++r) {
            const __m256i v = load32(p.qs[kPair][g][8 * r]);
            sum[0][r] = _mm256_add_epi16(sum[0][r], _mm256_maddubs_epi16(_mm256_and_si256(v, nibble), x[0]));
            keep_chain(sum[0][r]);
            sum[1][r] = _mm256_add_epi16(sum[1][r],
                                         _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), nibble), x[1]));
            keep_chain(sum[1][r]);
        }
    }
#pragma GCC unroll 2
    for (size_t b = 0; b < 2; ++b) {
        __m256 scale[2], min[2];
        q4_k_scales_mins(p, 2 * kPair + b, d, dmin, scale, min);
#pragma GCC unroll 2
        for (size_t r = 0; r < 2; ++r) {
            acc[r][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(sum[b][r], ones16)),
                                        _mm256_mul_ps(scale[r], _mm256_set1_ps(xb[b]->d)), acc[r][0]);
            acc[r][0] = _mm256_fnmadd_ps(min[r], _mm256_set1_ps(xb[b]->dsum), acc[r][0]);
        }
    }
}

// How far ahead of the panel block in use the GEMM asks for weights: into L2, about 8 KiB ahead, so
// that the reads of the first tile over a row block overlap its arithmetic instead of stalling it
// (see avx512/panel_kernels.cpp). Only the first tile over a row block asks: the others find the
// weights in L2. The GEMV asks for K-quants only, whose unpacking is heavy enough per byte that the
// hardware prefetcher alone falls behind (one thread from DRAM, 4608 x 1024: Q4_K 13-20 -> 20-28
// GB/s, Q6_K 18-21 -> 21-24); Q4_0 and Q8_0 keep up without it.
constexpr size_t kPrefetchBytes = 8192;

// acc[r][t] (+)= panel blocks [0, n_blocks / kBlocks) (32-value blocks [0, n_blocks) of the rows)
// dotted with token t's activation blocks, which block_of(b, xb) gives; corrections of block b at
// corrections + b * kCorrections (token stride `stride`). With `prefetch`, each panel block asks
// for the one kPrefetchBytes further on. With kUnpacked (Q6_K), 32-value block b's levels are
// unpacked[b].
template <DType D, size_t kR, size_t kT, bool kPrefetch, bool kUnpacked = false, typename BlockOf>
[[gnu::always_inline]] inline void dot_panels(const Panel<D>* panel, size_t h0, size_t n_blocks, BlockOf block_of,
                                              const int32_t* corrections, size_t stride, __m256 (&acc)[kR][kT],
                                              const Levels32* unpacked = nullptr) {
    static_assert(!kUnpacked || D == DType::Q6_K);
    for (size_t s = 0; s < n_blocks / kBlocks<D>; ++s) {
        const Panel<D>& p = panel[s];
        if constexpr (kPrefetch) {
            x86_prefetch::prefetch_stream_to_l2(reinterpret_cast<const char*>(&p) + kPrefetchBytes, sizeof p);
        }
        if constexpr (D == DType::Q4_0 || D == DType::Q8_0) {
            const BlockQ8A* xb[kT];
            block_of(s, xb);
            if constexpr (D == DType::Q4_0) {
                q4_0_block<kR, kT>(p, h0, xb, corrections + s, stride, acc);
            } else {
                q8_0_block<kR, kT>(p, h0, xb, acc);
            }
        } else if constexpr (D == DType::Q4_K && kT == 1 && kR == 2) {
            __m256 d[2], dmin[2];
            half_scales<2>(p.d, 0, d);
            half_scales<2>(p.dmin, 0, dmin);
            const auto pair = [&](auto index) {
                constexpr size_t kPair = decltype(index)::value;
                const BlockQ8A* xb[2];
                block_of(s * kBlocks<D> + 2 * kPair, xb);
                block_of(s * kBlocks<D> + 2 * kPair + 1, xb + 1);
                q4_k_gemv_pair<kPair>(p, d, dmin, xb, acc);
            };
            pair(std::integral_constant<size_t, 0>{});
            pair(std::integral_constant<size_t, 1>{});
            pair(std::integral_constant<size_t, 2>{});
            pair(std::integral_constant<size_t, 3>{});
        } else {
            __m256 d[kR], dmin[kR];
            half_scales<kR>(p.d, h0, d);
            if constexpr (D == DType::Q4_K) half_scales<kR>(p.dmin, h0, dmin);
            if constexpr (D == DType::Q4_K) {
                // Blocks in pairs, the pair's words unpacked low then high.
#pragma GCC unroll 1
                for (size_t j = 0; j < kBlocks<D>; j += 2) {
                    const BlockQ8A* xb[kT];
                    block_of(s * kBlocks<D> + j, xb);
                    q4_k_block<kR, kT, false>(p, d, dmin, h0, j, xb, acc);
                    block_of(s * kBlocks<D> + j + 1, xb);
                    q4_k_block<kR, kT, true>(p, d, dmin, h0, j + 1, xb, acc);
                }
            } else {
#pragma GCC unroll 1
                for (size_t j = 0; j < kBlocks<D>; ++j) {
                    const size_t b = s * kBlocks<D> + j;
                    const BlockQ8A* xb[kT];
                    block_of(b, xb);
                    q6_k_block<kR, kT, kUnpacked>(p, kUnpacked ? unpacked + b : nullptr, d, h0, j, xb,
                                                  corrections + 2 * b, stride, acc);
                }
            }
        }
    }
}

// Activation blocks per chunk of the GEMV's corrections (8192 values: every LFM2 row in one).
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
    int32_t corrections[kGemvChunkBlocks * (kCorrections<D> ? kCorrections<D> : 1)];
    for (size_t kb = 0; kb < blocks; kb += kGemvChunkBlocks) {
        const size_t kc = blocks - kb < kGemvChunkBlocks ? blocks - kb : kGemvChunkBlocks;
        if constexpr (kCorrections<D> != 0) corrections_of<D>(xq + kb, kc, corrections);
        const auto block_of = [&](size_t b, const BlockQ8A** xb) { xb[0] = xq + kb + b; };
        for (size_t p = row_begin / kPanelRows; p * kPanelRows < row_end; ++p) {
            const Panel<D>* panel = cpu::panel_row<Panel<D>>(w, blocks / kBlocks<D>, p) + kb / kBlocks<D>;
            const __m256i mask[2] = {lane_mask(p, 0, row_begin, row_end), lane_mask(p, 1, row_begin, row_end)};
            float* out = y + p * kPanelRows;
            __m256 acc[2][1];
            for (size_t h = 0; h < 2; ++h) {
                acc[h][0] = kb > 0 ? _mm256_maskload_ps(out + 8 * h, mask[h]) : _mm256_setzero_ps();
            }
            dot_panels<D, 2, 1, kBlocks<D> == 8>(panel, 0, kc, block_of, corrections, 0, acc);
            for (size_t h = 0; h < 2; ++h) _mm256_maskstore_ps(out + 8 * h, mask[h], acc[h][0]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GEMM: micro-tiles of kRowHalves x 8 rows x up to kMaxTileTokens tokens, each level vector
// (unpacked once) serving every token of the tile and each broadcast activation word every half.

constexpr size_t kMcPanels = 8;   // panel-rows per row block: their column chunk stays in L2
constexpr size_t kKcBlocks = 32;  // blocks per column chunk: a tile's activations stay in L1
constexpr size_t kMaxTokens = 6;  // the largest kMaxTileTokens
static_assert(kKcBlocks % PanelTraits<DType::Q6_K>::kBlocks == 0 && kGemvChunkBlocks % kKcBlocks == 0);
// A row block's column chunk of unpacked levels: 128 KiB, beside the chunk's panels in L2.
static_assert(kMcPanels * kKcBlocks * sizeof(Levels32) <= kGemmScratchBytes);
// The fewest token tiles that pay for unpacking (Q6_K, 4608 x 1024, one core, the two versions
// interleaved in one process): tiles read unpacked levels up to 1.2x faster (n = 512), but the
// unpacking costs about a tile's work, so at 3 tiles (n = 16) the GEMM ran 0.90x, at 8 (n = 48)
// 1.03x, at 11 (n = 64) 1.09x, at 22 (n = 128) 1.13x.
constexpr size_t kMinTilesToUnpack = 8;

// Panel-rows [p0, p1) x 32-value blocks [kb, kb + kc) of a Q6_K matrix (`blocks` per row) unpacked
// to out[(p - p0) * kc + (b - kb)], each panel read once and asked for kPrefetchBytes ahead.
void unpack_q6_k(const void* w, size_t blocks, size_t p0, size_t p1, size_t kb, size_t kc, Levels32* out) {
    constexpr size_t kB = PanelTraits<DType::Q6_K>::kBlocks;
    for (size_t p = p0; p < p1; ++p) {
        const PanelQ6_K* panel = cpu::panel_row<PanelQ6_K>(w, blocks / kB, p) + kb / kB;
        for (size_t s = 0; s < kc / kB; ++s) {
            x86_prefetch::prefetch_stream_to_l2(reinterpret_cast<const char*>(panel + s) + kPrefetchBytes,
                                                sizeof(PanelQ6_K));
            for (size_t j = 0; j < kB; ++j, ++out) {
                for (size_t h = 0; h < 2; ++h) {
                    for (size_t g = 0; g < 4; ++g) {
                        for (size_t half = 0; half < 2; ++half) {
                            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out->q[4 * h + g][8 * half]),
                                                q6_k_levels(panel[s], j, h, g, half));
                        }
                    }
                }
            }
        }
    }
}

// corrections[t][b * kCorrections + h] for the tile's tokens and the chunk's blocks.
using TileCorrections = int32_t[kMaxTokens][kKcBlocks * 2];

// Y[t][rows 8(h0 + r).. of the panel-row] (+)= panel . X[t] for kT tokens over n_blocks blocks; `x`
// points at the first token's first block of the chunk, `y` at the panel-row's row 0 of token 0.
// With kUnpacked, `unpacked` holds the chunk's levels (Q6_K).
template <DType D, size_t kT, bool kPrefetch, bool kUnpacked>
void micro_kernel(const Panel<D>* panel, const Levels32* unpacked, size_t h0, size_t n_blocks, const uint8_t* x,
                  size_t x_stride, const TileCorrections& corrections, float* y, size_t ldy, bool accumulate,
                  const __m256i* mask) {
    constexpr size_t kR = PanelTraits<D>::kRowHalves;
    __m256 acc[kR][kT];
#pragma GCC unroll 2
    for (size_t r = 0; r < kR; ++r) {
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) {
            acc[r][t] = accumulate ? _mm256_maskload_ps(y + t * ldy + 8 * (h0 + r), mask[h0 + r]) : _mm256_setzero_ps();
        }
    }
    const auto block_of = [&](size_t b, const BlockQ8A** xb) {
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) xb[t] = reinterpret_cast<const BlockQ8A*>(x + t * x_stride) + b;
    };
    dot_panels<D, kR, kT, kPrefetch, kUnpacked>(panel, h0, n_blocks, block_of, corrections[0], kKcBlocks * 2, acc,
                                                 unpacked);
#pragma GCC unroll 2
    for (size_t r = 0; r < kR; ++r) {
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) _mm256_maskstore_ps(y + t * ldy + 8 * (h0 + r), mask[h0 + r], acc[r][t]);
    }
}

template <DType D>
using MicroKernelFn = void (*)(const Panel<D>*, const Levels32*, size_t, size_t, const uint8_t*, size_t,
                               const TileCorrections&, float*, size_t, bool, const __m256i*);

// The micro-kernel for tiles of kT tokens: 2 to kMaxTileTokens (one token goes to the GEMV).
template <DType D, bool kPrefetch, bool kUnpacked, size_t kT>
constexpr MicroKernelFn<D> micro_kernel_for() {
    if constexpr (kT >= 2 && kT <= PanelTraits<D>::kMaxTileTokens && (!kUnpacked || D == DType::Q6_K)) {
        return micro_kernel<D, kT, kPrefetch, kUnpacked>;
    } else {
        return nullptr;
    }
}

// Indexed by the tile's token count.
template <DType D, bool kPrefetch, bool kUnpacked = false>
constexpr MicroKernelFn<D> kMicroKernels[kMaxTokens + 1] = {
    micro_kernel_for<D, kPrefetch, kUnpacked, 0>(), micro_kernel_for<D, kPrefetch, kUnpacked, 1>(),
    micro_kernel_for<D, kPrefetch, kUnpacked, 2>(), micro_kernel_for<D, kPrefetch, kUnpacked, 3>(),
    micro_kernel_for<D, kPrefetch, kUnpacked, 4>(), micro_kernel_for<D, kPrefetch, kUnpacked, 5>(),
    micro_kernel_for<D, kPrefetch, kUnpacked, 6>(),
};

// Q6_K with kMinTilesToUnpack token tiles or more unpacks each row block's column chunk into
// `scratch` first.
template <DType D>
void gemm(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
          size_t row_begin, size_t row_end, void* scratch) {
    constexpr size_t kMaxTileTokens = PanelTraits<D>::kMaxTileTokens, kR = PanelTraits<D>::kRowHalves;
    static_assert(kMaxTileTokens <= kMaxTokens);
    const auto* xq = static_cast<const uint8_t*>(x);
    const size_t blocks = cols / kQ32;
    if (n == 1 || blocks == 0 || row_begin >= row_end) {
        for (size_t t = 0; t < n; ++t) gemv<D>(w, cols, xq + t * x_stride, y + t * ldy, row_begin, row_end);
        return;
    }
    TileCorrections corrections = {};
    // Tokens in ceil(n / kMaxTileTokens) tiles of near-equal size, so no tile is left with 1 token.
    const size_t tiles = (n + kMaxTileTokens - 1) / kMaxTileTokens;
    const bool unpack = D == DType::Q6_K && tiles >= kMinTilesToUnpack;
    auto* unpacked = static_cast<Levels32*>(scratch);
    const size_t p_end = (row_end + kPanelRows - 1) / kPanelRows;
    for (size_t pb = row_begin / kPanelRows; pb < p_end; pb += kMcPanels) {
        const size_t pe = p_end - pb < kMcPanels ? p_end : pb + kMcPanels;
        for (size_t kb = 0; kb < blocks; kb += kKcBlocks) {
            const size_t kc = blocks - kb < kKcBlocks ? blocks - kb : kKcBlocks;
            if (unpack) unpack_q6_k(w, blocks, pb, pe, kb, kc, unpacked);
            for (size_t tile = 0, t0 = 0; tile < tiles; ++tile) {
                const size_t tokens = (n - t0) / (tiles - tile);
                const uint8_t* x_chunk = xq + t0 * x_stride + kb * sizeof(BlockQ8A);
                if constexpr (kCorrections<D> != 0) {
                    for (size_t t = 0; t < tokens; ++t) {
                        corrections_of<D>(reinterpret_cast<const BlockQ8A*>(x_chunk + t * x_stride), kc,
                                          corrections[t]);
                    }
                }
                const MicroKernelFn<D> kernel = unpack      ? kMicroKernels<D, false, true>[tokens]
                                                : tile == 0 ? kMicroKernels<D, true>[tokens]
                                                            : kMicroKernels<D, false>[tokens];
                for (size_t p = pb; p < pe; ++p) {
                    const Panel<D>* panel = cpu::panel_row<Panel<D>>(w, blocks / kBlocks<D>, p) + kb / kBlocks<D>;
                    const __m256i mask[2] = {lane_mask(p, 0, row_begin, row_end), lane_mask(p, 1, row_begin, row_end)};
                    for (size_t h0 = 0; h0 < 2; h0 += kR) {
                        // A half outside the row range (a range starting or ending mid-panel).
                        if (kR == 1 &&
                            (p * kPanelRows + 8 * h0 >= row_end || p * kPanelRows + 8 * h0 + 8 <= row_begin)) {
                            continue;
                        }
                        kernel(panel, unpack ? unpacked + (p - pb) * kc : nullptr, h0, kc, x_chunk, x_stride,
                               corrections, y + t0 * ldy + p * kPanelRows, ldy, kb > 0, mask);
                    }
                }
                t0 += tokens;
            }
        }
    }
}

}  // namespace

void gemv_panels_q4_0(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv<DType::Q4_0>(w, cols, x, y, row_begin, row_end);
}
void gemv_panels_q8_0(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv<DType::Q8_0>(w, cols, x, y, row_begin, row_end);
}
void gemv_panels_q4_k(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv<DType::Q4_K>(w, cols, x, y, row_begin, row_end);
}
void gemv_panels_q6_k(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv<DType::Q6_K>(w, cols, x, y, row_begin, row_end);
}
void gemm_panels_q4_0(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
                      size_t row_begin, size_t row_end, void* scratch) {
    gemm<DType::Q4_0>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}
void gemm_panels_q8_0(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
                      size_t row_begin, size_t row_end, void* scratch) {
    gemm<DType::Q8_0>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}
void gemm_panels_q4_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
                      size_t row_begin, size_t row_end, void* scratch) {
    gemm<DType::Q4_K>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}
void gemm_panels_q6_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
                      size_t row_begin, size_t row_end, void* scratch) {
    gemm<DType::Q6_K>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}

}  // namespace lfmrt::cpu::avx2
