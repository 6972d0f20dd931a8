// Snapshots of a sequence's conv states at chosen positions, so the sequence can be rewound.
//
// A KV cache can be cut at any position, but a conv state only exists for the position it was
// computed at. Rewinding to position n therefore restores the latest checkpoint at or before n
// and re-runs the few tokens after it. A checkpoint is one conv-state block in the backend's
// pool ((kernel - 1) * hidden floats per conv layer, about 80 KB for LFM2-350M); checkpoints
// never change once taken, so forks share them. Their number is bounded, and when the bound is
// reached the two closest checkpoints are merged (the older of them dropped), so coverage stays
// spread out.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "state/sequence_state.h"

namespace lfmrt {

class ConvCheckpoints {
public:
    explicit ConvCheckpoints(size_t max_count) : max_count_(max_count) {}

    // Records the conv state of `state` at position state.n_past (replacing one there).
    void record(const SequenceState& state);
    // The latest checkpoint at or before `position`: its position, and its conv state copied
    // into `state.conv`. Position 0 (the empty sequence, all zeros) is always available.
    size_t restore_at_or_before(size_t position, SequenceState& state) const;
    // Drops checkpoints after `position`.
    void truncate(size_t position);
    void clear() { checkpoints_.clear(); }

    size_t count() const { return checkpoints_.size(); }
    size_t max_count() const { return max_count_; }
    size_t memory_bytes() const;

    struct Checkpoint {
        size_t position;
        std::shared_ptr<const Block> conv;  // null when the model has no conv layers
    };
    const std::vector<Checkpoint>& all() const { return checkpoints_; }
    void restore_all(std::vector<Checkpoint> checkpoints) { checkpoints_ = std::move(checkpoints); }

private:
    void drop_closest_pair();

    size_t max_count_;
    std::vector<Checkpoint> checkpoints_;  // ascending positions
};

}  // namespace lfmrt
