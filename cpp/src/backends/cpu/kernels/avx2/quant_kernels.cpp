// AVX2 kernels for block-format weights times BlockQ8A activations (see kernels.h), tested
// against the scalar table. Compiled with -mavx2 -mfma -mf16c; like avx2_kernels.cpp it
// instantiates no STL and keeps every helper in an anonymous namespace.
//
// Integer products use _mm256_maddubs_epi16 (unsigned x signed bytes, pairs summed to int16)
// and _mm256_madd_epi16 (pairs summed to int32). Signed weight levels go through the sign
// trick, maddubs(|w|, x * sign(w)): |w| <= 127 and |x| <= 127, so a pair sum (<= 32258) never
// saturates.
//
// GEMV (decode) reads each weight row once, straight from GGUF's layout: the matrix streams
// from memory and the SIMD decode of each block hides under the loads.
// GEMM (prefill) packs a block of rows into 8-row panels (block_decode.h's levels, interleaved
// so that one 32-byte vector holds 4 consecutive levels of each of the 8 rows, plus per-row
// scales), then a micro-kernel multiplies each panel with up to 4 tokens at a time: every
// weight vector it loads serves 4 tokens, and each token's 4 activation bytes are broadcast
// to all 8 rows. The 8 lanes of an accumulator are 8 rows, so no horizontal sums are needed
// and a row's result does not depend on which lane or panel it lands in.
#include "backends/cpu/kernels/avx2/reductions.h"
#include "backends/cpu/kernels/avx2/k_quants.h"
#include "backends/cpu/kernels/avx2/quant_kernels.h"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "backends/cpu/kernels/block_decode.h"
#include "backends/cpu/kernels/kernels.h"
#include "formats/blocks.h"

namespace lfmrt::cpu::avx2 {
namespace {

using quant::BlockQ4_0;
using quant::BlockQ4_K;
using quant::BlockQ5_K;
using quant::BlockQ6_K;
using quant::BlockQ8_0;
using quant::BlockQ8A;
using quant::kQ32;
using quant::kQK;

float f16(uint16_t h) { return _cvtsh_ss(h); }

using avx2_reductions::hmax;
using avx2_reductions::hsum;

int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

__m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Four bytes at p, repeated in every 32-bit lane.
__m256i broadcast4(const int8_t* p) {
    int32_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

// Lanes [0, count) set.
__m256i lane_mask(size_t count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Integer dot of 32 signed levels with 32 activation bytes: 8 int32 partial sums, pairs of
// int16 lanes weighted by `weights16` (ones, or Q6_K's sub-block scales).
__m256i dot_signed(__m256i w, __m256i x, __m256i weights16) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)), weights16);
}

// The same for unsigned levels (0..31: pair sums stay far below the int16 limit).
__m256i dot_unsigned(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

// ---------------------------------------------------------------------------------------------
// Activation quantization: bit for bit quant::quantize_row_q8a and quantize_row_q8a_k (the same
// max, the same level factor, one rounding product, cvtps rounds to nearest even as the
// reference does, and the same scales).

__m256 abs_max(const float* x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * i)));
    return amax;
}

// `blocks` activation blocks with levels round(x * level_factor) and the scale d.
void quantize_blocks_q8a(const float* x, BlockQ8A* y, size_t blocks, float level_factor, float d) {
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256 factor = _mm256_set1_ps(level_factor);
    for (size_t b = 0; b < blocks; ++b, x += kQ32) {
        __m256i q[4];
        for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * i), factor));
        const int32_t sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
        // packs interleave 128-bit halves: 4-byte groups come out as q0a q1a q2a q3a q0b q1b q2b q3b.
        const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), _mm256_permutevar8x32_epi32(bytes, order));
        y[b].d = d;
        y[b].dsum = d * static_cast<float>(sum);
    }
}

// ---------------------------------------------------------------------------------------------
// Row dots (GEMV and few-token GEMM): one weight row against one quantized activation row.

__m256i unpack_q4_0(const uint8_t* qs) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(0x0F)), _mm256_set1_epi8(8));
}

// sum over blocks of block_dot(b, ...), with even and odd blocks in two accumulators. The two
// are named variables, not an array indexed by b % 2, which GCC keeps on the stack: a store
// and reload in every block's dependency chain.
template <typename BlockDot>
float sum_blocks_by_pairs(size_t blocks, BlockDot block_dot) {
    __m256 even = _mm256_setzero_ps(), odd = _mm256_setzero_ps();
    size_t b = 0;
    for (; b + 2 <= blocks; b += 2) {
        even = block_dot(b, even);
        odd = block_dot(b + 1, odd);
    }
    if (b < blocks) even = block_dot(b, even);
    return hsum(_mm256_add_ps(even, odd));
}

template <DType D>
float dot_row(const void* row, const BlockQ8A* x, size_t blocks);

template <>
float dot_row<DType::Q8_0>(const void* row, const BlockQ8A* x, size_t blocks) {
    const auto* w = static_cast<const BlockQ8_0*>(row);
    const __m256i ones = _mm256_set1_epi16(1);
    const auto block_dot = [&](size_t b, __m256 acc) {
        const __m256i p = dot_signed(load32(w[b].qs), load32(x[b].qs), ones);
        return _mm256_fmadd_ps(_mm256_set1_ps(f16(w[b].d) * x[b].d), _mm256_cvtepi32_ps(p), acc);
    };
    return sum_blocks_by_pairs(blocks, block_dot);
}

template <>
float dot_row<DType::Q4_0>(const void* row, const BlockQ8A* x, size_t blocks) {
    const auto* w = static_cast<const BlockQ4_0*>(row);
    const __m256i ones = _mm256_set1_epi16(1);
    const auto block_dot = [&](size_t b, __m256 acc) {
        const __m256i p = dot_signed(unpack_q4_0(w[b].qs), load32(x[b].qs), ones);
        return _mm256_fmadd_ps(_mm256_set1_ps(f16(w[b].d) * x[b].d), _mm256_cvtepi32_ps(p), acc);
    };
    return sum_blocks_by_pairs(blocks, block_dot);
}

// Q4_K and Q5_K: levels 0..15 (0..31) per sub-block of 32 with a 6-bit scale and minimum. The
// per-super-block work is vectorised over its 8 sub-blocks (scales unpacked four at a time,
// the minima in an 8-lane accumulator): done a sub-block at a time in scalar code, with the
// minima in one dependent chain, it bounded the GEMV at a quarter of memory bandwidth.
template <DType D>
float dot_row_k45(const void* row, const BlockQ8A* x, size_t blocks) {
    const auto* super_blocks = static_cast<const x86_k_quants::Block<D>*>(row);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 minima = _mm256_setzero_ps();
    for (size_t sb = 0; sb < blocks / 8; ++sb, x += 8) {
        const auto& block = super_blocks[sb];
        const x86_k_quants::ScalesMinima sm = x86_k_quants::scales_and_minima(block.scales);
        const __m256 xd = _mm256_setr_ps(x[0].d, x[1].d, x[2].d, x[3].d, x[4].d, x[5].d, x[6].d, x[7].d);
        const __m256 dsum =
            _mm256_setr_ps(x[0].dsum, x[1].dsum, x[2].dsum, x[3].dsum, x[4].dsum, x[5].dsum, x[6].dsum, x[7].dsum);
        const __m256 scale = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(f16(block.d)), sm.scales), xd);
        minima = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(f16(block.dmin)), sm.minima), dsum, minima);
#pragma GCC unroll 8
        for (size_t j = 0; j < 8; ++j) {
            const __m256i p = dot_unsigned(x86_k_quants::sub_block_levels<D>(block, j), load32(x[j].qs));
            const __m256 scale_j = _mm256_permutevar8x32_ps(scale, _mm256_set1_epi32(static_cast<int>(j)));
            acc[j % 2] = _mm256_fmadd_ps(scale_j, _mm256_cvtepi32_ps(p), acc[j % 2]);
        }
    }
    return hsum(_mm256_add_ps(acc[0], acc[1])) - hsum(minima);
}

template <>
float dot_row<DType::Q4_K>(const void* row, const BlockQ8A* x, size_t blocks) {
    return dot_row_k45<DType::Q4_K>(row, x, blocks);
}

template <>
float dot_row<DType::Q5_K>(const void* row, const BlockQ8A* x, size_t blocks) {
    return dot_row_k45<DType::Q5_K>(row, x, blocks);
}

// Q6_K: levels 0..63 offset by 32, an 8-bit scale per 16 values, applied in int32 by madd.
template <>
float dot_row<DType::Q6_K>(const void* row, const BlockQ8A* x, size_t blocks) {
    const auto* w = static_cast<const BlockQ6_K*>(row);
    const __m256i nibble = _mm256_set1_epi8(0x0F), two_bits = _mm256_set1_epi8(0x03);
    const __m256i offset = _mm256_set1_epi8(32);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (size_t sb = 0; sb < blocks / 8; ++sb, x += 8) {
        const float d = f16(w[sb].d);
        for (size_t half = 0; half < 2; ++half) {
            const __m256i low_bytes[2] = {load32(w[sb].ql + 64 * half), load32(w[sb].ql + 64 * half + 32)};
            const __m256i high_bytes = load32(w[sb].qh + 32 * half);
            for (size_t k = 0; k < 4; ++k) {
                const size_t j = 4 * half + k;
                const __m256i low = _mm256_and_si256(
                    k / 2 ? _mm256_srli_epi16(low_bytes[k % 2], 4) : low_bytes[k % 2], nibble);
                const __m256i high = _mm256_and_si256(_mm256_srli_epi16(high_bytes, static_cast<int>(2 * k)), two_bits);
                const __m256i levels = _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(high, 4)), offset);
                const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(w[sb].scales[2 * j + 1]),
                                                        _mm_set1_epi16(w[sb].scales[2 * j]));
                const __m256i p = dot_signed(levels, load32(x[j].qs), scales);
                acc[k % 2] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[j].d), _mm256_cvtepi32_ps(p), acc[k % 2]);
            }
        }
    }
    return hsum(_mm256_add_ps(acc[0], acc[1]));
}

template <DType D>
void gemv(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    const size_t row_size = row_bytes(D, cols);
    const auto* xq = static_cast<const BlockQ8A*>(x);
    for (size_t r = row_begin; r < row_end; ++r) {
        y[r] = dot_row<D>(static_cast<const uint8_t*>(w) + r * row_size, xq, cols / kQ32);
    }
}

// ---------------------------------------------------------------------------------------------
// GEMM: packed 8-row panels and a 8-row x T-token micro-kernel.

constexpr size_t kPanelRows = 8;

// 8 rows x 32 values: levels[g][r][i] is level 4g+i of row r; w = scale[h][r] * level - min[r]
// for values 16h..16h+15.
struct PanelBlock {
    int8_t levels[8][kPanelRows][4];
    float scale[2][kPanelRows];
    float min[kPanelRows];
};

constexpr size_t kMcRows = 64;         // rows packed at a time
constexpr size_t kKcBlocks = 64;       // 32-value blocks per packed chunk (2048 values)
constexpr size_t kMaxTileTokens = 4;   // tokens per micro-tile
constexpr size_t kMinTokensToPack = 4; // fewer tokens go row by row
static_assert(kMcRows / kPanelRows * kKcBlocks * sizeof(PanelBlock) <= kGemmScratchBytes);
static_assert(kMcRows % kPanelRows == 0 && kRowBlock % kPanelRows == 0);
static_assert(kKcBlocks % (kQK / kQ32) == 0, "column chunks are whole K-quant super-blocks (pack_panel_k45)");

// pack_panel for Q4_K and Q5_K, a super-block at a time: each row's 8 scales and minima are
// unpacked and scaled together (the same fp32 products, d * sc and dmin * m, as block_decode.h's
// one at a time, which cost as much as a quarter of a 16-sequence decode step), and each block's
// levels come from one vector.
template <DType D>
void pack_panel_k45(const uint8_t* w, size_t row_size, size_t r0, size_t row_count, size_t block_begin,
                    size_t n_blocks, PanelBlock* panel) {
    using Block = x86_k_quants::Block<D>;
    constexpr size_t kSub = kQK / kQ32;  // blocks per super-block
    for (size_t i = 0; i < kPanelRows; ++i) {
        const uint8_t* row = w + (r0 + (i < row_count ? i : 0)) * row_size;
        for (size_t s = block_begin / kSub; s < (block_begin + n_blocks) / kSub; ++s) {
            const Block& block = reinterpret_cast<const Block*>(row)[s];
            const x86_k_quants::ScalesMinima sm = x86_k_quants::scales_and_minima(block.scales);
            alignas(32) float scale[kSub], min[kSub];
            _mm256_store_ps(scale, _mm256_mul_ps(_mm256_set1_ps(f16(block.d)), sm.scales));
            _mm256_store_ps(min, _mm256_mul_ps(_mm256_set1_ps(f16(block.dmin)), sm.minima));
            for (size_t j = 0; j < kSub; ++j) {
                alignas(32) int8_t q[kQ32];
                _mm256_store_si256(reinterpret_cast<__m256i*>(q), x86_k_quants::sub_block_levels<D>(block, j));
                PanelBlock& out = panel[s * kSub + j - block_begin];
                for (size_t g = 0; g < 8; ++g) __builtin_memcpy(out.levels[g][i], q + 4 * g, 4);
                out.scale[0][i] = out.scale[1][i] = scale[j];
                out.min[i] = min[j];
            }
        }
    }
}

// Packs blocks [block_begin, block_begin + n_blocks) of rows [r0, r0 + row_count) into one panel;
// lanes past row_count repeat row r0 (their results are never stored).
template <DType D>
void pack_panel(const uint8_t* w, size_t row_size, size_t r0, size_t row_count, size_t block_begin, size_t n_blocks,
                PanelBlock* panel) {
    if constexpr (D == DType::Q4_K || D == DType::Q5_K) {
        return pack_panel_k45<D>(w, row_size, r0, row_count, block_begin, n_blocks, panel);
    }
    for (size_t i = 0; i < kPanelRows; ++i) {
        const uint8_t* row = w + (r0 + (i < row_count ? i : 0)) * row_size;
        for (size_t b = 0; b < n_blocks; ++b) {
            Block32 block;
            decode_block32<D>(row, block_begin + b, &block);
            PanelBlock& out = panel[b];
            for (size_t g = 0; g < 8; ++g) __builtin_memcpy(out.levels[g][i], block.q + 4 * g, 4);
            out.scale[0][i] = block.scale[0];
            out.scale[1][i] = block.scale[1];
            out.min[i] = block.min;
        }
    }
}

// Y[t][rows of the panel] (+)= panel . X[t] for kT tokens over n_blocks blocks. `x` points at
// the first token's first block of the chunk.
template <size_t kT, bool kHasMin>
void micro_kernel(const PanelBlock* panel, size_t n_blocks, const uint8_t* x, size_t x_stride, float* y, size_t ldy,
                  bool accumulate, size_t row_count) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i store_mask = lane_mask(row_count);
    __m256 acc[kT];
#pragma GCC unroll 4
    for (size_t t = 0; t < kT; ++t) {
        acc[t] = !accumulate ? _mm256_setzero_ps() : _mm256_maskload_ps(y + t * ldy, store_mask);
    }
    for (size_t b = 0; b < n_blocks; ++b) {
        const PanelBlock& p = panel[b];
        const BlockQ8A* xb[kT];
#pragma GCC unroll 4
        for (size_t t = 0; t < kT; ++t) xb[t] = reinterpret_cast<const BlockQ8A*>(x + t * x_stride) + b;
        for (size_t h = 0; h < 2; ++h) {
            __m256i isum[kT];
#pragma GCC unroll 4
            for (size_t t = 0; t < kT; ++t) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (size_t g = 4 * h; g < 4 * h + 4; ++g) {
                const __m256i w = load32(p.levels[g]);
                const __m256i w_abs = _mm256_abs_epi8(w);
#pragma GCC unroll 4
                for (size_t t = 0; t < kT; ++t) {
                    const __m256i xv = _mm256_sign_epi8(broadcast4(xb[t]->qs + 4 * g), w);
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(w_abs, xv), ones));
                }
            }
            const __m256 scale = _mm256_loadu_ps(p.scale[h]);
#pragma GCC unroll 4
            for (size_t t = 0; t < kT; ++t) {
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(isum[t])), _mm256_set1_ps(xb[t]->d),
                                         acc[t]);
            }
        }
        if constexpr (kHasMin) {
            const __m256 min = _mm256_loadu_ps(p.min);
#pragma GCC unroll 4
            for (size_t t = 0; t < kT; ++t) acc[t] = _mm256_fnmadd_ps(min, _mm256_set1_ps(xb[t]->dsum), acc[t]);
        }
    }
#pragma GCC unroll 4
    for (size_t t = 0; t < kT; ++t) _mm256_maskstore_ps(y + t * ldy, store_mask, acc[t]);
}

template <DType D>
using MicroKernelFn = void (*)(const PanelBlock*, size_t, const uint8_t*, size_t, float*, size_t, bool, size_t);

template <DType D>
constexpr bool kHasMin = D == DType::Q4_K || D == DType::Q5_K;

template <DType D>
constexpr MicroKernelFn<D> kMicroKernels[kMaxTileTokens + 1] = {
    nullptr, micro_kernel<1, kHasMin<D>>, micro_kernel<2, kHasMin<D>>, micro_kernel<3, kHasMin<D>>,
    micro_kernel<4, kHasMin<D>>,
};

template <DType D>
void gemm(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
          size_t row_begin, size_t row_end, void* scratch) {
    const auto* weights = static_cast<const uint8_t*>(w);
    const auto* xq = static_cast<const uint8_t*>(x);
    const size_t row_size = row_bytes(D, cols);
    const size_t blocks = cols / kQ32;
    if (n < kMinTokensToPack || blocks == 0) {
        // Each row is read once and stays in L1 while every token uses it.
        for (size_t r = row_begin; r < row_end; ++r) {
            for (size_t t = 0; t < n; ++t) {
                y[t * ldy + r] = dot_row<D>(weights + r * row_size, reinterpret_cast<const BlockQ8A*>(xq + t * x_stride),
                                            blocks);
            }
        }
        return;
    }
    auto* panels = static_cast<PanelBlock*>(scratch);
    for (size_t mb = row_begin; mb < row_end; mb += kMcRows) {
        const size_t mc = row_end - mb < kMcRows ? row_end - mb : kMcRows;
        const size_t n_panels = (mc + kPanelRows - 1) / kPanelRows;
        for (size_t kb = 0; kb < blocks; kb += kKcBlocks) {
            const size_t kc = blocks - kb < kKcBlocks ? blocks - kb : kKcBlocks;
            for (size_t p = 0; p < n_panels; ++p) {
                const size_t rows = mc - p * kPanelRows < kPanelRows ? mc - p * kPanelRows : kPanelRows;
                pack_panel<D>(weights, row_size, mb + p * kPanelRows, rows, kb, kc, panels + p * kc);
            }
            for (size_t t0 = 0; t0 < n; t0 += kMaxTileTokens) {
                const size_t tokens = n - t0 < kMaxTileTokens ? n - t0 : kMaxTileTokens;
                const MicroKernelFn<D> kernel = kMicroKernels<D>[tokens];
                const uint8_t* x_chunk = xq + t0 * x_stride + kb * sizeof(BlockQ8A);
                for (size_t p = 0; p < n_panels; ++p) {
                    const size_t rows = mc - p * kPanelRows < kPanelRows ? mc - p * kPanelRows : kPanelRows;
                    kernel(panels + p * kc, kc, x_chunk, x_stride, y + t0 * ldy + mb + p * kPanelRows, ldy, kb > 0,
                           rows);
                }
            }
        }
    }
}

}  // namespace

void quantize_q8a(const float* x, void* dst, size_t cols) {
    auto* y = static_cast<BlockQ8A*>(dst);
    for (size_t b = 0; b < cols / kQ32; ++b, x += kQ32) {
        const float amax = hmax(abs_max(x));
        quantize_blocks_q8a(x, y + b, 1, quant::activation_level_factor(amax), quant::activation_scale(amax));
    }
}

void quantize_q8a_k(const float* x, void* dst, size_t cols) {
    auto* y = static_cast<BlockQ8A*>(dst);
    for (size_t g = 0; g < cols / quant::kQK; ++g, x += quant::kQK) {
        __m256 amax = abs_max(x);
        for (size_t b = 1; b < quant::kQ8AKBlocks; ++b) amax = _mm256_max_ps(amax, abs_max(x + b * kQ32));
        const float factor = quant::activation_level_factor(hmax(amax));
        quantize_blocks_q8a(x, y + g * quant::kQ8AKBlocks, quant::kQ8AKBlocks, factor,
                            quant::activation_scale_k(factor));
    }
}

void gemv_q8_0(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv<DType::Q8_0>(w, cols, x, y, row_begin, row_end);
}
void gemv_q4_0(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv<DType::Q4_0>(w, cols, x, y, row_begin, row_end);
}
void gemv_q4_k(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv<DType::Q4_K>(w, cols, x, y, row_begin, row_end);
}
void gemv_q5_k(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv<DType::Q5_K>(w, cols, x, y, row_begin, row_end);
}
void gemv_q6_k(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv<DType::Q6_K>(w, cols, x, y, row_begin, row_end);
}

void gemm_q8_0(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch) {
    gemm<DType::Q8_0>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}
void gemm_q4_0(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch) {
    gemm<DType::Q4_0>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}
void gemm_q4_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch) {
    gemm<DType::Q4_K>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}
void gemm_q5_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch) {
    gemm<DType::Q5_K>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}
void gemm_q6_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch) {
    gemm<DType::Q6_K>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}

}  // namespace lfmrt::cpu::avx2
