// The model's weights bound from the checkpoint's tensors: big matrices stay borrowed in their
// stored dtype (float types are widened in registers, block types dotted in integers), or are
// repacked once at load into 16-row panels where the kernel table reads their type that way;
// small vectors (norms, biases, conv taps), of any dtype, are widened to fp32 once at load.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "lfmrt/config.h"
#include "lfmrt/tensor.h"
#include "backends/cpu/weight_memory.h"

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
    cpu::Matrix embed_tokens;  // [vocab, hidden], always the checkpoint's rows (embed reads rows)
    cpu::Matrix lm_head;       // embed_tokens when tied (until repacked: then its own copy)
    std::vector<float> embedding_norm;
    std::vector<LayerWeights> layers;
    HugePageBuffer panels;  // the matrices repacked at load

    // Every matrix the forward pass multiplies by (all but the embedding lookup).
    std::vector<cpu::Matrix*> matmul_weights();
};

// Binds and checks every tensor the config asks for; throws LoadError naming the tensor.
ModelWeights bind_weights(const ModelConfig& config, const std::map<std::string, TensorView>& tensors);

// Repacks each matrix whose type `backend`'s kernel table reads in panels (Q4_0, Q8_0 and Q6_K
// on x86-64, and Q4_K with AVX-512) into weights.panels, one matrix at a time, split across the
// backend's threads. Once a matrix is packed, the pages of its source are released when `tensors`
// says they are a file mapping, so resident memory never holds both copies of more than one
// matrix. Other sources (arrays made at load, e.g. quantized on load) keep their pages: for them
// the packed copy is extra memory, as the fingerprint and the caller's arrays still refer to the
// originals.
void repack_weights(ModelWeights& weights, cpu::CpuBackend& backend, const std::map<std::string, TensorView>& tensors);

}  // namespace lfmrt
