// An LFM2 model ready to run: its config, and the backend (a device, its weights in the
// backend's layout, its compute resources) that every session of it shares.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lfmrt/backend.h"
#include "lfmrt/config.h"
#include "lfmrt/tensor.h"

namespace lfmrt {

struct SequenceState;
struct StatePools;

// One sequence's share of a forward step.
struct ForwardItem {
    SequenceState* state;
    const int32_t* tokens;
    size_t n;
    bool all_logits;  // logits for every token (n * vocab floats), else for the last (vocab)
    float* logits;    // nullptr: no logits wanted (e.g. an intermediate prefill chunk)
};

struct ModelOptions {
    int n_threads = 1;
    // "cpu" (best kernel set) or "cpu:<kernel set>" ("cpu:avx2", "cpu:scalar", "cpu:neon"),
    // "opencl[:N]", "cuda[:N]"; "" is "cpu". See backends/registry.h.
    std::string device;
    DType kv_dtype = DType::F16;  // KV cache storage: F32, F16 or Q8_0
};

class Model {
public:
    // `tensors` maps canonical names (Hugging Face names without the "model." prefix, e.g.
    // "layers.3.conv.in_proj.weight") to borrowed views; `storage` keeps their memory alive for
    // the Model's lifetime. Throws LoadError naming the tensor that is missing or misshapen.
    Model(ModelConfig config, const std::map<std::string, TensorView>& tensors, std::shared_ptr<const void> storage,
          const ModelOptions& options);
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    const ModelConfig& config() const;
    int n_threads() const;
    // The backend's device string ("cpu:avx512", "opencl:0") and kernel set or device name.
    std::string device() const;
    std::string kernel_set() const;
    DType kv_dtype() const;
    // Bytes of weights the backend holds beyond the loader's memory (repacked or on the device).
    size_t weight_bytes() const;
    // Bytes of activation buffers, which grow to the largest step run so far (the prefill chunk).
    size_t workspace_bytes() const;
    // Identifies the architecture and weights (sampled bytes of every tensor, so computing it
    // touches little memory), not run-time options; session snapshots carry it. Computed on
    // first use.
    uint64_t fingerprint() const;
    // The architecture as "field=value" words (model/fingerprint.h).
    std::string architecture() const;

    // Where sessions keep their state (cpp/src/state/).
    const StateLayout& state_layout() const;
    StatePools state_pools() const;

    // Runs each item's tokens at its sequence's next positions, updating the sequence's state.
    // The items' tokens share every matrix product (a batched step reads the weights once).
    // Compute is serialised per Model: concurrent calls from several threads are safe.
    void forward(const std::vector<ForwardItem>& items) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace lfmrt
