#include "state/kv_cache.h"

#include <algorithm>
#include <cstring>

namespace lfmrt {

std::vector<uint32_t> KvCache::prepare_write(size_t begin, size_t end) {
    truncate(begin);
    const size_t positions = layout_->page_positions;
    const size_t pages_needed = (end + positions - 1) / positions;
    while (pages_.size() < pages_needed) pages_.push_back(std::make_shared<Block>(*pool_));
    for (size_t page = begin / positions; page < pages_needed; ++page) {
        std::shared_ptr<Block>& block = pages_[page];
        if (block.use_count() > 1) {  // copy on write
            auto copy = std::make_shared<Block>(*pool_);
            pool_->copy(block->id(), copy->id());
            block = std::move(copy);
        }
    }
    std::vector<uint32_t> ids;
    ids.reserve(pages_.size());
    for (const auto& block : pages_) ids.push_back(block->id());
    return ids;
}

void KvCache::truncate(size_t n_positions) {
    n_positions_ = std::min(n_positions_, n_positions);
    const size_t positions = layout_->page_positions;
    const size_t pages_needed = (n_positions_ + positions - 1) / positions;
    if (pages_.size() > pages_needed) pages_.resize(pages_needed);
}

// A page's runs are read (written) whole: one transfer per head and page rather than one per
// stored slice, which matters on a device where each transfer is a command.
void KvCache::read_rows(size_t attention_layer, bool values, uint8_t* rows) const {
    const size_t slice = layout_->slice_bytes(), heads = layout_->n_kv_heads, positions = layout_->page_positions;
    std::vector<uint8_t> run(positions * slice);
    for (size_t page = 0; page * positions < n_positions_; ++page) {
        const size_t count = std::min(positions, n_positions_ - page * positions);
        for (size_t h = 0; h < heads; ++h) {
            pool_->read(pages_[page]->id(), layout_->kv_run_offset(attention_layer, values, h), count * slice,
                        run.data());
            for (size_t p = 0; p < count; ++p) {
                std::memcpy(rows + ((page * positions + p) * heads + h) * slice, run.data() + p * slice, slice);
            }
        }
    }
}

void KvCache::write_rows(size_t attention_layer, bool values, size_t n_positions, const uint8_t* rows) {
    const size_t slice = layout_->slice_bytes(), heads = layout_->n_kv_heads, positions = layout_->page_positions;
    std::vector<uint8_t> run(positions * slice);
    for (size_t page = 0; page * positions < n_positions; ++page) {
        const size_t count = std::min(positions, n_positions - page * positions);
        for (size_t h = 0; h < heads; ++h) {
            for (size_t p = 0; p < count; ++p) {
                std::memcpy(run.data() + p * slice, rows + ((page * positions + p) * heads + h) * slice, slice);
            }
            pool_->write(pages_[page]->id(), layout_->kv_run_offset(attention_layer, values, h), count * slice,
                         run.data());
        }
    }
}

}  // namespace lfmrt
