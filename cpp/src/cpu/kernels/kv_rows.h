// Builds one ISA's KV-kernel table (kv_kernels.h) from its single-row dots and its mix kernels
// (or single-row axpys, through mix_rows).
//
// Included by translation units compiled with ISA flags: the templates are `static`, so each
// file's instantiations stay its own and none can be picked by the linker for generic code.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/kernels/kv_kernels.h"

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

template <DType kType, RowDotFn dot>
static void scores(const float* q, const void* rows, size_t stride, size_t count, size_t n, float scale,
                   float* out) {
    const auto* row = static_cast<const uint8_t*>(rows);
    const size_t slice = row_bytes(kType, n);
    for (size_t j = 0; j < count; ++j, row += stride) {
        if (j + kPrefetchRows < count) prefetch_row(row + kPrefetchRows * stride, slice);
        out[j] = dot(q, row, n) * scale;
    }
}

template <DType kType, RowAxpyFn axpy>
static void mix_rows(const float* weights, const void* rows, size_t stride, size_t count, size_t n, float* out) {
    const auto* row = static_cast<const uint8_t*>(rows);
    const size_t slice = row_bytes(kType, n);
    for (size_t j = 0; j < count; ++j, row += stride) {
        if (j + kPrefetchRows < count) prefetch_row(row + kPrefetchRows * stride, slice);
        axpy(weights[j], row, out, n);
    }
}

// One ISA's KvKernels from its single-row dots and its mix kernels (an ISA with only a row
// axpy passes mix_rows<axpy>). constexpr, so the table is constant-initialised: no code of an
// ISA's file runs before dispatch has checked the CPU.
template <RowDotFn dot_f32, RowDotFn dot_f16, RowDotFn dot_q8_0, KvMixFn mix_f32, KvMixFn mix_f16, KvMixFn mix_q8_0>
static constexpr KvKernels make_table(const char* name) {
    KvKernels table{name, {}, {}};
    table.scores[static_cast<int>(DType::F32)] = scores<DType::F32, dot_f32>;
    table.scores[static_cast<int>(DType::F16)] = scores<DType::F16, dot_f16>;
    table.scores[static_cast<int>(DType::Q8_0)] = scores<DType::Q8_0, dot_q8_0>;
    table.mix[static_cast<int>(DType::F32)] = mix_f32;
    table.mix[static_cast<int>(DType::F16)] = mix_f16;
    table.mix[static_cast<int>(DType::Q8_0)] = mix_q8_0;
    return table;
}

}  // namespace lfmrt::cpu::kv_rows
