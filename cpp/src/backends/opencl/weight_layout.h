// Weight matrices in the OpenCL kernels' layout (kernels/weights.cl), repacked on the host at
// upload: struct-of-arrays, quants apart from scales, each array row-major.
//
// Every format is read in 16-byte chunks of its `quants` array, one uint4 load (or one texel of
// an image1d_buffer_t) per chunk, a chunk covering chunk_elems(dtype) consecutive elements of a
// row: 4 (F32), 8 (F16, BF16), 16 (Q8_0) or 32 (Q4_0 and the K-quants). The scales and other
// side data of a chunk live in separate arrays, read through the cache:
//
//   F32, F16, BF16  quants: the row's values, zero-padded to whole chunks; no side arrays
//   Q8_0   quants: the 32 int8 levels of each block; a: fp16 d per block
//   Q4_0   quants: each block's 16 nibble bytes as GGUF stores them (element i in the low nibble
//          of byte i, element 16 + i in the high one); a: fp16 d per block
//   Q4_K   quants: each sub-block of 32 as a Q4_0 block's nibbles; a: fp16 d, dmin per
//          super-block; b: its 8 sub-block scales then 8 minima, unpacked from the 12 packed
//          bytes to one byte each (the kernel forms d * sc and dmin * m in fp32, exactly)
//   Q5_K   as Q4_K, and c: the fifth bits of each sub-block, bit i of one 32-bit word
//   Q6_K   quants: the low 4 bits of each 32 elements as Q4_0 nibbles; a: fp16 d per super-block;
//          b: the 16 int8 sub-block scales; c: the high 2 bits, two 32-bit words per chunk
//          (element i at bits 2 (i % 16) of word i / 16)
//
// Why this layout (Adreno first): Adreno's memory system and texture path prefer wide, aligned,
// homogeneous loads; GGUF's blocks mix 2-byte scales into 18 / 34 / 144 / 210-byte structs, so a
// work-item reading one block makes unaligned, narrow loads. Apart, a subgroup's loads of quants
// are contiguous 16-byte vectors (or texels) and the scales a small array that stays in cache.
// Giving the K-quants Q4_0's in-chunk nibble order makes every 4-bit format decode alike and
// every chunk 32 consecutive elements (GGUF interleaves two sub-blocks per 32 bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "lfmrt/tensor.h"

namespace lfmrt::opencl {

// Elements of a row one 16-byte chunk of `quants` covers.
size_t chunk_elems(DType dtype);
// Chunks per row (rows of float types are zero-padded to whole chunks).
size_t chunks_per_row(DType dtype, size_t cols);

struct PackedMatrix {
    std::vector<uint8_t> quants;  // rows * chunks_per_row chunks of 16 bytes
    std::vector<uint8_t> a, b, c; // side arrays (empty when the format has none)
};

// Repacks `rows` rows of `cols` elements of `dtype`, in GGUF / safetensors layout at `data`.
PackedMatrix pack_matrix(DType dtype, const void* data, size_t rows, size_t cols);

}  // namespace lfmrt::opencl
