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

void axpy_f32(float a, const void* v, float* out, size_t n) {
    const auto* value = static_cast<const float*>(v);
    const __m256 scale = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(scale, _mm256_loadu_ps(value + i), _mm256_loadu_ps(out + i)));
    }
    for (; i < n; ++i) out[i] += a * value[i];
}

void axpy_f16(float a, const void* v, float* out, size_t n) {
    const auto* value = static_cast<const uint16_t*>(v);
    const __m256 scale = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(scale, load_f16x8(value + i), _mm256_loadu_ps(out + i)));
    }
    for (; i < n; ++i) out[i] += a * _cvtsh_ss(value[i]);
}

void axpy_q8_0(float a, const void* v, float* out, size_t n) {
    const auto* blocks = static_cast<const quant::BlockQ8_0*>(v);
    for (size_t b = 0; b < n / quant::kQ32; ++b, out += quant::kQ32) {
        const __m256 scale = _mm256_set1_ps(a * _cvtsh_ss(blocks[b].d));
        for (size_t i = 0; i < quant::kQ32; i += 8) {
            _mm256_storeu_ps(out + i, _mm256_fmadd_ps(scale, load_i8x8(blocks[b].qs + i), _mm256_loadu_ps(out + i)));
        }
    }
}

constexpr KvKernels kAvx2KvKernels =
    kv_rows::make_table<dot_f32, dot_f16, dot_q8_0, axpy_f32, axpy_f16, axpy_q8_0>("avx2");

}  // namespace

const KvKernels& avx2_kv_kernels() { return kAvx2KvKernels; }

}  // namespace lfmrt::cpu
