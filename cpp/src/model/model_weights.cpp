#include "model/model_weights.h"

#include "lfmrt/error.h"

namespace lfmrt {

namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
    std::string text = "[";
    for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
    return text + "]";
}

// Checks tensors against the config and gathers the matrices, which are uploaded together at
// the end (so the backend can plan its memory for all of them).
class TensorBinder {
public:
    TensorBinder(const std::map<std::string, TensorView>& tensors, backend::Backend& backend)
        : tensors_(tensors), backend_(backend) {}

    const TensorView& get(const std::string& name, const std::vector<int64_t>& shape) const {
        auto it = tensors_.find(name);
        if (it == tensors_.end()) throw LoadError("missing tensor '" + name + "'");
        const TensorView& view = it->second;
        if (view.shape != shape) {
            throw LoadError("tensor '" + name + "' has shape " + shape_string(view.shape) + ", expected " +
                            shape_string(shape));
        }
        if (view.data == nullptr) throw LoadError("tensor '" + name + "' has no data");
        check_block_shape(name, view);
        return view;
    }

    // `*slot` is filled in by upload().
    void matrix(MatrixRef* slot, const std::string& name, int64_t rows, int64_t cols,
                backend::MatrixUse use = backend::MatrixUse::Multiply) {
        sources_.push_back(backend::MatrixSource{name, get(name, {rows, cols}), use});
        slots_.push_back(slot);
    }

    VectorRef vector(const std::string& name, const std::vector<int64_t>& shape) const {
        const std::vector<float> values = floats(name, shape);
        return backend_.upload(values.data(), values.size());
    }

    std::vector<float> floats(const std::string& name, const std::vector<int64_t>& shape) const {
        const TensorView& view = get(name, shape);
        std::vector<float> values(static_cast<size_t>(view.numel()));
        convert_to_f32(view.data, view.dtype, values.data(), values.size());
        return values;
    }

    void upload() {
        std::vector<MatrixRef> matrices = backend_.upload_matrices(sources_);
        for (size_t i = 0; i < slots_.size(); ++i) *slots_[i] = std::move(matrices[i]);
    }

private:
    const std::map<std::string, TensorView>& tensors_;
    backend::Backend& backend_;
    std::vector<backend::MatrixSource> sources_;
    std::vector<MatrixRef*> slots_;
};

// [hidden][kernel] (as stored) to [kernel][hidden], so the conv's inner loop runs over channels.
std::vector<float> tap_major(const std::vector<float>& taps, int64_t hidden, int64_t kernel) {
    std::vector<float> transposed(taps.size());
    for (int64_t c = 0; c < hidden; ++c) {
        for (int64_t j = 0; j < kernel; ++j) transposed[j * hidden + c] = taps[c * kernel + j];
    }
    return transposed;
}

}  // namespace

ModelWeights bind_weights(const ModelConfig& config, const std::map<std::string, TensorView>& tensors,
                          backend::Backend& backend) {
    TensorBinder bind(tensors, backend);
    const int64_t hidden = config.hidden_size;
    const int64_t q_width = config.n_heads * config.head_dim;
    const int64_t kv_width = config.n_kv_heads * config.head_dim;

    ModelWeights weights;
    if (config.tie_embeddings) {
        bind.matrix(&weights.embed_tokens, "embed_tokens.weight", config.vocab_size, hidden,
                    backend::MatrixUse::MultiplyAndLookup);
    } else {
        bind.matrix(&weights.embed_tokens, "embed_tokens.weight", config.vocab_size, hidden,
                    backend::MatrixUse::Lookup);
        bind.matrix(&weights.lm_head, "lm_head.weight", config.vocab_size, hidden);
    }
    weights.embedding_norm = bind.vector("embedding_norm.weight", {hidden});

    weights.layers.resize(static_cast<size_t>(config.n_layers()));
    for (int64_t i = 0; i < config.n_layers(); ++i) {
        const std::string prefix = "layers." + std::to_string(i) + ".";
        LayerWeights& layer = weights.layers[static_cast<size_t>(i)];
        layer.kind = config.layers[static_cast<size_t>(i)];
        layer.operator_norm = bind.vector(prefix + "operator_norm.weight", {hidden});
        layer.ffn_norm = bind.vector(prefix + "ffn_norm.weight", {hidden});
        bind.matrix(&layer.w1, prefix + "feed_forward.w1.weight", config.ff_dim, hidden);
        bind.matrix(&layer.w3, prefix + "feed_forward.w3.weight", config.ff_dim, hidden);
        bind.matrix(&layer.w2, prefix + "feed_forward.w2.weight", hidden, config.ff_dim);
        if (layer.kind == LayerKind::ShortConv) {
            const std::string conv = prefix + "conv.";
            bind.matrix(&layer.conv.in_proj, conv + "in_proj.weight", 3 * hidden, hidden);
            bind.matrix(&layer.conv.out_proj, conv + "out_proj.weight", hidden, hidden);
            const std::vector<float> taps =
                tap_major(bind.floats(conv + "conv.weight", {hidden, 1, config.conv_kernel}), hidden,
                          config.conv_kernel);
            layer.conv.taps = backend.upload(taps.data(), taps.size());
            if (config.conv_bias) {
                layer.conv.in_proj_bias = bind.vector(conv + "in_proj.bias", {3 * hidden});
                layer.conv.conv_bias = bind.vector(conv + "conv.bias", {hidden});
                layer.conv.out_proj_bias = bind.vector(conv + "out_proj.bias", {hidden});
            }
        } else {
            const std::string attn = prefix + "self_attn.";
            bind.matrix(&layer.attention.q_proj, attn + "q_proj.weight", q_width, hidden);
            bind.matrix(&layer.attention.k_proj, attn + "k_proj.weight", kv_width, hidden);
            bind.matrix(&layer.attention.v_proj, attn + "v_proj.weight", kv_width, hidden);
            bind.matrix(&layer.attention.out_proj, attn + "out_proj.weight", hidden, q_width);
            layer.attention.q_norm = bind.vector(attn + "q_layernorm.weight", {config.head_dim});
            layer.attention.k_norm = bind.vector(attn + "k_layernorm.weight", {config.head_dim});
        }
    }
    bind.upload();
    if (config.tie_embeddings) weights.lm_head = weights.embed_tokens;
    return weights;
}

}  // namespace lfmrt
