// The model's weights bound from the checkpoint's tensors: big matrices stay borrowed in their
// stored dtype (float types are widened in registers, block types dotted in integers); small
// vectors (norms, biases, conv taps), of any dtype, are widened to fp32 once at load.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "cpu/cpu_backend.h"
#include "lfmrt/config.h"
#include "lfmrt/tensor.h"

namespace lfmrt {

struct ShortConvWeights {
    cpu::Matrix in_proj;             // [3 * hidden, hidden]: rows for B, C, x in that order
    cpu::Matrix out_proj;            // [hidden, hidden]
    std::vector<float> taps;         // [kernel][hidden] (tap-major)
    std::vector<float> in_proj_bias, conv_bias, out_proj_bias;  // empty unless conv_bias
};

struct AttentionWeights {
    cpu::Matrix q_proj, k_proj, v_proj, out_proj;
    std::vector<float> q_norm, k_norm;  // [head_dim]
};

struct LayerWeights {
    LayerKind kind;
    std::vector<float> operator_norm, ffn_norm;  // [hidden]
    ShortConvWeights conv;                       // when kind == ShortConv
    AttentionWeights attention;                  // when kind == Attention
    cpu::Matrix w1, w3, w2;                      // SwiGLU: w2(silu(w1 u) * w3 u)
};

struct ModelWeights {
    cpu::Matrix embed_tokens;  // [vocab, hidden]
    cpu::Matrix lm_head;       // embed_tokens when tied
    std::vector<float> embedding_norm;
    std::vector<LayerWeights> layers;
};

// Binds and checks every tensor the config asks for; throws LoadError naming the tensor.
ModelWeights bind_weights(const ModelConfig& config, const std::map<std::string, TensorView>& tensors);

}  // namespace lfmrt
