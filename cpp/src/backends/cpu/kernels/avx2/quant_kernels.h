// AVX2 kernels for block-format weights (GGUF's Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) times BlockQ8A
// activations, with the signatures of kernels.h. Other ISAs' folders declare the same names.
#pragma once

#include <cstddef>

namespace lfmrt::cpu::avx2 {

void quantize_q8a(const float* x, void* dst, size_t cols);
void quantize_q8a_k(const float* x, void* dst, size_t cols);

void gemv_q8_0(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);
void gemv_q4_0(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);
void gemv_q4_k(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);
void gemv_q5_k(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);
void gemv_q6_k(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);

void gemm_q8_0(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch);
void gemm_q4_0(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch);
void gemm_q4_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch);
void gemm_q5_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch);
void gemm_q6_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch);

}  // namespace lfmrt::cpu::avx2
