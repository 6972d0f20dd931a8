// Element types and borrowed views of weight tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lfmrt {

// Element types a weight tensor may have. The order is part of the kernel tables' layout
// (they are indexed by it), so new types go at the end.
enum class DType : int { F32 = 0, F16 = 1, BF16 = 2 };
inline constexpr int kNumDTypes = 3;

const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);
// Parses "F32" / "F16" / "BF16" (safetensors spelling); throws LoadError otherwise.
DType dtype_from_name(const std::string& name);

// A view of tensor data owned by someone else (usually a memory-mapped file).
struct TensorView {
    const void* data = nullptr;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;

    int64_t numel() const;
    size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
};

// Widens `n` elements of `dtype` at `src` to fp32.
void convert_to_f32(const void* src, DType dtype, float* dst, size_t n);

// IEEE half and bfloat16 conversions, exact (bf16 -> f32 is a shift; f16 handles subnormals).
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_f16(float f);
uint16_t f32_to_bf16(float f);  // round to nearest even

}  // namespace lfmrt
