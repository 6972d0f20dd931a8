// The keys and values of one attention layer for one sequence, in fixed-size pages.
//
// Pages are allocated as the sequence grows (no up-front reservation of the whole context) and
// shared copy-on-write between forks: fork() copies the page table, and the first write into a
// shared page clones that page only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace lfmrt {

// What attention reads: per-page pointers to rows of n_kv_heads * head_dim fp32 values.
struct KvView {
    const float* const* key_pages = nullptr;
    const float* const* value_pages = nullptr;
    size_t page_positions = 0;  // rows per page
    size_t row_width = 0;       // floats per row (n_kv_heads * head_dim)
    size_t n_positions = 0;     // rows that hold data
};

class KvCache {
public:
    static constexpr size_t kPagePositions = 256;

    explicit KvCache(size_t row_width) : row_width_(row_width) {}

    size_t row_width() const { return row_width_; }
    size_t n_positions() const { return n_positions_; }

    // Stores one position's keys and values (row_width floats each) at `position`, which must
    // be <= n_positions(); positions after it are forgotten.
    void store(size_t position, const float* keys, const float* values);
    // Forgets every position from `n_positions` on (pages wholly past it are released).
    void truncate(size_t n_positions);

    // Valid until the next store/truncate.
    KvView view();
    size_t memory_bytes() const;
    // Bytes of the pages this cache does not share with another (forked) cache.
    size_t unshared_bytes() const;

    const float* key_row(size_t position) const { return page_of(position).keys.data() + offset_in_page(position); }
    const float* value_row(size_t position) const {
        return page_of(position).values.data() + offset_in_page(position);
    }

private:
    struct Page {
        std::vector<float> keys, values;
    };
    const Page& page_of(size_t position) const { return *pages_[position / kPagePositions]; }
    size_t offset_in_page(size_t position) const { return (position % kPagePositions) * row_width_; }
    Page& writable_page(size_t index);

    size_t row_width_;
    size_t n_positions_ = 0;
    std::vector<std::shared_ptr<Page>> pages_;
    std::vector<const float*> key_pointers_, value_pointers_;  // view()'s page tables
};

}  // namespace lfmrt
