// The keys and values of every attention layer for one sequence, in fixed-size pages that live
// in the backend's KV pool (StateLayout in lfmrt/backend.h says where each value is in a page).
//
// Pages are allocated as the sequence grows (no up-front reservation of the whole context) and
// shared copy-on-write between forks: copying a KvCache copies its page table, and the first
// write into a shared page clones that page only. A page holds its positions for every
// attention layer, so one page table serves them all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "lfmrt/backend.h"
#include "state/block.h"

namespace lfmrt {

class KvCache {
public:
    KvCache(backend::BlockPool& pages, const StateLayout& layout) : pool_(&pages), layout_(&layout) {}

    size_t n_positions() const { return n_positions_; }

    // Before a step stores positions [begin, end): forgets every position from `begin` on,
    // allocates pages up to `end` and un-shares the pages the step writes. Returns the ids of
    // the pages covering [0, end), in order.
    std::vector<uint32_t> prepare_write(size_t begin, size_t end);
    // After the step: positions [0, end) hold data.
    void written(size_t end) { n_positions_ = end; }
    // Forgets every position from `n_positions` on (pages wholly past it are released).
    void truncate(size_t n_positions);

    // Every position's keys (or values) of one attention layer as rows (n_kv_heads slices of
    // head_dim values in the layout's kv_dtype, head after head): the backend-free form that
    // snapshots keep. `rows` holds n_positions() rows of n_kv_heads * slice_bytes bytes.
    void read_rows(size_t attention_layer, bool values, uint8_t* rows) const;
    // The inverse, for `n_positions` positions, into pages made by prepare_write(0, n_positions)
    // (then written(n_positions) once every layer is in).
    void write_rows(size_t attention_layer, bool values, size_t n_positions, const uint8_t* rows);

    // Bytes of the pages this cache refers to (shared pages counted in full by each sharer).
    size_t memory_bytes() const { return pages_.size() * layout_->kv_page_bytes(); }

private:
    backend::BlockPool* pool_;
    const StateLayout* layout_;
    size_t n_positions_ = 0;
    std::vector<std::shared_ptr<Block>> pages_;
};

}  // namespace lfmrt
