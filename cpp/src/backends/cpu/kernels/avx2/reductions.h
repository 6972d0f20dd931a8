// Horizontal reductions of an AVX2 register, shared by the AVX2 kernel files.
//
// Included only by translation units compiled with AVX2 flags; the functions have internal
// linkage (`static`), so no copy compiled with those flags can be picked by the linker for
// generic code.
#pragma once

#include <immintrin.h>

namespace lfmrt::cpu::avx2_reductions {

// Sum of the eight lanes.
static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Largest of the eight lanes.
static inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

}  // namespace lfmrt::cpu::avx2_reductions
