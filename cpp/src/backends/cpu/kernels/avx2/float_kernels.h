// The AVX2 table's float-weight matmuls and vector ops under their own names, so that tables of
// wider ISAs (avx512/) can reuse them where a wider version would not pay.
#pragma once

#include <cstddef>

namespace lfmrt::cpu::avx2 {

void gemv_f32(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);
void gemv_f16(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);
void gemv_bf16(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);

void gemm_f32(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
              size_t row_begin, size_t row_end, void* scratch);
void gemm_f16(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
              size_t row_begin, size_t row_end, void* scratch);
void gemm_bf16(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch);

float dot(const float* a, const float* b, size_t n);
void axpy(float a, const float* x, float* y, size_t n);
void rmsnorm(const float* x, const float* weight, size_t n, float eps, float* y);
void silu_mul(const float* gate, const float* up, float* out, size_t n);
// KvKernels::exp_sum (kv_kernels.h).
float exp_sum(float* x, size_t n, float shift);
void mul(const float* a, const float* b, float* out, size_t n);

}  // namespace lfmrt::cpu::avx2
