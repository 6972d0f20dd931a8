// Software prefetch into L2, shared by the x86-64 kernel files (AVX2 and AVX-512).
//
// The function has internal linkage (`static`), so no copy compiled with a kernel file's ISA
// flags can be picked by the linker for generic code.
#pragma once

#include <immintrin.h>

#include <cstddef>

namespace lfmrt::cpu::x86_prefetch {

// Asks for the cache lines of the `bytes` at `p` to be brought into L2. A hint: it never faults,
// so reaching past the end of a matrix is harmless.
[[gnu::always_inline]] static inline void prefetch_to_l2(const void* p, size_t bytes) {
    for (size_t offset = 0; offset < bytes; offset += 64) {
        _mm_prefetch(static_cast<const char*>(p) + offset, _MM_HINT_T1);
    }
}

}  // namespace lfmrt::cpu::x86_prefetch
