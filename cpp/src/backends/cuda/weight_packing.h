// Repacking a checkpoint's matrix (GGUF blocks or float elements, row-major) into the CUDA
// kernels' layout (packed_format.h), on the host at upload. Plain C++: the host tests run it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "lfmrt/tensor.h"

namespace lfmrt::cuda {

struct PackedMatrix {
    std::vector<uint8_t> quants;  // rows * quant_row_bytes
    std::vector<float> side;      // rows * side_row_floats
};

// `rows` rows of `cols` elements of `dtype` at `data` (cols a whole number of blocks).
PackedMatrix pack_matrix(DType dtype, const void* data, size_t rows, size_t cols);

}  // namespace lfmrt::cuda
