// Reference (scalar) quantization to GGUF's block formats and back.
//
// These are the specification: Q8_0 and Q4_0 quantize bit for bit as the `gguf` package's numpy
// quantizers do, every dequantizer agrees exactly with `gguf.quants.dequantize`, and the K-quant
// quantizers search per-sub-block scales and minima that minimise the weighted squared error, as
// llama.cpp's reference quantizers do. `n` (elements) must be a multiple of the block size.
#pragma once

#include <cstddef>

#include "lfmrt/tensor.h"
#include "formats/blocks.h"

namespace lfmrt::quant {

void quantize_row_q8_0(const float* x, BlockQ8_0* y, size_t n);
void quantize_row_q4_0(const float* x, BlockQ4_0* y, size_t n);
void quantize_row_q4_k(const float* x, BlockQ4_K* y, size_t n);
void quantize_row_q5_k(const float* x, BlockQ5_K* y, size_t n);
void quantize_row_q6_k(const float* x, BlockQ6_K* y, size_t n);

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, size_t n);
void dequantize_row_q4_0(const BlockQ4_0* x, float* y, size_t n);
void dequantize_row_q4_k(const BlockQ4_K* x, float* y, size_t n);
void dequantize_row_q5_k(const BlockQ5_K* x, float* y, size_t n);
void dequantize_row_q6_k(const BlockQ6_K* x, float* y, size_t n);

// Activations for the integer kernels (BlockQ8A, blocks.h): levels x * 127 / amax rounded to
// nearest even, with amax and the scale per 32 values (for Q8_0 / Q4_0 weights, as llama.cpp's
// Q8_0) or per 256 (for K-quant weights, as llama.cpp's Q8_K; n a multiple of 256).
void quantize_row_q8a(const float* x, BlockQ8A* y, size_t n);
void quantize_row_q8a_k(const float* x, BlockQ8A* y, size_t n);
void dequantize_row_q8a(const BlockQ8A* x, float* y, size_t n);

// Any DType (the float types convert; F16 and BF16 round to nearest even). `dst` holds
// row_bytes(dtype, n) bytes.
void quantize_row(DType dtype, const float* x, void* dst, size_t n);
void dequantize_row(DType dtype, const void* src, float* y, size_t n);

}  // namespace lfmrt::quant
