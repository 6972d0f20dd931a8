#include "backends/cpu/kernels/kernels.h"

#include "formats/blocks.h"

namespace lfmrt::cpu {

ActivationFormat activation_format(DType weight) {
    if (!is_quantized(weight)) return ActivationFormat::F32;
    return block_elems(weight) == quant::kQK ? ActivationFormat::Q8A_K : ActivationFormat::Q8A;
}

size_t activation_row_bytes(DType weight, size_t cols) {
    if (activation_format(weight) == ActivationFormat::F32) return cols * sizeof(float);
    return cols / quant::kQ32 * sizeof(quant::BlockQ8A);
}

}  // namespace lfmrt::cpu
