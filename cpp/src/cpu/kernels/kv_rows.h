// Builds the run-of-rows KV kernels (kv_kernels.h) from one ISA's single-row dot and axpy.
//
// Included by translation units compiled with ISA flags: the templates are `static`, so each
// file's instantiations stay its own and none can be picked by the linker for generic code.
#pragma once

#include <cstddef>
#include <cstdint>

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

}  // namespace lfmrt::cpu::kv_rows
