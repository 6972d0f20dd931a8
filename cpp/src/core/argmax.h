// The greedy pick over a row of logits, shared by the sampler and the CPU backend's argmax op.
#pragma once

#include <cstddef>

namespace lfmrt {

// The first index of the largest of x[0..n) (ties go to the lowest index; a NaN is never
// chosen; 0 when every value is NaN).
size_t argmax(const float* x, size_t n);

}  // namespace lfmrt
