// AVX-512 VNNI GEMVs and GEMMs for Q4_K and Q5_K weights (GGUF's rows) times BlockQ8A activations, with the
// signatures of kernels.h and the names of avx2/quant_kernels.h. The AVX-512 table takes every
// other row-layout block kernel from the AVX2 table (see avx512_kernels.cpp).
#pragma once

#include <cstddef>

namespace lfmrt::cpu::avx512 {

void gemv_q4_k(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);
void gemv_q5_k(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);
void gemm_q4_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch);
void gemm_q5_k(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch);

}  // namespace lfmrt::cpu::avx512
