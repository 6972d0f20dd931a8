// Which blocks of a backend's state pool (backend::BlockPool: KV pages, conv states) are in use.
// Released ids are reused first, so ids stay small; pools that keep every block in one device
// allocation, block `id` at id * block_bytes (CUDA, OpenCL), grow it by doubling, moving their
// blocks over. Not thread-safe: the pool's lock guards it with the memory it describes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace lfmrt::backend {

class BlockIds {
public:
    explicit BlockIds(size_t block_bytes) : block_bytes_(block_bytes) {}

    size_t block_bytes() const { return block_bytes_; }
    size_t capacity() const { return capacity_; }  // blocks the allocation holds
    size_t bytes_in_use() const { return n_in_use_ * block_bytes_; }

    // A free id. When every block of the allocation is in use, `grow(capacity)` is called first
    // to make room for `capacity` blocks (double the old, at least 4), unless blocks have no
    // bytes (there is no memory to grow); if it throws, nothing changes.
    template <typename Grow>
    uint32_t take(Grow&& grow) {
        if (free_ids_.empty() && in_use_.size() == capacity_) {
            const size_t capacity = std::max<size_t>(4, 2 * capacity_);
            if (block_bytes_ > 0) grow(capacity);
            capacity_ = capacity;
        }
        return take_free();
    }
    // Releases a block in use.
    void give_back(uint32_t id);
    // Throws std::logic_error unless block `id` is in use (a block used after its release, or
    // released twice), std::out_of_range when [offset, offset + bytes) runs past its end.
    void check(uint32_t id, size_t offset = 0, size_t bytes = 0) const;
    // Where bytes [offset, offset + bytes) of block `id` lie in a single allocation, checked.
    size_t byte_offset(uint32_t id, size_t offset = 0, size_t bytes = 0) const {
        check(id, offset, bytes);
        return id * block_bytes_ + offset;
    }

private:
    uint32_t take_free();

    size_t block_bytes_;
    size_t capacity_ = 0;
    std::vector<bool> in_use_;  // by id, for every id handed out so far
    std::vector<uint32_t> free_ids_;
    size_t n_in_use_ = 0;
};

}  // namespace lfmrt::backend
