// AVX-512 VNNI kernels for block-format weights times BlockQ8A activations (see kernels.h),
// tested against the scalar table. Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni
// -mfma -mf16c -mavx2; like the AVX2 files it instantiates no STL and keeps every helper in an
// anonymous namespace.
//
// The integer core is vpdpbusd (unsigned bytes x signed bytes, four products summed into each
// int32 lane, one instruction for what AVX2 needs three). Weights take the unsigned side: every
// type's levels are made non-negative by an offset (Q8_0 +128, Q4_0 +8, Q6_K +32; the K4/K5
// levels already are), and the offset's contribution, offset * sum(x), is subtracted exactly in
// int32 from the activations' side, so the integer dots equal the scalar specification's.
//
// GEMV (decode) reads each weight row once, straight from GGUF's layout, two blocks per zmm.
// GEMM (prefill) packs 16-row panels (unsigned levels transposed so one zmm holds 4 levels of
// each of the 16 rows, plus per-row scales) and multiplies each panel with up to 8 tokens:
// each weight vector serves 8 tokens, each token's 4 activation bytes are broadcast to all 16
// rows. The 16 lanes are 16 rows, so a row's result does not depend on its lane or panel, and
// neither path's arithmetic for a row depends on the rows around it: row splits give the same
// bits.
#include "cpu/kernels/avx512/quant_kernels.h"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "cpu/kernels/avx2/quant_kernels.h"
#include "cpu/kernels/kernels.h"
#include "quant/blocks.h"

namespace lfmrt::cpu::avx512 {
namespace {

using quant::BlockQ4_0;
using quant::BlockQ4_K;
using quant::BlockQ5_K;
using quant::BlockQ6_K;
using quant::BlockQ8_0;
using quant::BlockQ8A;
using quant::kQ32;

float f16(uint16_t h) { return _cvtsh_ss(h); }

__m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
__m512i load64(const void* p) { return _mm512_loadu_si512(p); }
__m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

int32_t load_i32(const void* p) {
    int32_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

// Two 32-byte vectors as one zmm: a in the low half, b in the high half.
__m512i join(__m256i a, __m256i b) { return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1); }

// The level offset that makes a type's levels unsigned (see the file comment).
template <DType D>
constexpr int kOffset = D == DType::Q8_0 ? 128 : D == DType::Q4_0 ? 8 : D == DType::Q6_K ? 32 : 0;

// -offset * (sum of each group of 4 activation bytes): the int32 start of a dot of offset
// levels with `x`, which leaves exactly dot(level - offset, x).
template <int kOff>
__m512i offset_correction(__m512i x) {
    return _mm512_sub_epi32(_mm512_setzero_si512(),
                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(kOff), x));
}

// ---------------------------------------------------------------------------------------------
// GEMV for Q4_0. (Q8_0's is the AVX2 one: with no nibbles to unpack it is load-bound, and
// the AVX2 loop measured as fast in cache and faster from memory.)

// The unsigned levels (0..15) of blocks b and b+1 (b+1 only when `two`; else the high half is
// zero): [qs_b, qs_b, qs_b+1, qs_b+1] shifted by [0, 4, 0, 4] bits, which puts each block's low
// nibbles (levels 0..15) before its high nibbles (16..31), the order of the activations' qs.
__m512i q4_0_pair_levels(const BlockQ4_0* row, size_t b, bool two) {
    const __m128i lo = load16(row[b].qs);
    const __m128i hi = two ? load16(row[b + 1].qs) : _mm_setzero_si128();
    const __m512i dup = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3),
                                                 _mm512_castsi256_si512(_mm256_set_m128i(hi, lo)));
    return _mm512_and_si512(_mm512_srlv_epi64(dup, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4)), _mm512_set1_epi8(0x0F));
}

// Activation bytes of blocks b and b+1 (zero for b+1 unless `two`).
__m512i pair_x(const BlockQ8A* x, size_t b, bool two) {
    return join(load32(x[b].qs), two ? load32(x[b + 1].qs) : _mm256_setzero_si256());
}

// [a, b] as one float vector: 8 lanes each.
__m512 pair_floats(__m256 a, __m256 b) {
    return _mm512_castsi512_ps(join(_mm256_castps_si256(a), _mm256_castps_si256(b)));
}

float dot_row_q4_0(const uint8_t* row_bytes, const BlockQ8A* x, size_t blocks) {
    const auto* row = reinterpret_cast<const BlockQ4_0*>(row_bytes);
    __m512 acc = _mm512_setzero_ps();
    for (size_t b = 0; b < blocks; b += 2) {
        const bool two = b + 1 < blocks;
        const __m512i xq = pair_x(x, b, two);
        const __m512 w_scales = _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16(static_cast<short>(two ? row[b + 1].d : 0)),
                                                                 _mm_set1_epi16(static_cast<short>(row[b].d))));
        const __m512 x_scales = pair_floats(_mm256_set1_ps(x[b].d), _mm256_set1_ps(two ? x[b + 1].d : 0.0f));
        const __m512i dot = _mm512_dpbusd_epi32(offset_correction<8>(xq), q4_0_pair_levels(row, b, two), xq);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(w_scales, x_scales), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

// ---------------------------------------------------------------------------------------------
// GEMV for Q6_K: per super-block of 256, 16 scales (one per 16 values) and d.

// Unsigned levels (0..63) of 32-value groups 4h+k and 4h+k+1 (k = 0 or 2) of a super-block.
// ql's 64 bytes of half h hold groups k (low nibbles of bytes 0-31 / 32-63: k = 0, 1) and
// k + 2 (high nibbles); qh's 32 bytes hold 2 bits per group, group k at bits 2k.
__m512i q6k_pair_levels(const BlockQ6_K& blk, size_t h, size_t k) {
    const __m512i ql = load64(blk.ql + 64 * h);
    const __m512i low = _mm512_and_si512(k == 0 ? ql : _mm512_srli_epi16(ql, 4), _mm512_set1_epi8(0x0F));
    const __m512i qh = _mm512_broadcast_i64x4(load32(blk.qh + 32 * h));
    // Move bits 2k..2k+1 (low half) and 2k+2..2k+3 (high half) of each byte to bits 4-5; the
    // 16-bit shifts carry bits across bytes, but only into bits the 0x30 mask drops.
    const __m512i moved = k == 0 ? _mm512_sllv_epi16(qh, _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1))
                                 : _mm512_srlv_epi16(qh, _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1));
    return _mm512_ternarylogic_epi32(low, moved, _mm512_set1_epi8(0x30), 0xF8);  // low | (moved & 0x30)
}

float dot_row_q6_k(const uint8_t* row, const BlockQ8A* x, size_t blocks) {
    // Lane l: the activation-block offset of 16-value group l (block l / 2).
    const __m512i x_index = _mm512_mullo_epi32(
        _mm512_srli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 1),
        _mm512_set1_epi32(static_cast<int>(sizeof(BlockQ8A))));
    __m512 acc = _mm512_setzero_ps();
    for (size_t sb = 0; sb < blocks / 8; ++sb, x += 8) {
        const BlockQ6_K& blk = reinterpret_cast<const BlockQ6_K*>(row)[sb];
        // scales[l]: d * scale of 16-value group l * its activation block's d (the activations
        // are in L1, so this gather does not wait on memory).
        const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(load16(blk.scales)));
        const __m512 scales = _mm512_mul_ps(_mm512_mul_ps(sc, _mm512_set1_ps(f16(blk.d))),
                                            _mm512_i32gather_ps(x_index, &x->d, 1));
        // Lanes 0-3, 4-7, 8-11, 12-15 cover 16-value groups 2j, 2j+1, 2j+2, 2j+3 for blocks j, j+1.
        __m512i scale_index = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        for (size_t j = 0; j < 8; j += 2) {
            const __m512i xq = pair_x(x, j, true);
            const __m512i dot = _mm512_dpbusd_epi32(offset_correction<32>(xq), q6k_pair_levels(blk, j / 4, j % 4), xq);
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(scale_index, scales), acc);
            scale_index = _mm512_add_epi32(scale_index, _mm512_set1_epi32(4));
        }
    }
    return _mm512_reduce_add_ps(acc);
}

// One row at a time: the matrix streams from memory, and one sequential stream is what the
// hardware prefetchers follow best. Interleaving 2-4 rows to share the activation loads (with
// or without software prefetch) measured 1.3-2.5x slower per decode step from DRAM.
template <DType D>
void gemv(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    const size_t row_size = row_bytes(D, cols);
    const auto* xq = static_cast<const BlockQ8A*>(x);
    const auto* base = static_cast<const uint8_t*>(w);
    const size_t blocks = cols / kQ32;
    for (size_t r = row_begin; r < row_end; ++r) {
        if constexpr (D == DType::Q6_K) {
            y[r] = dot_row_q6_k(base + r * row_size, xq, blocks);
        } else {
            y[r] = dot_row_q4_0(base + r * row_size, xq, blocks);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GEMM: packed 16-row panels and a 16-row x T-token micro-kernel.

constexpr size_t kPanelRows = 16;

// 16 rows x 32 values: levels[g][r][i] is unsigned level 4g+i of row r; the weight is
// scale[h][r] * (level - offset) - min[r] for values 16h..16h+15.
struct PanelBlock {
    uint8_t levels[8][kPanelRows][4];
    float scale[2][kPanelRows];
    float min[kPanelRows];
};

constexpr size_t kMcRows = 128;       // rows packed at a time
constexpr size_t kKcBlocks = 32;      // 32-value blocks per packed chunk (1024 values)
constexpr size_t kMaxTileTokens = 8;  // tokens per micro-tile
static_assert(kMcRows / kPanelRows * kKcBlocks * sizeof(PanelBlock) <= kGemmScratchBytes);
static_assert(kMcRows % kPanelRows == 0 && kPanelRows % kRowBlock == 0);

// One 32-value block of a weight row as unsigned levels plus scales (see PanelBlock).
struct RowBlock {
    __m256i levels;
    float scale[2];
    float min;
};

template <DType D>
RowBlock decode_row_block(const uint8_t* row, size_t b) {
    RowBlock out;
    out.min = 0.0f;
    if constexpr (D == DType::Q8_0) {
        const auto& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
        out.levels = _mm256_xor_si256(load32(blk.qs), _mm256_set1_epi8(static_cast<char>(0x80)));
        out.scale[0] = out.scale[1] = f16(blk.d);
    } else if constexpr (D == DType::Q4_0) {
        const auto& blk = reinterpret_cast<const BlockQ4_0*>(row)[b];
        const __m128i raw = load16(blk.qs);
        out.levels = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
        out.scale[0] = out.scale[1] = f16(blk.d);
    } else if constexpr (D == DType::Q4_K || D == DType::Q5_K) {
        const size_t j = b % 8;
        const auto* super = row + (b / 8) * block_bytes(D);
        const auto* header = reinterpret_cast<const BlockQ4_K*>(super);  // Q5_K shares the header
        const uint8_t* qs = D == DType::Q4_K ? header->qs : reinterpret_cast<const BlockQ5_K*>(super)->qs;
        const __m256i bytes = load32(qs + 32 * (j / 2));
        __m256i levels = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(bytes, 4) : bytes, _mm256_set1_epi8(0x0F));
        if constexpr (D == DType::Q5_K) {
            const __m256i qh = load32(reinterpret_cast<const BlockQ5_K*>(super)->qh);
            const __m256i bit = _mm256_and_si256(_mm256_srli_epi16(qh, static_cast<int>(j)), _mm256_set1_epi8(1));
            levels = _mm256_or_si256(levels, _mm256_slli_epi16(bit, 4));
        }
        out.levels = levels;
        uint8_t sc, m;
        quant::scale_min_k4(j, header->scales, &sc, &m);
        out.scale[0] = out.scale[1] = f16(header->d) * sc;
        out.min = f16(header->dmin) * m;
    } else if constexpr (D == DType::Q6_K) {
        const auto& blk = reinterpret_cast<const BlockQ6_K*>(row)[b / 8];
        const size_t j = b % 8, h = j / 4, k = j % 4;
        const __m256i ql = load32(blk.ql + 64 * h + 32 * (k % 2));
        const __m256i low = _mm256_and_si256(k / 2 ? _mm256_srli_epi16(ql, 4) : ql, _mm256_set1_epi8(0x0F));
        const __m256i high = _mm256_and_si256(_mm256_srli_epi16(load32(blk.qh + 32 * h), static_cast<int>(2 * k)),
                                              _mm256_set1_epi8(0x03));
        out.levels = _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
        const float d = f16(blk.d);
        out.scale[0] = d * blk.scales[2 * j];
        out.scale[1] = d * blk.scales[2 * j + 1];
    }
    return out;
}

// Transposes 32-bit words: v[i] holds 8 words of row i (low half) and of row i + 8 (high half);
// afterwards v[g] holds word g of rows 0..15.
[[gnu::always_inline]] inline void transpose_words(__m512i v[8]) {
    __m512i t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
    // s[4q + c] (c < 4), per 128-bit lane L: word c (L even) or c + 4 (L odd) of rows 4q..4q+3.
    for (int q = 0; q < 8; q += 4) {
        s[q] = _mm512_unpacklo_epi64(t[q], t[q + 2]);
        s[q + 1] = _mm512_unpackhi_epi64(t[q], t[q + 2]);
        s[q + 2] = _mm512_unpacklo_epi64(t[q + 1], t[q + 3]);
        s[q + 3] = _mm512_unpackhi_epi64(t[q + 1], t[q + 3]);
    }
    const __m512i even = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i odd = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (int c = 0; c < 4; ++c) {
        v[c] = _mm512_permutex2var_epi64(s[c], even, s[c + 4]);
        v[c + 4] = _mm512_permutex2var_epi64(s[c], odd, s[c + 4]);
    }
}

// Packs blocks [block_begin, block_begin + n_blocks) of rows [r0, r0 + row_count) into one
// panel; lanes past row_count repeat row r0 (their results are never stored).
template <DType D>
void pack_panel(const uint8_t* w, size_t row_size, size_t r0, size_t row_count, size_t block_begin, size_t n_blocks,
                PanelBlock* panel) {
    const uint8_t* rows[kPanelRows];
    for (size_t i = 0; i < kPanelRows; ++i) rows[i] = w + (r0 + (i < row_count ? i : 0)) * row_size;
    for (size_t b = 0; b < n_blocks; ++b) {
        PanelBlock& out = panel[b];
        __m512i v[8];
        for (size_t i = 0; i < 8; ++i) {
            const RowBlock lo = decode_row_block<D>(rows[i], block_begin + b);
            const RowBlock hi = decode_row_block<D>(rows[i + 8], block_begin + b);
            v[i] = join(lo.levels, hi.levels);
            out.scale[0][i] = lo.scale[0];
            out.scale[1][i] = lo.scale[1];
            out.min[i] = lo.min;
            out.scale[0][i + 8] = hi.scale[0];
            out.scale[1][i + 8] = hi.scale[1];
            out.min[i + 8] = hi.min;
        }
        transpose_words(v);
        for (size_t g = 0; g < 8; ++g) _mm512_storeu_si512(out.levels[g], v[g]);
    }
}

template <DType D>
constexpr bool kTwoScales = D == DType::Q6_K;
template <DType D>
constexpr bool kHasMin = D == DType::Q4_K || D == DType::Q5_K;

int32_t hsum4(__m128i v) {
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4E));
    return _mm_cvtsi128_si32(_mm_add_epi32(v, _mm_shuffle_epi32(v, 0xB1)));
}

// corrections[t][b][h]: -offset * (sum of token t's activation bytes in half h of block b, or
// in the whole block when the type has one scale per block, then in [t][b][0]).
using TileCorrections = int32_t[kMaxTileTokens][kKcBlocks][2];

template <DType D>
void tile_corrections(const uint8_t* x, size_t x_stride, size_t tokens, size_t n_blocks, TileCorrections& out) {
    for (size_t t = 0; t < tokens; ++t) {
        const auto* xb = reinterpret_cast<const BlockQ8A*>(x + t * x_stride);
        for (size_t b = 0; b < n_blocks; ++b) {
            const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), load32(xb[b].qs));
            const __m128i first = _mm256_castsi256_si128(sums), second = _mm256_extracti128_si256(sums, 1);
            if constexpr (kTwoScales<D>) {
                out[t][b][0] = -kOffset<D> * hsum4(first);
                out[t][b][1] = -kOffset<D> * hsum4(second);
            } else {
                out[t][b][0] = -kOffset<D> * hsum4(_mm_add_epi32(first, second));
            }
        }
    }
}

// Y[t][rows of the panel] (+)= panel . X[t] for kT tokens over n_blocks blocks. `x` points at
// the first token's first block of the chunk.
template <DType D, size_t kT>
void micro_kernel(const PanelBlock* panel, size_t n_blocks, const uint8_t* x, size_t x_stride,
                  const TileCorrections& corrections, float* y, size_t ldy, bool accumulate, size_t row_count) {
    constexpr size_t kHalves = kTwoScales<D> ? 2 : 1;
    constexpr size_t kGroups = 8 / kHalves;  // 4-value groups per scale
    const __mmask16 store_mask = static_cast<__mmask16>((1u << row_count) - 1);
    __m512 acc[kT];
#pragma GCC unroll 8
    for (size_t t = 0; t < kT; ++t) {
        acc[t] = accumulate ? _mm512_maskz_loadu_ps(store_mask, y + t * ldy) : _mm512_setzero_ps();
    }
    for (size_t b = 0; b < n_blocks; ++b) {
        const PanelBlock& p = panel[b];
        const BlockQ8A* xb[kT];
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) xb[t] = reinterpret_cast<const BlockQ8A*>(x + t * x_stride) + b;
#pragma GCC unroll 2
        for (size_t h = 0; h < kHalves; ++h) {
            __m512i isum[kT];
#pragma GCC unroll 8
            for (size_t t = 0; t < kT; ++t) {
                isum[t] = kOffset<D> ? _mm512_set1_epi32(corrections[t][b][h]) : _mm512_setzero_si512();
            }
#pragma GCC unroll 8
            for (size_t g = kGroups * h; g < kGroups * (h + 1); ++g) {
                const __m512i w = load64(p.levels[g]);
#pragma GCC unroll 8
                for (size_t t = 0; t < kT; ++t) {
                    isum[t] = _mm512_dpbusd_epi32(isum[t], w, _mm512_set1_epi32(load_i32(xb[t]->qs + 4 * g)));
                }
            }
            const __m512 scale = _mm512_loadu_ps(p.scale[h]);
#pragma GCC unroll 8
            for (size_t t = 0; t < kT; ++t) {
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(scale, _mm512_set1_ps(xb[t]->d)), _mm512_cvtepi32_ps(isum[t]),
                                         acc[t]);
            }
        }
        if constexpr (kHasMin<D>) {
            const __m512 min = _mm512_loadu_ps(p.min);
#pragma GCC unroll 8
            for (size_t t = 0; t < kT; ++t) acc[t] = _mm512_fnmadd_ps(min, _mm512_set1_ps(xb[t]->dsum), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (size_t t = 0; t < kT; ++t) _mm512_mask_storeu_ps(y + t * ldy, store_mask, acc[t]);
}

template <DType D>
using MicroKernelFn = void (*)(const PanelBlock*, size_t, const uint8_t*, size_t, const TileCorrections&, float*,
                               size_t, bool, size_t);

template <DType D>
constexpr MicroKernelFn<D> kMicroKernels[kMaxTileTokens + 1] = {
    nullptr,           micro_kernel<D, 1>, micro_kernel<D, 2>, micro_kernel<D, 3>, micro_kernel<D, 4>,
    micro_kernel<D, 5>, micro_kernel<D, 6>, micro_kernel<D, 7>, micro_kernel<D, 8>,
};

// One token: the GEMV (row by row, no packing), so decode-shaped calls give gemv's bits.
template <DType D>
void gemv_row_range(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    if constexpr (D == DType::Q8_0) {
        avx2::gemv_q8_0(w, cols, x, y, row_begin, row_end);
    } else if constexpr (D == DType::Q4_K) {
        avx2::gemv_q4_k(w, cols, x, y, row_begin, row_end);
    } else if constexpr (D == DType::Q5_K) {
        avx2::gemv_q5_k(w, cols, x, y, row_begin, row_end);
    } else {
        gemv<D>(w, cols, x, y, row_begin, row_end);
    }
}

template <DType D>
void gemm(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
          size_t row_begin, size_t row_end, void* scratch) {
    const auto* weights = static_cast<const uint8_t*>(w);
    const auto* xq = static_cast<const uint8_t*>(x);
    const size_t row_size = row_bytes(D, cols);
    const size_t blocks = cols / kQ32;
    if (n == 1 || blocks == 0) {
        for (size_t t = 0; t < n; ++t) gemv_row_range<D>(w, cols, xq + t * x_stride, y + t * ldy, row_begin, row_end);
        return;
    }
    auto* panels = static_cast<PanelBlock*>(scratch);
    TileCorrections corrections;
    for (size_t mb = row_begin; mb < row_end; mb += kMcRows) {
        const size_t mc = row_end - mb < kMcRows ? row_end - mb : kMcRows;
        const size_t n_panels = (mc + kPanelRows - 1) / kPanelRows;
        for (size_t kb = 0; kb < blocks; kb += kKcBlocks) {
            const size_t kc = blocks - kb < kKcBlocks ? blocks - kb : kKcBlocks;
            for (size_t p = 0; p < n_panels; ++p) {
                const size_t rows = mc - p * kPanelRows < kPanelRows ? mc - p * kPanelRows : kPanelRows;
                pack_panel<D>(weights, row_size, mb + p * kPanelRows, rows, kb, kc, panels + p * kc);
            }
            // Tokens in ceil(n / 8) blocks of near-equal size, so no tile is left with 1-2 tokens.
            const size_t tiles = (n + kMaxTileTokens - 1) / kMaxTileTokens;
            for (size_t tile = 0, t0 = 0; tile < tiles; ++tile) {
                const size_t tokens = (n - t0) / (tiles - tile);
                const uint8_t* x_chunk = xq + t0 * x_stride + kb * sizeof(BlockQ8A);
                if constexpr (kOffset<D> != 0) tile_corrections<D>(x_chunk, x_stride, tokens, kc, corrections);
                const MicroKernelFn<D> kernel = kMicroKernels<D>[tokens];
                for (size_t p = 0; p < n_panels; ++p) {
                    const size_t rows = mc - p * kPanelRows < kPanelRows ? mc - p * kPanelRows : kPanelRows;
                    kernel(panels + p * kc, kc, x_chunk, x_stride, corrections, y + t0 * ldy + mb + p * kPanelRows,
                           ldy, kb > 0, rows);
                }
                t0 += tokens;
            }
        }
    }
}

}  // namespace

void gemv_q4_0(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv<DType::Q4_0>(w, cols, x, y, row_begin, row_end);
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

}  // namespace lfmrt::cpu::avx512
