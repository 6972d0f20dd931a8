// The LFM2 forward pass, top to bottom (DESIGN.md, "The model, exactly"), on the Backend ops:
//   h = embed(tokens)
//   for each block: h += op(rmsnorm(h)); h += ffn(rmsnorm(h))     op = short conv | GQA attention
//   logits = lm_head(rmsnorm(h))
#include "lfmrt/model.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "backends/registry.h"
#include "lfmrt/error.h"
#include "model/fingerprint.h"
#include "model/model_weights.h"
#include "state/sequence_state.h"

namespace lfmrt {

namespace {

using backend::Buffer;

// Activations for one forward call of n rows, on the backend, reused across calls (a step does
// not allocate, and page-fault, megabytes).
struct Workspace {
    std::unique_ptr<Buffer> residual;   // [n][hidden]
    std::unique_ptr<Buffer> normed;     // [n][hidden]
    std::unique_ptr<Buffer> op_out;     // [n][hidden]
    std::unique_ptr<Buffer> projected;  // [n][max(3 * hidden, q_width)]: conv's B,C,x or attention's q
    std::unique_ptr<Buffer> mixed;      // [n][max(hidden, q_width)]: the op's input to its out_proj
    std::unique_ptr<Buffer> keys, values;  // [n][kv_width]: new rows, before they go into the KV cache
    std::unique_ptr<Buffer> gate, up;   // [n][ff_dim]
    size_t rows = 0;
    std::unique_ptr<Buffer> head_in;    // [rows wanting logits][hidden]
    std::unique_ptr<Buffer> logits;     // [rows wanting logits][vocab]
    size_t head_rows = 0;

    size_t bytes() const {
        size_t total = 0;
        for (const auto* b : {&residual, &normed, &op_out, &projected, &mixed, &keys, &values, &gate, &up, &head_in,
                              &logits}) {
            total += *b ? (*b)->bytes() : 0;
        }
        return total;
    }

    void reserve(backend::Backend& backend, const ModelConfig& c, size_t n) {
        if (n <= rows) return;
        const size_t hidden = static_cast<size_t>(c.hidden_size);
        const size_t q_width = static_cast<size_t>(c.n_heads * c.head_dim);
        const size_t kv_width = static_cast<size_t>(c.n_kv_heads * c.head_dim);
        const auto rows_of = [&](size_t width) { return backend.allocate(n * width * sizeof(float)); };
        residual = rows_of(hidden);
        normed = rows_of(hidden);
        op_out = rows_of(hidden);
        projected = rows_of(std::max(3 * hidden, q_width));
        mixed = rows_of(std::max(hidden, q_width));
        keys = rows_of(kv_width);
        values = rows_of(kv_width);
        gate = rows_of(static_cast<size_t>(c.ff_dim));
        up = rows_of(static_cast<size_t>(c.ff_dim));
        rows = n;
    }

    void reserve_head(backend::Backend& backend, const ModelConfig& c, size_t n) {
        if (n <= head_rows) return;
        head_in = backend.allocate(n * static_cast<size_t>(c.hidden_size) * sizeof(float));
        logits = backend.allocate(n * static_cast<size_t>(c.vocab_size) * sizeof(float));
        head_rows = n;
    }
};

// RoPE inverse frequencies exactly as transformers computes them (fp32 throughout).
std::vector<float> rope_inverse_frequencies(const ModelConfig& c) {
    std::vector<float> inv_freq(static_cast<size_t>(c.head_dim / 2));
    for (size_t i = 0; i < inv_freq.size(); ++i) {
        const float exponent = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
        inv_freq[i] = 1.0f / std::pow(c.rope_theta, exponent);
    }
    return inv_freq;
}

void check_kv_dtype(const ModelConfig& c, DType kv_dtype, const backend::Backend& backend) {
    if (!is_kv_dtype(kv_dtype)) {
        throw InvalidArgument(std::string("the KV cache cannot be stored as ") + dtype_name(kv_dtype) +
                              " (choose F32, F16 or Q8_0)");
    }
    if (!backend.supports_kv(kv_dtype)) {
        throw InvalidArgument(backend.device() + " cannot store the KV cache as " + dtype_name(kv_dtype));
    }
    if (kv_dtype == DType::Q8_0 && c.head_dim % static_cast<int64_t>(block_elems(DType::Q8_0)) != 0) {
        throw InvalidArgument("a Q8_0 KV cache needs head_dim to be a multiple of 32; this model's is " +
                              std::to_string(c.head_dim));
    }
}

StateLayout state_layout_of(const ModelConfig& c, DType kv_dtype) {
    StateLayout layout;
    for (LayerKind kind : c.layers) {
        if (kind == LayerKind::Attention) {
            ++layout.n_attention_layers;
        } else {
            ++layout.n_conv_layers;
        }
    }
    layout.n_kv_heads = static_cast<size_t>(c.n_kv_heads);
    layout.head_dim = static_cast<size_t>(c.head_dim);
    layout.kv_dtype = kv_dtype;
    layout.conv_history = static_cast<size_t>(c.conv_kernel - 1);
    layout.hidden = static_cast<size_t>(c.hidden_size);
    return layout;
}

// Loading frees tens of megabytes that glibc's allocator keeps mapped: the tokenizer's
// temporaries (tokenizers parses tokenizer.json into a tree it drops: ~40 MB for a 65,536-token
// vocabulary) and the repacking's. Nothing else would return them before the process exits, and
// they would count in its resident set for as long as the model runs.
void release_free_heap() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

}  // namespace

struct Model::Impl {
    ModelConfig config;
    std::shared_ptr<const void> storage;  // keeps the borrowed weight memory alive
    std::map<std::string, TensorView> tensors;  // for the fingerprint
    std::once_flag fingerprint_once;
    uint64_t fingerprint = 0;

    DType kv_dtype;
    StateLayout layout;
    std::vector<size_t> layer_slot;  // per layer: its index among the conv (or attention) layers
    std::mutex compute_mutex;  // one forward at a time: the backend and workspace are shared
    std::unique_ptr<backend::Backend> backend;
    ModelWeights weights;
    VectorRef inv_freq;
    Workspace ws;

    Impl(ModelConfig c, const std::map<std::string, TensorView>& tensor_views, std::shared_ptr<const void> s,
         const ModelOptions& options)
        : config(std::move(c)),
          storage(std::move(s)),
          tensors(tensor_views),
          kv_dtype(options.kv_dtype),
          layout(state_layout_of(config, kv_dtype)),
          backend(make_backend(options.device, BackendOptions{std::max(1, options.n_threads)})) {
        check_kv_dtype(config, kv_dtype, *backend);
        size_t conv = 0, attention = 0;
        for (LayerKind kind : config.layers) layer_slot.push_back(kind == LayerKind::Attention ? attention++ : conv++);
        weights = bind_weights(config, tensors, *backend);
        const std::vector<float> frequencies = rope_inverse_frequencies(config);
        inv_freq = backend->upload(frequencies.data(), frequencies.size());
        backend->init_state(layout);
    }

    void forward(const std::vector<ForwardItem>& items);
    void short_conv(const LayerWeights& layer, size_t conv_layer, size_t n);
    void attention(const LayerWeights& layer, size_t attention_layer, size_t n);
    void feed_forward(const LayerWeights& layer, size_t n);
    void lm_head(const std::vector<ForwardItem>& items, const backend::Step& step);
};

// All items' tokens go through each weight matrix together (one matrix product per step, the
// weights read once); only the conv, the KV cache and attention are per sequence.
void Model::Impl::forward(const std::vector<ForwardItem>& items) {
    const size_t hidden = static_cast<size_t>(config.hidden_size);
    const float eps = config.norm_eps;
    backend::Step step;
    std::vector<int32_t> tokens;
    for (const ForwardItem& item : items) {
        SequenceState& state = *item.state;
        backend::StepSequence sequence;
        sequence.row_begin = tokens.size();
        sequence.n = item.n;
        sequence.n_past = state.n_past;
        sequence.conv_state = state.conv ? state.conv->id() : 0;
        if (layout.n_attention_layers > 0) sequence.kv_pages = state.kv.prepare_write(state.n_past, state.n_past + item.n);
        tokens.insert(tokens.end(), item.tokens, item.tokens + item.n);
        step.sequences.push_back(std::move(sequence));
    }
    const size_t n = tokens.size();
    step.tokens = tokens.data();
    step.n = n;
    ws.reserve(*backend, config, n);
    backend->begin_step(step);

    backend->embed(*weights.embed_tokens, *ws.residual);
    for (size_t i = 0; i < weights.layers.size(); ++i) {
        const LayerWeights& layer = weights.layers[i];
        backend->rmsnorm(*ws.residual, *layer.operator_norm, hidden, n, eps, *ws.normed);
        if (layer.kind == LayerKind::ShortConv) {
            short_conv(layer, layer_slot[i], n);
        } else {
            attention(layer, layer_slot[i], n);
        }
        backend->add(*ws.residual, *ws.op_out, n * hidden);
        backend->rmsnorm(*ws.residual, *layer.ffn_norm, hidden, n, eps, *ws.normed);
        feed_forward(layer, n);
        backend->add(*ws.residual, *ws.op_out, n * hidden);
    }
    for (const ForwardItem& item : items) {
        item.state->n_past += item.n;
        item.state->kv.written(item.state->n_past);
    }
    lm_head(items, step);
}

// Only the rows whose logits are wanted go through the final norm and the (large) head.
void Model::Impl::lm_head(const std::vector<ForwardItem>& items, const backend::Step& step) {
    const size_t hidden = static_cast<size_t>(config.hidden_size);
    const size_t vocab = static_cast<size_t>(config.vocab_size);
    std::vector<uint32_t> wanted;
    for (size_t i = 0; i < items.size(); ++i) {
        if (items[i].logits == nullptr) continue;
        const backend::StepSequence& s = step.sequences[i];
        const size_t first = items[i].all_logits ? s.row_begin : s.row_begin + s.n - 1;
        for (size_t r = first; r < s.row_begin + s.n; ++r) wanted.push_back(static_cast<uint32_t>(r));
    }
    if (wanted.empty()) return;
    ws.reserve_head(*backend, config, wanted.size());
    backend->gather_rows(*ws.residual, hidden, wanted, *ws.head_in);
    backend->rmsnorm(*ws.head_in, *weights.embedding_norm, hidden, wanted.size(), config.norm_eps, *ws.head_in);
    backend->matmul({{*weights.lm_head, *ws.logits}}, *ws.head_in, wanted.size());
    size_t row = 0;
    for (const ForwardItem& item : items) {
        if (item.logits == nullptr) continue;
        const size_t count = item.all_logits ? item.n : 1;
        backend->read(*ws.logits, row * vocab * sizeof(float), count * vocab * sizeof(float), item.logits);
        row += count;
    }
}

// Double-gated short conv: B, C, x = split3(in_proj(u)); y = C * conv(B * x); out_proj(y).
void Model::Impl::short_conv(const LayerWeights& layer, size_t conv_layer, size_t n) {
    const ShortConvWeights& w = layer.conv;
    const size_t hidden = static_cast<size_t>(config.hidden_size);
    backend->matmul({{*w.in_proj, *ws.projected}}, *ws.normed, n);
    if (w.in_proj_bias) backend->add_bias(*ws.projected, *w.in_proj_bias, 3 * hidden, n);
    backend->short_conv(conv_layer, *ws.projected, *w.taps, w.conv_bias.get(), static_cast<size_t>(config.conv_kernel),
                        *ws.mixed);
    backend->matmul({{*w.out_proj, *ws.op_out}}, *ws.mixed, n);
    if (w.out_proj_bias) backend->add_bias(*ws.op_out, *w.out_proj_bias, hidden, n);
}

// Grouped-query attention with per-head RMSNorm on q and k, RoPE, and each sequence's KV cache.
void Model::Impl::attention(const LayerWeights& layer, size_t attention_layer, size_t n) {
    const AttentionWeights& w = layer.attention;
    const size_t head_dim = static_cast<size_t>(config.head_dim);
    const size_t n_heads = static_cast<size_t>(config.n_heads);
    const size_t n_kv_heads = static_cast<size_t>(config.n_kv_heads);
    const float eps = config.norm_eps;
    Buffer& q = *ws.projected;
    backend->matmul({{*w.q_proj, q}, {*w.k_proj, *ws.keys}, {*w.v_proj, *ws.values}}, *ws.normed, n);
    backend->rmsnorm(q, *w.q_norm, head_dim, n * n_heads, eps, q);
    backend->rmsnorm(*ws.keys, *w.k_norm, head_dim, n * n_kv_heads, eps, *ws.keys);
    backend->rope(q, n_heads, *ws.keys, n_kv_heads, head_dim, *inv_freq);
    backend->kv_store(attention_layer, *ws.keys, *ws.values);
    backend->attention(attention_layer, q, n_heads, *ws.mixed);
    backend->matmul({{*w.out_proj, *ws.op_out}}, *ws.mixed, n);
}

// SwiGLU: w2(silu(w1 u) * w3 u).
void Model::Impl::feed_forward(const LayerWeights& layer, size_t n) {
    const size_t ff = static_cast<size_t>(config.ff_dim);
    backend->matmul({{*layer.w1, *ws.gate}, {*layer.w3, *ws.up}}, *ws.normed, n);
    backend->silu_mul(*ws.gate, *ws.up, *ws.gate, n * ff);
    backend->matmul({{*layer.w2, *ws.op_out}}, *ws.gate, n);
}

Model::Model(ModelConfig config, const std::map<std::string, TensorView>& tensors,
             std::shared_ptr<const void> storage, const ModelOptions& options) {
    config.validate();
    impl_ = std::make_unique<Impl>(std::move(config), tensors, std::move(storage), options);
    release_free_heap();
}

Model::~Model() = default;

const ModelConfig& Model::config() const { return impl_->config; }
int Model::n_threads() const { return impl_->backend->n_threads(); }
std::string Model::device() const { return impl_->backend->device(); }
std::string Model::kernel_set() const { return impl_->backend->kernel_set(); }
DType Model::kv_dtype() const { return impl_->kv_dtype; }
size_t Model::weight_bytes() const { return impl_->backend->weight_bytes(); }

size_t Model::workspace_bytes() const {
    std::lock_guard<std::mutex> lock(impl_->compute_mutex);
    return impl_->ws.bytes();
}
const StateLayout& Model::state_layout() const { return impl_->layout; }

StatePools Model::state_pools() const {
    return StatePools{impl_->backend->kv_pages(), impl_->backend->conv_states(), impl_->layout};
}

uint64_t Model::fingerprint() const {
    std::call_once(impl_->fingerprint_once, [this] { impl_->fingerprint = weights_fingerprint(impl_->config, impl_->tensors); });
    return impl_->fingerprint;
}

std::string Model::architecture() const { return architecture_summary(impl_->config); }

void Model::forward(const std::vector<ForwardItem>& items) const {
    if (items.empty()) return;
    for (const ForwardItem& item : items) {
        if (item.n == 0) throw InvalidArgument("a forward item has no tokens");
    }
    std::lock_guard<std::mutex> lock(impl_->compute_mutex);
    impl_->forward(items);
}

}  // namespace lfmrt
