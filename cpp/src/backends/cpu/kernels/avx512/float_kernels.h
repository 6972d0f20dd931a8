// AVX-512 float-weight kernels with the signatures of kernels.h. Only the bf16 GEMM gains from
// the wider registers (its weights pack to half the bytes and convert with one shift or mask);
// every other float kernel of the AVX-512 table is the AVX2 table's (avx2/float_kernels.h).
#pragma once

#include <cstddef>

namespace lfmrt::cpu::avx512 {

void gemm_bf16(const void* w, size_t cols, const void* x, size_t x_stride, size_t n, float* y, size_t ldy,
               size_t row_begin, size_t row_end, void* scratch);

}  // namespace lfmrt::cpu::avx512
