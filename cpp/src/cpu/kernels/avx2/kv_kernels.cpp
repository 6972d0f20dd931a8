// AVX2 KV kernels (compiled with -mavx2 -mfma -mf16c only; chosen at run time).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "cpu/kernels/avx2/reductions.h"
#include "cpu/kernels/kv_kernels.h"
#include "cpu/kernels/kv_rows.h"
#include "quant/blocks.h"

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

float dot_f32(const float* q, const void* k, size_t n) {
    const auto* key = static_cast<const float*>(k);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(key + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(key + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(key + i), acc0);
    float sum = hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; ++i) sum += q[i] * key[i];
    return sum;
}

float dot_f16(const float* q, const void* k, size_t n) {
    const auto* key = static_cast<const uint16_t*>(k);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_f16x8(key + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load_f16x8(key + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_f16x8(key + i), acc0);
    float sum = hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; ++i) sum += q[i] * _cvtsh_ss(key[i]);
    return sum;
}

float dot_q8_0(const float* q, const void* k, size_t n) {
    const auto* blocks = static_cast<const quant::BlockQ8_0*>(k);
    __m256 total = _mm256_setzero_ps();
    for (size_t b = 0; b < n / quant::kQ32; ++b, q += quant::kQ32) {
        __m256 block = _mm256_mul_ps(_mm256_loadu_ps(q), load_i8x8(blocks[b].qs));
        block = _mm256_fmadd_ps(_mm256_loadu_ps(q + 8), load_i8x8(blocks[b].qs + 8), block);
        block = _mm256_fmadd_ps(_mm256_loadu_ps(q + 16), load_i8x8(blocks[b].qs + 16), block);
        block = _mm256_fmadd_ps(_mm256_loadu_ps(q + 24), load_i8x8(blocks[b].qs + 24), block);
        total = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(blocks[b].d)), block, total);
    }
    return hsum(total);
}

// Weighted sums of runs of stored values with the output in registers: for each tile of up to
// 64 columns, eight accumulators run over every row, and the tile meets `out` once. (A row-by-row
// axpy loads and stores `out` per row, and each row waits on the previous row's store.)
// load8(row, c) widens stored columns c..c+7 of a row to fp32.
template <typename Load8>
void mix_run(const float* weights, const void* rows, size_t stride, size_t count, size_t n, float* out,
             size_t slice_bytes, Load8 load8) {
    constexpr size_t kTile = 64;
    const auto* first = static_cast<const uint8_t*>(rows);
    const size_t whole = n / 8 * 8;  // columns in whole vectors
    size_t c = 0;
    for (size_t width; c < whole; c += width) {
        width = whole - c < kTile ? whole - c : kTile;
        __m256 acc[kTile / 8];
        for (size_t v = 0; v < kTile / 8; ++v) acc[v] = _mm256_setzero_ps();
        const uint8_t* row = first;
        for (size_t j = 0; j < count; ++j, row += stride) {
            if (j + kv_rows::kPrefetchRows < count) kv_rows::prefetch_row(row + kv_rows::kPrefetchRows * stride, slice_bytes);
            const __m256 w = _mm256_set1_ps(weights[j]);
            if (width == kTile) {
#pragma GCC unroll 8
                for (size_t v = 0; v < kTile / 8; ++v) acc[v] = _mm256_fmadd_ps(w, load8(row, c + 8 * v), acc[v]);
            } else {
                for (size_t v = 0; v < width / 8; ++v) acc[v] = _mm256_fmadd_ps(w, load8(row, c + 8 * v), acc[v]);
            }
        }
        for (size_t v = 0; v < width / 8; ++v) {
            _mm256_storeu_ps(out + c + 8 * v, _mm256_add_ps(_mm256_loadu_ps(out + c + 8 * v), acc[v]));
        }
    }
    for (; c < n; ++c) {  // columns past the last whole vector
        float sum = 0.0f;
        const uint8_t* row = first;
        for (size_t j = 0; j < count; ++j, row += stride) {
            alignas(32) float values[8];
            _mm256_store_ps(values, load8(row, c / 8 * 8));
            sum += weights[j] * values[c % 8];
        }
        out[c] += sum;
    }
}

void mix_f32(const float* weights, const void* rows, size_t stride, size_t count, size_t n, float* out) {
    mix_run(weights, rows, stride, count, n, out, n * sizeof(float), [n](const uint8_t* row, size_t c) {
        const auto* values = reinterpret_cast<const float*>(row);
        return c + 8 <= n ? _mm256_loadu_ps(values + c) : _mm256_maskload_ps(values + c, tail_mask(n - c));
    });
}

void mix_f16(const float* weights, const void* rows, size_t stride, size_t count, size_t n, float* out) {
    mix_run(weights, rows, stride, count, n, out, n * sizeof(uint16_t), [n](const uint8_t* row, size_t c) {
        const auto* values = reinterpret_cast<const uint16_t*>(row);
        if (c + 8 <= n) return load_f16x8(values + c);
        alignas(16) uint16_t tail[8] = {};
        for (size_t i = c; i < n; ++i) tail[i - c] = values[i];
        return load_f16x8(tail);
    });
}

// Q8_0 rows: n is a multiple of 32, so every 8 columns lie in one block.
void mix_q8_0(const float* weights, const void* rows, size_t stride, size_t count, size_t n, float* out) {
    mix_run(weights, rows, stride, count, n, out, n / quant::kQ32 * sizeof(quant::BlockQ8_0),
            [](const uint8_t* row, size_t c) {
                const auto& block = reinterpret_cast<const quant::BlockQ8_0*>(row)[c / quant::kQ32];
                return _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(block.d)), load_i8x8(block.qs + c % quant::kQ32));
            });
}

constexpr KvKernels kAvx2KvKernels =
    kv_rows::make_table<dot_f32, dot_f16, dot_q8_0, mix_f32, mix_f16, mix_q8_0>("avx2");

}  // namespace

const KvKernels& avx2_kv_kernels() { return kAvx2KvKernels; }

}  // namespace lfmrt::cpu
