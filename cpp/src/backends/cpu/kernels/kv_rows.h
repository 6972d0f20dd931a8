// Builds one ISA's KV-kernel table (kv_kernels.h) from its scores and mix kernels, or from
// single-row dots and axpys through scores and mix_rows.
//
// Included by translation units compiled with ISA flags: the templates are `static`, so each
// file's instantiations stay its own and none can be picked by the linker for generic code.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backends/cpu/kernels/kv_kernels.h"

namespace lfmrt::cpu::kv_rows {

using RowDotFn = float (*)(const float* q, const void* row, size_t n);
using RowAxpyFn = void (*)(float a, const void* row, float* out, size_t n);

// Positions ahead to prefetch. A head's run in a KV page is contiguous (state/kv_cache.h), but
// attention starts a new run per head, page and sequence, and the hardware prefetchers lose time
// ramping up on each; prefetching measured 3-7% faster decode at 1k-4k positions of context.
constexpr size_t kPrefetchRows = 8;

static inline void prefetch_row(const uint8_t* p, size_t bytes) {
    for (size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset);
}

// Scores and mix from a single-row dot and axpy, one query head after another (the run is in
// cache after the first head).
template <DType kType, RowDotFn dot>
static void scores(const float* q, size_t group, const void* rows, size_t stride, size_t count, size_t n, float scale,
                   float* out, size_t out_stride) {
    const size_t slice = row_bytes(kType, n);
    for (size_t h = 0; h < group; ++h) {
        const auto* row = static_cast<const uint8_t*>(rows);
        for (size_t j = 0; j < count; ++j, row += stride) {
            if (h == 0 && j + kPrefetchRows < count) prefetch_row(row + kPrefetchRows * stride, slice);
            out[h * out_stride + j] = dot(q + h * n, row, n) * scale;
        }
    }
}

template <DType kType, RowAxpyFn axpy>
static void mix_rows(const float* weights, size_t weights_stride, size_t group, const void* rows, size_t stride,
                     size_t count, size_t n, float* out) {
    const size_t slice = row_bytes(kType, n);
    for (size_t h = 0; h < group; ++h) {
        const auto* row = static_cast<const uint8_t*>(rows);
        for (size_t j = 0; j < count; ++j, row += stride) {
            if (h == 0 && j + kPrefetchRows < count) prefetch_row(row + kPrefetchRows * stride, slice);
            axpy(weights[h * weights_stride + j], row, out + h * n, n);
        }
    }
}

// One ISA's KvKernels from its scores, mix and exp_sum kernels (an ISA with only row dots and axpys
// passes scores<dot> and mix_rows<axpy>). constexpr, so the table is constant-initialised: no
// code of an ISA's file runs before dispatch has checked the CPU.
template <KvScoresFn scores_f32, KvScoresFn scores_f16, KvScoresFn scores_q8_0, KvMixFn mix_f32, KvMixFn mix_f16,
          KvMixFn mix_q8_0, KvExpSumFn exp_sum>
static constexpr KvKernels make_table(const char* name) {
    KvKernels table{name, {}, {}, exp_sum};
    table.scores[static_cast<int>(DType::F32)] = scores_f32;
    table.scores[static_cast<int>(DType::F16)] = scores_f16;
    table.scores[static_cast<int>(DType::Q8_0)] = scores_q8_0;
    table.mix[static_cast<int>(DType::F32)] = mix_f32;
    table.mix[static_cast<int>(DType::F16)] = mix_f16;
    table.mix[static_cast<int>(DType::Q8_0)] = mix_q8_0;
    return table;
}

}  // namespace lfmrt::cpu::kv_rows
