// A model's identity for session snapshots: its architecture and (sampled) weights, never its
// run-time options (context length, threads, device, KV storage type), so a snapshot restores
// on any backend and under any options of the same model.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "lfmrt/config.h"
#include "lfmrt/tensor.h"

namespace lfmrt {

// FNV-1a over the architecture and a sample of every tensor's bytes; touches little memory.
uint64_t weights_fingerprint(const ModelConfig& config, const std::map<std::string, TensorView>& tensors);

// The architecture and weight types as "field=value" lines (hidden_size=1024, layers=conv,conv,
// attention,..., weight_types=BF16:37,F32:12, ...): snapshots carry it, so a refusal can say what
// differs.
std::string architecture_summary(const ModelConfig& config, const std::map<std::string, TensorView>& tensors);

}  // namespace lfmrt
