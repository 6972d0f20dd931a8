#include "state/sequence_state.h"

namespace lfmrt {

SequenceState::SequenceState(const StatePools& pools) : kv(pools.kv_pages, pools.layout) {
    if (pools.layout.n_conv_layers > 0) {
        conv = std::make_unique<Block>(pools.conv_states);
        pools.conv_states.zero(conv->id());
    }
}

SequenceState SequenceState::fork() const {
    std::unique_ptr<Block> conv_copy;
    if (conv) {
        conv_copy = std::make_unique<Block>(conv->pool());
        conv->pool().copy(conv->id(), conv_copy->id());
    }
    return SequenceState(kv, std::move(conv_copy), n_past);
}

size_t SequenceState::memory_bytes() const {
    return kv.memory_bytes() + (conv ? conv->pool().block_bytes() : 0);
}

}  // namespace lfmrt
