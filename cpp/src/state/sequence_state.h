// The state one sequence carries between forward calls: a KV cache per attention layer and
// the last k-1 conv inputs per short-conv layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "lfmrt/config.h"

namespace lfmrt {

// Keys and values of one attention layer, [position][n_kv_heads * head_dim] each, fp32.
// Storage grows geometrically with the sequence rather than reserving the whole context.
class KvCache {
public:
    explicit KvCache(size_t row_width) : row_width_(row_width) {}

    // Makes room for `n_positions` positions in total (keeps what is stored).
    void reserve(size_t n_positions);
    float* keys_at(size_t position) { return keys_.data() + position * row_width_; }
    float* values_at(size_t position) { return values_.data() + position * row_width_; }
    const float* keys() const { return keys_.data(); }
    const float* values() const { return values_.data(); }
    size_t memory_bytes() const { return (keys_.capacity() + values_.capacity()) * sizeof(float); }

private:
    size_t row_width_;
    std::vector<float> keys_;
    std::vector<float> values_;
};

// The last (kernel - 1) inputs of one short-conv layer's depthwise convolution,
// [kernel - 1][hidden], oldest first; zeros at the start of a sequence.
struct ConvState {
    std::vector<float> history;
};

struct SequenceState {
    explicit SequenceState(const ModelConfig& config);

    std::vector<ConvState> conv;  // indexed by layer; empty for attention layers
    std::vector<KvCache> kv;      // indexed by layer; zero-width for conv layers
    size_t n_past = 0;            // positions already processed

    size_t memory_bytes() const;
};

}  // namespace lfmrt
