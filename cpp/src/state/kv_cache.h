// The keys and values of one attention layer for one sequence, in fixed-size pages.
//
// Pages are allocated as the sequence grows (no up-front reservation of the whole context) and
// shared copy-on-write between forks: fork() copies the page table, and the first write into a
// shared page clones that page only.
//
// Within a page the values are head-major: [kv head][position][head_dim], so attention, which
// works one KV head at a time, reads each head's keys and values as one contiguous run (a
// position-major row put a head's slices a whole row apart, one or two cache lines in every
// n_kv_heads, and attention waited on memory at every position).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "lfmrt/tensor.h"

namespace lfmrt {

// What attention reads: per-page pointers; in a page, KV head h's slice (head_dim values stored
// as `dtype`: F32, F16 or Q8_0, whole blocks) of position p (counted from the page's first) is at
// head_offset(h) + p * slice_bytes.
struct KvView {
    const uint8_t* const* key_pages = nullptr;
    const uint8_t* const* value_pages = nullptr;
    size_t page_positions = 0;  // positions per page
    size_t slice_bytes = 0;     // one head's values at one position
    DType dtype = DType::F32;
    size_t n_positions = 0;     // positions that hold data

    // Bytes from a page's start to head h's run of page_positions slices.
    size_t head_offset(size_t h) const { return h * page_positions * slice_bytes; }
};

class KvCache {
public:
    static constexpr size_t kPagePositions = 256;

    // n_heads KV heads of head_dim values per position (0 heads: a layer without attention);
    // dtype: F32, F16 or Q8_0 (then head_dim is a multiple of 32).
    KvCache(size_t n_heads, size_t head_dim, DType dtype);

    // Values per position: n_heads * head_dim.
    size_t row_width() const { return n_heads_ * head_dim_; }
    DType dtype() const { return dtype_; }
    size_t row_bytes() const { return row_bytes_; }
    size_t n_positions() const { return n_positions_; }

    // Stores one position's keys and values (row_width floats each, head after head, converted to
    // the cache's type) at `position`, which must be <= n_positions(); positions after it are
    // forgotten.
    void store(size_t position, const float* keys, const float* values);
    // The same for rows already in the cache's type (row_bytes() each, head after head), and its
    // inverse: a stored position's rows in that form (snapshots keep rows, not pages).
    void store_raw(size_t position, const uint8_t* keys, const uint8_t* values);
    void read_raw(size_t position, uint8_t* keys, uint8_t* values) const;
    // Forgets every position from `n_positions` on (pages wholly past it are released).
    void truncate(size_t n_positions);

    // Valid until the next store/truncate.
    KvView view();
    size_t memory_bytes() const;

private:
    struct Page {
        std::vector<uint8_t> keys, values;
    };
    // Where head `head` of `position` lies in its page.
    size_t offset_in_page(size_t position, size_t head) const {
        return head * kPagePositions * slice_bytes_ + (position % kPagePositions) * slice_bytes_;
    }
    // The page holding `position`, allocated or un-shared as needed; positions from `position`
    // on are forgotten.
    Page& writable_page(size_t position);

    size_t n_heads_, head_dim_;
    DType dtype_;
    size_t slice_bytes_;  // one head at one position
    size_t row_bytes_;    // every head at one position
    size_t n_positions_ = 0;
    std::vector<std::shared_ptr<Page>> pages_;
    std::vector<const uint8_t*> key_pointers_, value_pointers_;  // view()'s page tables
};

}  // namespace lfmrt
