// Attention's inner loops over the KV cache's storage types (F32, F16, Q8_0): a query (fp32)
// against a run of stored keys, and a weighted sum of a run of stored values into fp32.
//
// A separate table from KernelTable because it is indexed by the KV cache's type, not a weight's;
// dispatch.h picks the one that matches the chosen KernelTable's ISA.
#pragma once

#include <cstddef>

#include "lfmrt/tensor.h"

namespace lfmrt::cpu {

// Both work on the `group` query heads that share one KV head (GQA), so that each stored key or
// value is read and widened once for all of them: query h is q + h * n, its output row
// out + h * out_stride (scores) or out + h * n (mix), its weights weights + h * weights_stride.

// Attention scores against `count` stored keys: out[h * out_stride + j] = scale * sum_i
// q[h * n + i] * row_j[i], where row_j (n elements in the table's type) starts at rows + j * stride
// bytes.
using KvScoresFn = void (*)(const float* q, size_t group, const void* rows, size_t stride, size_t count, size_t n,
                            float scale, float* out, size_t out_stride);
// The weighted sums of `count` stored values: out[h * n + i] += sum_j weights[h * weights_stride + j] * row_j[i].
using KvMixFn = void (*)(const float* weights, size_t weights_stride, size_t group, const void* rows, size_t stride,
                         size_t count, size_t n, float* out);

// Online softmax's step over one run of scores: x[i] = exp(x[i] - shift) for i in [0, n), and
// returns their sum. Max-abs error vs. the scalar twin ~1e-7 relative (the SIMD exp).
using KvExpSumFn = float (*)(float* x, size_t n, float shift);

// Whole runs of positions per call: one call per cached position cost more than its arithmetic
// (decode at 4k context ran at 58% of its 64-token speed).
struct KvKernels {
    const char* name;
    KvScoresFn scores[kNumDTypes];  // indexed by DType; only F32, F16 and Q8_0 are set
    KvMixFn mix[kNumDTypes];
    KvExpSumFn exp_sum;
};

const KvKernels& scalar_kv_kernels();
#if defined(__x86_64__) || defined(_M_X64)
const KvKernels& avx2_kv_kernels();  // needs AVX2, FMA and F16C at run time
#endif
#if defined(__aarch64__)
const KvKernels& neon_kv_kernels();  // armv8-a Advanced SIMD: every aarch64 CPU
#endif

}  // namespace lfmrt::cpu
