// The CUDA kernels as host functions: each queues its kernel on `stream` and returns the launch's
// error code (the backend checks it and names the op). The backend (cuda_backend.cpp) calls only
// these; the kernels live in matmul.cu, elementwise.cu and sequence.cu. Every pointer is device
// memory; fp32 activations are dense rows.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "backends/cuda/step_plan.h"
#include "lfmrt/tensor.h"

namespace lfmrt::cuda::kernels {

// --- matrices (matmul.cu) --------------------------------------------------------------------

// A matrix in packed_format.h's layout.
struct PackedWeights {
    DType dtype;
    const uint8_t* quants;
    const float* side;
    size_t rows, cols;
};

// Activations quantized for the integer kernels, as the CPU's BlockQ8A rows but apart: levels
// [n][cols] int8, and per 32 values the scale d and d * (sum of the levels).
struct QuantizedRows {
    int8_t* levels;
    float* scales;
    float* scaled_sums;
};

// The CPU's activation format for weights of `dtype` (formats/blocks.h): one scale per 256
// values for the K-quants (quantize_row_q8a_k), else per 32 (quantize_row_q8a).
inline bool shares_scale_per_256(DType dtype) { return dtype == DType::Q4_K || dtype == DType::Q5_K || dtype == DType::Q6_K; }

// Quantizes n rows of `cols` values (a multiple of 32, or of 256 with a shared scale) bit for
// bit as quant::quantize_row_q8a / quantize_row_q8a_k.
cudaError_t quantize_activations(cudaStream_t stream, const float* x, size_t n, size_t cols, bool shared_scale,
                                 const QuantizedRows& out);

// y[t][r] = dot(W[r], x[t]) for n tokens; float weights take fp32 x, block weights the quantized
// rows (in W's activation format), as the CPU's scalar kernels do. y rows are w.rows apart.
cudaError_t matmul_float(cudaStream_t stream, const PackedWeights& w, const float* x, size_t n, float* y);
cudaError_t matmul_quantized(cudaStream_t stream, const PackedWeights& w, const QuantizedRows& x, size_t n, float* y);

// out[r] = row tokens[r] of `table`, widened to fp32 as the CPU's dequantizers do.
cudaError_t embed(cudaStream_t stream, const PackedWeights& table, const StepView& step, float* out);

// --- elementwise (elementwise.cu) --------------------------------------------------------------

cudaError_t rmsnorm(cudaStream_t stream, const float* x, const float* weight, size_t width, size_t n_rows, float eps,
                    float* y);
cudaError_t add(cudaStream_t stream, float* y, const float* x, size_t count);
cudaError_t add_bias(cudaStream_t stream, float* y, const float* bias, size_t width, size_t n);
cudaError_t silu_mul(cudaStream_t stream, const float* gate, const float* up, float* out, size_t count);
cudaError_t gather_rows(cudaStream_t stream, const float* x, size_t width, const uint32_t* rows, size_t n_rows,
                        float* out);
// ids[r] = the lowest index of row r's largest value (NaN never wins; a row of NaNs gives 0).
cudaError_t argmax(cudaStream_t stream, const float* x, size_t width, size_t n_rows, int32_t* ids);
cudaError_t rope(cudaStream_t stream, float* q, size_t n_q_heads, float* k, size_t n_k_heads, size_t head_dim,
                 const float* inv_freq, const StepView& step);

// --- sequence state (sequence.cu) --------------------------------------------------------------

// One conv layer's states in the conv-state pool: state block b starts at
// pool + b * state_floats + layer_offset.
struct ConvStates {
    float* pool;
    size_t state_floats, layer_offset;
    size_t history, hidden;
};

// The short conv of backend.h; `bcx` is read only.
cudaError_t short_conv(cudaStream_t stream, const float* bcx, const float* taps, const float* bias,
                       const ConvStates& states, const StepView& step, float* out);

// One attention layer's keys and values in the KV pool (StateLayout's page layout).
struct KvPages {
    uint8_t* pool;
    size_t page_bytes;
    size_t keys_offset, values_offset;  // of the layer's head 0 in a page
    size_t head_run;                    // bytes of one head's run (page_positions slices)
    uint32_t page_positions, slice_bytes, n_kv_heads, head_dim;
    DType dtype;                        // F32, F16 or Q8_0
};

// The most head_dim attention takes (each lane of a warp holds head_dim / 32 values).
inline constexpr size_t kMaxHeadDim = 256;

cudaError_t kv_store(cudaStream_t stream, const KvPages& kv, const float* k, const float* v, const StepView& step);
cudaError_t attention(cudaStream_t stream, const KvPages& kv, const float* q, size_t n_heads, float scale,
                      const StepView& step, float* out);

}  // namespace lfmrt::cuda::kernels
