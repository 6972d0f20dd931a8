// The NEON kernels shared by both aarch64 tables (see kernels.h for the signatures' contracts).
//
// float_kernels.cpp defines them with the armv8-a baseline, so every aarch64 CPU runs them:
// float matmuls, the activation quantizer and the vector ops. The quantized matmuls come in
// two builds of one implementation (quant_kernels.h): neon_kernels.cpp (armv8-a) and
// neon_dotprod_kernels.cpp (armv8.2-a+dotprod), each of which assembles its table from these
// plus its own quantized matmuls.
#pragma once

#include <cstddef>

namespace lfmrt::cpu::neon {

void gemv_f32(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);
void gemv_f16(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);
void gemv_bf16(const void* w, size_t cols, const void* x, float* y, size_t row_begin, size_t row_end);
void gemm_f32(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
              size_t row_begin, size_t row_end, void* scratch);
void gemm_f16(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
              size_t row_begin, size_t row_end, void* scratch);
void gemm_bf16(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch);

void quantize_q8a(const float* x, void* dst, size_t cols);
void quantize_q8a_k(const float* x, void* dst, size_t cols);

float dot(const float* a, const float* b, size_t n);
void axpy(float a, const float* x, float* y, size_t n);
void rmsnorm(const float* x, const float* weight, size_t n, float eps, float* y);
void silu_mul(const float* gate, const float* up, float* out, size_t n);
// KvKernels::exp_sum (kv_kernels.h).
float exp_sum(float* x, size_t n, float shift);
void mul(const float* a, const float* b, float* out, size_t n);

}  // namespace lfmrt::cpu::neon
