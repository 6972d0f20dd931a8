// The model's weights on its backend: every matrix uploaded in the backend's layout (borrowed,
// repacked or copied to the device: the backend decides), and the small vectors (norms, biases,
// conv taps), of any stored dtype, widened to fp32 once at load.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lfmrt/backend.h"
#include "lfmrt/config.h"
#include "lfmrt/tensor.h"

namespace lfmrt {

using MatrixRef = std::shared_ptr<const backend::Matrix>;
using VectorRef = std::unique_ptr<backend::Buffer>;

struct ShortConvWeights {
    MatrixRef in_proj;   // [3 * hidden, hidden]: rows for B, C, x in that order
    MatrixRef out_proj;  // [hidden, hidden]
    VectorRef taps;      // [kernel][hidden] (tap-major)
    VectorRef in_proj_bias, conv_bias, out_proj_bias;  // null unless conv_bias
};

struct AttentionWeights {
    MatrixRef q_proj, k_proj, v_proj, out_proj;
    VectorRef q_norm, k_norm;  // [head_dim]
};

struct LayerWeights {
    LayerKind kind;
    VectorRef operator_norm, ffn_norm;  // [hidden]
    ShortConvWeights conv;              // when kind == ShortConv
    AttentionWeights attention;         // when kind == Attention
    MatrixRef w1, w3, w2;               // SwiGLU: w2(silu(w1 u) * w3 u)
};

struct ModelWeights {
    MatrixRef embed_tokens;  // [vocab, hidden]
    MatrixRef lm_head;       // the same matrix as embed_tokens when tied
    VectorRef embedding_norm;
    std::vector<LayerWeights> layers;
};

// Checks every tensor the config asks for (throws LoadError naming the tensor that is missing or
// misshapen, or whose type the backend cannot run) and uploads them all to `backend`.
ModelWeights bind_weights(const ModelConfig& config, const std::map<std::string, TensorView>& tensors,
                          backend::Backend& backend);

}  // namespace lfmrt
