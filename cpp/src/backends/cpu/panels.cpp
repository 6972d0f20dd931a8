#include "backends/cpu/panels.h"

#include <cstring>

#include "lfmrt/error.h"

namespace lfmrt::cpu {

using quant::BlockQ4_0;
using quant::BlockQ8_0;
using quant::BlockQ4_K;
using quant::BlockQ6_K;

namespace {

// put: a GGUF block into row `lane` of a panel block; get: back. Q4_0 and Q8_0 copy the scale
// and the 4-byte level words, XOR-ing the bits that make the levels unsigned: none for Q4_0
// (already 0..15), the sign bits for Q8_0 (x ^ 0x80 is x + 128 for x in -128..127).

template <typename Block, typename Panel, uint32_t kFlip>
void put_words(const Block& block, Panel& panel, size_t lane) {
    constexpr size_t kWords = sizeof(Panel::qs) / sizeof(Panel::qs[0]);
    panel.d[lane] = block.d;
    for (size_t g = 0; g < kWords; ++g) {
        uint32_t word;
        std::memcpy(&word, block.qs + 4 * g, 4);
        word ^= kFlip;
        std::memcpy(panel.qs[g][lane], &word, 4);
    }
}

template <typename Block, typename Panel, uint32_t kFlip>
void get_words(const Panel& panel, size_t lane, Block& block) {
    constexpr size_t kWords = sizeof(Panel::qs) / sizeof(Panel::qs[0]);
    block.d = panel.d[lane];
    for (size_t g = 0; g < kWords; ++g) {
        uint32_t word;
        std::memcpy(&word, panel.qs[g][lane], 4);
        word ^= kFlip;
        std::memcpy(block.qs + 4 * g, &word, 4);
    }
}

void put(const BlockQ4_0& block, PanelQ4_0& panel, size_t lane) {
    put_words<BlockQ4_0, PanelQ4_0, 0>(block, panel, lane);
}
void get(const PanelQ4_0& panel, size_t lane, BlockQ4_0& block) {
    get_words<BlockQ4_0, PanelQ4_0, 0>(panel, lane, block);
}

constexpr uint32_t kSignBits = 0x80808080u;
void put(const BlockQ8_0& block, PanelQ8_0& panel, size_t lane) {
    put_words<BlockQ8_0, PanelQ8_0, kSignBits>(block, panel, lane);
}
void get(const PanelQ8_0& panel, size_t lane, BlockQ8_0& block) {
    get_words<BlockQ8_0, PanelQ8_0, kSignBits>(panel, lane, block);
}

// Q4_K: d, dmin and the 12 packed scale bytes per row, and qs as 32 words, word 8p + g to the
// 4-byte column g of pair p.
void put(const BlockQ4_K& block, PanelQ4_K& panel, size_t lane) {
    panel.d[lane] = block.d;
    panel.dmin[lane] = block.dmin;
    for (size_t k = 0; k < sizeof block.scales; ++k) panel.scales[k][lane] = block.scales[k];
    for (size_t p = 0; p < kQK / 64; ++p) {
        for (size_t g = 0; g < 8; ++g) std::memcpy(panel.qs[p][g][lane], block.qs + 32 * p + 4 * g, 4);
    }
}

void get(const PanelQ4_K& panel, size_t lane, BlockQ4_K& block) {
    block.d = panel.d[lane];
    block.dmin = panel.dmin[lane];
    for (size_t k = 0; k < sizeof block.scales; ++k) block.scales[k] = panel.scales[k][lane];
    for (size_t p = 0; p < kQK / 64; ++p) {
        for (size_t g = 0; g < 8; ++g) std::memcpy(block.qs + 32 * p + 4 * g, panel.qs[p][g][lane], 4);
    }
}

// Q6_K: where value l of 32-value block j (half j / 4, group k = j % 4 of the half) keeps its low
// 4 bits in ql (nibble ql_shift) and its top 2 bits in qh (bits qh_shift..qh_shift+1).
struct Q6KPlace {
    size_t ql_index, ql_shift, qh_index, qh_shift;
};
Q6KPlace q6_k_place(size_t j, size_t l) {
    const size_t half = j / 4, k = j % 4;
    return {64 * half + l + 32 * (k % 2), 4 * (k / 2), 32 * half + l, 2 * k};
}

void put(const BlockQ6_K& block, PanelQ6_K& panel, size_t lane) {
    panel.d[lane] = block.d;
    for (size_t j = 0; j < kQK / 16; ++j) panel.scales[j][lane] = block.scales[j];
    for (size_t j = 0; j < 8; ++j) {
        // Whole 32-byte runs per step (loops the compiler vectorises): packing a 55 MB head
        // this way takes tens of milliseconds.
        const Q6KPlace at = q6_k_place(j, 0);
        uint8_t low[kQ32], high[kQ32];
        for (size_t l = 0; l < kQ32; ++l) {
            low[l] = static_cast<uint8_t>((block.ql[at.ql_index + l] >> at.ql_shift) & 0xF);
            high[l] = static_cast<uint8_t>((block.qh[at.qh_index + l] >> at.qh_shift) & 3);
        }
        uint8_t words[16], bits[8];  // ql's 4 words, qh's 2 words, of this row
        for (size_t l = 0; l < 16; ++l) words[l] = static_cast<uint8_t>(low[l] | low[16 + l] << 4);
        for (size_t m = 0; m < 8; ++m) {  // word m / 4, byte m % 4
            const uint8_t* h = high + 16 * (m / 4) + m % 4;
            bits[m] = static_cast<uint8_t>(h[0] | h[4] << 2 | h[8] << 4 | h[12] << 6);
        }
        for (size_t g = 0; g < 4; ++g) std::memcpy(panel.blocks[j].ql[g][lane], words + 4 * g, 4);
        for (size_t k = 0; k < 2; ++k) std::memcpy(panel.blocks[j].qh[k][lane], bits + 4 * k, 4);
    }
}

void get(const PanelQ6_K& panel, size_t lane, BlockQ6_K& block) {
    block.d = panel.d[lane];
    for (size_t j = 0; j < kQK / 16; ++j) block.scales[j] = panel.scales[j][lane];
    std::memset(block.ql, 0, sizeof block.ql);
    std::memset(block.qh, 0, sizeof block.qh);
    for (size_t j = 0; j < 8; ++j) {
        for (size_t l = 0; l < kQ32; ++l) {
            const uint8_t level = panel_level_q6_k(panel, lane, j, l);
            const Q6KPlace at = q6_k_place(j, l);
            block.ql[at.ql_index] |= static_cast<uint8_t>((level & 0xF) << at.ql_shift);
            block.qh[at.qh_index] |= static_cast<uint8_t>((level >> 4) << at.qh_shift);
        }
    }
}

template <typename Block, typename Panel>
void pack(const void* src, size_t rows, size_t row_blocks, size_t panel_begin, size_t panel_end, void* dst) {
    for (size_t p = panel_begin; p < panel_end; ++p) {
        const size_t first = p * kPanelRows;
        const size_t count = rows - first < kPanelRows ? rows - first : kPanelRows;
        Panel* out = static_cast<Panel*>(dst) + p * row_blocks;
        std::memset(static_cast<void*>(out), 0, row_blocks * sizeof(Panel));  // padding rows: scale 0
        for (size_t r = 0; r < count; ++r) {
            const Block* row = static_cast<const Block*>(src) + (first + r) * row_blocks;
            for (size_t b = 0; b < row_blocks; ++b) put(row[b], out[b], r);
        }
    }
}

template <typename Block, typename Panel>
void unpack_row(const void* panels, size_t row_blocks, size_t r, void* dst) {
    const Panel* row_panels = panel_row<Panel>(panels, row_blocks, r / kPanelRows);
    for (size_t b = 0; b < row_blocks; ++b) get(row_panels[b], r % kPanelRows, static_cast<Block*>(dst)[b]);
}

// Only Q4_0, Q8_0, Q4_K and Q6_K have a panel layout.
void check_panel_type(DType dtype) {
    if (dtype != DType::Q4_0 && dtype != DType::Q8_0 && dtype != DType::Q4_K && dtype != DType::Q6_K) {
        throw LoadError(std::string("no panel layout for ") + dtype_name(dtype));
    }
}

}  // namespace

size_t panel_matrix_bytes(DType dtype, size_t rows, size_t cols) {
    check_panel_type(dtype);
    return panel_rows(rows) * kPanelRows * row_bytes(dtype, cols);
}

void pack_panels(DType dtype, const void* src, size_t rows, size_t cols, size_t panel_begin, size_t panel_end,
                 void* dst) {
    check_panel_type(dtype);
    const size_t row_blocks = cols / block_elems(dtype);
    if (dtype == DType::Q4_0) {
        pack<BlockQ4_0, PanelQ4_0>(src, rows, row_blocks, panel_begin, panel_end, dst);
    } else if (dtype == DType::Q8_0) {
        pack<BlockQ8_0, PanelQ8_0>(src, rows, row_blocks, panel_begin, panel_end, dst);
    } else if (dtype == DType::Q4_K) {
        pack<BlockQ4_K, PanelQ4_K>(src, rows, row_blocks, panel_begin, panel_end, dst);
    } else {
        pack<BlockQ6_K, PanelQ6_K>(src, rows, row_blocks, panel_begin, panel_end, dst);
    }
}

void unpack_panel_row(DType dtype, const void* panels, size_t cols, size_t r, void* dst) {
    check_panel_type(dtype);
    const size_t row_blocks = cols / block_elems(dtype);
    if (dtype == DType::Q4_0) {
        unpack_row<BlockQ4_0, PanelQ4_0>(panels, row_blocks, r, dst);
    } else if (dtype == DType::Q8_0) {
        unpack_row<BlockQ8_0, PanelQ8_0>(panels, row_blocks, r, dst);
    } else if (dtype == DType::Q4_K) {
        unpack_row<BlockQ4_K, PanelQ4_K>(panels, row_blocks, r, dst);
    } else {
        unpack_row<BlockQ6_K, PanelQ6_K>(panels, row_blocks, r, dst);
    }
}

}  // namespace lfmrt::cpu
