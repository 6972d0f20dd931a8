#include "backends/cpu/weight_memory.h"

#include <cstdint>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace lfmrt {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}  // namespace

HugePageBuffer::HugePageBuffer(size_t bytes) : size_(bytes) {
    if (bytes == 0) return;
    // aligned_alloc wants a multiple of the alignment.
    const size_t padded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    data_.reset(std::aligned_alloc(kHugePage, padded));
    if (!data_) throw std::bad_alloc();
#if defined(__linux__)
    // Advice only (THP may be off, or "always" already): failure changes nothing but speed.
    madvise(data_.get(), padded, MADV_HUGEPAGE);
#endif
}

void release_file_pages(const void* data, size_t bytes) {
#if defined(__linux__)
    const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const auto begin = reinterpret_cast<uintptr_t>(data);
    const uintptr_t first = (begin + page - 1) / page * page;
    const uintptr_t last = (begin + bytes) / page * page;
    // A hint as well: if the kernel refuses, the pages merely stay resident.
    if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
#else
    (void)data;
    (void)bytes;
#endif
}

}  // namespace lfmrt
