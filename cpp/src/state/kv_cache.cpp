#include "state/kv_cache.h"

#include <algorithm>

namespace lfmrt {

KvCache::Page& KvCache::writable_page(size_t index) {
    while (pages_.size() <= index) {
        auto page = std::make_shared<Page>();
        page->keys.resize(kPagePositions * row_width_);
        page->values.resize(kPagePositions * row_width_);
        pages_.push_back(std::move(page));
    }
    std::shared_ptr<Page>& page = pages_[index];
    if (page.use_count() > 1) page = std::make_shared<Page>(*page);  // copy on write
    return *page;
}

void KvCache::store(size_t position, const float* keys, const float* values) {
    truncate(position);
    Page& page = writable_page(position / kPagePositions);
    const size_t offset = offset_in_page(position);
    std::copy(keys, keys + row_width_, page.keys.begin() + static_cast<ptrdiff_t>(offset));
    std::copy(values, values + row_width_, page.values.begin() + static_cast<ptrdiff_t>(offset));
    n_positions_ = position + 1;
}

void KvCache::truncate(size_t n_positions) {
    n_positions_ = std::min(n_positions_, n_positions);
    const size_t pages_needed = (n_positions_ + kPagePositions - 1) / kPagePositions;
    if (pages_.size() > pages_needed) pages_.resize(pages_needed);
}

KvView KvCache::view() {
    key_pointers_.clear();
    value_pointers_.clear();
    for (const auto& page : pages_) {
        key_pointers_.push_back(page->keys.data());
        value_pointers_.push_back(page->values.data());
    }
    return KvView{key_pointers_.data(), value_pointers_.data(), kPagePositions, row_width_, n_positions_};
}

size_t KvCache::memory_bytes() const {
    return pages_.size() * 2 * kPagePositions * row_width_ * sizeof(float);
}

size_t KvCache::unshared_bytes() const {
    size_t bytes = 0;
    for (const auto& page : pages_) {
        if (page.use_count() == 1) bytes += 2 * kPagePositions * row_width_ * sizeof(float);
    }
    return bytes;
}

}  // namespace lfmrt
