#include "model/model_weights.h"

#include "lfmrt/error.h"
#include "backends/cpu/panels.h"

namespace lfmrt {

namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
    std::string text = "[";
    for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
    return text + "]";
}

class TensorBinder {
public:
    explicit TensorBinder(const std::map<std::string, TensorView>& tensors) : tensors_(tensors) {}

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

    cpu::Matrix matrix(const std::string& name, int64_t rows, int64_t cols) const {
        const TensorView& view = get(name, {rows, cols});
        return cpu::Matrix{view.data, view.dtype, rows, cols};
    }

    std::vector<float> vector(const std::string& name, const std::vector<int64_t>& shape) const {
        const TensorView& view = get(name, shape);
        std::vector<float> values(static_cast<size_t>(view.numel()));
        convert_to_f32(view.data, view.dtype, values.data(), values.size());
        return values;
    }

private:
    const std::map<std::string, TensorView>& tensors_;
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

ModelWeights bind_weights(const ModelConfig& config, const std::map<std::string, TensorView>& tensors) {
    const TensorBinder bind(tensors);
    const int64_t hidden = config.hidden_size;
    const int64_t q_width = config.n_heads * config.head_dim;
    const int64_t kv_width = config.n_kv_heads * config.head_dim;

    ModelWeights weights;
    weights.embed_tokens = bind.matrix("embed_tokens.weight", config.vocab_size, hidden);
    weights.lm_head = config.tie_embeddings ? weights.embed_tokens
                                            : bind.matrix("lm_head.weight", config.vocab_size, hidden);
    weights.embedding_norm = bind.vector("embedding_norm.weight", {hidden});

    for (int64_t i = 0; i < config.n_layers(); ++i) {
        const std::string prefix = "layers." + std::to_string(i) + ".";
        LayerWeights layer;
        layer.kind = config.layers[static_cast<size_t>(i)];
        layer.operator_norm = bind.vector(prefix + "operator_norm.weight", {hidden});
        layer.ffn_norm = bind.vector(prefix + "ffn_norm.weight", {hidden});
        layer.w1 = bind.matrix(prefix + "feed_forward.w1.weight", config.ff_dim, hidden);
        layer.w3 = bind.matrix(prefix + "feed_forward.w3.weight", config.ff_dim, hidden);
        layer.w2 = bind.matrix(prefix + "feed_forward.w2.weight", hidden, config.ff_dim);
        if (layer.kind == LayerKind::ShortConv) {
            const std::string conv = prefix + "conv.";
            layer.conv.in_proj = bind.matrix(conv + "in_proj.weight", 3 * hidden, hidden);
            layer.conv.out_proj = bind.matrix(conv + "out_proj.weight", hidden, hidden);
            layer.conv.taps = tap_major(bind.vector(conv + "conv.weight", {hidden, 1, config.conv_kernel}), hidden,
                                        config.conv_kernel);
            if (config.conv_bias) {
                layer.conv.in_proj_bias = bind.vector(conv + "in_proj.bias", {3 * hidden});
                layer.conv.conv_bias = bind.vector(conv + "conv.bias", {hidden});
                layer.conv.out_proj_bias = bind.vector(conv + "out_proj.bias", {hidden});
            }
        } else {
            const std::string attn = prefix + "self_attn.";
            layer.attention.q_proj = bind.matrix(attn + "q_proj.weight", q_width, hidden);
            layer.attention.k_proj = bind.matrix(attn + "k_proj.weight", kv_width, hidden);
            layer.attention.v_proj = bind.matrix(attn + "v_proj.weight", kv_width, hidden);
            layer.attention.out_proj = bind.matrix(attn + "out_proj.weight", hidden, q_width);
            layer.attention.q_norm = bind.vector(attn + "q_layernorm.weight", {config.head_dim});
            layer.attention.k_norm = bind.vector(attn + "k_layernorm.weight", {config.head_dim});
        }
        weights.layers.push_back(std::move(layer));
    }
    return weights;
}

std::vector<cpu::Matrix*> ModelWeights::matmul_weights() {
    std::vector<cpu::Matrix*> matrices = {&lm_head};
    for (LayerWeights& layer : layers) {
        for (cpu::Matrix* m : {&layer.w1, &layer.w3, &layer.w2}) matrices.push_back(m);
        if (layer.kind == LayerKind::ShortConv) {
            for (cpu::Matrix* m : {&layer.conv.in_proj, &layer.conv.out_proj}) matrices.push_back(m);
        } else {
            AttentionWeights& a = layer.attention;
            for (cpu::Matrix* m : {&a.q_proj, &a.k_proj, &a.v_proj, &a.out_proj}) matrices.push_back(m);
        }
    }
    return matrices;
}

void repack_weights(ModelWeights& weights, cpu::CpuBackend& backend, const std::map<std::string, TensorView>& tensors) {
    // Each packed matrix starts on a cache line.
    const auto packed_bytes = [](const cpu::Matrix& m) {
        constexpr size_t kAlign = 64;
        const auto rows = static_cast<size_t>(m.rows), cols = static_cast<size_t>(m.cols);
        return (cpu::panel_matrix_bytes(m.dtype, rows, cols) + kAlign - 1) / kAlign * kAlign;
    };
    std::vector<cpu::Matrix*> packable;
    size_t total = 0;
    for (cpu::Matrix* m : weights.matmul_weights()) {
        if (!backend.has_panel_kernels(m->dtype)) continue;
        packable.push_back(m);
        total += packed_bytes(*m);
    }
    if (packable.empty()) return;
    // The tensor each matrix was bound from, by address (a tied head's is the embedding's).
    std::map<const void*, const TensorView*> source_of;
    for (const auto& [name, view] : tensors) source_of.emplace(view.data, &view);

    weights.panels = HugePageBuffer(total);
    auto* next = static_cast<uint8_t*>(weights.panels.data());
    for (cpu::Matrix* m : packable) {
        const cpu::Matrix source = *m;
        *m = backend.pack_panels(source, next);
        next += packed_bytes(source);
        const TensorView* view = source_of.at(source.data);
        if (view->file_mapped) release_file_pages(view->data, view->nbytes());
    }
}

}  // namespace lfmrt
