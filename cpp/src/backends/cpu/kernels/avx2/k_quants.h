// Q4_K / Q5_K helpers shared by the AVX2 and AVX-512 kernels of those types: the GGUF block of
// each, a super-block's 8 scales and 8 minima as fp32 vectors, and a sub-block's levels.
//
// Included only by translation units compiled with AVX2 (or wider) flags; the functions have
// internal linkage (`static`), so no copy compiled with those flags can be picked by the linker
// for generic code.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "lfmrt/tensor.h"
#include "formats/blocks.h"

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

// The 32 levels of sub-block j (0..7) as unsigned bytes: nibble j % 2 of qs bytes 32 (j / 2)..,
// and for Q5_K bit j of each qh byte as bit 4 (levels 0..15, or 0..31).
template <DType D>
[[gnu::always_inline]] static inline __m256i sub_block_levels(const Block<D>& block, size_t j) {
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.qs + 32 * (j / 2)));
    __m256i levels = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(bytes, 4) : bytes, _mm256_set1_epi8(0x0F));
    if constexpr (D == DType::Q5_K) {
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.qh));
        const __m256i bit = _mm256_and_si256(_mm256_srli_epi16(qh, static_cast<int>(j)), _mm256_set1_epi8(1));
        levels = _mm256_or_si256(levels, _mm256_slli_epi16(bit, 4));
    }
    return levels;
}

}  // namespace lfmrt::cpu::x86_k_quants
