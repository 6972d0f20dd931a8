// AVX2 kernels for Q4_0, Q8_0 and Q6_K weights in 16-row panels (backends/cpu/panels.h) times BlockQ8A
// activations: the GEMV (decode) and the GEMM (batched decode, prefill), both reading the panels
// where they lie. Compiled with -mavx2 -mfma -mf16c; like avx2_kernels.cpp it instantiates no STL
// and keeps every helper in an anonymous namespace.
//
// A panel block's 16 rows are two ymm halves of 8 rows (lanes), each lane 4 levels of its row
// against the token's 4 activation bytes broadcast. Without VNNI the byte dot is vpmaddubsw
// (u8 x s8 -> s16 pairs) then vpmaddwd with ones (-> s32), both exact here:
// - Q4_0: unsigned levels 0..15, so a pair is at most 2 * 15 * 128 = 3840 and the 8 vpmaddubsw of
//   a block (4 words x 2 nibbles) add up in int16 (at most 30720) before one vpmaddwd. The int32
//   sum starts at -8 * (sum of the block's activations), computed once per call, so it ends at the
//   exact dot of the signed levels (level - 8).
// - Q8_0: the signed level s = (level + 128) ^ 0x80 is taken apart as |s| (unsigned, <= 128) and
//   its sign moved onto the activation (vpsignb, |x| <= 127), as llama.cpp's AVX2 Q8_0 does: a
//   pair is at most 2 * 128 * 127 = 32512, so each vpmaddubsw is exact; one vpmaddwd per word.
// - Q6_K: unsigned levels 0..63 (offset 32, one int8 scale per 16 values): pairs of vpmaddubsw
//   add up in int16 (at most 2 * 2 * 63 * 128 = 32256), and each 16 values' int32 sum starts at
//   -32 * (sum of their activations).
// Then acc += float(dot) * (scale * x.d), one fmadd per 8 rows, scale and token. That arithmetic is
// the same for a row whatever the token count, the row range or the chunking (partial sums go
// through y unchanged), so the GEMM equals the GEMV per token bit for bit, and row splits change
// nothing.
#include "backends/cpu/kernels/avx2/panel_kernels.h"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

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
using cpu::PanelQ6_K;
using cpu::PanelQ8_0;

template <DType D>
struct PanelTraits;
// kBlocks: 32-value blocks per panel block; kHalves: scales per 32-value block of a row.
template <>
struct PanelTraits<DType::Q4_0> {
    using Panel = PanelQ4_0;
    static constexpr size_t kBlocks = 1, kHalves = 1;
};
template <>
struct PanelTraits<DType::Q8_0> {
    using Panel = PanelQ8_0;
    static constexpr size_t kBlocks = 1, kHalves = 1;
};
template <>
struct PanelTraits<DType::Q6_K> {
    using Panel = PanelQ6_K;
    static constexpr size_t kBlocks = 8, kHalves = 2;
};
template <DType D>
using Panel = typename PanelTraits<D>::Panel;
template <DType D>
constexpr size_t kBlocks = PanelTraits<D>::kBlocks;
template <DType D>
constexpr size_t kHalves = PanelTraits<D>::kHalves;

__m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
__m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Activation bytes 4g..4g+3 of a block in every lane.
[[gnu::always_inline]] inline __m256i broadcast_word(const BlockQ8A* x, size_t g) {
    int32_t word;
    __builtin_memcpy(&word, x->qs + 4 * g, sizeof word);
    return _mm256_set1_epi32(word);
}

int32_t hsum4(__m128i v) {
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4E));
    return _mm_cvtsi128_si32(_mm_add_epi32(v, _mm_shuffle_epi32(v, 0xB1)));
}

// -offset * (sum of the activation bytes under each scale) of blocks [0, n_blocks): Q4_0 out[b]
// per block (offset 8), Q6_K out[2b + h] per half h of the block (offset 32). Q8_0 has none.
template <DType D>
void corrections_of(const BlockQ8A* x, size_t n_blocks, int32_t* out) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (size_t b = 0; b < n_blocks; ++b) {
        const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, load32(x[b].qs)), ones16);
        const __m128i first = _mm256_castsi256_si128(sums), second = _mm256_extracti128_si256(sums, 1);
        if constexpr (D == DType::Q6_K) {
            out[2 * b] = -32 * hsum4(first);
            out[2 * b + 1] = -32 * hsum4(second);
        } else {
            out[b] = -8 * hsum4(_mm_add_epi32(first, second));
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

// acc[t] (+)= half h (rows 8h..8h+7) of panel block p dotted with token t's activation block
// xb[t], the Q4_0 integer sum starting at corrections[t * stride].
template <DType D, size_t kT>
[[gnu::always_inline]] inline void block_half(const Panel<D>& p, size_t h, const BlockQ8A* const* xb,
                                              const int32_t* corrections, size_t stride, __m256* acc) {
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256i sum[kT];
    if constexpr (D == DType::Q4_0) {
        const __m256i nibble = _mm256_set1_epi8(0x0F);
        __m256i sum16[kT];
#pragma GCC unroll 4
        for (size_t g = 0; g < 4; ++g) {
            const __m256i v = load32(p.qs[g][8 * h]);
            const __m256i low = _mm256_and_si256(v, nibble);
            const __m256i high = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
#pragma GCC unroll 8
            for (size_t t = 0; t < kT; ++t) {
                const __m256i both = _mm256_add_epi16(_mm256_maddubs_epi16(low, broadcast_word(xb[t], g)),
                                                      _mm256_maddubs_epi16(high, broadcast_word(xb[t], g + 4)));
                sum16[t] = g == 0 ? both : _mm256_add_epi16(sum16[t], both);
            }
        }
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) {
            sum[t] = _mm256_add_epi32(_mm256_madd_epi16(sum16[t], ones16), _mm256_set1_epi32(corrections[t * stride]));
        }
    } else {
        const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
#pragma GCC unroll 8
        for (size_t g = 0; g < 8; ++g) {
            const __m256i s = _mm256_xor_si256(load32(p.qs[g][8 * h]), bias);
            const __m256i a = _mm256_abs_epi8(s);
#pragma GCC unroll 8
            for (size_t t = 0; t < kT; ++t) {
                const __m256i dot = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(a, _mm256_sign_epi8(broadcast_word(xb[t], g), s)), ones16);
                sum[t] = g == 0 ? dot : _mm256_add_epi32(sum[t], dot);
            }
        }
    }
    const __m256 scale = _mm256_cvtph_ps(load16(p.d + 8 * h));
#pragma GCC unroll 8
    for (size_t t = 0; t < kT; ++t) {
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[t]), _mm256_mul_ps(scale, _mm256_set1_ps(xb[t]->d)), acc[t]);
    }
}

// Q6_K, GEMV and GEMM alike: acc[t] (+)= half `rh` (rows 8rh..8rh+7) of 32-value block j of
// super-block panel `p` (d: those rows' fp16 scales, converted) dotted with token t's activation
// block xb[t], the integer sum of value half h starting at corrections[t * stride + h]. Levels are
// 0..63, so a vpmaddubsw pair is at most 2 * 63 * 128 = 16128 and two add up exactly in int16.
template <size_t kT>
[[gnu::always_inline]] inline void q6_k_block_half(const PanelQ6_K& p, __m256 d, size_t j, size_t rh,
                                                   const BlockQ8A* const* xb, const int32_t* corrections,
                                                   size_t stride, __m256* acc) {
    const __m256i ones16 = _mm256_set1_epi16(1), low_bits = _mm256_set1_epi8(0x0F), high_bits = _mm256_set1_epi8(0x30);
    const __m256i qh[2] = {load32(p.blocks[j].qh[0][8 * rh]), load32(p.blocks[j].qh[1][8 * rh])};
#pragma GCC unroll 2
    for (size_t h = 0; h < 2; ++h) {
        __m256i sum[kT], pair[kT];
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) sum[t] = _mm256_set1_epi32(corrections[t * stride + h]);
#pragma GCC unroll 4
        for (size_t g = 0; g < 4; ++g) {
            // Levels 16h+4g..16h+4g+3: nibble h of the 4-bit plane's word g, or-ed with bits
            // 2g..2g+1 of the 2-bit plane's word h moved to bits 4-5 (the 16-bit shifts carry
            // bits across bytes only into bits the 0x30 mask drops).
            const __m256i ql = load32(p.blocks[j].ql[g][8 * rh]);
            const __m256i low = _mm256_and_si256(h == 0 ? ql : _mm256_srli_epi16(ql, 4), low_bits);
            const __m256i high = g == 0   ? _mm256_slli_epi16(qh[h], 4)
                                 : g == 1 ? _mm256_slli_epi16(qh[h], 2)
                                 : g == 2 ? qh[h]
                                          : _mm256_srli_epi16(qh[h], 2);
            const __m256i levels = _mm256_or_si256(low, _mm256_and_si256(high, high_bits));
#pragma GCC unroll 8
            for (size_t t = 0; t < kT; ++t) {
                const __m256i prod = _mm256_maddubs_epi16(levels, broadcast_word(xb[t], 4 * h + g));
                if (g % 2 == 0) {
                    pair[t] = prod;
                } else {
                    sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(_mm256_add_epi16(pair[t], prod), ones16));
                }
            }
        }
        const __m256 scale = _mm256_mul_ps(
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                reinterpret_cast<const __m128i*>(p.scales[2 * j + h] + 8 * rh)))),
            d);
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) {
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[t]), _mm256_mul_ps(scale, _mm256_set1_ps(xb[t]->d)),
                                     acc[t]);
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
    int32_t corrections[kGemvChunkBlocks * kHalves<D>] = {};
    for (size_t kb = 0; kb < blocks; kb += kGemvChunkBlocks) {
        const size_t kc = blocks - kb < kGemvChunkBlocks ? blocks - kb : kGemvChunkBlocks;
        if constexpr (D != DType::Q8_0) corrections_of<D>(xq + kb, kc, corrections);
        for (size_t p = row_begin / kPanelRows; p * kPanelRows < row_end; ++p) {
            const Panel<D>* panel = cpu::panel_row<Panel<D>>(w, blocks / kBlocks<D>, p) + kb / kBlocks<D>;
            const __m256i mask[2] = {lane_mask(p, 0, row_begin, row_end), lane_mask(p, 1, row_begin, row_end)};
            float* out = y + p * kPanelRows;
            __m256 acc[2];
            for (size_t h = 0; h < 2; ++h) {
                acc[h] = kb > 0 ? _mm256_maskload_ps(out + 8 * h, mask[h]) : _mm256_setzero_ps();
            }
            if constexpr (D == DType::Q6_K) {
                for (size_t s = 0; s < kc / kBlocks<D>; ++s) {
                    const __m256 d[2] = {_mm256_cvtph_ps(load16(panel[s].d)), _mm256_cvtph_ps(load16(panel[s].d + 8))};
                    for (size_t j = 0; j < kBlocks<D>; ++j) {
                        const size_t b = s * kBlocks<D> + j;
                        const BlockQ8A* xb = xq + kb + b;
                        q6_k_block_half<1>(panel[s], d[0], j, 0, &xb, corrections + 2 * b, 0, &acc[0]);
                        q6_k_block_half<1>(panel[s], d[1], j, 1, &xb, corrections + 2 * b, 0, &acc[1]);
                    }
                }
            } else {
                for (size_t b = 0; b < kc; ++b) {
                    const BlockQ8A* xb = xq + kb + b;
                    block_half<D, 1>(panel[b], 0, &xb, corrections + b, 0, &acc[0]);
                    block_half<D, 1>(panel[b], 1, &xb, corrections + b, 0, &acc[1]);
                }
            }
            for (size_t h = 0; h < 2; ++h) _mm256_maskstore_ps(out + 8 * h, mask[h], acc[h]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GEMM: 8 rows (half a panel-row) x up to 4 tokens per micro-tile, each level vector (unpacked
// once for Q4_0) serving every token of the tile.

constexpr size_t kMcPanels = 8;       // panel-rows per row block: their column chunk stays in L2
constexpr size_t kKcBlocks = 32;      // blocks per column chunk: a tile's activations stay in L1
constexpr size_t kMaxTileTokens = 4;  // tokens per micro-tile
static_assert(kKcBlocks % PanelTraits<DType::Q6_K>::kBlocks == 0 && kGemvChunkBlocks % kKcBlocks == 0);

// corrections[t][b * halves + h] for the tile's tokens and the chunk's blocks.
using TileCorrections = int32_t[kMaxTileTokens][kKcBlocks * 2];

// How far ahead of the panel block in use the micro-kernel asks for weights: into L2, about 8 KiB
// ahead, so that the reads of the first tile over a row block overlap its arithmetic instead of
// stalling it (see avx512/panel_kernels.cpp). Only the first half-panel pass (h = 0) asks: the
// second reads the same panel blocks.
constexpr size_t kPrefetchBytes = 8192;

// Asks for the panel block `bytes` long at `p`, kPrefetchBytes further on, into L2.
[[gnu::always_inline]] inline void prefetch_ahead(const void* p, size_t bytes) {
    x86_prefetch::prefetch_stream_to_l2(static_cast<const char*>(p) + kPrefetchBytes, bytes);
}

// Y[t][rows 8h..8h+7 of the panel-row] (+)= panel . X[t] for kT tokens over n_blocks blocks; `x`
// points at the first token's first block of the chunk, `y` at the panel-row's row 0 of token 0.
template <DType D, size_t kT>
void micro_kernel(const Panel<D>* panel, size_t h, size_t n_blocks, const uint8_t* x, size_t x_stride,
                  const TileCorrections& corrections, float* y, size_t ldy, bool accumulate, __m256i mask) {
    __m256 acc[kT];
#pragma GCC unroll 8
    for (size_t t = 0; t < kT; ++t) {
        acc[t] = accumulate ? _mm256_maskload_ps(y + t * ldy + 8 * h, mask) : _mm256_setzero_ps();
    }
    const auto token_blocks = [&](size_t b, const BlockQ8A** xb) {
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) xb[t] = reinterpret_cast<const BlockQ8A*>(x + t * x_stride) + b;
    };
    if constexpr (D == DType::Q6_K) {
        for (size_t s = 0; s < n_blocks / kBlocks<D>; ++s) {
            if (h == 0) prefetch_ahead(&panel[s], sizeof(Panel<D>));
            const __m256 d = _mm256_cvtph_ps(load16(panel[s].d + 8 * h));
            for (size_t j = 0; j < kBlocks<D>; ++j) {
                const size_t b = s * kBlocks<D> + j;
                const BlockQ8A* xb[kT];
                token_blocks(b, xb);
                q6_k_block_half<kT>(panel[s], d, j, h, xb, &corrections[0][2 * b], kKcBlocks * 2, acc);
            }
        }
    } else {
        for (size_t b = 0; b < n_blocks; ++b) {
            if (h == 0) prefetch_ahead(&panel[b], sizeof(Panel<D>));
            const BlockQ8A* xb[kT];
            token_blocks(b, xb);
            block_half<D, kT>(panel[b], h, xb, &corrections[0][b], kKcBlocks * 2, acc);
        }
    }
#pragma GCC unroll 8
    for (size_t t = 0; t < kT; ++t) _mm256_maskstore_ps(y + t * ldy + 8 * h, mask, acc[t]);
}

template <DType D>
using MicroKernelFn = void (*)(const Panel<D>*, size_t, size_t, const uint8_t*, size_t, const TileCorrections&,
                               float*, size_t, bool, __m256i);

// Indexed by the tile's token count; tiles have 2 to 4 (one token goes to the GEMV).
template <DType D>
constexpr MicroKernelFn<D> kMicroKernels[kMaxTileTokens + 1] = {
    nullptr, nullptr, micro_kernel<D, 2>, micro_kernel<D, 3>, micro_kernel<D, 4>,
};

template <DType D>
void gemm(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
          size_t row_begin, size_t row_end, void* /*scratch*/) {
    const auto* xq = static_cast<const uint8_t*>(x);
    const size_t blocks = cols / kQ32;
    if (n == 1 || blocks == 0 || row_begin >= row_end) {
        for (size_t t = 0; t < n; ++t) gemv<D>(w, cols, xq + t * x_stride, y + t * ldy, row_begin, row_end);
        return;
    }
    TileCorrections corrections = {};
    const size_t p_end = (row_end + kPanelRows - 1) / kPanelRows;
    for (size_t pb = row_begin / kPanelRows; pb < p_end; pb += kMcPanels) {
        const size_t pe = p_end - pb < kMcPanels ? p_end : pb + kMcPanels;
        for (size_t kb = 0; kb < blocks; kb += kKcBlocks) {
            const size_t kc = blocks - kb < kKcBlocks ? blocks - kb : kKcBlocks;
            // Tokens in ceil(n / 4) tiles of near-equal size, so no tile is left with 1 token.
            const size_t tiles = (n + kMaxTileTokens - 1) / kMaxTileTokens;
            for (size_t tile = 0, t0 = 0; tile < tiles; ++tile) {
                const size_t tokens = (n - t0) / (tiles - tile);
                const uint8_t* x_chunk = xq + t0 * x_stride + kb * sizeof(BlockQ8A);
                if constexpr (D != DType::Q8_0) {
                    for (size_t t = 0; t < tokens; ++t) {
                        corrections_of<D>(reinterpret_cast<const BlockQ8A*>(x_chunk + t * x_stride), kc,
                                          corrections[t]);
                    }
                }
                const MicroKernelFn<D> kernel = kMicroKernels<D>[tokens];
                for (size_t p = pb; p < pe; ++p) {
                    const Panel<D>* panel = cpu::panel_row<Panel<D>>(w, blocks / kBlocks<D>, p) + kb / kBlocks<D>;
                    for (size_t h = 0; h < 2; ++h) {
                        if (p * kPanelRows + 8 * h >= row_end || p * kPanelRows + 8 * h + 8 <= row_begin) continue;
                        kernel(panel, h, kc, x_chunk, x_stride, corrections, y + t0 * ldy + p * kPanelRows, ldy,
                               kb > 0, lane_mask(p, h, row_begin, row_end));
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

void gemm_panels_q6_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
                      size_t row_begin, size_t row_end, void* scratch) {
    gemm<DType::Q6_K>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}

}  // namespace lfmrt::cpu::avx2
