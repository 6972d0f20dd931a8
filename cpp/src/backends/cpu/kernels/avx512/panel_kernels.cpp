// AVX-512 VNNI kernels for Q4_0, Q8_0, Q4_K and Q6_K weights in 16-row panels (backends/cpu/panels.h)
// times BlockQ8A activations: the GEMV (decode) and the GEMM (batched decode, prefill), both
// reading the panels where they lie, with no packing per call. Compiled with the AVX-512 flags;
// like quant_kernels.cpp it instantiates no STL and keeps every helper in an anonymous namespace.
//
// Per 16 rows x 32 values the scales convert in one go and every 64-byte level vector feeds one
// vpdpbusd per token, the token's 4 activation bytes broadcast to the 16 rows (the lanes). Levels
// are unsigned (Q4_0 0..15 with offset 8, Q8_0 0..255 with offset 128, Q6_K 0..63 with offset
// 32); the int32 sum of each scale's values starts at -offset * (sum of their activations),
// computed once per call, so it ends at the exact dot of the signed levels. Then one fmadd per
// scale and token: acc += float(dot) * (scale * x.d). Q4_K's levels (0..15) need no offset; its
// minima come off as in the row kernels, one fnmadd per 32 values and token: acc -= min * x.dsum.
// That arithmetic is the same for a row whatever the token count, the row range, the lane or the
// chunking (partial sums go through y unchanged), so the GEMM equals the GEMV per token bit for
// bit, and row splits change nothing.
#include "backends/cpu/kernels/avx512/panel_kernels.h"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "backends/cpu/kernels/avx2/prefetch.h"
#include "backends/cpu/kernels/kernels.h"
#include "formats/blocks.h"
#include "backends/cpu/panels.h"

namespace lfmrt::cpu::avx512 {
namespace {

using quant::BlockQ8A;
using cpu::kPanelRows;
using quant::kQ32;
using cpu::PanelQ4_0;
using cpu::PanelQ4_K;
using cpu::PanelQ6_K;
using cpu::PanelQ8_0;

// kBlocks: 32-value blocks per panel block; kHalves: scales per 32-value block of a row.
template <DType D>
struct PanelTraits;
template <>
struct PanelTraits<DType::Q4_0> {
    using Panel = PanelQ4_0;
    static constexpr int32_t kOffset = 8;
    static constexpr size_t kBlocks = 1, kHalves = 1;
};
template <>
struct PanelTraits<DType::Q8_0> {
    using Panel = PanelQ8_0;
    static constexpr int32_t kOffset = 128;
    static constexpr size_t kBlocks = 1, kHalves = 1;
};
template <>
struct PanelTraits<DType::Q4_K> {
    using Panel = PanelQ4_K;
    static constexpr int32_t kOffset = 0;
    static constexpr size_t kBlocks = 8, kHalves = 1;
};
template <>
struct PanelTraits<DType::Q6_K> {
    using Panel = PanelQ6_K;
    static constexpr int32_t kOffset = 32;
    static constexpr size_t kBlocks = 8, kHalves = 2;
};
template <DType D>
using Panel = typename PanelTraits<D>::Panel;
template <DType D>
constexpr size_t kHalves = PanelTraits<D>::kHalves;

__m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
__m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
__m512i load64(const void* p) { return _mm512_loadu_si512(p); }

// Activation bytes 4g..4g+3 of a block in every lane.
__m512i broadcast_word(const BlockQ8A* x, size_t g) {
    int32_t word;
    __builtin_memcpy(&word, x->qs + 4 * g, sizeof word);
    return _mm512_set1_epi32(word);
}

int32_t hsum4(__m128i v) {
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4E));
    return _mm_cvtsi128_si32(_mm_add_epi32(v, _mm_shuffle_epi32(v, 0xB1)));
}

// -offset * (sum of the activation bytes under each scale) for blocks [0, n_blocks): out[b] per
// block, or out[2b + h] per half h of the block where a block has two scales.
template <DType D>
void corrections_of(const BlockQ8A* x, size_t n_blocks, int32_t* out) {
    for (size_t b = 0; b < n_blocks; ++b) {
        const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), load32(x[b].qs));
        const __m128i first = _mm256_castsi256_si128(sums), second = _mm256_extracti128_si256(sums, 1);
        if constexpr (kHalves<D> == 2) {
            out[2 * b] = -PanelTraits<D>::kOffset * hsum4(first);
            out[2 * b + 1] = -PanelTraits<D>::kOffset * hsum4(second);
        } else {
            out[b] = -PanelTraits<D>::kOffset * hsum4(_mm_add_epi32(first, second));
        }
    }
}

// Lanes of panel-row p that fall in [row_begin, row_end).
__mmask16 lane_mask(size_t p, size_t row_begin, size_t row_end) {
    const size_t first = p * kPanelRows;
    const size_t lo = row_begin > first ? row_begin - first : 0;
    const size_t hi = row_end - first < kPanelRows ? row_end - first : kPanelRows;
    return static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));
}

// Q6_K levels 16h+4g..16h+4g+3 of the 16 rows: nibble h of the 4-bit plane's word g, or-ed with
// bits 2g..2g+1 of the 2-bit plane's word h moved to bits 4-5 (the 16-bit shifts carry bits
// across bytes only into bits the 0x30 mask drops).
[[gnu::always_inline]] inline __m512i q6_k_levels(__m512i ql_word, __m512i qh_word, size_t g, size_t h) {
    const __m512i low = h == 0 ? ql_word : _mm512_srli_epi16(ql_word, 4);
    const __m512i high = g == 0   ? _mm512_slli_epi16(qh_word, 4)
                         : g == 1 ? _mm512_slli_epi16(qh_word, 2)
                         : g == 2 ? qh_word
                                  : _mm512_srli_epi16(qh_word, 2);
    // (low & 0x0F) | (high & 0x30)
    return _mm512_ternarylogic_epi32(low, _mm512_and_si512(high, _mm512_set1_epi8(0x30)), _mm512_set1_epi8(0x0F),
                                     0xEC);
}

// ---------------------------------------------------------------------------------------------
// GEMV: Q4_0 and Q8_0 one panel block (32 values) at a time, with two independent vpdpbusd
// chains so one token keeps the integer units busy. For Q4_0 the second chain takes the high
// nibbles in place (v & 0xF0 is 16 times the level), which saves a shift per vector; its sum is
// exactly divisible by 16.
template <DType D>
[[gnu::always_inline]] inline __m512 gemv_block(const Panel<D>& p, const BlockQ8A* x, int32_t correction,
                                                __m512 acc) {
    __m512i sum_a = _mm512_set1_epi32(correction);
    __m512i sum_b = _mm512_setzero_si512();
    if constexpr (D == DType::Q4_0) {
#pragma GCC unroll 4
        for (size_t g = 0; g < 4; ++g) {
            const __m512i v = load64(p.qs[g]);
            sum_a = _mm512_dpbusd_epi32(sum_a, _mm512_and_si512(v, _mm512_set1_epi8(0x0F)), broadcast_word(x, g));
            sum_b = _mm512_dpbusd_epi32(sum_b, _mm512_and_si512(v, _mm512_set1_epi8(static_cast<char>(0xF0))),
                                        broadcast_word(x, g + 4));
        }
        sum_b = _mm512_srai_epi32(sum_b, 4);
    } else {
#pragma GCC unroll 4
        for (size_t g = 0; g < 8; g += 2) {
            sum_a = _mm512_dpbusd_epi32(sum_a, load64(p.qs[g]), broadcast_word(x, g));
            sum_b = _mm512_dpbusd_epi32(sum_b, load64(p.qs[g + 1]), broadcast_word(x, g + 1));
        }
    }
    const __m512 scale = _mm512_mul_ps(_mm512_cvtph_ps(load32(p.d)), _mm512_set1_ps(x->d));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(sum_a, sum_b)), scale, acc);
}

// Q6_K, GEMV and GEMM alike: acc[t] (+)= 32-value block j of super-block panel `p` (whose fp16
// scales d are converted) dotted with token t's activation block xb[t], the integer sum of half
// h starting at corrections[t * stride + h]. The halves' sums are independent chains.
template <size_t kT>
[[gnu::always_inline]] inline void q6_k_block(const PanelQ6_K& p, __m512 d, size_t j, const BlockQ8A* const* xb,
                                              const int32_t* corrections, size_t stride, __m512* acc) {
    const __m512i qh[2] = {load64(p.blocks[j].qh[0]), load64(p.blocks[j].qh[1])};
#pragma GCC unroll 2
    for (size_t h = 0; h < 2; ++h) {
        __m512i sum[kT];
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) sum[t] = _mm512_set1_epi32(corrections[t * stride + h]);
#pragma GCC unroll 4
        for (size_t g = 0; g < 4; ++g) {
            const __m512i levels = q6_k_levels(load64(p.blocks[j].ql[g]), qh[h], g, h);
#pragma GCC unroll 8
            for (size_t t = 0; t < kT; ++t) {
                sum[t] = _mm512_dpbusd_epi32(sum[t], levels, broadcast_word(xb[t], 4 * h + g));
            }
        }
        const __m512 scale = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(load16(p.scales[2 * j + h]))), d);
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) {
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[t]), _mm512_mul_ps(scale, _mm512_set1_ps(xb[t]->d)),
                                     acc[t]);
        }
    }
}

// Q4_K's 6-bit scale and minimum of 32-value block j (0..7) of the 16 rows, as bytes: the
// unpacking of quant::scale_min_k4, 16 rows at a time.
[[gnu::always_inline]] inline void q4_k_scale_min(const PanelQ4_K& p, size_t j, __m128i* sc, __m128i* m) {
    const __m128i low6 = _mm_set1_epi8(63), low4 = _mm_set1_epi8(0x0F), bits45 = _mm_set1_epi8(0x30);
    if (j < 4) {
        *sc = _mm_and_si128(load16(p.scales[j]), low6);
        *m = _mm_and_si128(load16(p.scales[j + 4]), low6);
        return;
    }
    // Low 4 bits from byte j + 4, the top 2 from bits 6-7 of bytes j - 4 (scale) and j (minimum):
    // a 16-bit shift by 2 moves them to bits 4-5, where nothing of the neighbouring byte lands.
    const __m128i packed = load16(p.scales[j + 4]);
    *sc = _mm_or_si128(_mm_and_si128(packed, low4),
                       _mm_and_si128(_mm_srli_epi16(load16(p.scales[j - 4]), 2), bits45));
    *m = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(packed, 4), low4),
                      _mm_and_si128(_mm_srli_epi16(load16(p.scales[j]), 2), bits45));
}

// Q4_K, GEMV and GEMM alike: acc[t] (+)= 32-value blocks 2q and 2q + 1 of super-block panel `p`
// (d and dmin converted) dotted with token t's activation blocks xa[t] and xb[t]. One level
// vector holds both blocks (low and high nibbles); their integer sums are independent chains.
template <size_t kT>
[[gnu::always_inline]] inline void q4_k_pair(const PanelQ4_K& p, __m512 d, __m512 dmin, size_t q,
                                             const BlockQ8A* const* xa, const BlockQ8A* const* xb, __m512* acc) {
    __m512i sum_a[kT], sum_b[kT];
#pragma GCC unroll 8
    for (size_t t = 0; t < kT; ++t) sum_a[t] = sum_b[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (size_t g = 0; g < 8; ++g) {
        const __m512i v = load64(p.qs[q][g]);
        const __m512i low = _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
        const __m512i high = _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F));
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) {
            sum_a[t] = _mm512_dpbusd_epi32(sum_a[t], low, broadcast_word(xa[t], g));
            sum_b[t] = _mm512_dpbusd_epi32(sum_b[t], high, broadcast_word(xb[t], g));
        }
    }
    const auto to_float = [](__m128i bytes) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes)); };
    __m128i sc_a, m_a, sc_b, m_b;
    q4_k_scale_min(p, 2 * q, &sc_a, &m_a);
    q4_k_scale_min(p, 2 * q + 1, &sc_b, &m_b);
    const __m512 scale_a = _mm512_mul_ps(to_float(sc_a), d), min_a = _mm512_mul_ps(to_float(m_a), dmin);
    const __m512 scale_b = _mm512_mul_ps(to_float(sc_b), d), min_b = _mm512_mul_ps(to_float(m_b), dmin);
#pragma GCC unroll 8
    for (size_t t = 0; t < kT; ++t) {
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum_a[t]), _mm512_mul_ps(scale_a, _mm512_set1_ps(xa[t]->d)),
                                 acc[t]);
        acc[t] = _mm512_fnmadd_ps(min_a, _mm512_set1_ps(xa[t]->dsum), acc[t]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum_b[t]), _mm512_mul_ps(scale_b, _mm512_set1_ps(xb[t]->d)),
                                 acc[t]);
        acc[t] = _mm512_fnmadd_ps(min_b, _mm512_set1_ps(xb[t]->dsum), acc[t]);
    }
}

// Q4_K, GEMV and GEMM alike: acc[t] (+)= super-block panel `p` dotted with token t's activation
// blocks b0..b0+7, which block_of(b, xb) gives (xb[t]: token t's block b).
template <size_t kT, typename BlockOf>
[[gnu::always_inline]] inline void q4_k_super_block(const PanelQ4_K& p, size_t b0, BlockOf block_of, __m512* acc) {
    const __m512 d = _mm512_cvtph_ps(load32(p.d)), dmin = _mm512_cvtph_ps(load32(p.dmin));
    for (size_t q = 0; q < PanelTraits<DType::Q4_K>::kBlocks / 2; ++q) {
        const BlockQ8A *xa[kT], *xb[kT];
        block_of(b0 + 2 * q, xa);
        block_of(b0 + 2 * q + 1, xb);
        q4_k_pair<kT>(p, d, dmin, q, xa, xb, acc);
    }
}

// Activation blocks per chunk of the GEMV's corrections: 8192 values, so every row of the LFM2
// shapes is one chunk and each panel-row streams from memory in one piece.
constexpr size_t kGemvChunkBlocks = 256;

template <DType D>
void gemv(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    constexpr size_t kBlocks = PanelTraits<D>::kBlocks;
    const size_t blocks = cols / kQ32;
    const auto* xq = static_cast<const BlockQ8A*>(x);
    if (row_begin >= row_end) return;
    if (blocks == 0) {
        for (size_t r = row_begin; r < row_end; ++r) y[r] = 0.0f;
        return;
    }
    int32_t corrections[kGemvChunkBlocks * kHalves<D>];
    for (size_t kb = 0; kb < blocks; kb += kGemvChunkBlocks) {
        const size_t kc = blocks - kb < kGemvChunkBlocks ? blocks - kb : kGemvChunkBlocks;
        if constexpr (PanelTraits<D>::kOffset != 0) corrections_of<D>(xq + kb, kc, corrections);
        for (size_t p = row_begin / kPanelRows; p * kPanelRows < row_end; ++p) {
            const Panel<D>* panel = cpu::panel_row<Panel<D>>(w, blocks / kBlocks, p) + kb / kBlocks;
            const __mmask16 mask = lane_mask(p, row_begin, row_end);
            float* out = y + p * kPanelRows;
            __m512 acc = kb > 0 ? _mm512_maskz_loadu_ps(mask, out) : _mm512_setzero_ps();
            if constexpr (D == DType::Q6_K) {
                for (size_t s = 0; s < kc / kBlocks; ++s) {
                    const __m512 d = _mm512_cvtph_ps(load32(panel[s].d));
                    for (size_t j = 0; j < kBlocks; ++j) {
                        const BlockQ8A* xb = xq + kb + s * kBlocks + j;
                        q6_k_block<1>(panel[s], d, j, &xb, corrections + 2 * (s * kBlocks + j), 0, &acc);
                    }
                }
            } else if constexpr (D == DType::Q4_K) {
                const auto block_of = [&](size_t b, const BlockQ8A** xb) { xb[0] = xq + b; };
                for (size_t s = 0; s < kc / kBlocks; ++s) {
                    q4_k_super_block<1>(panel[s], kb + s * kBlocks, block_of, &acc);
                }
            } else {
                for (size_t b = 0; b < kc; ++b) acc = gemv_block<D>(panel[b], xq + kb + b, corrections[b], acc);
            }
            _mm512_mask_storeu_ps(out, mask, acc);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GEMM: 16 rows (one panel-row) x up to 8 tokens per micro-tile, each level vector (unpacked once
// for Q4_0 and Q6_K) serving every token of the tile.

// Panel-rows per row block: their column chunk (Q8_0: 32 x 32 blocks x 544 bytes = 557 KB) stays
// in a 1 MB L2. Each row block recomputes its tiles' activation corrections, so fewer, larger
// blocks cost less: 8 -> 32 measured +0-5% at 16 tokens and +3-8% at 512 (2 threads, weights
// from memory, Q8_0 / Q4_0 / Q6_K; outputs unchanged).
constexpr size_t kMcPanels = 32;
constexpr size_t kKcBlocks = 32;      // blocks per column chunk: a tile's activations stay in L1
constexpr size_t kMaxTileTokens = 8;  // tokens per micro-tile
static_assert(kKcBlocks % PanelTraits<DType::Q6_K>::kBlocks == 0 && kGemvChunkBlocks % kKcBlocks == 0);

// corrections[t][b * halves + h] for the tile's tokens and the chunk's blocks.
using TileCorrections = int32_t[kMaxTileTokens][kKcBlocks * 2];

// How far ahead of the panel block in use the micro-kernel asks for weights: into L2, about 8 KiB
// ahead. Without it, the first tile over a row block reads it from memory in a burst (at 2 cores,
// faster than memory delivers) and the other tiles compute from L2 with memory idle; with it the
// reads overlap the arithmetic (batched decode of 16 tokens, 2 threads, Q8_0: 25 -> 18 ms a step).
// The GEMV does without: one token's arithmetic is light enough that the hardware prefetcher keeps
// up, and the extra instructions measured 4% slower there.
constexpr size_t kPrefetchBytes = 8192;

// Asks for the panel block `bytes` long at `p`, kPrefetchBytes further on, into L2.
[[gnu::always_inline]] inline void prefetch_ahead(const void* p, size_t bytes) {
    x86_prefetch::prefetch_stream_to_l2(static_cast<const char*>(p) + kPrefetchBytes, bytes);
}

// Y[t][rows of the panel-row] (+)= panel . X[t] for kT tokens over n_blocks 32-value blocks; `x`
// points at the first token's first block of the chunk, `y` at the panel-row's row 0 of token 0.
template <DType D, size_t kT>
void micro_kernel(const Panel<D>* panel, size_t n_blocks, const uint8_t* x, size_t x_stride,
                  const TileCorrections& corrections, float* y, size_t ldy, bool accumulate, __mmask16 mask) {
    __m512 acc[kT];
#pragma GCC unroll 8
    for (size_t t = 0; t < kT; ++t) {
        acc[t] = accumulate ? _mm512_maskz_loadu_ps(mask, y + t * ldy) : _mm512_setzero_ps();
    }
    const auto token_blocks = [&](size_t b, const BlockQ8A** xb) {
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) xb[t] = reinterpret_cast<const BlockQ8A*>(x + t * x_stride) + b;
    };
    if constexpr (D == DType::Q6_K) {
        for (size_t s = 0; s < n_blocks / PanelTraits<D>::kBlocks; ++s) {
            prefetch_ahead(&panel[s], sizeof(Panel<D>));
            const __m512 d = _mm512_cvtph_ps(load32(panel[s].d));
            for (size_t j = 0; j < PanelTraits<D>::kBlocks; ++j) {
                const size_t b = s * PanelTraits<D>::kBlocks + j;
                const BlockQ8A* xb[kT];
                token_blocks(b, xb);
                q6_k_block<kT>(panel[s], d, j, xb, &corrections[0][2 * b], kKcBlocks * 2, acc);
            }
        }
    } else if constexpr (D == DType::Q4_K) {
        for (size_t s = 0; s < n_blocks / PanelTraits<D>::kBlocks; ++s) {
            prefetch_ahead(&panel[s], sizeof(Panel<D>));
            q4_k_super_block<kT>(panel[s], s * PanelTraits<D>::kBlocks, token_blocks, acc);
        }
    } else {
        for (size_t b = 0; b < n_blocks; ++b) {
            const Panel<D>& p = panel[b];
            prefetch_ahead(&p, sizeof(Panel<D>));
            const BlockQ8A* xb[kT];
            token_blocks(b, xb);
            __m512i sum[kT];
#pragma GCC unroll 8
            for (size_t t = 0; t < kT; ++t) sum[t] = _mm512_set1_epi32(corrections[t][b]);
            if constexpr (D == DType::Q4_0) {
#pragma GCC unroll 4
                for (size_t g = 0; g < 4; ++g) {
                    const __m512i v = load64(p.qs[g]);
                    const __m512i low = _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
                    const __m512i high = _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F));
#pragma GCC unroll 8
                    for (size_t t = 0; t < kT; ++t) {
                        sum[t] = _mm512_dpbusd_epi32(sum[t], low, broadcast_word(xb[t], g));
                        sum[t] = _mm512_dpbusd_epi32(sum[t], high, broadcast_word(xb[t], g + 4));
                    }
                }
            } else {
#pragma GCC unroll 8
                for (size_t g = 0; g < 8; ++g) {
                    const __m512i v = load64(p.qs[g]);
#pragma GCC unroll 8
                    for (size_t t = 0; t < kT; ++t) sum[t] = _mm512_dpbusd_epi32(sum[t], v, broadcast_word(xb[t], g));
                }
            }
            const __m512 scale = _mm512_cvtph_ps(load32(p.d));
#pragma GCC unroll 8
            for (size_t t = 0; t < kT; ++t) {
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[t]), _mm512_mul_ps(scale, _mm512_set1_ps(xb[t]->d)),
                                         acc[t]);
            }
        }
    }
#pragma GCC unroll 8
    for (size_t t = 0; t < kT; ++t) _mm512_mask_storeu_ps(y + t * ldy, mask, acc[t]);
}

template <DType D>
using MicroKernelFn = void (*)(const Panel<D>*, size_t, const uint8_t*, size_t, const TileCorrections&, float*,
                               size_t, bool, __mmask16);

// Indexed by the tile's token count; tiles have 2 to 8 (one token goes to the GEMV).
template <DType D>
constexpr MicroKernelFn<D> kMicroKernels[kMaxTileTokens + 1] = {
    nullptr,           nullptr,           micro_kernel<D, 2>, micro_kernel<D, 3>, micro_kernel<D, 4>,
    micro_kernel<D, 5>, micro_kernel<D, 6>, micro_kernel<D, 7>, micro_kernel<D, 8>,
};

template <DType D>
void gemm(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
          size_t row_begin, size_t row_end, void* /*scratch*/) {
    constexpr size_t kBlocks = PanelTraits<D>::kBlocks;
    const auto* xq = static_cast<const uint8_t*>(x);
    const size_t blocks = cols / kQ32;
    if (n == 1 || blocks == 0 || row_begin >= row_end) {
        for (size_t t = 0; t < n; ++t) gemv<D>(w, cols, xq + t * x_stride, y + t * ldy, row_begin, row_end);
        return;
    }
    TileCorrections corrections;
    const size_t p_end = (row_end + kPanelRows - 1) / kPanelRows;
    for (size_t pb = row_begin / kPanelRows; pb < p_end; pb += kMcPanels) {
        const size_t pe = p_end - pb < kMcPanels ? p_end : pb + kMcPanels;
        for (size_t kb = 0; kb < blocks; kb += kKcBlocks) {
            const size_t kc = blocks - kb < kKcBlocks ? blocks - kb : kKcBlocks;
            // Tokens in ceil(n / 8) tiles of near-equal size, so no tile is left with 1-2 tokens.
            const size_t tiles = (n + kMaxTileTokens - 1) / kMaxTileTokens;
            for (size_t tile = 0, t0 = 0; tile < tiles; ++tile) {
                const size_t tokens = (n - t0) / (tiles - tile);
                const uint8_t* x_chunk = xq + t0 * x_stride + kb * sizeof(BlockQ8A);
                if constexpr (PanelTraits<D>::kOffset != 0) {
                    for (size_t t = 0; t < tokens; ++t) {
                        corrections_of<D>(reinterpret_cast<const BlockQ8A*>(x_chunk + t * x_stride), kc,
                                          corrections[t]);
                    }
                }
                const MicroKernelFn<D> kernel = kMicroKernels<D>[tokens];
                for (size_t p = pb; p < pe; ++p) {
                    kernel(cpu::panel_row<Panel<D>>(w, blocks / kBlocks, p) + kb / kBlocks, kc, x_chunk, x_stride,
                           corrections, y + t0 * ldy + p * kPanelRows, ldy, kb > 0, lane_mask(p, row_begin, row_end));
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

}  // namespace lfmrt::cpu::avx512
