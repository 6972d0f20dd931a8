// AVX-512 VNNI GEMVs and GEMMs for Q4_K and Q5_K weights, in GGUF's rows, times BlockQ8A
// activations (see kernels.h), tested against the scalar table. Compiled with -mavx512f
// -mavx512bw -mavx512vl -mavx512vnni -mfma -mf16c -mavx2; like the AVX2 files it instantiates no
// STL and keeps every helper in an anonymous namespace.
//
// Models use these for Q5_K. Q4_K shares the code, but the model repacks Q4_K matrices at load, as
// it does Q4_0, Q8_0 and Q6_K, for the panel kernels (panel_kernels.cpp): Q4_K's row kernels are
// the fallback for a matrix left in GGUF's rows.
//
// The integer core is vpdpbusd (unsigned bytes x signed bytes, four products summed into each
// int32 lane, one instruction for what AVX2 needs three). The K4/K5 levels (0..15, 0..31) take
// the unsigned side as they are, so the integer dots equal the scalar specification's; each
// sub-block's minimum comes off in fp32 through the activations' dsum.
//
// The GEMV (decode) goes row by row, a super-block at a time (see gemv_k45). The GEMM (prefill)
// packs 16-row panels per call (unsigned levels transposed so one zmm holds 4 levels of each of
// the 16 rows, plus per-row scales and minima) and multiplies each panel
// with up to 8 tokens: each weight vector serves 8 tokens, each token's 4 activation bytes are
// broadcast to all 16 rows. The 16 lanes are 16 rows, so a row's result does not depend on its
// lane or panel, and its arithmetic does not depend on the rows around it: row splits give the
// same bits. One token goes to the GEMV, so decode-shaped calls give its bits.
#include "backends/cpu/kernels/avx512/quant_kernels.h"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "backends/cpu/kernels/avx2/k_quants.h"
#include "backends/cpu/kernels/avx2/prefetch.h"
#include "backends/cpu/kernels/avx2/reductions.h"
#include "backends/cpu/kernels/kernels.h"
#include "formats/blocks.h"

namespace lfmrt::cpu::avx512 {
namespace {

using quant::BlockQ4_K;
using quant::BlockQ5_K;
using quant::BlockQ8A;
using quant::kQ32;

float f16(uint16_t h) { return _cvtsh_ss(h); }

__m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
__m512i load64(const void* p) { return _mm512_loadu_si512(p); }

int32_t load_i32(const void* p) {
    int32_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

// Two 32-byte vectors as one zmm: a in the low half, b in the high half.
__m512i join(__m256i a, __m256i b) { return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1); }

constexpr size_t kPanelRows = 16;

// 16 rows x 32 values: levels[g][r][i] is unsigned level 4g+i of row r; the weight is
// scale[r] * level - min[r].
struct PanelBlock {
    uint8_t levels[8][kPanelRows][4];
    float scale[kPanelRows];
    float min[kPanelRows];
};

constexpr size_t kMcRows = 128;       // rows packed at a time
constexpr size_t kKcBlocks = 32;      // 32-value blocks per packed chunk (1024 values)
constexpr size_t kMaxTileTokens = 8;  // tokens per micro-tile
static_assert(kMcRows / kPanelRows * kKcBlocks * sizeof(PanelBlock) <= kGemmScratchBytes);
static_assert(kMcRows % kPanelRows == 0 && kPanelRows % kRowBlock == 0);
constexpr size_t kSuperBlocks = quant::kQK / kQ32;  // 32-value blocks per super-block
static_assert(kKcBlocks % kSuperBlocks == 0, "column chunks are whole super-blocks");

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
// panel; lanes past row_count repeat row r0 (their results are never stored). Both are whole
// super-blocks: each row's 8 scales and minima are unpacked and scaled together (the same fp32
// products as one at a time, d * sc and dmin * m), then its blocks' levels are transposed.
template <DType D>
void pack_panel(const uint8_t* w, size_t row_size, size_t r0, size_t row_count, size_t block_begin, size_t n_blocks,
                PanelBlock* panel) {
    const uint8_t* rows[kPanelRows];
    for (size_t i = 0; i < kPanelRows; ++i) rows[i] = w + (r0 + (i < row_count ? i : 0)) * row_size;
    const auto block_of = [](const uint8_t* row) { return reinterpret_cast<const x86_k_quants::Block<D>*>(row); };
    for (size_t s = 0; s < n_blocks / kSuperBlocks; ++s) {
        const size_t super = block_begin / kSuperBlocks + s;
        PanelBlock* out = panel + s * kSuperBlocks;
        for (size_t i = 0; i < kPanelRows; ++i) {
            const auto& block = block_of(rows[i])[super];
            const x86_k_quants::ScalesMinima sm = x86_k_quants::scales_and_minima(block.scales);
            alignas(32) float scale[kSuperBlocks], min[kSuperBlocks];
            _mm256_store_ps(scale, _mm256_mul_ps(_mm256_set1_ps(f16(block.d)), sm.scales));
            _mm256_store_ps(min, _mm256_mul_ps(_mm256_set1_ps(f16(block.dmin)), sm.minima));
            for (size_t j = 0; j < kSuperBlocks; ++j) {
                out[j].scale[i] = scale[j];
                out[j].min[i] = min[j];
            }
        }
        for (size_t j = 0; j < kSuperBlocks; ++j) {
            __m512i v[8];
            for (size_t i = 0; i < 8; ++i) {
                v[i] = join(x86_k_quants::sub_block_levels<D>(block_of(rows[i])[super], j),
                            x86_k_quants::sub_block_levels<D>(block_of(rows[i + 8])[super], j));
            }
            transpose_words(v);
            for (size_t g = 0; g < 8; ++g) _mm512_storeu_si512(out[j].levels[g], v[g]);
        }
    }
}

// Y[t][rows of the panel] (+)= panel . X[t] for kT tokens over n_blocks blocks. `x` points at
// the first token's first block of the chunk.
template <size_t kT>
void micro_kernel(const PanelBlock* panel, size_t n_blocks, const uint8_t* x, size_t x_stride, float* y, size_t ldy,
                  bool accumulate, size_t row_count) {
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
        __m512i isum[kT];
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) isum[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (size_t g = 0; g < 8; ++g) {
            const __m512i w = load64(p.levels[g]);
#pragma GCC unroll 8
            for (size_t t = 0; t < kT; ++t) {
                isum[t] = _mm512_dpbusd_epi32(isum[t], w, _mm512_set1_epi32(load_i32(xb[t]->qs + 4 * g)));
            }
        }
        const __m512 scale = _mm512_loadu_ps(p.scale);
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) {
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(scale, _mm512_set1_ps(xb[t]->d)), _mm512_cvtepi32_ps(isum[t]),
                                     acc[t]);
        }
        const __m512 min = _mm512_loadu_ps(p.min);
#pragma GCC unroll 8
        for (size_t t = 0; t < kT; ++t) acc[t] = _mm512_fnmadd_ps(min, _mm512_set1_ps(xb[t]->dsum), acc[t]);
    }
#pragma GCC unroll 8
    for (size_t t = 0; t < kT; ++t) _mm512_mask_storeu_ps(y + t * ldy, store_mask, acc[t]);
}

using MicroKernelFn = void (*)(const PanelBlock*, size_t, const uint8_t*, size_t, float*, size_t, bool, size_t);

constexpr MicroKernelFn kMicroKernels[kMaxTileTokens + 1] = {
    nullptr,         micro_kernel<1>, micro_kernel<2>, micro_kernel<3>, micro_kernel<4>,
    micro_kernel<5>, micro_kernel<6>, micro_kernel<7>, micro_kernel<8>,
};

// ---------------------------------------------------------------------------------------------
// GEMV (decode) for Q4_K and Q5_K, one row at a time in GGUF's layout. The AVX2 GEMV is bound
// by its scalar work per 32 values (the 6-bit scale unpacking, and the minima summed in one
// scalar chain), not by memory; here that work is done once per super-block, 8 sub-blocks at a
// time. (Q5_K's fifth bits are added to the levels by a byte mask from qh, see with_fifth_bit.)
//
// Two 64-byte loads hold a super-block's 256 levels: the low nibbles of bytes 0-63 are sub-blocks
// 0 and 2, their high nibbles sub-blocks 1 and 3, and bytes 64-127 the same for 4, 6 and 5, 7.
// Each level vector meets its two sub-blocks' activation bytes (joined once per call) in one
// vpdpbusd: int32 lanes 0-7 sum sub-block a, lanes 8-15 sub-block b. Lanes are then scaled by
// d * sc * x.d of their sub-block and summed in fp32 lanes, the minima (dmin * m * x.dsum) in
// eight more, with one horizontal sum per row per chunk of activations.

constexpr size_t kGemvChunkSuper = 32;  // activation super-blocks prepared per chunk: 8192 values

// One super-block of the activations, arranged for the GEMV.
struct SuperBlockInput {
    __m512i pairs[4];  // bytes of sub-blocks (0, 2), (1, 3), (4, 6), (5, 7)
    __m256 d;          // x.d of sub-blocks 0..7
    __m256 dsum;       // x.dsum of sub-blocks 0..7
};

SuperBlockInput prepare_super_block(const BlockQ8A* x) {
    SuperBlockInput in;
    in.pairs[0] = join(load32(x[0].qs), load32(x[2].qs));
    in.pairs[1] = join(load32(x[1].qs), load32(x[3].qs));
    in.pairs[2] = join(load32(x[4].qs), load32(x[6].qs));
    in.pairs[3] = join(load32(x[5].qs), load32(x[7].qs));
    in.d = _mm256_setr_ps(x[0].d, x[1].d, x[2].d, x[3].d, x[4].d, x[5].d, x[6].d, x[7].d);
    in.dsum = _mm256_setr_ps(x[0].dsum, x[1].dsum, x[2].dsum, x[3].dsum, x[4].dsum, x[5].dsum, x[6].dsum,
                             x[7].dsum);
    return in;
}

// The dot of a levels vector with its two sub-blocks' activation bytes, scaled lane by lane.
[[gnu::always_inline]] inline __m512 scaled_pair(__m512i levels, __m512i activations, __m512 scale, __m512 acc) {
    const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), levels, activations);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, acc);
}

// Q5_K: adds the fifth bit of each level in `levels` (the pair's sub-blocks a, b, in bytes 0-31
// and 32-63), where bit a (b) of qh byte l is the top bit of element l of sub-block a (b).
[[gnu::always_inline]] inline __m512i with_fifth_bit(__m512i levels, __m512i qh_twice, int a, int b) {
    const __m512i bit = join(_mm256_set1_epi8(static_cast<char>(1 << a)), _mm256_set1_epi8(static_cast<char>(1 << b)));
    return _mm512_mask_add_epi8(levels, _mm512_test_epi8_mask(qh_twice, bit), levels, _mm512_set1_epi8(16));
}

// A row's dot with `n_super` prepared super-blocks, from super-block `first` of the row.
template <DType D>
float k45_row_dot(const uint8_t* row, size_t first, const SuperBlockInput* in, size_t n_super) {
    using Block = x86_k_quants::Block<D>;
    // Lane i of a pair's scale vector: sub-block a for i < 8, b after.
    const __m512i pick02 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512i pick13 = _mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m512i pick46 = _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6);
    const __m512i pick57 = _mm512_setr_epi32(5, 5, 5, 5, 5, 5, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7);
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    __m512 even = _mm512_setzero_ps(), odd = _mm512_setzero_ps();
    __m256 minima = _mm256_setzero_ps();
    for (size_t s = 0; s < n_super; ++s) {
        const auto* block = reinterpret_cast<const Block*>(row + (first + s) * sizeof(Block));
        const x86_k_quants::ScalesMinima sm = x86_k_quants::scales_and_minima(block->scales);
        const __m256 scale8 = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(f16(block->d)), sm.scales), in[s].d);
        const __m512 scale = _mm512_castps256_ps512(scale8);
        minima = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(f16(block->dmin)), sm.minima), in[s].dsum, minima);
        const __m512i q0 = load64(block->qs), q1 = load64(block->qs + 64);
        __m512i l02 = _mm512_and_si512(q0, nibble), l13 = _mm512_and_si512(_mm512_srli_epi16(q0, 4), nibble);
        __m512i l46 = _mm512_and_si512(q1, nibble), l57 = _mm512_and_si512(_mm512_srli_epi16(q1, 4), nibble);
        if constexpr (D == DType::Q5_K) {
            const __m512i qh = join(load32(block->qh), load32(block->qh));
            l02 = with_fifth_bit(l02, qh, 0, 2);
            l13 = with_fifth_bit(l13, qh, 1, 3);
            l46 = with_fifth_bit(l46, qh, 4, 6);
            l57 = with_fifth_bit(l57, qh, 5, 7);
        }
        even = scaled_pair(l02, in[s].pairs[0], _mm512_permutexvar_ps(pick02, scale), even);
        odd = scaled_pair(l13, in[s].pairs[1], _mm512_permutexvar_ps(pick13, scale), odd);
        even = scaled_pair(l46, in[s].pairs[2], _mm512_permutexvar_ps(pick46, scale), even);
        odd = scaled_pair(l57, in[s].pairs[3], _mm512_permutexvar_ps(pick57, scale), odd);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(even, odd)) - avx2_reductions::hsum(minima);
}

template <DType D>
void gemv_k45(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    const auto* weights = static_cast<const uint8_t*>(w);
    const auto* xq = static_cast<const BlockQ8A*>(x);
    const size_t row_size = row_bytes(D, cols);
    const size_t n_super = cols / quant::kQK;
    if (n_super == 0) {
        for (size_t r = row_begin; r < row_end; ++r) y[r] = 0.0f;
        return;
    }
    SuperBlockInput in[kGemvChunkSuper];
    for (size_t s0 = 0; s0 < n_super; s0 += kGemvChunkSuper) {
        const size_t count = n_super - s0 < kGemvChunkSuper ? n_super - s0 : kGemvChunkSuper;
        for (size_t s = 0; s < count; ++s) in[s] = prepare_super_block(xq + (s0 + s) * (quant::kQK / kQ32));
        for (size_t r = row_begin; r < row_end; ++r) {
            const float dot = k45_row_dot<D>(weights + r * row_size, s0, in, count);
            y[r] = s0 == 0 ? dot : y[r] + dot;
        }
    }
}

// One token: the GEMV (row by row, no packing), so decode-shaped calls give gemv's bits.
template <DType D>
void gemm(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
          size_t row_begin, size_t row_end, void* scratch) {
    const auto* weights = static_cast<const uint8_t*>(w);
    const auto* xq = static_cast<const uint8_t*>(x);
    const size_t row_size = row_bytes(D, cols);
    const size_t blocks = cols / kQ32;
    if (n == 1 || blocks == 0) {
        for (size_t t = 0; t < n; ++t) gemv_k45<D>(w, cols, xq + t * x_stride, y + t * ldy, row_begin, row_end);
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
            // Tokens in ceil(n / 8) blocks of near-equal size, so no tile is left with 1-2 tokens.
            const size_t tiles = (n + kMaxTileTokens - 1) / kMaxTileTokens;
            // The next block's rows (the next column chunk of these rows, else the next rows) are
            // fetched into L2 during the first tile, a panel's worth per micro-kernel call, so the
            // packing after it does not wait on memory.
            const bool last_chunk = kb + kKcBlocks >= blocks;
            const size_t next_mb = last_chunk ? mb + kMcRows : mb, next_kb = last_chunk ? 0 : kb + kKcBlocks;
            const size_t next_mc = next_mb < row_end ? (row_end - next_mb < kMcRows ? row_end - next_mb : kMcRows) : 0;
            constexpr size_t kBlockBytes = sizeof(x86_k_quants::Block<D>);
            const size_t next_kc = blocks - next_kb < kKcBlocks ? blocks - next_kb : kKcBlocks;
            const size_t next_bytes = next_kc / kSuperBlocks * kBlockBytes;
            const uint8_t* next_rows = weights + next_mb * row_size + next_kb / kSuperBlocks * kBlockBytes;
            for (size_t tile = 0, t0 = 0; tile < tiles; ++tile) {
                const size_t tokens = (n - t0) / (tiles - tile);
                const uint8_t* x_chunk = xq + t0 * x_stride + kb * sizeof(BlockQ8A);
                const MicroKernelFn kernel = kMicroKernels[tokens];
                for (size_t p = 0; p < n_panels; ++p) {
                    for (size_t r = p * kPanelRows; tile == 0 && r < (p + 1) * kPanelRows && r < next_mc; ++r) {
                        x86_prefetch::prefetch_range_to_l2(next_rows + r * row_size, next_bytes);
                    }
                    const size_t rows = mc - p * kPanelRows < kPanelRows ? mc - p * kPanelRows : kPanelRows;
                    kernel(panels + p * kc, kc, x_chunk, x_stride, y + t0 * ldy + mb + p * kPanelRows, ldy, kb > 0,
                           rows);
                }
                t0 += tokens;
            }
        }
    }
}

}  // namespace

void gemv_q4_k(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv_k45<DType::Q4_K>(w, cols, x, y, row_begin, row_end);
}
void gemv_q5_k(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    gemv_k45<DType::Q5_K>(w, cols, x, y, row_begin, row_end);
}

void gemm_q4_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch) {
    gemm<DType::Q4_K>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}
void gemm_q5_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch) {
    gemm<DType::Q5_K>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}

}  // namespace lfmrt::cpu::avx512
