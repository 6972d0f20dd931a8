// GGUF's block formats, byte for byte as llama.cpp lays them out (ggml-common.h), plus the
// activation block the integer kernels multiply them with.
//
// A block covers 32 (Q8_0, Q4_0) or 256 (the K-quants) consecutive elements of one row. Scales
// are IEEE half precision (`uint16_t` bits) except in the activation block. Weights arrive from
// memory-mapped files at any 2-byte alignment, so code reads blocks through these structs but
// never assumes more alignment than theirs.
//
// This header is included by SIMD translation units compiled with ISA flags, so it has no STL
// includes and its helpers have internal linkage (`static`): an inline function with external
// linkage emitted there could be picked by the linker for generic callers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lfmrt::quant {

inline constexpr size_t kQ32 = 32;   // elements per Q8_0 / Q4_0 block (and per activation block)
inline constexpr size_t kQK = 256;   // elements per K-quant super-block

// x[i] = d * qs[i]
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[kQ32];
};

// x[i] = d * (q[i] - 8): q[i] is the low nibble of qs[i] for i < 16, the high nibble of qs[i-16]
// otherwise.
struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[kQ32 / 2];
};

// Eight sub-blocks of 32: x = d * sc[j] * q - dmin * m[j], q in 0..15, sc and m 6-bit (packed
// in `scales`, see scale_min_k4). qs holds 64 elements per 32 bytes: sub-block 2i in the low
// nibbles, 2i+1 in the high nibbles.
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[kQK / 2];
};

// As Q4_K with a fifth bit: bit i of qh[l] is the high bit of element l of sub-block i.
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[kQK / 8];
    uint8_t qs[kQK / 2];
};

// Sixteen sub-blocks of 16: x = d * scales[j] * (q - 32), q in 0..63. Per 128 elements, ql holds
// 64 bytes (elements l and l+64 in the low/high nibble of ql[l], l+32 and l+96 in ql[l+32]) and
// qh 32 bytes (2 bits each for elements l, l+32, l+64, l+96 of qh[l], low to high).
struct BlockQ6_K {
    uint8_t ql[kQK / 2];
    uint8_t qh[kQK / 4];
    int8_t scales[kQK / 16];
    uint16_t d;
};

static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

// An activation row quantized for the integer kernels (never stored in files): 32 values
// x[i] ~ d * qs[i], |qs| <= 127, and dsum = d * sum(qs) for the K-quants' minima. One layout
// serves every block weight type (32 divides every weight block and sub-block), in the two
// numerics of llama.cpp's activations, so that lfmrt and llama.cpp on the same GGUF file differ
// by summation order alone:
//  - for Q8_0 / Q4_0 weights, each block has its own scale, as llama.cpp's Q8_0 activations:
//    levels round(x * 127 / amax), d = activation_scale(amax) (quantize_row_q8a);
//  - for K-quant weights, the 8 blocks of each 256 values share one scale, as llama.cpp's Q8_K:
//    amax over 256 values, the same levels, d = activation_scale_k (quantize_row_q8a_k).
// A scale per 32 values is the more accurate of the two, also for K-quants (KL to f32 1-8% lower
// on four test models), but it left lfmrt's top-1 agreeing with llama.cpp's on only 98% of
// positions of Q4_K_M files, against 99.3% with Q8_K's numerics (bench/quant_quality.py); llama.cpp
// is the reference for GGUF files, so K-quants take its numerics.
struct BlockQ8A {
    float d;
    float dsum;
    int8_t qs[kQ32];
};
static_assert(sizeof(BlockQ8A) == 40);
inline constexpr size_t kQ8AKBlocks = kQK / kQ32;  // activation blocks sharing a Q8_K-style scale

// The factor an activation block's levels are taken with, round(x * 127 / amax); 0 for an
// all-zero block and for one so small (amax < 2^-100) that 127 / amax could overflow to
// infinity and turn its values into infinities and NaNs, which the kernels round differently.
static inline float activation_level_factor(float amax) { return amax >= 0x1p-100f ? 127 / amax : 0.0f; }

// The scale a per-32 activation block stores for its levels (activation_level_factor): amax / 127
// rounded (to nearest even) to 11 significant bits, the precision of the fp16 scale llama.cpp's
// Q8_0 activations carry, but with fp32's range (fp16's would make the scales of blocks with
// amax < 0.008 subnormal and coarse). Matching llama.cpp's rounding keeps the two runtimes'
// layer outputs apart by summation order alone: top-1 agreement with llama.cpp on the same
// Q8_0 / Q4_0 files went from 0.913-0.992 to 0.958-0.995 on five test models, with the KL to
// f32 unchanged within its noise (bench/quant_quality.py). Every kernel table calls this, so
// their quantizations stay bit-identical.
static inline float activation_scale(float amax) {
    const float d = amax / 127;
    uint32_t bits;
    __builtin_memcpy(&bits, &d, sizeof bits);
    bits = (bits + 0xfffu + ((bits >> 13) & 1u)) & ~0x1fffu;
    float rounded;
    __builtin_memcpy(&rounded, &bits, sizeof rounded);
    return rounded;
}

// The scale 256 values quantized with `level_factor` (activation_level_factor of their amax)
// share: Q8_K's fp32 d = 1 / iscale, computed as llama.cpp computes it (its iscale is -127 / max
// for the signed value of largest magnitude, which negates levels and scale alike: the same
// products).
static inline float activation_scale_k(float level_factor) { return level_factor > 0 ? 1 / level_factor : 0.0f; }

// The 6-bit scale and minimum of sub-block j (0..7) of a Q4_K / Q5_K block:
// bytes 0-3 hold sc[0..3] (low 6 bits) and the top 2 bits of sc[4..7]; bytes 4-7 the same for
// the minima; bytes 8-11 the low 4 bits of sc[4..7] (low nibble) and m[4..7] (high nibble).
static inline void scale_min_k4(size_t j, const uint8_t* scales, uint8_t* sc, uint8_t* m) {
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = static_cast<uint8_t>((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
        *m = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
    }
}

// scale_min_k4 for all 8 sub-blocks at once, four bytes at a time: as little-endian words,
// sc[0..3], sc[4..7], m[0..3], m[4..7] (the SIMD GEMVs load them as one 16-byte vector).
struct ScalesMinsK4 {
    uint32_t sc_low, sc_high, m_low, m_high;
};
static inline ScalesMinsK4 scales_mins_k4(const uint8_t* scales) {
    uint32_t u[3];
    __builtin_memcpy(u, scales, sizeof u);
    return {u[0] & 0x3F3F3F3Fu, (u[2] & 0x0F0F0F0Fu) | ((u[0] >> 2) & 0x30303030u), u[1] & 0x3F3F3F3Fu,
            ((u[2] >> 4) & 0x0F0F0F0Fu) | ((u[1] >> 2) & 0x30303030u)};
}

}  // namespace lfmrt::quant
