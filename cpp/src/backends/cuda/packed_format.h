// Weight matrices as the CUDA kernels read them, and the decoding of one 32-value group, shared
// by the kernels (compiled by nvcc) and the host (weight_packing.cpp repacks; the host tests
// unpack with these same functions and compare with the CPU's decode_block32).
//
// A packed matrix is two row-major arrays:
//   quants  rows x quant_row_bytes(dtype, cols) bytes, every row 16-byte aligned
//   side    rows x side_row_floats(dtype, cols) fp32 values (empty for the float types)
//
//   F32, F16, BF16  quants: the row's elements, zero-padded to whole 16-byte chunks
//   Q8_0  quants: each block's 32 int8 levels;            side: d per block
//   Q4_0  quants: each block's 16 nibble bytes as GGUF stores them (element i in the low nibble
//         of byte i, 16 + i in the high one);          side: d per block
//   Q4_K  quants: each super-block's 128 qs bytes as GGUF stores them;
//         side: per sub-block of 32, d * sc and dmin * m (fp32 products of the fp16 scale and
//         the 6-bit integers: exact, and equal to what the CPU forms at each use)
//   Q5_K  quants: each super-block's qh (32 bytes) then qs (128 bytes);  side: as Q4_K
//   Q6_K  quants: each super-block's ql (128 bytes) then qh (64 bytes);
//         side: per 32 values, d * scales[2j] and d * scales[2j + 1] (exact, as above)
//
// Why: GGUF's blocks are 18 / 34 / 144 / 176 / 210 bytes with 2-byte scales inside, so a thread
// reading a block makes narrow, misaligned loads. Apart, the levels of any 32-value group are
// read as aligned 16-byte vectors and become eight words of four int8 levels each (a __dp4a
// operand) with a few shifts and masks, and the scales are a small fp32 array. The K-quants'
// level bytes stay in GGUF's order, so their quants are exactly the file's bytes minus the
// headers (4.5 + 2 bits per weight for Q4_K, against GGUF's 4.5).
//
// Every block type then has one shape, as the CPU's decode_block32: value i of a group is
// scale[i / 16] * level[i] - min, and a dot product with quantized activations is two integer
// dots (levels 0..15 and 16..31) scaled in fp32, minus min * (activation scale * level sum).
#pragma once

#include <cstddef>
#include <cstdint>

#include "lfmrt/tensor.h"

#if defined(__CUDACC__) || defined(LFMRT_CUDA_EMULATOR)
#define LFMRT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define LFMRT_HOST_DEVICE inline
#endif

namespace lfmrt::cuda {

inline constexpr size_t kGroup = 32;        // values per group (a Q8_0 / Q4_0 block, a K sub-block)
inline constexpr size_t kSuperBlock = 256;  // values per K-quant super-block
inline constexpr size_t kChunkBytes = 16;   // the kernels' load width

// Bytes of one packed row's quants (a multiple of 16), and its side floats.
LFMRT_HOST_DEVICE size_t quant_row_bytes(DType dtype, size_t cols) {
    switch (dtype) {
        case DType::F32: return (cols * 4 + kChunkBytes - 1) / kChunkBytes * kChunkBytes;
        case DType::F16:
        case DType::BF16: return (cols * 2 + kChunkBytes - 1) / kChunkBytes * kChunkBytes;
        case DType::Q8_0: return cols;
        case DType::Q4_0:
        case DType::Q4_K: return cols / 2;
        case DType::Q5_K: return cols / kSuperBlock * 160;
        case DType::Q6_K: return cols / kSuperBlock * 192;
    }
    return 0;
}

LFMRT_HOST_DEVICE size_t side_row_floats(DType dtype, size_t cols) {
    switch (dtype) {
        case DType::Q8_0:
        case DType::Q4_0: return cols / kGroup;
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K: return 2 * (cols / kGroup);
        default: return 0;
    }
}

// Elements of a float row per 16-byte chunk (the float GEMV's load).
LFMRT_HOST_DEVICE size_t float_chunk_elems(DType dtype) { return dtype == DType::F32 ? 4 : 8; }

// 16 bytes read as one aligned vector load.
struct alignas(16) Chunk {
    uint32_t w[4];
};

LFMRT_HOST_DEVICE Chunk load_chunk(const uint8_t* p) { return *reinterpret_cast<const Chunk*>(p); }

// Per-byte v - k for bytes v in 0..127 and a small k (a repeated byte), without borrows between
// bytes: each byte's top bit is set first, so its subtraction cannot go below zero.
LFMRT_HOST_DEVICE uint32_t bytes_minus(uint32_t v, uint32_t k) { return ((v | 0x80808080u) - k) ^ 0x80808080u; }

// One group's levels and scales: levels[w] holds levels 4w .. 4w + 3, one signed byte each
// (low byte first); value i = scale[i / 16] * level[i] - min.
struct GroupLevels {
    uint32_t levels[8];
    float scale[2];
    float min;
};

// Group g of a packed row (`quants` and `side` point at the row's start).
template <DType D>
LFMRT_HOST_DEVICE void decode_group(const uint8_t* quants, const float* side, size_t g, GroupLevels& out) {
    if constexpr (D == DType::Q8_0) {
        const Chunk a = load_chunk(quants + g * 32), b = load_chunk(quants + g * 32 + 16);
        for (int i = 0; i < 4; ++i) {
            out.levels[i] = a.w[i];
            out.levels[4 + i] = b.w[i];
        }
        out.scale[0] = out.scale[1] = side[g];
        out.min = 0.0f;
    } else if constexpr (D == DType::Q4_0) {
        const Chunk q = load_chunk(quants + g * 16);
        for (int i = 0; i < 4; ++i) {
            out.levels[i] = bytes_minus(q.w[i] & 0x0F0F0F0Fu, 0x08080808u);
            out.levels[4 + i] = bytes_minus((q.w[i] >> 4) & 0x0F0F0F0Fu, 0x08080808u);
        }
        out.scale[0] = out.scale[1] = side[g];
        out.min = 0.0f;
    } else if constexpr (D == DType::Q4_K || D == DType::Q5_K) {
        // Sub-block j of a super-block: the low (even j) or high (odd j) nibbles of qs bytes
        // 32 (j / 2) ... 32 (j / 2) + 31; Q5_K's fifth bit j of qh byte l is level l's bit 4.
        const size_t s = g / 8, j = g % 8;
        const uint8_t* qs = D == DType::Q4_K ? quants + s * 128 : quants + s * 160 + 32;
        const Chunk a = load_chunk(qs + 32 * (j / 2)), b = load_chunk(qs + 32 * (j / 2) + 16);
        const unsigned shift = 4 * (j % 2);
        for (int i = 0; i < 4; ++i) {
            out.levels[i] = (a.w[i] >> shift) & 0x0F0F0F0Fu;
            out.levels[4 + i] = (b.w[i] >> shift) & 0x0F0F0F0Fu;
        }
        if constexpr (D == DType::Q5_K) {
            const uint8_t* qh = quants + s * 160;
            const Chunk ha = load_chunk(qh), hb = load_chunk(qh + 16);
            for (int i = 0; i < 4; ++i) {
                out.levels[i] |= ((ha.w[i] >> j) & 0x01010101u) << 4;
                out.levels[4 + i] |= ((hb.w[i] >> j) & 0x01010101u) << 4;
            }
        }
        out.scale[0] = out.scale[1] = side[2 * g];
        out.min = side[2 * g + 1];
    } else if constexpr (D == DType::Q6_K) {
        // Group j of a super-block: half j / 4 of 128 values, quarter k = j % 4 within it. Its low
        // 4 bits are nibble k / 2 of ql bytes 64 half + 32 (k % 2) + l; its top 2 bits are bits
        // 2k of qh byte 32 half + l; level = that 6-bit value - 32.
        const size_t s = g / 8, j = g % 8, half = j / 4, k = j % 4;
        const uint8_t* ql = quants + s * 192 + 64 * half + 32 * (k % 2);
        const uint8_t* qh = quants + s * 192 + 128 + 32 * half;
        const Chunk la = load_chunk(ql), lb = load_chunk(ql + 16);
        const Chunk ha = load_chunk(qh), hb = load_chunk(qh + 16);
        const unsigned low_shift = 4 * static_cast<unsigned>(k / 2), high_shift = 2 * static_cast<unsigned>(k);
        for (int i = 0; i < 4; ++i) {
            const uint32_t v0 = ((la.w[i] >> low_shift) & 0x0F0F0F0Fu) | (((ha.w[i] >> high_shift) & 0x03030303u) << 4);
            const uint32_t v1 = ((lb.w[i] >> low_shift) & 0x0F0F0F0Fu) | (((hb.w[i] >> high_shift) & 0x03030303u) << 4);
            out.levels[i] = bytes_minus(v0, 0x20202020u);
            out.levels[4 + i] = bytes_minus(v1, 0x20202020u);
        }
        out.scale[0] = side[2 * g];
        out.scale[1] = side[2 * g + 1];
        out.min = 0.0f;
    }
}

// Level i (0..31) of a decoded group.
LFMRT_HOST_DEVICE int level_at(const GroupLevels& group, int i) {
    return static_cast<int>(static_cast<int8_t>(static_cast<uint8_t>(group.levels[i / 4] >> (8 * (i % 4)))));
}

}  // namespace lfmrt::cuda
