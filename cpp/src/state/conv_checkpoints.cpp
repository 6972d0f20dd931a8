#include "state/conv_checkpoints.h"

#include <algorithm>
#include <cstdint>

namespace lfmrt {

void ConvCheckpoints::record(const SequenceState& state) {
    if (max_count_ == 0 || state.n_past == 0) return;
    truncate(state.n_past);
    if (!checkpoints_.empty() && checkpoints_.back().position == state.n_past) checkpoints_.pop_back();
    std::shared_ptr<Block> copy;
    if (state.conv) {
        copy = std::make_shared<Block>(state.conv->pool());
        state.conv->pool().copy(state.conv->id(), copy->id());
    }
    checkpoints_.push_back(Checkpoint{state.n_past, std::move(copy)});
    if (checkpoints_.size() > max_count_) drop_closest_pair();
}

void ConvCheckpoints::drop_closest_pair() {
    // Never drop the newest checkpoint: it is the one a rewind within the current turn needs.
    size_t best = 0;
    size_t best_gap = SIZE_MAX;
    for (size_t i = 0; i + 1 < checkpoints_.size(); ++i) {
        const size_t previous = i == 0 ? 0 : checkpoints_[i - 1].position;
        const size_t gap = checkpoints_[i + 1].position - previous;  // the gap left if i goes
        if (gap < best_gap) {
            best_gap = gap;
            best = i;
        }
    }
    checkpoints_.erase(checkpoints_.begin() + static_cast<ptrdiff_t>(best));
}

size_t ConvCheckpoints::restore_at_or_before(size_t position, SequenceState& state) const {
    auto it = std::upper_bound(checkpoints_.begin(), checkpoints_.end(), position,
                               [](size_t p, const Checkpoint& c) { return p < c.position; });
    if (it == checkpoints_.begin()) {
        if (state.conv) state.conv->pool().zero(state.conv->id());
        return 0;
    }
    --it;
    if (state.conv) state.conv->pool().copy(it->conv->id(), state.conv->id());
    return it->position;
}

void ConvCheckpoints::truncate(size_t position) {
    while (!checkpoints_.empty() && checkpoints_.back().position > position) checkpoints_.pop_back();
}

size_t ConvCheckpoints::memory_bytes() const {
    size_t bytes = 0;
    for (const auto& checkpoint : checkpoints_) bytes += checkpoint.conv ? checkpoint.conv->pool().block_bytes() : 0;
    return bytes;
}

}  // namespace lfmrt
