#include "cpu/kernels/kernels.h"

#include "quant/blocks.h"

namespace lfmrt::cpu {

ActivationFormat activation_format(DType weight) {
    return is_quantized(weight) ? ActivationFormat::Q8A : ActivationFormat::F32;
}

size_t activation_row_bytes(DType weight, size_t cols) {
    if (activation_format(weight) == ActivationFormat::F32) return cols * sizeof(float);
    return cols / quant::kQ32 * sizeof(quant::BlockQ8A);
}

}  // namespace lfmrt::cpu
