// The CPU kernel table: every hot op, one function pointer per op, one table per ISA.
//
// The scalar table is the specification; every SIMD table is tested against it
// (cpp/tests/test_kernels.cpp). Model code calls kernels only through a table chosen once at
// load (dispatch.h), so no model code is compiled with ISA flags.
//
// Conventions: weight matrices are row-major `rows x cols` in the weight's own dtype
// (F32, F16 or BF16) and are never converted ahead of time; activations are fp32;
// all accumulation is fp32. Kernels work on a row range [row_begin, row_end) so the caller
// can split rows across threads; splitting rows never changes any result bit.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lfmrt/tensor.h"

namespace lfmrt::cpu {

// y[r] = dot(W[r, :], x) for r in [row_begin, row_end). Used for decode (one token).
using GemvFn = void (*)(const void* w, size_t cols, const float* x, float* y, size_t row_begin,
                        size_t row_end);

// Y[t * ldy + r] = dot(W[r, :], X[t * ldx + :]) for t in [0, n), r in [row_begin, row_end).
// Used for prefill (many tokens). `scratch` holds at least kGemmScratchFloats floats and belongs
// to the calling thread (the kernel packs weight panels there).
using GemmFn = void (*)(const void* w, size_t cols, const float* x, size_t ldx, size_t n, float* y,
                        size_t ldy, size_t row_begin, size_t row_end, float* scratch);
inline constexpr size_t kGemmScratchFloats = 64 * 1024;

// Row blocks handed to one thread should be multiples of this (the GEMM panel width).
inline constexpr size_t kRowBlock = 16;

struct KernelTable {
    const char* name;  // "scalar", "avx2"

    GemvFn gemv[kNumDTypes];  // indexed by DType
    GemmFn gemm[kNumDTypes];

    // Returns sum_i a[i] * b[i].
    float (*dot)(const float* a, const float* b, size_t n);
    // y[i] += a * x[i].
    void (*axpy)(float a, const float* x, float* y, size_t n);
    // y[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]  (y may alias x).
    void (*rmsnorm)(const float* x, const float* weight, size_t n, float eps, float* y);
    // out[i] = silu(gate[i]) * up[i]  (out may alias gate or up).
    void (*silu_mul)(const float* gate, const float* up, float* out, size_t n);
    // x[i] = exp(x[i] - max) / sum; in place. Max-abs error vs. the scalar twin ~1e-7 relative.
    void (*softmax)(float* x, size_t n);
    // out[i] = a[i] * b[i]  (out may alias a or b).
    void (*mul)(const float* a, const float* b, float* out, size_t n);
};

const KernelTable& scalar_kernels();
#if defined(__x86_64__) || defined(_M_X64)
const KernelTable& avx2_kernels();  // needs AVX2, FMA and F16C at run time
#endif

}  // namespace lfmrt::cpu
