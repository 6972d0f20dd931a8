// Q4_0, Q8_0, Q4_K and Q6_K weight matrices in 16-row panels: the layout the panel kernels
// (KernelTable::gemv_panels / gemm_panels) read in place, made once at load from GGUF's rows.
//
// A panel block covers 16 consecutive rows x one GGUF block (32 values; Q4_K, Q6_K: 256): the 16
// rows' fp16 scales, then their levels as 4-byte words, word g of all 16 rows side by side, so one
// 64-byte vector holds 4 levels of each row: the unsigned operand of vpdpbusd, against the
// activation's 4 bytes broadcast. The 16 lanes are 16 rows, and the scales load as one vector.
// - Q4_0: word g of row r is the GGUF block's qs[4g..4g+3] as stored: low nibbles are levels
//   4g..4g+3, high nibbles levels 16+4g..16+4g+3, unsigned (w = d * (level - 8)).
// - Q8_0: word g of row r is qs[4g..4g+3] + 128, unsigned (w = d * (level - 128)).
// - Q4_K: GGUF's 12 bytes of packed 6-bit sub-block scales and minima as 12 vectors of 16 rows
//   (byte k of every row side by side, so one SIMD op unpacks a sub-block's scale for 16 rows), and
//   per pair of 32-value blocks (2p, 2p+1) the row's qs bytes 32p..32p+31 as 8 words laid out as
//   Q4_0's: low nibbles are block 2p's levels 4g..4g+3 of word g, high nibbles block 2p+1's
//   (w = d * sc * level - dmin * m, level 0..15).
// - Q6_K: per 32-value block j of the super-block, a 4-bit plane laid out as Q4_0's (the low 4
//   bits of levels 4g..4g+3 and 16+4g..16+4g+3 in word g) and a 2-bit plane of two words per row,
//   word k holding in bits 2g..2g+1 of byte i the top 2 bits of level 16k+4g+i; plus the int8
//   scales of the 16-value groups (w = d * scale * (level - 32), level 0..63).
// A panel block takes exactly the bytes of its 16 GGUF blocks (288 = 16 * 18, 544 = 16 * 34,
// 2304 = 16 * 144, 3360 = 16 * 210).
//
// A matrix is stored panel-row by panel-row (panel-row p holds rows 16p..16p+15), each panel-row
// its blocks in column order, contiguous. The last panel-row is padded with zero rows (scale 0,
// so they dot to 0; kernels never store them anyway).
//
// Included by SIMD translation units: no STL, internal linkage for anything defined here (see
// blocks.h). The packing functions are defined in panels.cpp, built without ISA flags.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lfmrt/tensor.h"
#include "formats/blocks.h"

namespace lfmrt::cpu {

using quant::kQK;
using quant::kQ32;

inline constexpr size_t kPanelRows = 16;

struct PanelQ4_0 {
    uint16_t d[kPanelRows];
    uint8_t qs[4][kPanelRows][4];  // [word g][row][byte]
};

struct PanelQ8_0 {
    uint16_t d[kPanelRows];
    uint8_t qs[8][kPanelRows][4];  // [word g][row][byte], level + 128
};

struct PanelQ4_K {
    uint16_t d[kPanelRows];
    uint16_t dmin[kPanelRows];
    uint8_t scales[12][kPanelRows];          // [packed byte k][row]
    uint8_t qs[kQK / 64][8][kPanelRows][4];  // [block pair p][word g][row][byte]
};

struct PanelQ6_K {
    uint16_t d[kPanelRows];
    int8_t scales[kQK / 16][kPanelRows];  // [16-value group][row]
    // Per 32-value block, each block's planes together, so a GEMV reads the panel front to
    // back (a stream the hardware prefetchers follow; planes apart measured 3x slower).
    struct Levels {
        uint8_t ql[4][kPanelRows][4];  // [word g][row][byte]
        uint8_t qh[2][kPanelRows][4];  // [word k][row][byte]
    } blocks[kQK / kQ32];
};

static_assert(sizeof(PanelQ4_0) == kPanelRows * sizeof(quant::BlockQ4_0) &&
              sizeof(PanelQ8_0) == kPanelRows * sizeof(quant::BlockQ8_0) &&
              sizeof(PanelQ4_K) == kPanelRows * sizeof(quant::BlockQ4_K) &&
              sizeof(PanelQ6_K) == kPanelRows * sizeof(quant::BlockQ6_K));

// Panel-rows of a matrix of `rows` rows (the last one possibly partial).
static inline size_t panel_rows(size_t rows) { return (rows + kPanelRows - 1) / kPanelRows; }

// Panel-row p of a packed matrix whose rows hold `row_blocks` GGUF blocks each (32 values each;
// Q4_K, Q6_K: 256): its first panel block.
template <typename Panel>
static inline const Panel* panel_row(const void* panels, size_t row_blocks, size_t p) {
    return static_cast<const Panel*>(panels) + p * row_blocks;
}

// The unsigned level (0..63) of value l of 32-value block j of row `lane` of a Q6_K panel block.
static inline uint8_t panel_level_q6_k(const PanelQ6_K& p, size_t lane, size_t j, size_t l) {
    const size_t half = l / 16, g = l % 16 / 4, i = l % 4;
    const int low = (p.blocks[j].ql[g][lane][i] >> (4 * half)) & 0xF;
    const int high = (p.blocks[j].qh[half][lane][i] >> (2 * g)) & 3;
    return static_cast<uint8_t>(low | high << 4);
}

// Bytes of a rows x cols matrix of `dtype` in panels: row_bytes(dtype, cols) per row, rows rounded
// up to a multiple of 16.
size_t panel_matrix_bytes(DType dtype, size_t rows, size_t cols);

// Writes panel-rows [panel_begin, panel_end) of the packed form of `src` (rows x cols, GGUF's
// row-major blocks) into `dst`, the whole packed matrix (panel_matrix_bytes). Disjoint panel-row
// ranges can be packed concurrently.
void pack_panels(DType dtype, const void* src, size_t rows, size_t cols, size_t panel_begin, size_t panel_end,
                 void* dst);

// Row r of a packed matrix back in GGUF's layout: row_bytes(dtype, cols) bytes at `dst`.
void unpack_panel_row(DType dtype, const void* panels, size_t cols, size_t r, void* dst);

}  // namespace lfmrt::cpu
