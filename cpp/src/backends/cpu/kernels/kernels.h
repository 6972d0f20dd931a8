// The CPU kernel table: every hot op, one function pointer per op, one table per ISA.
//
// The scalar table is the specification; every SIMD table is tested against it
// (cpp/tests/test_kernels.cpp). Model code calls kernels only through a table chosen once at
// load (dispatch.h), so no model code is compiled with ISA flags. Each ISA's kernels live in
// their own folder (scalar/, avx2/, avx512/, neon/) under the same function names.
//
// Conventions: weight matrices are row-major `rows x cols` in the weight's own dtype (float
// types are widened in registers; block types, GGUF's layouts, are dotted in integers) and are
// never converted ahead of time. A matmul's input X reaches the kernels in the weight type's
// activation format (activation_format): fp32 as is for float weights, or quantized once per
// call, row by row, to BlockQ8A (formats/blocks.h) for block weights, with a scale per 32 values
// for Q8_0 / Q4_0 and per 256 for the K-quants, as llama.cpp's Q8_0 and Q8_K activations. All
// accumulation across blocks is fp32. Kernels work on a row range [row_begin, row_end) so the
// caller can split rows across threads; splitting rows never changes any result bit.
//
// Q4_0, Q8_0, Q4_K and Q6_K matrices may instead be repacked at load into 16-row panels
// (backends/cpu/panels.h), which a table's panel kernels read with the same arguments (W then being the
// packed matrix).
// A table without panel kernels for a type leaves those entries null, and such matrices stay in
// GGUF's rows.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lfmrt/tensor.h"

namespace lfmrt::cpu {

enum class ActivationFormat { F32, Q8A, Q8A_K };  // Q8A_K: BlockQ8A, 8 blocks to a scale
inline constexpr int kNumActivationFormats = 3;
ActivationFormat activation_format(DType weight);
// Bytes of one input row of `cols` values in `weight`'s activation format.
size_t activation_row_bytes(DType weight, size_t cols);

// Quantizes one row of `cols` floats (a multiple of 32, or of 256 for Q8A_K) to BlockQ8A at dst.
using QuantizeRowFn = void (*)(const float* x, void* dst, size_t cols);

// y[r] = dot(W[r, :], x) for r in [row_begin, row_end). Used for decode (one token). x is one
// row in the weight's activation format.
using GemvFn = void (*)(const void* w, size_t cols, const void* x, float* y, size_t row_begin,
                        size_t row_end);

// Y[t * ldy + r] = dot(W[r, :], X[t]) for t in [0, n), r in [row_begin, row_end), where row t of
// X starts x_stride bytes after row t-1. Used for prefill (many tokens). `scratch` holds at
// least kGemmScratchBytes bytes and belongs to the calling thread (kernels pack weight panels
// there).
using GemmFn = void (*)(const void* w, size_t cols, const void* x, size_t x_stride, size_t n,
                        float* y, size_t ldy, size_t row_begin, size_t row_end, void* scratch);
inline constexpr size_t kGemmScratchBytes = 256 * 1024;

// Row blocks handed to one thread should be multiples of this (the GEMM panel width).
inline constexpr size_t kRowBlock = 16;

struct KernelTable {
    const char* name;  // "scalar", "avx2", "avx512", "neon", "neon_dotprod", "neon_i8mm"

    GemvFn gemv[kNumDTypes];  // indexed by DType
    GemmFn gemm[kNumDTypes];
    GemvFn gemv_panels[kNumDTypes];  // W in 16-row panels; nullptr where the table has none
    GemmFn gemm_panels[kNumDTypes];  // (only the AVX2 Q6_K one uses its scratch: unpacked levels)
    QuantizeRowFn quantize_q8a;    // ActivationFormat::Q8A; bit-identical across tables
    QuantizeRowFn quantize_q8a_k;  // ActivationFormat::Q8A_K; bit-identical across tables

    // Returns sum_i a[i] * b[i].
    float (*dot)(const float* a, const float* b, size_t n);
    // y[i] += a * x[i].
    void (*axpy)(float a, const float* x, float* y, size_t n);
    // y[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]  (y may alias x).
    void (*rmsnorm)(const float* x, const float* weight, size_t n, float eps, float* y);
    // out[i] = silu(gate[i]) * up[i]  (out may alias gate or up).
    void (*silu_mul)(const float* gate, const float* up, float* out, size_t n);
    // out[i] = a[i] * b[i]  (out may alias a or b).
    void (*mul)(const float* a, const float* b, float* out, size_t n);
};

// The table's quantizer for a block activation format (Q8A or Q8A_K).
inline QuantizeRowFn activation_quantizer(const KernelTable& table, ActivationFormat format) {
    return format == ActivationFormat::Q8A_K ? table.quantize_q8a_k : table.quantize_q8a;
}

const KernelTable& scalar_kernels();
#if defined(__x86_64__) || defined(_M_X64)
const KernelTable& avx2_kernels();  // needs AVX2, FMA and F16C at run time
// Needs AVX-512 F, BW, VL and VNNI, plus everything avx2_kernels() needs, at run time.
const KernelTable& avx512_kernels();
#endif
#if defined(__aarch64__)
const KernelTable& neon_kernels();          // armv8-a Advanced SIMD: every aarch64 CPU
const KernelTable& neon_dotprod_kernels();  // needs the dot-product instructions (SDOT) at run time
const KernelTable& neon_i8mm_kernels();     // needs SDOT and the int8 matrix multiply (SMMLA) at run time
#endif

}  // namespace lfmrt::cpu
