// Software prefetch into L2, shared by the x86-64 kernel files (AVX2 and AVX-512).
//
// The functions have internal linkage (`static`), so no copy compiled with a kernel file's ISA
// flags can be picked by the linker for generic code.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace lfmrt::cpu::x86_prefetch {

// Prefetches are hints: they never fault, so reaching past the end of a matrix is harmless.

// For a read that walks a stream, a step at a time: asks for the lines at p, p + 64, ... below
// p + bytes to be brought into L2. Where p is not on a line, a call's last line is left to the
// next step's call, which starts inside it.
[[gnu::always_inline]] static inline void prefetch_stream_to_l2(const void* p, size_t bytes) {
    for (size_t offset = 0; offset < bytes; offset += 64) {
        _mm_prefetch(static_cast<const char*>(p) + offset, _MM_HINT_T1);
    }
}

// For a range read on its own (a piece of a row): asks for every line the `bytes` at p touch to
// be brought into L2, the last one included where p is not on a line (weights from files rarely
// are: without it, a bf16 GEMM over 16-byte-misaligned rows ran 4-7% slower).
[[gnu::always_inline]] static inline void prefetch_range_to_l2(const void* p, size_t bytes) {
    const size_t misalignment = reinterpret_cast<uintptr_t>(p) % 64;
    const char* first_line = static_cast<const char*>(p) - misalignment;
    for (size_t offset = 0; offset < misalignment + bytes; offset += 64) {
        _mm_prefetch(first_line + offset, _MM_HINT_T1);
    }
}

}  // namespace lfmrt::cpu::x86_prefetch
