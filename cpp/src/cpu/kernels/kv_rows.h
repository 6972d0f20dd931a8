// Builds one ISA's KV-kernel table (kv_kernels.h) from its single-row dot and axpy.
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

template <RowDotFn dot>
static void scores(const float* q, const void* rows, size_t stride, size_t count, size_t n, float scale,
                   float* out) {
    const auto* row = static_cast<const uint8_t*>(rows);
    for (size_t j = 0; j < count; ++j, row += stride) out[j] = dot(q, row, n) * scale;
}

template <RowAxpyFn axpy>
static void mix(const float* weights, const void* rows, size_t stride, size_t count, size_t n, float* out) {
    const auto* row = static_cast<const uint8_t*>(rows);
    for (size_t j = 0; j < count; ++j, row += stride) axpy(weights[j], row, out, n);
}

// One ISA's KvKernels from its single-row kernels for each storage type. constexpr, so the table
// is constant-initialised: no code of an ISA's file runs before dispatch has checked the CPU.
template <RowDotFn dot_f32, RowDotFn dot_f16, RowDotFn dot_q8_0, RowAxpyFn axpy_f32, RowAxpyFn axpy_f16,
          RowAxpyFn axpy_q8_0>
static constexpr KvKernels make_table(const char* name) {
    KvKernels table{name, {}, {}};
    table.scores[static_cast<int>(DType::F32)] = scores<dot_f32>;
    table.scores[static_cast<int>(DType::F16)] = scores<dot_f16>;
    table.scores[static_cast<int>(DType::Q8_0)] = scores<dot_q8_0>;
    table.mix[static_cast<int>(DType::F32)] = mix<axpy_f32>;
    table.mix[static_cast<int>(DType::F16)] = mix<axpy_f16>;
    table.mix[static_cast<int>(DType::Q8_0)] = mix<axpy_q8_0>;
    return table;
}

}  // namespace lfmrt::cpu::kv_rows
