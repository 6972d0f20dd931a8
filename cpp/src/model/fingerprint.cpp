#include "model/fingerprint.h"

#include <algorithm>
#include <sstream>

#include "core/hash.h"

namespace lfmrt {

// FNV-1a over the config's architecture fields and, per tensor, its name, type, shape and 64
// evenly spaced 64-byte samples of its data: enough to tell models apart without reading every
// weight.
uint64_t weights_fingerprint(const ModelConfig& c, const std::map<std::string, TensorView>& tensors) {
    uint64_t hash = kFnv1aBasis;
    const auto mix = [&hash](const void* data, size_t size) { hash = fnv1a(data, size, hash); };
    const auto mix_value = [&mix](const auto& value) { mix(&value, sizeof value); };
    for (const auto value : {c.vocab_size, c.hidden_size, c.ff_dim, c.n_heads, c.n_kv_heads, c.head_dim,
                             c.conv_kernel}) {
        mix_value(value);
    }
    for (LayerKind kind : c.layers) mix_value(kind);
    mix_value(c.conv_bias);
    mix_value(c.norm_eps);
    mix_value(c.rope_theta);
    mix_value(c.tie_embeddings);
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

std::string architecture_summary(const ModelConfig& c, const std::map<std::string, TensorView>& tensors) {
    std::ostringstream out;
    out << "vocab_size=" << c.vocab_size << "\nhidden_size=" << c.hidden_size << "\nff_dim=" << c.ff_dim
        << "\nn_heads=" << c.n_heads << "\nn_kv_heads=" << c.n_kv_heads << "\nhead_dim=" << c.head_dim
        << "\nconv_kernel=" << c.conv_kernel << "\nconv_bias=" << c.conv_bias << "\nnorm_eps=" << c.norm_eps
        << "\nrope_theta=" << c.rope_theta << "\ntie_embeddings=" << c.tie_embeddings << "\nlayers=";
    for (size_t i = 0; i < c.layers.size(); ++i) {
        out << (i ? "," : "") << (c.layers[i] == LayerKind::ShortConv ? "conv" : "attention");
    }
    std::map<std::string, int> types;
    for (const auto& [name, view] : tensors) ++types[dtype_name(view.dtype)];
    out << "\nweight_types=";
    bool first = true;
    for (const auto& [type, count] : types) {
        out << (first ? "" : ",") << type << ":" << count;
        first = false;
    }
    out << "\n";
    return out.str();
}

}  // namespace lfmrt
