#include "core/argmax.h"

#include <algorithm>
#include <limits>

namespace lfmrt {

// Two passes: the maximum over eight independent chains, which the compiler keeps in
// registers, then its first occurrence. A greedy step over a 65,536-token vocabulary took ~60 us
// through std::max_element's one dependent compare per element; this takes a few.
size_t argmax(const float* x, size_t n) {
    constexpr size_t kChains = 8;
    float best[kChains];
    std::fill(best, best + kChains, -std::numeric_limits<float>::infinity());
    size_t i = 0;
    for (; i + kChains <= n; i += kChains) {
        for (size_t c = 0; c < kChains; ++c) best[c] = x[i + c] > best[c] ? x[i + c] : best[c];
    }
    for (; i < n; ++i) best[0] = x[i] > best[0] ? x[i] : best[0];
    const float top = *std::max_element(best, best + kChains);
    for (i = 0; i < n; ++i) {
        if (x[i] == top) return i;
    }
    return 0;
}

}  // namespace lfmrt
