// The AVX-512 bf16 GEMM (prefill, batched decode). Blocked like the AVX2 GEMM (avx2_kernels.cpp)
// and with the same arithmetic, so its results equal that table's bit for bit: each Y element is
// one fp32 FMA chain over k = 0..cols-1 in order, whatever the row split, row tail or token tail.
//
// What differs is the packed panel. The AVX2 GEMM widens the weights to fp32 as it packs them (an
// 8x8 fp32 transpose and 32 bytes stored per 8 weights), which at 16 tokens costs 40% as much as
// the arithmetic. Here a panel keeps the bf16 values: 16 rows x kc columns as 32-bit words,
// panel[kp][row] = (w[row][2kp] in the low half, w[row][2kp + 1] in the high half), so packing is
// one 16x16 transpose of 32-bit words per 32 columns, and the micro-kernel widens a panel vector
// to both columns' fp32 weights with one shift (the even column) and one mask (the odd column,
// already in the high half), shared by all of its tokens.
//
// Compiled with the AVX-512 flags: no STL, every helper in an anonymous namespace.
#include "backends/cpu/kernels/avx512/float_kernels.h"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "backends/cpu/kernels/avx2/float_kernels.h"
#include "backends/cpu/kernels/avx2/prefetch.h"
#include "backends/cpu/kernels/kernels.h"

namespace lfmrt::cpu::avx512 {
namespace {

constexpr size_t kNr = 16;   // weight rows per panel: one row per zmm lane
constexpr size_t kMr = 12;   // most tokens per micro-tile (12 accumulators)
constexpr size_t kKc = 256;  // columns per chunk; even, so only a matrix's last chunk has a lone column
constexpr size_t kMc = 256;  // rows per packed block: 256 x 256 bf16 = 128 KB, kept in L2
// Below this many tokens the AVX2 GEMM runs instead: it then dots row by row, like the GEMV.
constexpr size_t kMinTokensToPack = 4;
static_assert(kKc % 2 == 0 && kMc % kNr == 0 && kRowBlock % kNr == 0);
static_assert(kMc * kKc * sizeof(uint16_t) + kMr * kKc * sizeof(float) <= kGemmScratchBytes,
              "packed weights and tokens must fit the scratch");

// Transposes 16 vectors of 16 words in place: v[i] lane j -> v[j] lane i. Always inlined, so that
// `v` lives in registers.
[[gnu::always_inline]] inline void transpose16x16(__m512i v[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {  // pairs of rows interleaved per 128-bit lane
        t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  // v[i + c], 128-bit lane L: column 4L + c of rows i..i+3
        v[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        v[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        v[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        v[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 4; ++i) {  // t[i] (t[i + 4]): columns i, 8 + i (4 + i, 12 + i) of rows 0-7 / 8-15
        t[i] = _mm512_shuffle_i32x4(v[i], v[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(v[i], v[i + 4], 0xDD);
        t[i + 8] = _mm512_shuffle_i32x4(v[i + 8], v[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(v[i + 8], v[i + 12], 0xDD);
    }
    for (int i = 0; i < 8; ++i) {
        v[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        v[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xDD);
    }
}

// Packs columns [kb, kb + kc) of 16 rows into one panel (layout above); a lone last column's
// word has zero in its high half. Masked loads never fault past the end of a row.
void pack_panel(const uint16_t* const rows[kNr], size_t kb, size_t kc, uint32_t* panel) {
    size_t k = 0;
    for (; k + 32 <= kc; k += 32) {
        __m512i v[kNr];
        for (size_t i = 0; i < kNr; ++i) v[i] = _mm512_loadu_si512(rows[i] + kb + k);
        transpose16x16(v);
        for (size_t j = 0; j < kNr; ++j) _mm512_storeu_si512(panel + (k / 2 + j) * kNr, v[j]);
    }
    if (k < kc) {
        const __mmask32 columns = (__mmask32{1} << (kc - k)) - 1;
        __m512i v[kNr];
        for (size_t i = 0; i < kNr; ++i) v[i] = _mm512_maskz_loadu_epi16(columns, rows[i] + kb + k);
        transpose16x16(v);
        alignas(64) uint32_t words[kNr][kNr];
        for (size_t j = 0; j < kNr; ++j) _mm512_store_si512(words[j], v[j]);
        __builtin_memcpy(panel + k / 2 * kNr, words, (kc - k + 1) / 2 * sizeof words[0]);
    }
}

// Copies columns [0, kc) of kT tokens of X (row t at x + t * ldx) to xs[k * kT + t], so that a
// micro-kernel's broadcasts read neighbouring floats: in the model's shapes the rows of X lie a
// multiple of 4 KiB apart, and 12 of them would share one 8-way L1 set.
template <size_t kT>
void pack_tokens(const float* x, size_t ldx, size_t kc, float* xs) {
    for (size_t k = 0; k < kc; ++k) {
#pragma GCC unroll 12
        for (size_t t = 0; t < kT; ++t) xs[k * kT + t] = x[t * ldx + k];
    }
}

// acc[t] (+)= panel . X[t] for kT tokens and one panel of kc columns, the tokens' columns packed
// by pack_tokens. `y` points at the first token's first row of the tile; `rows` has a bit per
// panel row that lies in Y (the others are computed and not stored).
template <size_t kT>
void micro_kernel(const uint32_t* panel, size_t kc, const float* xs, float* y, size_t ldy, bool accumulate,
                  __mmask16 rows) {
    // The token loops are unrolled completely so that GCC keeps `acc` in registers.
    __m512 acc[kT];
#pragma GCC unroll 12
    for (size_t t = 0; t < kT; ++t) {
        acc[t] = accumulate ? _mm512_maskz_loadu_ps(rows, y + t * ldy) : _mm512_setzero_ps();
    }
    const __m512i high_half = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
    const size_t pairs = kc / 2;
    for (size_t kp = 0; kp < pairs; ++kp) {
        const __m512i words = _mm512_loadu_si512(panel + kp * kNr);
        const __m512 even = _mm512_castsi512_ps(_mm512_slli_epi32(words, 16));
        const __m512 odd = _mm512_castsi512_ps(_mm512_and_si512(words, high_half));
        const float* xk = xs + 2 * kp * kT;
#pragma GCC unroll 12
        for (size_t t = 0; t < kT; ++t) acc[t] = _mm512_fmadd_ps(even, _mm512_set1_ps(xk[t]), acc[t]);
#pragma GCC unroll 12
        for (size_t t = 0; t < kT; ++t) acc[t] = _mm512_fmadd_ps(odd, _mm512_set1_ps(xk[kT + t]), acc[t]);
    }
    if (kc % 2 != 0) {
        const __m512 even = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_loadu_si512(panel + pairs * kNr), 16));
        const float* xk = xs + 2 * pairs * kT;
#pragma GCC unroll 12
        for (size_t t = 0; t < kT; ++t) acc[t] = _mm512_fmadd_ps(even, _mm512_set1_ps(xk[t]), acc[t]);
    }
#pragma GCC unroll 12
    for (size_t t = 0; t < kT; ++t) _mm512_mask_storeu_ps(y + t * ldy, rows, acc[t]);
}

// The weight rows the GEMM packs next, to be fetched into L2 while the current block's arithmetic
// runs: a burst of prefetches for all of them at once would stall on the outstanding misses.
struct NextRows {
    const uint16_t* first;  // the first row's first column to read
    size_t stride;          // elements from one row to the next
    size_t count;           // rows
    size_t bytes;           // to read from each row

    // Fetches rows [begin, end) of them.
    void fetch(size_t begin, size_t end) const {
        for (size_t r = begin; r < end && r < count; ++r) {
            x86_prefetch::prefetch_range_to_l2(first + r * stride, bytes);
        }
    }
};

// One token block against the packed panels of a row block: its tokens packed once, then every
// panel. `panels` holds ceil(mc / kNr) panels of panel_words words each. With `next`, the next
// weight block's rows are fetched a panel's worth at a time.
template <size_t kT>
void run_token_block(const uint32_t* panels, size_t panel_words, size_t mc, size_t kc, const float* x, size_t ldx,
                     float* xs, float* y, size_t ldy, bool accumulate, const NextRows* next) {
    pack_tokens<kT>(x, ldx, kc, xs);
    for (size_t p = 0; p < mc; p += kNr) {
        if (next != nullptr) next->fetch(p * next->count / mc, (p + kNr) * next->count / mc);
        const size_t tile_rows = mc - p < kNr ? mc - p : kNr;
        micro_kernel<kT>(panels + p / kNr * panel_words, kc, xs, y + p, ldy, accumulate,
                         static_cast<__mmask16>((1u << tile_rows) - 1));
    }
}

using TokenBlockFn = void (*)(const uint32_t*, size_t, size_t, size_t, const float*, size_t, float*, float*, size_t,
                              bool, const NextRows*);
// Token blocks hold kMinTokensToPack (n = 4) to kMr tokens: see the block split in gemm_bf16.
constexpr TokenBlockFn kTokenBlocks[kMr + 1] = {
    nullptr,              nullptr,              nullptr,               nullptr,
    run_token_block<4>,   run_token_block<5>,   run_token_block<6>,    run_token_block<7>,
    run_token_block<8>,   run_token_block<9>,   run_token_block<10>,   run_token_block<11>,
    run_token_block<12>,
};

}  // namespace

void gemm_bf16(const void* w, size_t cols, const void* x_rows, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch) {
    if (n < kMinTokensToPack || cols == 0) {
        return avx2::gemm_bf16(w, cols, x_rows, x_stride, n, y, ldy, row_begin, row_end, scratch);
    }
    const auto* weights = static_cast<const uint16_t*>(w);
    const auto* x = static_cast<const float*>(x_rows);
    const size_t ldx = x_stride / sizeof(float);
    auto* panels = static_cast<uint32_t*>(scratch);
    auto* token_scratch = reinterpret_cast<float*>(panels + kMc * kKc / 2);
    for (size_t mb = row_begin; mb < row_end; mb += kMc) {
        const size_t mc = row_end - mb < kMc ? row_end - mb : kMc;
        for (size_t kb = 0; kb < cols; kb += kKc) {
            const size_t kc = cols - kb < kKc ? cols - kb : kKc;
            const size_t panel_words = (kc + 1) / 2 * kNr;
            for (size_t p = 0; p < mc; p += kNr) {
                // Rows past the block's end repeat its first row: computed, never stored.
                const uint16_t* rows[kNr];
                for (size_t i = 0; i < kNr; ++i) rows[i] = weights + (mb + (p + i < mc ? p + i : 0)) * cols;
                pack_panel(rows, kb, kc, panels + p / kNr * panel_words);
            }
            // Tokens in ceil(n / kMr) blocks of near-equal size (at least 4 each for n >= 4), so
            // every block has enough FMA chains to hide their latency.
            const size_t blocks = (n + kMr - 1) / kMr;
            // The next block's weights (the next column chunk of these rows, else the next rows)
            // are fetched into L2 while this block's arithmetic runs.
            const bool last_chunk = kb + kKc >= cols;
            const size_t next_mb = last_chunk ? mb + kMc : mb, next_kb = last_chunk ? 0 : kb + kKc;
            const size_t next_mc = next_mb < row_end ? (row_end - next_mb < kMc ? row_end - next_mb : kMc) : 0;
            const NextRows next{next_mc > 0 ? weights + next_mb * cols + next_kb : weights, cols, next_mc,
                                (cols - next_kb < kKc ? cols - next_kb : kKc) * sizeof(uint16_t)};
            for (size_t b = 0, t0 = 0; b < blocks; ++b) {
                const size_t tokens = (n - t0) / (blocks - b);
                kTokenBlocks[tokens](panels, panel_words, mc, kc, x + t0 * ldx + kb, ldx, token_scratch,
                                     y + t0 * ldy + mb, ldy, kb > 0, b == 0 ? &next : nullptr);
                t0 += tokens;
            }
        }
    }
}

}  // namespace lfmrt::cpu::avx512
