// Element types and borrowed views of weight tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lfmrt {

// Element types a weight tensor may have. The order is part of the kernel tables' layout
// (they are indexed by it), so new types go at the end. Q8_0 ... Q6_K are GGUF's block formats
// with GGUF's exact byte layouts (cpp/src/formats/blocks.h): a row is a whole number of blocks.
enum class DType : int { F32 = 0, F16 = 1, BF16 = 2, Q8_0 = 3, Q4_0 = 4, Q4_K = 5, Q5_K = 6, Q6_K = 7 };
inline constexpr int kNumDTypes = 8;

const char* dtype_name(DType dtype);
// Parses "F32" / "F16" / "BF16" (safetensors spelling) or "Q8_0" / "Q4_0" / "Q4_K" / "Q5_K" /
// "Q6_K" (GGUF spelling); throws LoadError otherwise.
DType dtype_from_name(const std::string& name);

bool is_quantized(DType dtype);
// Elements per block (1 for F32/F16/BF16, 32 for Q8_0/Q4_0, 256 for the K-quants) and bytes
// per block.
size_t block_elems(DType dtype);
size_t block_bytes(DType dtype);
// Bytes of a row of `cols` elements; `cols` must be a multiple of block_elems(dtype).
size_t row_bytes(DType dtype, size_t cols);

// A view of tensor data owned by someone else (usually a memory-mapped file).
struct TensorView {
    const void* data = nullptr;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    // The data lies in a read-only memory map of a file: pages the model no longer reads (a
    // matrix it repacked) may be dropped from memory and would be read again from the file.
    // False for anything else (e.g. arrays quantized at load), whose pages must stay.
    bool file_mapped = false;

    int64_t numel() const;
    // Bytes of the data. For a block type, the last dimension must be a multiple of the block
    // size (check_block_shape).
    size_t nbytes() const;
};

// Throws LoadError naming `name` if the view's rows (its last dimension) are not a whole number
// of blocks of its dtype.
void check_block_shape(const std::string& name, const TensorView& view);

// Widens (dequantizes) `n` elements of `dtype` at `src` to fp32; for a block type `n` must be a
// multiple of the block size.
void convert_to_f32(const void* src, DType dtype, float* dst, size_t n);

// IEEE half and bfloat16 conversions, exact (bf16 -> f32 is a shift; f16 handles subnormals).
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_f16(float f);
uint16_t f32_to_bf16(float f);  // round to nearest even

}  // namespace lfmrt
