// The step begun last as the CUDA kernels read it: one array of 32-bit words built on the host
// (plain C++) and uploaded once per step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "lfmrt/backend.h"

namespace lfmrt::cuda {

// Fields of a sequence in the table, in this order.
enum SequenceField : uint32_t { kRowBegin, kRows, kPast, kConvState, kFirstPage, kSequenceFields };

// Every row's token, position and sequence, then each sequence's fields, then the sequences'
// page ids (a sequence's start at its kFirstPage).
struct StepTable {
    std::vector<uint32_t> words;
    uint32_t tokens_at = 0, positions_at = 0, row_sequence_at = 0, sequences_at = 0, pages_at = 0;
    uint32_t rows = 0, n_sequences = 0;
};

StepTable build_step_table(const backend::Step& step);

// The table on the device, as kernels take it (by value).
struct StepView {
    const int32_t* tokens;
    const uint32_t* positions;
    const uint32_t* row_sequence;
    const uint32_t* sequences;  // n_sequences x kSequenceFields
    const uint32_t* pages;
    uint32_t rows, n_sequences;
};

// The view of `table` uploaded at `device_words`.
StepView step_view(const StepTable& table, const uint32_t* device_words);

}  // namespace lfmrt::cuda
