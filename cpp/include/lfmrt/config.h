// The hyper-parameters of a dense LFM2 model, already normalised from either config dialect
// (the Python loaders read config.json or GGUF metadata and fill this in).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lfmrt {

enum class LayerKind : int { ShortConv = 0, Attention = 1 };

struct ModelConfig {
    int64_t vocab_size = 0;
    int64_t hidden_size = 0;
    int64_t ff_dim = 0;  // SwiGLU width after block_auto_adjust_ff_dim and friends
    std::vector<LayerKind> layers;
    int64_t n_heads = 0;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t conv_kernel = 3;  // conv_L_cache
    bool conv_bias = false;
    float norm_eps = 1e-5f;
    float rope_theta = 1e6f;
    int64_t max_context = 32768;
    bool tie_embeddings = true;

    int64_t n_layers() const { return static_cast<int64_t>(layers.size()); }
    // Throws LoadError naming the first field that is missing or inconsistent.
    void validate() const;
};

}  // namespace lfmrt
