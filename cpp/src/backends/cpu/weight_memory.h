// Memory for weights: buffers the model owns (weights repacked at load) and the release of
// borrowed file pages it no longer reads.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>

namespace lfmrt {

// An uninitialised buffer aligned to 2 MiB and, on Linux, advised to use transparent huge pages:
// a decode step streams every weight once, and 2 MiB pages cut its TLB misses 512-fold.
class HugePageBuffer {
public:
    HugePageBuffer() = default;
    explicit HugePageBuffer(size_t bytes);

    void* data() const { return data_.get(); }
    size_t size() const { return size_; }

private:
    struct Free {
        void operator()(void* p) const { std::free(p); }
    };
    std::unique_ptr<void, Free> data_;
    size_t size_ = 0;
};

// Drops this process's pages of [data, data + bytes), a range of a read-only file mapping (only
// whole pages inside it; the pages at either end may hold neighbouring data): resident memory
// shrinks, and a later read faults the pages back in from the file. Does nothing where the OS
// has no such call. Never for anonymous memory, whose dropped pages would read back as zeros.
void release_file_pages(const void* data, size_t bytes);

}  // namespace lfmrt
