#include "backends/cuda/step_plan.h"

namespace lfmrt::cuda {

namespace {
uint32_t u32(size_t value) { return static_cast<uint32_t>(value); }
}  // namespace

StepTable build_step_table(const backend::Step& step) {
    StepTable table;
    table.rows = u32(step.n);
    table.n_sequences = u32(step.sequences.size());
    table.tokens_at = 0;
    table.positions_at = table.rows;
    table.row_sequence_at = 2 * table.rows;
    table.sequences_at = 3 * table.rows;
    table.pages_at = table.sequences_at + u32(kSequenceFields * step.sequences.size());
    std::vector<uint32_t>& words = table.words;
    words.assign(table.pages_at, 0);
    for (size_t r = 0; r < step.n; ++r) words[table.tokens_at + r] = static_cast<uint32_t>(step.tokens[r]);
    for (size_t s = 0; s < step.sequences.size(); ++s) {
        const backend::StepSequence& seq = step.sequences[s];
        uint32_t* fields = words.data() + table.sequences_at + kSequenceFields * s;
        fields[kRowBegin] = u32(seq.row_begin);
        fields[kRows] = u32(seq.n);
        fields[kPast] = u32(seq.n_past);
        fields[kConvState] = seq.conv_state;
        fields[kFirstPage] = u32(words.size() - table.pages_at);
        for (size_t t = 0; t < seq.n; ++t) {
            words[table.positions_at + seq.row_begin + t] = u32(seq.n_past + t);
            words[table.row_sequence_at + seq.row_begin + t] = u32(s);
        }
        words.insert(words.end(), seq.kv_pages.begin(), seq.kv_pages.end());
    }
    return table;
}

StepView step_view(const StepTable& table, const uint32_t* device_words) {
    return StepView{reinterpret_cast<const int32_t*>(device_words + table.tokens_at), device_words + table.positions_at,
                    device_words + table.row_sequence_at, device_words + table.sequences_at,
                    device_words + table.pages_at, table.rows, table.n_sequences};
}

}  // namespace lfmrt::cuda
