// AVX2 kernels for Q4_0, Q8_0, Q4_K and Q6_K matrices in 16-row panels (backends/cpu/panels.h), with the signatures
// of kernels.h: KernelTable::gemv_panels and gemm_panels (the Q6_K GEMM unpacks levels into its scratch).
#pragma once

#include <cstddef>

namespace lfmrt::cpu::avx2 {

void gemv_panels_q4_0(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);
void gemv_panels_q8_0(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);
void gemv_panels_q4_k(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);
void gemv_panels_q6_k(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);

void gemm_panels_q4_0(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
                      size_t row_begin, size_t row_end, void* scratch);
void gemm_panels_q8_0(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
                      size_t row_begin, size_t row_end, void* scratch);
void gemm_panels_q4_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
                      size_t row_begin, size_t row_end, void* scratch);
void gemm_panels_q6_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
                      size_t row_begin, size_t row_end, void* scratch);

}  // namespace lfmrt::cpu::avx2
