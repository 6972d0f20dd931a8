#include "backends/cuda/weight_packing.h"

#include <cstring>
#include <type_traits>

#include "backends/cuda/packed_format.h"
#include "formats/blocks.h"

namespace lfmrt::cuda {

namespace {

using quant::BlockQ4_0;
using quant::BlockQ4_K;
using quant::BlockQ5_K;
using quant::BlockQ6_K;
using quant::BlockQ8_0;

template <typename Block>
const Block* row_blocks(const void* data, size_t row, size_t blocks_per_row) {
    return static_cast<const Block*>(data) + row * blocks_per_row;
}

void pack_float(DType dtype, const void* data, size_t rows, size_t cols, PackedMatrix& out) {
    const size_t element = dtype == DType::F32 ? 4 : 2;
    const size_t stride = quant_row_bytes(dtype, cols);
    out.quants.assign(rows * stride, 0);
    for (size_t r = 0; r < rows; ++r) {
        std::memcpy(out.quants.data() + r * stride, static_cast<const uint8_t*>(data) + r * cols * element, cols * element);
    }
}

// Q8_0 and Q4_0: each block's qs bytes as stored, its d widened to fp32.
template <typename Block>
void pack_blocks_of_32(DType dtype, const void* data, size_t rows, size_t cols, PackedMatrix& out) {
    const size_t blocks = cols / kGroup, stride = quant_row_bytes(dtype, cols);
    constexpr size_t kLevelBytes = sizeof(Block::qs);
    out.quants.resize(rows * stride);
    out.side.resize(rows * blocks);
    for (size_t r = 0; r < rows; ++r) {
        const Block* x = row_blocks<Block>(data, r, blocks);
        for (size_t b = 0; b < blocks; ++b) {
            std::memcpy(out.quants.data() + r * stride + b * kLevelBytes, x[b].qs, kLevelBytes);
            out.side[r * blocks + b] = f16_to_f32(x[b].d);
        }
    }
}

// Q4_K and Q5_K: the level bytes as stored (Q5_K: qh, then qs), each sub-block's d * sc and
// dmin * m formed as the CPU forms them (decode_block32).
template <typename Block>
void pack_k45(DType dtype, const void* data, size_t rows, size_t cols, PackedMatrix& out) {
    const size_t super_blocks = cols / kSuperBlock, stride = quant_row_bytes(dtype, cols);
    const size_t side_stride = side_row_floats(dtype, cols);
    out.quants.resize(rows * stride);
    out.side.resize(rows * side_stride);
    for (size_t r = 0; r < rows; ++r) {
        const Block* x = row_blocks<Block>(data, r, super_blocks);
        for (size_t s = 0; s < super_blocks; ++s) {
            uint8_t* q = out.quants.data() + r * stride + s * (stride / super_blocks);
            if constexpr (std::is_same_v<Block, BlockQ5_K>) {
                std::memcpy(q, x[s].qh, sizeof x[s].qh);
                std::memcpy(q + sizeof x[s].qh, x[s].qs, sizeof x[s].qs);
            } else {
                std::memcpy(q, x[s].qs, sizeof x[s].qs);
            }
            const float d = f16_to_f32(x[s].d), dmin = f16_to_f32(x[s].dmin);
            for (size_t j = 0; j < 8; ++j) {
                uint8_t sc, m;
                quant::scale_min_k4(j, x[s].scales, &sc, &m);
                float* side = out.side.data() + r * side_stride + 2 * (s * 8 + j);
                side[0] = d * sc;
                side[1] = dmin * m;
            }
        }
    }
}

void pack_q6_k(const void* data, size_t rows, size_t cols, PackedMatrix& out) {
    const size_t super_blocks = cols / kSuperBlock, stride = quant_row_bytes(DType::Q6_K, cols);
    const size_t side_stride = side_row_floats(DType::Q6_K, cols);
    out.quants.resize(rows * stride);
    out.side.resize(rows * side_stride);
    for (size_t r = 0; r < rows; ++r) {
        const BlockQ6_K* x = row_blocks<BlockQ6_K>(data, r, super_blocks);
        for (size_t s = 0; s < super_blocks; ++s) {
            uint8_t* q = out.quants.data() + r * stride + s * 192;
            std::memcpy(q, x[s].ql, sizeof x[s].ql);
            std::memcpy(q + sizeof x[s].ql, x[s].qh, sizeof x[s].qh);
            const float d = f16_to_f32(x[s].d);
            for (size_t i = 0; i < 16; ++i) out.side[r * side_stride + s * 16 + i] = d * x[s].scales[i];
        }
    }
}

}  // namespace

PackedMatrix pack_matrix(DType dtype, const void* data, size_t rows, size_t cols) {
    PackedMatrix out;
    switch (dtype) {
        case DType::F32:
        case DType::F16:
        case DType::BF16: pack_float(dtype, data, rows, cols, out); break;
        case DType::Q8_0: pack_blocks_of_32<BlockQ8_0>(dtype, data, rows, cols, out); break;
        case DType::Q4_0: pack_blocks_of_32<BlockQ4_0>(dtype, data, rows, cols, out); break;
        case DType::Q4_K: pack_k45<BlockQ4_K>(dtype, data, rows, cols, out); break;
        case DType::Q5_K: pack_k45<BlockQ5_K>(dtype, data, rows, cols, out); break;
        case DType::Q6_K: pack_q6_k(data, rows, cols, out); break;
    }
    return out;
}

}  // namespace lfmrt::cuda
