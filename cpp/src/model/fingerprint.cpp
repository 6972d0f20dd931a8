#include "model/fingerprint.h"

#include <algorithm>
#include <sstream>

#include "core/hash.h"

namespace lfmrt {

// FNV-1a over the architecture summary and, per tensor, its name, type, shape and 64
// evenly spaced 64-byte samples of its data: enough to tell models apart without reading every
// weight.
uint64_t weights_fingerprint(const ModelConfig& c, const std::map<std::string, TensorView>& tensors) {
    uint64_t hash = kFnv1aBasis;
    const auto mix = [&hash](const void* data, size_t size) { hash = fnv1a(data, size, hash); };
    const auto mix_value = [&mix](const auto& value) { mix(&value, sizeof value); };
    const std::string architecture = architecture_summary(c);
    mix(architecture.data(), architecture.size());
    for (const auto& [name, view] : tensors) {
        mix(name.data(), name.size());
        mix_value(view.dtype);
        for (int64_t dim : view.shape) mix_value(dim);
        const size_t bytes = view.nbytes();
        constexpr size_t kSamples = 64, kWindow = 64;
        for (size_t i = 0; i < kSamples && bytes > 0; ++i) {
            const size_t offset = (bytes - std::min(bytes, kWindow)) * i / (kSamples - 1);
            mix(static_cast<const char*>(view.data) + offset, std::min(bytes, kWindow));
        }
    }
    return hash;
}

std::string architecture_summary(const ModelConfig& c) {
    std::ostringstream out;
    out.precision(9);  // round-trips a float
    out << "vocab_size=" << c.vocab_size << " hidden_size=" << c.hidden_size << " intermediate_size=" << c.ff_dim
        << " num_attention_heads=" << c.n_heads << " num_key_value_heads=" << c.n_kv_heads
        << " head_dim=" << c.head_dim << " conv_L_cache=" << c.conv_kernel << " conv_bias=" << c.conv_bias
        << " norm_eps=" << c.norm_eps << " rope_theta=" << c.rope_theta << " tie_embedding=" << c.tie_embeddings
        << " layer_types=";
    for (LayerKind kind : c.layers) out << (kind == LayerKind::Attention ? 'a' : 'c');
    return out.str();
}

}  // namespace lfmrt
