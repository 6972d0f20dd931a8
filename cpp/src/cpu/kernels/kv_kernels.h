// Attention's inner loops over the KV cache's storage types (F32, F16, Q8_0): a query (fp32)
// against a stored key, and a weighted stored value added into an fp32 output.
//
// A separate table from KernelTable because it is indexed by the KV cache's type, not a weight's;
// dispatch.h picks the one that matches the chosen KernelTable's ISA.
#pragma once

#include <cstddef>

#include "lfmrt/tensor.h"

namespace lfmrt::cpu {

// Returns sum_i q[i] * k[i] for n elements of k stored as the table's type.
using KvDotFn = float (*)(const float* q, const void* k, size_t n);
// out[i] += a * v[i] for n elements of v stored as the table's type.
using KvAxpyFn = void (*)(float a, const void* v, float* out, size_t n);

struct KvKernels {
    const char* name;
    KvDotFn dot[kNumDTypes];  // indexed by DType; only F32, F16 and Q8_0 are set
    KvAxpyFn axpy[kNumDTypes];
};

// True for the types a KV cache can store.
inline bool is_kv_dtype(DType dtype) { return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::Q8_0; }

const KvKernels& scalar_kv_kernels();
#if defined(__x86_64__) || defined(_M_X64)
const KvKernels& avx2_kv_kernels();  // needs AVX2, FMA and F16C at run time
#endif
#if defined(__aarch64__)
const KvKernels& neon_kv_kernels();  // armv8-a Advanced SIMD: every aarch64 CPU
#endif

}  // namespace lfmrt::cpu
