// An LFM2 model ready to run: its config, its weights as the kernels want them, and the
// compute resources (kernel table, thread pool) that every session of it shares.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lfmrt/config.h"
#include "lfmrt/tensor.h"

namespace lfmrt {

struct SequenceState;

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
    std::string isa;  // kernel set: "" = best for this CPU, or e.g. "scalar", "avx2", "neon"
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
    const char* kernel_set() const;
    DType kv_dtype() const;
    // Identifies the config and weights (sampled bytes of every tensor, so computing it touches
    // little memory); session snapshots carry it. Computed on first use.
    uint64_t fingerprint() const;

    // Runs each item's tokens at its sequence's next positions, updating the sequence's state.
    // The items' tokens share every matrix product (a batched step reads the weights once).
    // Compute is serialised per Model: concurrent calls from several threads are safe.
    void forward(const std::vector<ForwardItem>& items) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace lfmrt
