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

#include "lfmrt/tensor.h"

namespace lfmrt {

// What attention reads: per-page pointers to rows of n_kv_heads * head_dim values stored as
// `dtype` (F32, F16 or Q8_0; a Q8_0 row is whole blocks, so a head's slice starts on a block).
struct KvView {
    const uint8_t* const* key_pages = nullptr;
    const uint8_t* const* value_pages = nullptr;
    size_t page_positions = 0;  // rows per page
    size_t row_bytes = 0;       // bytes per row
    DType dtype = DType::F32;
    size_t n_positions = 0;     // rows that hold data
};

class KvCache {
public:
    static constexpr size_t kPagePositions = 256;

    // row_width: values per position (n_kv_heads * head_dim); dtype: F32, F16 or Q8_0.
    KvCache(size_t row_width, DType dtype);

    size_t row_width() const { return row_width_; }
    DType dtype() const { return dtype_; }
    size_t row_bytes() const { return row_bytes_; }
    size_t n_positions() const { return n_positions_; }

    // Stores one position's keys and values (row_width floats each, converted to the cache's
    // type) at `position`, which must be <= n_positions(); positions after it are forgotten.
    void store(size_t position, const float* keys, const float* values);
    // Stores one position's rows already in the cache's type (row_bytes() each).
    void store_raw(size_t position, const uint8_t* keys, const uint8_t* values);
    // Forgets every position from `n_positions` on (pages wholly past it are released).
    void truncate(size_t n_positions);

    // Valid until the next store/truncate.
    KvView view();
    size_t memory_bytes() const;

    // A stored row (row_bytes() bytes in the cache's type).
    const uint8_t* key_row(size_t position) const { return page_of(position).keys.data() + offset_in_page(position); }
    const uint8_t* value_row(size_t position) const {
        return page_of(position).values.data() + offset_in_page(position);
    }

private:
    struct Page {
        std::vector<uint8_t> keys, values;
    };
    const Page& page_of(size_t position) const { return *pages_[position / kPagePositions]; }
    size_t offset_in_page(size_t position) const { return (position % kPagePositions) * row_bytes_; }
    // The page holding `position`, allocated or un-shared as needed; positions from `position`
    // on are forgotten.
    Page& writable_page(size_t position);

    size_t row_width_;
    DType dtype_;
    size_t row_bytes_;
    size_t n_positions_ = 0;
    std::vector<std::shared_ptr<Page>> pages_;
    std::vector<const uint8_t*> key_pointers_, value_pointers_;  // view()'s page tables
};

}  // namespace lfmrt
