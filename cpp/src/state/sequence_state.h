// The state one sequence carries between forward calls: a KV cache per attention layer and
// the last k-1 conv inputs per short-conv layer. Copying it is a cheap fork (KV pages are
// shared copy-on-write; conv states are a few KB per layer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "lfmrt/config.h"
#include "state/kv_cache.h"

namespace lfmrt {

// The last (kernel - 1) inputs of one short-conv layer's depthwise convolution,
// [kernel - 1][hidden], oldest first; zeros at the start of a sequence.
struct ConvState {
    std::vector<float> history;
};

struct SequenceState {
    SequenceState(const ModelConfig& config, DType kv_dtype);

    std::vector<ConvState> conv;  // indexed by layer; empty for attention layers
    std::vector<KvCache> kv;      // indexed by layer; zero-width for conv layers
    size_t n_past = 0;            // positions already processed

    // Forgets positions from n on in every KV cache. The conv states cannot be rewound this way;
    // the caller restores them from a checkpoint taken at n.
    void truncate_kv(size_t n);
    size_t memory_bytes() const;
};

}  // namespace lfmrt
