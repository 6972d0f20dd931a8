// Decoding one 32-value block of a block-format weight row into signed integer levels and fp32
// scales: w[i] = scale[i / 16] * q[i] - min. Every block type fits this shape (Q6_K's two
// sub-blocks of 16 take the two scales; only Q4_K / Q5_K have a min), so one integer dot
// product with a BlockQ8A serves them all. The scalar kernels are written with it (it is the
// specification of the quantized matmuls), and SIMD GEMMs use it to pack weight panels.
//
// Included by SIMD translation units, so no STL and internal linkage only (see blocks.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "lfmrt/tensor.h"
#include "formats/blocks.h"

namespace lfmrt::cpu {

struct Block32 {
    int8_t q[quant::kQ32];
    float scale[2];  // for values 0..15 and 16..31
    float min;
};

// Block b (0-based, counting 32-value blocks) of a weight row of dtype D.
template <DType D>
static inline void decode_block32(const void* row, size_t b, Block32* out) {
    using namespace quant;
    out->min = 0.0f;
    if constexpr (D == DType::Q8_0) {
        const BlockQ8_0& blk = static_cast<const BlockQ8_0*>(row)[b];
        out->scale[0] = out->scale[1] = f16_to_f32(blk.d);
        for (size_t i = 0; i < kQ32; ++i) out->q[i] = blk.qs[i];
    } else if constexpr (D == DType::Q4_0) {
        const BlockQ4_0& blk = static_cast<const BlockQ4_0*>(row)[b];
        out->scale[0] = out->scale[1] = f16_to_f32(blk.d);
        for (size_t i = 0; i < 16; ++i) {
            out->q[i] = static_cast<int8_t>((blk.qs[i] & 0xF) - 8);
            out->q[i + 16] = static_cast<int8_t>((blk.qs[i] >> 4) - 8);
        }
    } else if constexpr (D == DType::Q4_K || D == DType::Q5_K) {
        using Block = const BlockQ4_K;  // Q5_K shares its header layout
        const size_t j = b % 8;         // sub-block within the super-block
        const auto* base = static_cast<const uint8_t*>(row) + (b / 8) * block_bytes(D);
        const auto* header = reinterpret_cast<Block*>(base);
        uint8_t sc, m;
        scale_min_k4(j, header->scales, &sc, &m);
        out->scale[0] = out->scale[1] = f16_to_f32(header->d) * sc;
        out->min = f16_to_f32(header->dmin) * m;
        const uint8_t* qs = D == DType::Q4_K ? reinterpret_cast<const BlockQ4_K*>(base)->qs
                                             : reinterpret_cast<const BlockQ5_K*>(base)->qs;
        const int shift = j % 2 ? 4 : 0;
        for (size_t l = 0; l < kQ32; ++l) {
            int q = (qs[32 * (j / 2) + l] >> shift) & 0xF;
            if constexpr (D == DType::Q5_K) q |= ((reinterpret_cast<const BlockQ5_K*>(base)->qh[l] >> j) & 1) << 4;
            out->q[l] = static_cast<int8_t>(q);
        }
    } else if constexpr (D == DType::Q6_K) {
        const BlockQ6_K& blk = static_cast<const BlockQ6_K*>(row)[b / 8];
        const size_t j = b % 8;  // 32-value group: half j / 4, group k = j % 4 within the half
        const size_t half = j / 4, k = j % 4;
        const float d = f16_to_f32(blk.d);
        out->scale[0] = d * blk.scales[2 * j];
        out->scale[1] = d * blk.scales[2 * j + 1];
        for (size_t l = 0; l < kQ32; ++l) {
            const int low = (blk.ql[64 * half + l + 32 * (k % 2)] >> (4 * (k / 2))) & 0xF;
            const int high = (blk.qh[32 * half + l] >> (2 * k)) & 3;
            out->q[l] = static_cast<int8_t>((low | (high << 4)) - 32);
        }
    }
}

}  // namespace lfmrt::cpu
