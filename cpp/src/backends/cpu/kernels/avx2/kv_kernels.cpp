// AVX2 KV kernels (compiled with -mavx2 -mfma -mf16c only; chosen at run time).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "backends/cpu/kernels/avx2/float_kernels.h"
#include "backends/cpu/kernels/avx2/reductions.h"
#include "backends/cpu/kernels/kv_kernels.h"
#include "backends/cpu/kernels/kv_rows.h"
#include "formats/blocks.h"

namespace lfmrt::cpu {

namespace {

using avx2_reductions::hsum;

// Lanes [0, count) set, count < 8.
__m256i tail_mask(size_t count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

__m256 load_f16x8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// Eight int8 values widened to fp32.
__m256 load_i8x8(const int8_t* p) {
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
}

// Widened loads of a stored row's columns c..c+7, one per storage type: full() where c + 8 <= n,
// partial() for the last vector (lanes past n read as zero). Kept apart so the kernels' main loops
// carry no tail test, which also lets GCC keep their accumulators in registers.
struct LoadF32 {
    size_t n;
    __m256 full(const uint8_t* row, size_t c) const { return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + c); }
    __m256 partial(const uint8_t* row, size_t c) const {
        return _mm256_maskload_ps(reinterpret_cast<const float*>(row) + c, tail_mask(n - c));
    }
    static constexpr DType kType = DType::F32;
};

struct LoadF16 {
    size_t n;
    __m256 full(const uint8_t* row, size_t c) const { return load_f16x8(reinterpret_cast<const uint16_t*>(row) + c); }
    __m256 partial(const uint8_t* row, size_t c) const {
        const auto* values = reinterpret_cast<const uint16_t*>(row);
        alignas(16) uint16_t tail[8] = {};
        for (size_t i = c; i < n; ++i) tail[i - c] = values[i];
        return load_f16x8(tail);
    }
    static constexpr DType kType = DType::F16;
};

// Q8_0 rows: n is a multiple of 32, so every 8 columns lie in one block and there is no partial vector.
struct LoadQ8_0 {
    size_t n;
    __m256 full(const uint8_t* row, size_t c) const {
        const auto& block = reinterpret_cast<const quant::BlockQ8_0*>(row)[c / quant::kQ32];
        return _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(block.d)), load_i8x8(block.qs + c % quant::kQ32));
    }
    __m256 partial(const uint8_t* row, size_t c) const { return full(row, c); }
    static constexpr DType kType = DType::Q8_0;
};

// Runs `run.template operator()<kHeads>(first_head)` over the group in pieces of 4, 2 and 1 heads:
// the kernels below keep one set of registers per head, and four heads fill the AVX2 file.
template <typename Run>
void for_head_pieces(size_t group, Run run) {
    size_t h = 0;
    for (; h + 4 <= group; h += 4) run.template operator()<4>(h);
    if (h + 2 <= group) {
        run.template operator()<2>(h);
        h += 2;
    }
    if (h < group) run.template operator()<1>(h);
}

// out[k] = scale * (sum of acc[k]'s lanes) for kKeys = 1, 2, 4 or 8 accumulators: the horizontal
// sums of several keys share their shuffles.
template <size_t kKeys>
void store_key_sums(const __m256 acc[kKeys], float scale, float* out) {
    if constexpr (kKeys == 1) {
        out[0] = hsum(acc[0]) * scale;
    } else if constexpr (kKeys == 2) {
        const __m256 pairs = _mm256_hadd_ps(acc[0], acc[1]);  // [a01 a23 b01 b23 | a45 a67 b45 b67]
        const __m128 halves = _mm_add_ps(_mm256_castps256_ps128(pairs), _mm256_extractf128_ps(pairs, 1));
        const __m128 sums = _mm_mul_ps(_mm_hadd_ps(halves, halves), _mm_set1_ps(scale));  // [a b a b]
        out[0] = _mm_cvtss_f32(sums);
        out[1] = _mm_cvtss_f32(_mm_movehdup_ps(sums));
    } else if constexpr (kKeys == 4) {
        // Lanes 0-3: keys 0-3 over their lanes 0-3; lanes 4-7: the same keys over lanes 4-7.
        const __m256 quads = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
        const __m128 sums = _mm_add_ps(_mm256_castps256_ps128(quads), _mm256_extractf128_ps(quads, 1));
        _mm_storeu_ps(out, _mm_mul_ps(sums, _mm_set1_ps(scale)));
    } else {
        static_assert(kKeys == 8);
        const __m256 low = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
        const __m256 high = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
        const __m256 sums = _mm256_add_ps(_mm256_permute2f128_ps(low, high, 0x20), _mm256_permute2f128_ps(low, high, 0x31));
        _mm256_storeu_ps(out, _mm256_mul_ps(sums, _mm256_set1_ps(scale)));
    }
}

// Scores of kHeads queries against kKeys consecutive keys: each key is widened once and dotted
// with every query; kHeads x kKeys accumulators.
template <size_t kHeads, size_t kKeys, typename Load8>
void score_keys(const float* q, const uint8_t* row, size_t stride, size_t n, float scale, float* out,
                size_t out_stride, Load8 load8) {
    __m256 acc[kHeads][kKeys];
    for (auto& head : acc) {
        for (__m256& a : head) a = _mm256_setzero_ps();
    }
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
#pragma GCC unroll 8
        for (size_t k = 0; k < kKeys; ++k) {
            const __m256 key = load8.full(row + k * stride, i);
#pragma GCC unroll 4
            for (size_t h = 0; h < kHeads; ++h) acc[h][k] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * n + i), key, acc[h][k]);
        }
    }
    if (i < n) {
        const __m256i mask = tail_mask(n - i);
        for (size_t k = 0; k < kKeys; ++k) {
            const __m256 key = load8.partial(row + k * stride, i);
            for (size_t h = 0; h < kHeads; ++h) {
                acc[h][k] = _mm256_fmadd_ps(_mm256_maskload_ps(q + h * n + i, mask), key, acc[h][k]);
            }
        }
    }
    for (size_t h = 0; h < kHeads; ++h) store_key_sums<kKeys>(acc[h], scale, out + h * out_stride);
}

// Scores of kHeads queries over a run of keys, 8 / kHeads keys at a time (eight accumulators).
template <size_t kHeads, typename Load8>
void scores_heads(const float* q, const uint8_t* rows, size_t stride, size_t count, size_t n, size_t slice,
                  float scale, float* out, size_t out_stride, Load8 load8) {
    constexpr size_t kKeys = 8 / kHeads;
    size_t j = 0;
    for (; j + kKeys <= count; j += kKeys) {
        for (size_t k = j; k < j + kKeys && k + kv_rows::kPrefetchRows < count; ++k) {
            kv_rows::prefetch_row(rows + (k + kv_rows::kPrefetchRows) * stride, slice);
        }
        score_keys<kHeads, kKeys>(q, rows + j * stride, stride, n, scale, out + j, out_stride, load8);
    }
    for (; j < count; ++j) score_keys<kHeads, 1>(q, rows + j * stride, stride, n, scale, out + j, out_stride, load8);
}

// Weighted sums of kHeads heads over a run of stored values, for kVectors whole vectors of
// columns from c, with the output in registers: kHeads x kVectors accumulators run over every
// row, each row's vectors are widened once for all heads, and the tile meets `out` once. (A
// row-by-row axpy loads and stores `out` per row, and each row waits on the previous row's store.)
// Rows ahead are prefetched by prefetch_bytes: a row's first tile fetches it, later tiles pass 0.
template <size_t kHeads, size_t kVectors, typename Load8>
void mix_tile(const float* weights, size_t weights_stride, const uint8_t* rows, size_t stride, size_t count, size_t n,
              size_t c, size_t prefetch_bytes, float* out, Load8 load8) {
    __m256 acc[kHeads][kVectors];
    for (auto& head : acc) {
        for (__m256& a : head) a = _mm256_setzero_ps();
    }
    const uint8_t* row = rows;
    for (size_t j = 0; j < count; ++j, row += stride) {
        if (j + kv_rows::kPrefetchRows < count) kv_rows::prefetch_row(row + kv_rows::kPrefetchRows * stride, prefetch_bytes);
        __m256 w[kHeads];
#pragma GCC unroll 4
        for (size_t h = 0; h < kHeads; ++h) w[h] = _mm256_set1_ps(weights[h * weights_stride + j]);
#pragma GCC unroll 8
        for (size_t v = 0; v < kVectors; ++v) {
            const __m256 value = load8.full(row, c + 8 * v);
#pragma GCC unroll 4
            for (size_t h = 0; h < kHeads; ++h) acc[h][v] = _mm256_fmadd_ps(w[h], value, acc[h][v]);
        }
    }
    for (size_t h = 0; h < kHeads; ++h) {
        float* o = out + h * n + c;
        for (size_t v = 0; v < kVectors; ++v) _mm256_storeu_ps(o + 8 * v, _mm256_add_ps(_mm256_loadu_ps(o + 8 * v), acc[h][v]));
    }
}

// All columns of kHeads heads: tiles of 8 / kHeads vectors (eight accumulators), then any whole
// vectors left one at a time, then the columns past the last whole vector.
template <size_t kHeads, typename Load8>
void mix_heads(const float* weights, size_t weights_stride, const uint8_t* rows, size_t stride, size_t count, size_t n,
               size_t slice, float* out, Load8 load8) {
    constexpr size_t kTile = 8 * (8 / kHeads);
    size_t c = 0;
    for (; c + kTile <= n; c += kTile) {
        mix_tile<kHeads, 8 / kHeads>(weights, weights_stride, rows, stride, count, n, c, c == 0 ? slice : 0, out, load8);
    }
    for (; c + 8 <= n; c += 8) {
        mix_tile<kHeads, 1>(weights, weights_stride, rows, stride, count, n, c, c == 0 ? slice : 0, out, load8);
    }
    for (; c < n; ++c) {
        float sum[kHeads] = {};
        const uint8_t* row = rows;
        for (size_t j = 0; j < count; ++j, row += stride) {
            alignas(32) float values[8];
            _mm256_store_ps(values, load8.partial(row, c / 8 * 8));
            for (size_t h = 0; h < kHeads; ++h) sum[h] += weights[h * weights_stride + j] * values[c % 8];
        }
        for (size_t h = 0; h < kHeads; ++h) out[h * n + c] += sum[h];
    }
}

template <typename Load8>
void scores(const float* q, size_t group, const void* rows, size_t stride, size_t count, size_t n, float scale,
            float* out, size_t out_stride) {
    const size_t slice = row_bytes(Load8::kType, n);
    for_head_pieces(group, [&]<size_t kHeads>(size_t h) {
        scores_heads<kHeads>(q + h * n, static_cast<const uint8_t*>(rows), stride, count, n, slice, scale,
                             out + h * out_stride, out_stride, Load8{n});
    });
}

template <typename Load8>
void mix(const float* weights, size_t weights_stride, size_t group, const void* rows, size_t stride, size_t count,
         size_t n, float* out) {
    const size_t slice = row_bytes(Load8::kType, n);
    for_head_pieces(group, [&]<size_t kHeads>(size_t h) {
        mix_heads<kHeads>(weights + h * weights_stride, weights_stride, static_cast<const uint8_t*>(rows), stride, count,
                          n, slice, out + h * n, Load8{n});
    });
}

constexpr KvKernels kAvx2KvKernels =
    kv_rows::make_table<scores<LoadF32>, scores<LoadF16>, scores<LoadQ8_0>, mix<LoadF32>, mix<LoadF16>, mix<LoadQ8_0>,
                        avx2::exp_sum>("avx2");

}  // namespace

const KvKernels& avx2_kv_kernels() { return kAvx2KvKernels; }

}  // namespace lfmrt::cpu
