#include "state/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "lfmrt/error.h"
#include "formats/quantize.h"

namespace lfmrt {

KvCache::KvCache(size_t n_heads, size_t head_dim, DType dtype)
    : n_heads_(n_heads),
      head_dim_(head_dim),
      dtype_(dtype),
      slice_bytes_(n_heads == 0 ? 0 : lfmrt::row_bytes(dtype, head_dim)),
      row_bytes_(n_heads * slice_bytes_) {}

KvCache::Page& KvCache::writable_page(size_t position) {
    truncate(position);
    const size_t index = position / kPagePositions;
    while (pages_.size() <= index) {
        auto page = std::make_shared<Page>();
        page->keys.resize(kPagePositions * row_bytes_);
        page->values.resize(kPagePositions * row_bytes_);
        pages_.push_back(std::move(page));
    }
    std::shared_ptr<Page>& page = pages_[index];
    if (page.use_count() > 1) page = std::make_shared<Page>(*page);  // copy on write
    return *page;
}

void KvCache::store(size_t position, const float* keys, const float* values) {
    Page& page = writable_page(position);
    for (size_t h = 0; h < n_heads_; ++h) {
        const size_t offset = offset_in_page(position, h);
        quant::quantize_row(dtype_, keys + h * head_dim_, page.keys.data() + offset, head_dim_);
        quant::quantize_row(dtype_, values + h * head_dim_, page.values.data() + offset, head_dim_);
    }
    n_positions_ = position + 1;
}

void KvCache::store_raw(size_t position, const uint8_t* keys, const uint8_t* values) {
    Page& page = writable_page(position);
    for (size_t h = 0; h < n_heads_; ++h) {
        const size_t offset = offset_in_page(position, h);
        std::memcpy(page.keys.data() + offset, keys + h * slice_bytes_, slice_bytes_);
        std::memcpy(page.values.data() + offset, values + h * slice_bytes_, slice_bytes_);
    }
    n_positions_ = position + 1;
}

void KvCache::read_raw(size_t position, uint8_t* keys, uint8_t* values) const {
    const Page& page = *pages_[position / kPagePositions];
    for (size_t h = 0; h < n_heads_; ++h) {
        const size_t offset = offset_in_page(position, h);
        std::memcpy(keys + h * slice_bytes_, page.keys.data() + offset, slice_bytes_);
        std::memcpy(values + h * slice_bytes_, page.values.data() + offset, slice_bytes_);
    }
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
    return KvView{key_pointers_.data(), value_pointers_.data(), kPagePositions, slice_bytes_, dtype_, n_positions_};
}

size_t KvCache::memory_bytes() const { return pages_.size() * 2 * kPagePositions * row_bytes_; }

}  // namespace lfmrt
