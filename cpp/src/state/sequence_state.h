// The state one sequence carries between forward steps, in its model's backend pools: the KV
// pages of the attention layers, the conv state of the short-conv layers, and its position.
#pragma once

#include <cstddef>
#include <memory>

#include "lfmrt/backend.h"
#include "state/block.h"
#include "state/kv_cache.h"

namespace lfmrt {

// Where a model's sessions keep their state: the backend's two pools and their layout.
struct StatePools {
    backend::BlockPool& kv_pages;
    backend::BlockPool& conv_states;
    const StateLayout& layout;
};

struct SequenceState {
    // An empty sequence: no KV pages, zero conv state.
    explicit SequenceState(const StatePools& pools);
    SequenceState(SequenceState&&) = default;

    // An independent copy: KV pages shared copy-on-write, the conv state copied.
    SequenceState fork() const;

    KvCache kv;
    // Every conv layer's last (kernel - 1) conv inputs (StateLayout); null without conv layers.
    std::unique_ptr<Block> conv;
    size_t n_past = 0;  // positions already processed

    size_t memory_bytes() const;

private:
    SequenceState(const KvCache& kv, std::unique_ptr<Block> conv, size_t n_past)
        : kv(kv), conv(std::move(conv)), n_past(n_past) {}
};

}  // namespace lfmrt
