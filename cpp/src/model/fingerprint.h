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

// The architecture as "field=value" words in config.json's names (hidden_size=1024,
// layer_types=ccaccac..., ...; no run-time option such as max_context): snapshots carry it, so
// a refusal can say what differs.
std::string architecture_summary(const ModelConfig& config);

}  // namespace lfmrt
