// A model's identity for session snapshots: its config and (sampled) weights.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "lfmrt/config.h"
#include "lfmrt/tensor.h"

namespace lfmrt {

// FNV-1a over the config and a sample of every tensor's bytes; touches little memory.
uint64_t weights_fingerprint(const ModelConfig& config, const std::map<std::string, TensorView>& tensors);

}  // namespace lfmrt
