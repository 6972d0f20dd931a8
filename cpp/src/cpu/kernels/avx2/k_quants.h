// Q4_K / Q5_K helpers shared by the AVX2 and AVX-512 kernels of those types: the GGUF block of
// each, and a super-block's 8 scales and 8 minima as fp32 vectors.
//
// Included only by translation units compiled with AVX2 (or wider) flags; the function has
// internal linkage (`static`), so no copy compiled with those flags can be picked by the linker
// for generic code.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "lfmrt/tensor.h"
#include "quant/blocks.h"

namespace lfmrt::cpu::x86_k_quants {

// Block<D>: the GGUF block of a K-quant type with minima.
template <DType D>
struct BlockType;
template <>
struct BlockType<DType::Q4_K> {
    using Type = quant::BlockQ4_K;
};
template <>
struct BlockType<DType::Q5_K> {
    using Type = quant::BlockQ5_K;
};
template <DType D>
using Block = typename BlockType<D>::Type;

struct ScalesMinima {
    __m256 scales;  // sc of sub-blocks 0..7
    __m256 minima;  // m of sub-blocks 0..7
};

// From the super-block's 12 packed bytes (quant::scales_mins_k4).
[[gnu::always_inline]] static inline ScalesMinima scales_and_minima(const uint8_t* packed) {
    const quant::ScalesMinsK4 words = quant::scales_mins_k4(packed);
    const __m128i bytes = _mm_setr_epi32(static_cast<int>(words.sc_low), static_cast<int>(words.sc_high),
                                         static_cast<int>(words.m_low), static_cast<int>(words.m_high));
    return {_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)),
            _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(bytes, bytes)))};
}

}  // namespace lfmrt::cpu::x86_k_quants
