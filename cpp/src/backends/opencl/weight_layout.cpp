#include "backends/opencl/weight_layout.h"

#include <cstring>
#include <stdexcept>

#include "formats/blocks.h"

namespace lfmrt::opencl {

namespace {

using quant::kQ32;
using quant::kQK;
constexpr size_t kChunkBytes = 16;

// Writes 32 levels (0..15 each, or their low nibbles) as one chunk: element i in the low nibble of
// byte i, element 16 + i in the high nibble.
void put_nibbles(const uint8_t levels[32], uint8_t* chunk) {
    for (size_t i = 0; i < 16; ++i) chunk[i] = static_cast<uint8_t>((levels[i] & 0xF) | ((levels[16 + i] & 0xF) << 4));
}

void put_u16(std::vector<uint8_t>& out, size_t index, uint16_t value) { std::memcpy(out.data() + 2 * index, &value, 2); }
void put_u32(std::vector<uint8_t>& out, size_t index, uint32_t value) { std::memcpy(out.data() + 4 * index, &value, 4); }

template <typename Block>
const Block* row_blocks(const void* data, size_t row, size_t blocks_per_row) {
    return static_cast<const Block*>(data) + row * blocks_per_row;
}

void pack_float(DType dtype, const void* data, size_t rows, size_t cols, PackedMatrix& out) {
    const size_t element = dtype == DType::F32 ? 4 : 2;
    const size_t stride = chunks_per_row(dtype, cols) * kChunkBytes;
    out.quants.assign(rows * stride, 0);
    for (size_t r = 0; r < rows; ++r) {
        std::memcpy(out.quants.data() + r * stride, static_cast<const uint8_t*>(data) + r * cols * element, cols * element);
    }
}

// Q8_0 and Q4_0: each block's levels (its qs bytes, as stored) into quants, its d into a.
template <typename Block>
void pack_blocks_of_32(const void* data, size_t rows, size_t cols, PackedMatrix& out) {
    const size_t blocks = cols / kQ32;
    constexpr size_t kLevelBytes = sizeof(Block::qs);
    out.quants.resize(rows * blocks * kLevelBytes);
    out.a.resize(rows * blocks * 2);
    for (size_t r = 0; r < rows; ++r) {
        const auto* x = row_blocks<Block>(data, r, blocks);
        for (size_t b = 0; b < blocks; ++b) {
            std::memcpy(out.quants.data() + (r * blocks + b) * kLevelBytes, x[b].qs, kLevelBytes);
            put_u16(out.a, r * blocks + b, x[b].d);
        }
    }
}

// Q4_K and Q5_K: the same super-block header; Q5_K adds the fifth bits.
template <typename Block, bool kFifthBit>
void pack_k45(const void* data, size_t rows, size_t cols, PackedMatrix& out) {
    const size_t super_blocks = cols / kQK;
    const size_t chunks = cols / kQ32;
    out.quants.resize(rows * chunks * kChunkBytes);
    out.a.resize(rows * super_blocks * 4);
    out.b.resize(rows * super_blocks * 16);
    if (kFifthBit) out.c.resize(rows * chunks * 4);
    for (size_t r = 0; r < rows; ++r) {
        const auto* x = row_blocks<Block>(data, r, super_blocks);
        for (size_t s = 0; s < super_blocks; ++s) {
            const size_t sb = r * super_blocks + s;
            put_u16(out.a, 2 * sb, x[s].d);
            put_u16(out.a, 2 * sb + 1, x[s].dmin);
            for (size_t j = 0; j < 8; ++j) {
                uint8_t sc, m;
                quant::scale_min_k4(j, x[s].scales, &sc, &m);
                out.b[sb * 16 + j] = sc;
                out.b[sb * 16 + 8 + j] = m;
                // Sub-block j: the low (even j) or high (odd j) nibbles of qs[32 (j / 2) ...].
                uint8_t levels[32];
                uint32_t fifth = 0;
                for (size_t l = 0; l < 32; ++l) {
                    levels[l] = static_cast<uint8_t>((x[s].qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0xF);
                    if constexpr (kFifthBit) fifth |= static_cast<uint32_t>((x[s].qh[l] >> j) & 1) << l;
                }
                const size_t chunk = r * chunks + s * 8 + j;
                put_nibbles(levels, out.quants.data() + chunk * kChunkBytes);
                if constexpr (kFifthBit) put_u32(out.c, chunk, fifth);
            }
        }
    }
}

void pack_q6_k(const void* data, size_t rows, size_t cols, PackedMatrix& out) {
    const size_t super_blocks = cols / kQK;
    const size_t chunks = cols / kQ32;
    out.quants.resize(rows * chunks * kChunkBytes);
    out.a.resize(rows * super_blocks * 2);
    out.b.resize(rows * cols / 16);
    out.c.resize(rows * chunks * 8);
    for (size_t r = 0; r < rows; ++r) {
        const auto* x = row_blocks<quant::BlockQ6_K>(data, r, super_blocks);
        for (size_t s = 0; s < super_blocks; ++s) {
            put_u16(out.a, r * super_blocks + s, x[s].d);
            std::memcpy(out.b.data() + (r * super_blocks + s) * 16, x[s].scales, 16);
            for (size_t j = 0; j < 8; ++j) {  // chunk j of the super-block: elements 32 j ..
                uint8_t levels[32];
                uint32_t high[2] = {0, 0};
                for (size_t e = 0; e < 32; ++e) {
                    const size_t i = 32 * j + e, half = i / 128, k = (i % 128) / 32, l = i % 32;
                    const uint8_t low = x[s].ql[64 * half + l + 32 * (k % 2)] >> (4 * (k / 2));
                    const uint8_t top = (x[s].qh[32 * half + l] >> (2 * k)) & 3;
                    levels[e] = low & 0xF;
                    high[e / 16] |= static_cast<uint32_t>(top) << (2 * (e % 16));
                }
                const size_t chunk = r * chunks + s * 8 + j;
                put_nibbles(levels, out.quants.data() + chunk * kChunkBytes);
                put_u32(out.c, 2 * chunk, high[0]);
                put_u32(out.c, 2 * chunk + 1, high[1]);
            }
        }
    }
}

}  // namespace

size_t chunk_elems(DType dtype) {
    switch (dtype) {
        case DType::F32: return 4;
        case DType::F16:
        case DType::BF16: return 8;
        case DType::Q8_0: return 16;
        default: return 32;
    }
}

size_t chunks_per_row(DType dtype, size_t cols) { return (cols + chunk_elems(dtype) - 1) / chunk_elems(dtype); }

PackedMatrix pack_matrix(DType dtype, const void* data, size_t rows, size_t cols) {
    PackedMatrix out;
    switch (dtype) {
        case DType::F32:
        case DType::F16:
        case DType::BF16: pack_float(dtype, data, rows, cols, out); break;
        case DType::Q8_0: pack_blocks_of_32<quant::BlockQ8_0>(data, rows, cols, out); break;
        case DType::Q4_0: pack_blocks_of_32<quant::BlockQ4_0>(data, rows, cols, out); break;
        case DType::Q4_K: pack_k45<quant::BlockQ4_K, false>(data, rows, cols, out); break;
        case DType::Q5_K: pack_k45<quant::BlockQ5_K, true>(data, rows, cols, out); break;
        case DType::Q6_K: pack_q6_k(data, rows, cols, out); break;
    }
    return out;
}

}  // namespace lfmrt::opencl
