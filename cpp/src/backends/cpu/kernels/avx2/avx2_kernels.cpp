// The AVX2 kernel table (AVX2 + FMA + F16C), tested against the scalar table.
//
// This file is compiled with -mavx2 -mfma -mf16c. Any inline function with external linkage that
// it instantiates (STL templates, <cmath> wrappers) could be emitted here with AVX2 code and then
// chosen by the linker for generic callers, so it includes no STL headers, uses intrinsics and
// builtins (sqrt, memcpy, inf) instead of library calls, and keeps every helper in an anonymous
// namespace.
//
// No alignment is assumed anywhere: weights come from memory-mapped files and activations from
// the caller's buffers, so every load and store is unaligned.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "backends/cpu/kernels/avx2/reductions.h"
#include "backends/cpu/kernels/avx2/float_kernels.h"
#include "backends/cpu/kernels/avx2/panel_kernels.h"
#include "backends/cpu/kernels/avx2/prefetch.h"
#include "backends/cpu/kernels/avx2/quant_kernels.h"
#include "backends/cpu/kernels/kernels.h"

namespace lfmrt::cpu {
namespace {

// ---------------------------------------------------------------------------------------------
// Loads of 8 consecutive elements of a weight row, widened to fp32.

template <DType D>
constexpr size_t kElemBytes = D == DType::F32 ? 4 : 2;

template <DType D>
const void* weight_row(const void* w, size_t cols, size_t r) {
    return static_cast<const char*>(w) + r * cols * kElemBytes<D>;
}

template <DType D>
__m256 load8(const void* row, size_t k) {
    if constexpr (D == DType::F32) {
        return _mm256_loadu_ps(static_cast<const float*>(row) + k);
    } else {
        const __m128i h = _mm_loadu_si128(
            reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k));
        if constexpr (D == DType::F16) {
            return _mm256_cvtph_ps(h);
        } else {  // bf16 is the top half of an fp32
            return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        }
    }
}

// The first `count` (< 8) elements at k widened to fp32, the other lanes zero.
template <DType D>
__m256 load_partial8(const void* row, size_t k, size_t count) {
    alignas(32) unsigned char bytes[8 * kElemBytes<D>] = {};
    __builtin_memcpy(bytes, static_cast<const char*>(row) + k * kElemBytes<D>,
                     count * kElemBytes<D>);
    return load8<D>(bytes, 0);
}

// Lanes [0, count) set, for masked loads and stores of the last `count` (< 8) floats.
__m256i lane_mask(size_t count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

using avx2_reductions::hsum;

// ---------------------------------------------------------------------------------------------
// exp: Cephes-style. n = round(x / ln2), r = x - n ln2 (ln2 split in two for exactness),
// exp(r) by a degree-7 polynomial on [-ln2/2, ln2/2], times 2^n built in the exponent bits.
// About 1-2 ulp. Inputs are clamped so that 2^n stays a normal float; below ln(FLT_MIN) the
// result is 0 and above ln(FLT_MAX) it is +inf; NaN stays NaN.

__m256 exp8(__m256 x) {
    const __m256 kMaxInput = _mm256_set1_ps(88.37f);      // n <= 127
    const __m256 kMinInput = _mm256_set1_ps(-87.33654f);  // ln(FLT_MIN): n >= -126
    const __m256 kOverflow = _mm256_set1_ps(88.72284f);   // ln(FLT_MAX)

    // min/max return their second operand when either is NaN, so NaN passes through.
    const __m256 clamped = _mm256_max_ps(kMinInput, _mm256_min_ps(kMaxInput, x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(clamped, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), clamped);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);

    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));

    const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23));
    __m256 result = _mm256_mul_ps(p, scale);

    result = _mm256_andnot_ps(_mm256_cmp_ps(x, kMinInput, _CMP_LT_OQ), result);
    return _mm256_blendv_ps(result, _mm256_set1_ps(__builtin_inff()),
                            _mm256_cmp_ps(x, kOverflow, _CMP_GT_OQ));
}

// ---------------------------------------------------------------------------------------------
// GEMV. One row at a time, four accumulators fed 32 columns per step. Rows are contiguous, so
// this reads the matrix as a single sequential stream, which the hardware prefetcher follows at
// full memory bandwidth; interleaving several rows (to share the x loads) measured 2-3x slower
// from DRAM. Every row takes the same path, so splitting rows between threads cannot change a bit.
//
// Long rows (x of 16 KiB or more: ffn_down's 4608 columns) stop fitting in L1 beside the weight
// stream, x's lines then miss L1 too, and the hardware stream falls behind: 26-29 GB/s where
// 1024-column rows read at 33 (2 threads, 4 KiB pages, from DRAM). A software prefetch of the
// weights 4 KiB ahead, into L2, restores 31-33 GB/s there; on short rows it costs 1-3%, so only
// long rows take it. A prefetch is a hint and never faults, so reaching past the matrix is harmless.

constexpr size_t kGemvAccumulators = 4;  // the final pairwise sum below assumes four
constexpr size_t kLongRowCols = 4096;    // x of >= 16 KiB: half of a 32 KiB L1
constexpr size_t kLongRowPrefetchBytes = 4096;

template <DType D, bool kPrefetchAhead = false>
float dot_row(const void* row, const float* x, size_t cols) {
    __m256 acc[kGemvAccumulators];
    for (__m256& a : acc) a = _mm256_setzero_ps();
    size_t k = 0;
    for (; k + 8 * kGemvAccumulators <= cols; k += 8 * kGemvAccumulators) {
        if constexpr (kPrefetchAhead) {
            x86_prefetch::prefetch_stream_to_l2(
                static_cast<const char*>(row) + k * kElemBytes<D> + kLongRowPrefetchBytes,
                8 * kGemvAccumulators * kElemBytes<D>);
        }
        for (size_t j = 0; j < kGemvAccumulators; ++j) {
            acc[j] = _mm256_fmadd_ps(load8<D>(row, k + 8 * j), _mm256_loadu_ps(x + k + 8 * j), acc[j]);
        }
    }
    for (; k + 8 <= cols; k += 8) {
        acc[0] = _mm256_fmadd_ps(load8<D>(row, k), _mm256_loadu_ps(x + k), acc[0]);
    }
    if (k < cols) {
        acc[1] = _mm256_fmadd_ps(load_partial8<D>(row, k, cols - k),
                                 load_partial8<DType::F32>(x, k, cols - k), acc[1]);
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

template <DType D>
void gemv(const void* w, size_t cols, const void* x_row, float* y, size_t row_begin, size_t row_end) {
    const auto* x = static_cast<const float*>(x_row);
    if (cols >= kLongRowCols) {
        for (size_t r = row_begin; r < row_end; ++r) y[r] = dot_row<D, true>(weight_row<D>(w, cols, r), x, cols);
    } else {
        for (size_t r = row_begin; r < row_end; ++r) y[r] = dot_row<D, false>(weight_row<D>(w, cols, r), x, cols);
    }
}

// ---------------------------------------------------------------------------------------------
// GEMM. Y[t][r] = W[r] . X[t], blocked like BLIS with the weights as the packed operand:
//   for each block of up to kMc rows and each chunk of kKc columns,
//     pack the weights to fp32 panels of kNr rows, k-major (panel[k][kNr]), in `scratch`
//     (converted once, then reused by every token);
//     for each block of up to kMr tokens, for each panel: the kMr x kNr micro-kernel.
// The micro-kernel keeps 12 accumulators in registers; the X block it broadcasts from (kMr x
// kKc, 6 KB) stays in L1 across the panels of the block, the packed block (up to 128 KB) in L2.
// Across column chunks the micro-kernel reloads Y into its accumulators, so each Y element is
// one FMA chain over k = 0..cols-1 in order, whatever the row split, row tail or token tail.
// Fewer than kMinTokensToPack tokens skip the packing and go row by row (gemm_by_rows).

constexpr size_t kMr = 6;   // tokens per micro-tile
constexpr size_t kNr = 16;  // weight rows per micro-tile (two ymm)
constexpr size_t kKc = 256;
constexpr size_t kMc = 128;
static_assert(kMc * kKc * sizeof(float) <= kGemmScratchBytes, "packed weight block must fit the scratch");
static_assert(kMc % kNr == 0 && kRowBlock % kNr == 0);

// Transposes 8 vectors in place: v[i] lane j  ->  v[j] lane i. Always inlined, so that `v`
// lives in registers rather than on the stack.
[[gnu::always_inline]] inline void transpose8x8(__m256 v[8]) {
    __m256 t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
    }
    __m256 s[8];
    for (int i = 0; i < 8; i += 4) {
        s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; ++i) {
        v[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
        v[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
    }
}

// Packs 8 rows x `kc` columns from column kb into panel[k * kNr + lane], lanes 0..7 of each
// k-row (the caller offsets `panel` for lanes 8..15). With kMasked, only the lanes in
// `row_mask` are kept and the others are zero: the rows of a partial panel past its end point
// at a real row (any readable one) and are cleared after the transpose, so the loop itself
// has no branches.
template <DType D, bool kMasked>
void pack_8_rows(const void* const rows[8], __m256 row_mask, size_t kb, size_t kc, float* panel) {
    size_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 v[8];
        for (size_t i = 0; i < 8; ++i) v[i] = load8<D>(rows[i], kb + k);
        transpose8x8(v);
        for (size_t i = 0; i < 8; ++i) {
            _mm256_storeu_ps(panel + (k + i) * kNr, kMasked ? _mm256_and_ps(v[i], row_mask) : v[i]);
        }
    }
    if (k < kc) {
        __m256 v[8];
        for (size_t i = 0; i < 8; ++i) v[i] = load_partial8<D>(rows[i], kb + k, kc - k);
        transpose8x8(v);
        for (size_t i = 0; k + i < kc; ++i) {
            _mm256_storeu_ps(panel + (k + i) * kNr, kMasked ? _mm256_and_ps(v[i], row_mask) : v[i]);
        }
    }
}

template <DType D>
void pack_8_rows(const void* const rows[8], size_t row_count, size_t kb, size_t kc, float* panel) {
    if (row_count == 8) return pack_8_rows<D, false>(rows, _mm256_setzero_ps(), kb, kc, panel);
    const __m256 row_mask = _mm256_castsi256_ps(lane_mask(row_count));
    pack_8_rows<D, true>(rows, row_mask, kb, kc, panel);
}

// Packs rows [r0, r0 + row_count) (row_count <= kNr), columns [kb, kb + kc) into one panel.
template <DType D>
void pack_panel(const void* w, size_t cols, size_t r0, size_t row_count, size_t kb, size_t kc,
                float* panel) {
    const void* rows[kNr];
    for (size_t i = 0; i < kNr; ++i) rows[i] = weight_row<D>(w, cols, r0 + (i < row_count ? i : 0));
    pack_8_rows<D>(rows, row_count < 8 ? row_count : 8, kb, kc, panel);
    pack_8_rows<D>(rows + 8, row_count > 8 ? row_count - 8 : 0, kb, kc, panel + 8);
}

// Where a micro-tile's rows lie in Y: 16 rows, or fewer at the end of a row range.
struct RowTile {
    size_t count;  // 1..kNr
    __m256i mask_lo, mask_hi;

    explicit RowTile(size_t rows)
        : count(rows),
          mask_lo(lane_mask(rows < 8 ? rows : 8)),
          mask_hi(lane_mask(rows > 8 ? rows - 8 : 0)) {}
    bool full() const { return count == kNr; }
};

// acc[t] (+)= panel . X[t] for kT tokens and one panel of kc columns. `x` points at the first
// token's first column of the chunk and `y` at the first token's first row of the tile.
template <size_t kT>
void micro_kernel(const float* panel, size_t kc, const float* x, size_t ldx, float* y, size_t ldy,
                  bool accumulate, const RowTile& tile) {
    // The token loops are unrolled completely so that GCC keeps the accumulator arrays in
    // registers; otherwise it stores them to the stack on every step.
    __m256 lo[kT];
    __m256 hi[kT];
#pragma GCC unroll 6
    for (size_t t = 0; t < kT; ++t) {
        float* yt = y + t * ldy;
        if (!accumulate) {
            lo[t] = _mm256_setzero_ps();
            hi[t] = _mm256_setzero_ps();
        } else if (tile.full()) {
            lo[t] = _mm256_loadu_ps(yt);
            hi[t] = _mm256_loadu_ps(yt + 8);
        } else {
            lo[t] = _mm256_maskload_ps(yt, tile.mask_lo);
            hi[t] = _mm256_maskload_ps(yt + 8, tile.mask_hi);
        }
    }
    for (size_t k = 0; k < kc; ++k) {
        const __m256 w_lo = _mm256_loadu_ps(panel + k * kNr);
        const __m256 w_hi = _mm256_loadu_ps(panel + k * kNr + 8);
#pragma GCC unroll 6
        for (size_t t = 0; t < kT; ++t) {
            const __m256 xt = _mm256_broadcast_ss(x + t * ldx + k);
            lo[t] = _mm256_fmadd_ps(w_lo, xt, lo[t]);
            hi[t] = _mm256_fmadd_ps(w_hi, xt, hi[t]);
        }
    }
#pragma GCC unroll 6
    for (size_t t = 0; t < kT; ++t) {
        float* yt = y + t * ldy;
        if (tile.full()) {
            _mm256_storeu_ps(yt, lo[t]);
            _mm256_storeu_ps(yt + 8, hi[t]);
        } else {
            _mm256_maskstore_ps(yt, tile.mask_lo, lo[t]);
            _mm256_maskstore_ps(yt + 8, tile.mask_hi, hi[t]);
        }
    }
}

// Below this many tokens the weights are not packed (see gemm_by_rows). From there up, token
// blocks of near-equal size hold 3 (7 = 3 + 4) to kMr tokens, so those are the micro-kernels.
constexpr size_t kMinTokensToPack = 4;

using MicroKernelFn = void (*)(const float*, size_t, const float*, size_t, float*, size_t, bool,
                               const RowTile&);
constexpr MicroKernelFn kMicroKernels[kMr + 1] = {
    nullptr, nullptr, nullptr, micro_kernel<3>, micro_kernel<4>, micro_kernel<5>, micro_kernel<6>,
};

// Y rows [row_begin, row_end) of tokens [0, n) set to zero (the empty dot product).
void zero_rows(size_t n, float* y, size_t ldy, size_t row_begin, size_t row_end) {
    for (size_t t = 0; t < n; ++t) {
        for (size_t r = row_begin; r < row_end; ++r) y[t * ldy + r] = 0.0f;
    }
}

// For a few tokens, packing (about 0.15-0.3 ns per weight, as much as 3-5 row dots) costs more
// than the micro-kernel saves, so each weight row is dotted with every token while it is in L1.
// The matrix is still read from memory once, and each result equals gemv's bit for bit.
template <DType D>
void gemm_by_rows(const void* w, size_t cols, const float* x, size_t ldx, size_t n, float* y,
                  size_t ldy, size_t row_begin, size_t row_end) {
    for (size_t r = row_begin; r < row_end; ++r) {
        const void* row = weight_row<D>(w, cols, r);
        for (size_t t = 0; t < n; ++t) y[t * ldy + r] = dot_row<D>(row, x + t * ldx, cols);
    }
}

template <DType D>
void gemm(const void* w, size_t cols, const void* x_rows, size_t x_stride, size_t n, float* y, size_t ldy,
          size_t row_begin, size_t row_end, void* scratch_bytes) {
    const auto* x = static_cast<const float*>(x_rows);
    const size_t ldx = x_stride / sizeof(float);
    auto* scratch = static_cast<float*>(scratch_bytes);
    if (n < kMinTokensToPack) return gemm_by_rows<D>(w, cols, x, ldx, n, y, ldy, row_begin, row_end);
    if (cols == 0) return zero_rows(n, y, ldy, row_begin, row_end);
    for (size_t mb = row_begin; mb < row_end; mb += kMc) {
        const size_t mc = row_end - mb < kMc ? row_end - mb : kMc;
        for (size_t kb = 0; kb < cols; kb += kKc) {
            const size_t kc = cols - kb < kKc ? cols - kb : kKc;
            for (size_t p = 0; p < mc; p += kNr) {
                const size_t rows = mc - p < kNr ? mc - p : kNr;
                pack_panel<D>(w, cols, mb + p, rows, kb, kc, scratch + p * kc);
            }
            // Tokens in ceil(n / kMr) blocks of near-equal size: a block of 1-2 tokens has too
            // few FMA chains to hide latency, so 7 tokens run as 4 + 3 rather than 6 + 1.
            const size_t blocks = (n + kMr - 1) / kMr;
            // The next block's weights: the next column chunk of these rows, else the next rows.
            const bool last_chunk = kb + kKc >= cols;
            const size_t next_mb = last_chunk ? mb + kMc : mb, next_kb = last_chunk ? 0 : kb + kKc;
            const size_t next_mc = next_mb < row_end ? (row_end - next_mb < kMc ? row_end - next_mb : kMc) : 0;
            const size_t next_bytes = (cols - next_kb < kKc ? cols - next_kb : kKc) * kElemBytes<D>;
            for (size_t b = 0, t0 = 0; b < blocks; ++b) {
                const size_t tokens = (n - t0) / (blocks - b);
                const MicroKernelFn kernel = kMicroKernels[tokens];
                for (size_t p = 0; p < mc; p += kNr) {
                    // Spread over the first token block's panels: the next block's rows p..p+kNr.
                    if (b == 0) {
                        for (size_t r = p; r < p + kNr && r < next_mc; ++r) {
                            x86_prefetch::prefetch_range_to_l2(
                                static_cast<const char*>(weight_row<D>(w, cols, next_mb + r)) +
                                    next_kb * kElemBytes<D>,
                                next_bytes);
                        }
                    }
                    const RowTile tile(mc - p < kNr ? mc - p : kNr);
                    kernel(scratch + p * kc, kc, x + t0 * ldx + kb, ldx, y + t0 * ldy + mb + p, ldy,
                           kb > 0, tile);
                }
                t0 += tokens;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Vector ops, with masked loads and stores for the tails.

float dot(const float* a, const float* b, size_t n) { return dot_row<DType::F32>(a, b, n); }

void axpy(float a, const float* x, float* y, size_t n) {
    const __m256 av = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    }
    if (i < n) {
        const __m256i mask = lane_mask(n - i);
        const __m256 yv = _mm256_maskload_ps(y + i, mask);
        _mm256_maskstore_ps(y + i, mask, _mm256_fmadd_ps(av, _mm256_maskload_ps(x + i, mask), yv));
    }
}

// out[i] = f(a[i], b[i]) for a vector op f, with a masked tail; out may alias a or b.
template <typename Op>
void map2(const float* a, const float* b, float* out, size_t n, Op op) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(out + i, op(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    }
    if (i < n) {
        const __m256i mask = lane_mask(n - i);
        _mm256_maskstore_ps(out + i, mask,
                            op(_mm256_maskload_ps(a + i, mask), _mm256_maskload_ps(b + i, mask)));
    }
}

void rmsnorm(const float* x, const float* weight, size_t n, float eps, float* y) {
    const float mean_square = dot(x, x, n) / static_cast<float>(n);
    const float inv_rms = 1.0f / _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(mean_square + eps)));
    const __m256 scale = _mm256_set1_ps(inv_rms);
    map2(x, weight, y, n,
         [scale](__m256 xv, __m256 wv) { return _mm256_mul_ps(_mm256_mul_ps(xv, scale), wv); });
}

void silu_mul(const float* gate, const float* up, float* out, size_t n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    map2(gate, up, out, n, [one, sign](__m256 g, __m256 u) {
        const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, exp8(_mm256_xor_ps(g, sign))));
        return _mm256_mul_ps(silu, u);
    });
}

void mul(const float* a, const float* b, float* out, size_t n) {
    map2(a, b, out, n, [](__m256 av, __m256 bv) { return _mm256_mul_ps(av, bv); });
}

float exp_sum(float* x, size_t n, float shift) {
    const __m256 s = _mm256_set1_ps(shift);
    __m256 sum = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (i < n) {
        const __m256i mask = lane_mask(n - i);
        const __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, mask), s)),
                                       _mm256_castsi256_ps(mask));
        _mm256_maskstore_ps(x + i, mask, e);
        sum = _mm256_add_ps(sum, e);
    }
    return hsum(sum);
}

// The per-dtype arrays below are listed in DType order.
static_assert(static_cast<int>(DType::F32) == 0 && static_cast<int>(DType::F16) == 1 &&
              static_cast<int>(DType::BF16) == 2 && static_cast<int>(DType::Q8_0) == 3 &&
              static_cast<int>(DType::Q4_0) == 4 && static_cast<int>(DType::Q4_K) == 5 &&
              static_cast<int>(DType::Q5_K) == 6 && static_cast<int>(DType::Q6_K) == 7 && kNumDTypes == 8);

}  // namespace

namespace avx2 {

void gemv_f32(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    cpu::gemv<DType::F32>(w, cols, x, y, row_begin, row_end);
}
void gemv_f16(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    cpu::gemv<DType::F16>(w, cols, x, y, row_begin, row_end);
}
void gemv_bf16(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end) {
    cpu::gemv<DType::BF16>(w, cols, x, y, row_begin, row_end);
}
void gemm_f32(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
              size_t row_begin, size_t row_end, void* scratch) {
    cpu::gemm<DType::F32>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}
void gemm_f16(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
              size_t row_begin, size_t row_end, void* scratch) {
    cpu::gemm<DType::F16>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}
void gemm_bf16(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch) {
    cpu::gemm<DType::BF16>(w, cols, x, x_stride, n, y, ldy, row_begin, row_end, scratch);
}
float dot(const float* a, const float* b, size_t n) { return cpu::dot(a, b, n); }
void axpy(float a, const float* x, float* y, size_t n) { cpu::axpy(a, x, y, n); }
void rmsnorm(const float* x, const float* weight, size_t n, float eps, float* y) { cpu::rmsnorm(x, weight, n, eps, y); }
void silu_mul(const float* gate, const float* up, float* out, size_t n) { cpu::silu_mul(gate, up, out, n); }
float exp_sum(float* x, size_t n, float shift) { return cpu::exp_sum(x, n, shift); }
void mul(const float* a, const float* b, float* out, size_t n) { cpu::mul(a, b, out, n); }

}  // namespace avx2

namespace {

constexpr KernelTable kAvx2Table{
    "avx2",
    {avx2::gemv_f32, avx2::gemv_f16, avx2::gemv_bf16, avx2::gemv_q8_0, avx2::gemv_q4_0, avx2::gemv_q4_k,
     avx2::gemv_q5_k, avx2::gemv_q6_k},
    {avx2::gemm_f32, avx2::gemm_f16, avx2::gemm_bf16, avx2::gemm_q8_0, avx2::gemm_q4_0, avx2::gemm_q4_k,
     avx2::gemm_q5_k, avx2::gemm_q6_k},
    {nullptr, nullptr, nullptr, avx2::gemv_panels_q8_0, avx2::gemv_panels_q4_0, avx2::gemv_panels_q4_k, nullptr,
     avx2::gemv_panels_q6_k},
    {nullptr, nullptr, nullptr, avx2::gemm_panels_q8_0, avx2::gemm_panels_q4_0, avx2::gemm_panels_q4_k, nullptr,
     avx2::gemm_panels_q6_k},
    avx2::quantize_q8a,
    avx2::quantize_q8a_k,
    avx2::dot,
    avx2::axpy,
    avx2::rmsnorm,
    avx2::silu_mul,
    avx2::mul,
};

}  // namespace

const KernelTable& avx2_kernels() { return kAvx2Table; }

}  // namespace lfmrt::cpu
