#include "state/sequence_state.h"

namespace lfmrt {

SequenceState::SequenceState(const ModelConfig& config, DType kv_dtype) {
    const size_t conv_width = static_cast<size_t>((config.conv_kernel - 1) * config.hidden_size);
    for (LayerKind kind : config.layers) {
        const bool attention = kind == LayerKind::Attention;
        kv.emplace_back(attention ? static_cast<size_t>(config.n_kv_heads) : 0, static_cast<size_t>(config.head_dim),
                        kv_dtype);
        conv.push_back(ConvState{std::vector<float>(attention ? 0 : conv_width, 0.0f)});
    }
}

void SequenceState::truncate_kv(size_t n) {
    for (auto& cache : kv) cache.truncate(n);
}

size_t SequenceState::memory_bytes() const {
    size_t bytes = 0;
    for (const auto& cache : kv) bytes += cache.memory_bytes();
    for (const auto& state : conv) bytes += state.history.capacity() * sizeof(float);
    return bytes;
}

}  // namespace lfmrt
