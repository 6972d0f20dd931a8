// FNV-1a, 64-bit: the checksum of snapshots and program-cache files, and the mix of model
// fingerprints. Not cryptographic; fast and stable across platforms and versions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lfmrt {

inline constexpr uint64_t kFnv1aBasis = 1469598103934665603ull;

// The hash of `size` bytes at `data`, continuing from `hash` (a previous result, to hash pieces).
inline uint64_t fnv1a(const void* data, size_t size, uint64_t hash = kFnv1aBasis) {
    for (size_t i = 0; i < size; ++i) {
        hash ^= static_cast<const unsigned char*>(data)[i];
        hash *= 1099511628211ull;
    }
    return hash;
}

}  // namespace lfmrt
