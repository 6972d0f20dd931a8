// The LFM2 forward pass, top to bottom (DESIGN.md, "The model, exactly"):
//   h = embed(tokens)
//   for each block: h += op(rmsnorm(h)); h += ffn(rmsnorm(h))     op = short conv | GQA attention
//   logits = lm_head(rmsnorm(h))
#include "lfmrt/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/dispatch.h"
#include "lfmrt/error.h"
#include "model/fingerprint.h"
#include "model/model_weights.h"
#include "state/sequence_state.h"

namespace lfmrt {

namespace {

// Activations for one forward call of n tokens, reused across calls.
struct Workspace {
    std::vector<float> residual;   // [n][hidden]
    std::vector<float> normed;     // [n][hidden]
    std::vector<float> op_out;     // [n][hidden]
    std::vector<float> projected;  // [n][max(3 * hidden, q_width)]: conv's B,C,x or attention's q
    std::vector<float> mixed;      // [n][max(hidden, q_width)]: the op's input to its out_proj
    std::vector<float> keys, values;  // [n][kv_width]: new rows, before they go into each KV cache
    std::vector<float> gate, up;   // [n][ff_dim]
    std::vector<float> head_in;    // [rows wanting logits][hidden]
    // [rows wanting logits][vocab] when several items share the head (a batched step), before
    // each item's rows are copied out; kept between steps so a step does not allocate (and
    // page-fault) megabytes.
    std::vector<float> head_out;

    void reserve(const ModelConfig& c, size_t n) {
        const auto grow = [](std::vector<float>& v, size_t size) {
            if (v.size() < size) v.resize(size);
        };
        const size_t hidden = static_cast<size_t>(c.hidden_size);
        const size_t q_width = static_cast<size_t>(c.n_heads * c.head_dim);
        grow(residual, n * hidden);
        grow(normed, n * hidden);
        grow(op_out, n * hidden);
        grow(projected, n * std::max(3 * hidden, q_width));
        grow(mixed, n * std::max(hidden, q_width));
        grow(keys, n * static_cast<size_t>(c.n_kv_heads * c.head_dim));
        grow(values, n * static_cast<size_t>(c.n_kv_heads * c.head_dim));
        grow(head_in, n * hidden);
        grow(gate, n * static_cast<size_t>(c.ff_dim));
        grow(up, n * static_cast<size_t>(c.ff_dim));
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

// Rotates pairs (i, i + head_dim/2) of each of `n_heads` heads in `row` (rotate_half style).
void apply_rope(float* row, size_t n_heads, size_t head_dim, const float* cos, const float* sin) {
    const size_t half = head_dim / 2;
    for (size_t h = 0; h < n_heads; ++h) {
        float* head = row + h * head_dim;
        for (size_t i = 0; i < half; ++i) {
            const float x1 = head[i];
            const float x2 = head[i + half];
            head[i] = x1 * cos[i] - x2 * sin[i];
            head[i + half] = x2 * cos[i] + x1 * sin[i];
        }
    }
}

void check_kv_dtype(const ModelConfig& c, DType kv_dtype) {
    if (!cpu::is_kv_dtype(kv_dtype)) {
        throw InvalidArgument(std::string("the KV cache cannot be stored as ") + dtype_name(kv_dtype) +
                              " (choose F32, F16 or Q8_0)");
    }
    if (kv_dtype == DType::Q8_0 && c.head_dim % static_cast<int64_t>(block_elems(DType::Q8_0)) != 0) {
        throw InvalidArgument("a Q8_0 KV cache needs head_dim to be a multiple of 32; this model's is " +
                              std::to_string(c.head_dim));
    }
}

}  // namespace

struct Model::Impl {
    ModelConfig config;
    std::shared_ptr<const void> storage;  // keeps the borrowed weight memory alive
    ModelWeights weights;
    std::vector<float> inv_freq;
    std::map<std::string, TensorView> tensors;  // for the fingerprint
    std::once_flag fingerprint_once;
    uint64_t fingerprint = 0;

    DType kv_dtype;
    std::mutex compute_mutex;  // one forward at a time: the backend and workspace are shared
    cpu::CpuBackend backend;
    Workspace ws;

    Impl(ModelConfig c, const std::map<std::string, TensorView>& tensors, std::shared_ptr<const void> s,
         const ModelOptions& options)
        : config(std::move(c)),
          storage(std::move(s)),
          weights(bind_weights(config, tensors)),
          inv_freq(rope_inverse_frequencies(config)),
          tensors(tensors),
          kv_dtype(options.kv_dtype),
          backend(cpu::select_kernels(options.isa), std::max(1, options.n_threads)) {
        check_kv_dtype(config, kv_dtype);
        repack_weights(weights, backend, tensors);
    }

    // The rows of the step's activation matrices that belong to each item, in item order.
    struct Rows {
        size_t begin, n;
    };

    void forward(const std::vector<ForwardItem>& items);
    void embed(const std::vector<ForwardItem>& items);
    void short_conv(const LayerWeights& layer, size_t layer_index, const std::vector<ForwardItem>& items,
                    const std::vector<Rows>& rows, size_t n);
    void attention(const LayerWeights& layer, size_t layer_index, const std::vector<ForwardItem>& items,
                   const std::vector<Rows>& rows, size_t n);
    void feed_forward(const LayerWeights& layer, size_t n);
    void lm_head(const std::vector<ForwardItem>& items, const std::vector<Rows>& rows);
    void add_to_residual(size_t n);
};

// All items' tokens go through each weight matrix together (one matrix product per step, the
// weights read once); only the conv, the KV caches and attention are per sequence.
void Model::Impl::forward(const std::vector<ForwardItem>& items) {
    const size_t hidden = static_cast<size_t>(config.hidden_size);
    const float eps = config.norm_eps;
    std::vector<Rows> rows;
    size_t n = 0;
    for (const ForwardItem& item : items) {
        rows.push_back(Rows{n, item.n});
        n += item.n;
    }
    ws.reserve(config, n);

    embed(items);
    for (size_t i = 0; i < weights.layers.size(); ++i) {
        const LayerWeights& layer = weights.layers[i];
        backend.rmsnorm_rows(ws.residual.data(), hidden, layer.operator_norm.data(), hidden, n, eps,
                             ws.normed.data(), hidden);
        if (layer.kind == LayerKind::ShortConv) {
            short_conv(layer, i, items, rows, n);
        } else {
            attention(layer, i, items, rows, n);
        }
        add_to_residual(n);
        backend.rmsnorm_rows(ws.residual.data(), hidden, layer.ffn_norm.data(), hidden, n, eps, ws.normed.data(),
                             hidden);
        feed_forward(layer, n);
        add_to_residual(n);
    }
    for (const ForwardItem& item : items) item.state->n_past += item.n;
    lm_head(items, rows);
}

// Only the rows whose logits are wanted go through the final norm and the (large) head.
void Model::Impl::lm_head(const std::vector<ForwardItem>& items, const std::vector<Rows>& rows) {
    const size_t hidden = static_cast<size_t>(config.hidden_size);
    const size_t vocab = static_cast<size_t>(config.vocab_size);
    size_t wanted = 0;
    for (size_t i = 0; i < items.size(); ++i) {
        if (items[i].logits == nullptr) continue;
        const size_t first = items[i].all_logits ? rows[i].begin : rows[i].begin + rows[i].n - 1;
        const size_t count = rows[i].begin + rows[i].n - first;
        backend.rmsnorm_rows(ws.residual.data() + first * hidden, hidden, weights.embedding_norm.data(), hidden,
                             count, config.norm_eps, ws.head_in.data() + wanted * hidden, hidden);
        wanted += count;
    }
    if (wanted == 0) return;
    if (items.size() == 1) {  // the common case writes straight into the caller's buffer
        backend.matmul(weights.lm_head, ws.head_in.data(), hidden, wanted, items[0].logits, vocab);
        return;
    }
    if (ws.head_out.size() < wanted * vocab) ws.head_out.resize(wanted * vocab);
    backend.matmul(weights.lm_head, ws.head_in.data(), hidden, wanted, ws.head_out.data(), vocab);
    const float* next = ws.head_out.data();
    for (size_t i = 0; i < items.size(); ++i) {
        if (items[i].logits == nullptr) continue;
        const size_t count = (items[i].all_logits ? rows[i].n : 1) * vocab;
        std::copy(next, next + count, items[i].logits);
        next += count;
    }
}

void Model::Impl::embed(const std::vector<ForwardItem>& items) {
    const size_t hidden = static_cast<size_t>(config.hidden_size);
    const size_t embedding_bytes = row_bytes(weights.embed_tokens.dtype, hidden);
    const auto* table = static_cast<const uint8_t*>(weights.embed_tokens.data);
    float* out = ws.residual.data();
    for (const ForwardItem& item : items) {
        for (size_t t = 0; t < item.n; ++t, out += hidden) {
            convert_to_f32(table + static_cast<size_t>(item.tokens[t]) * embedding_bytes, weights.embed_tokens.dtype, out,
                           hidden);
        }
    }
}

void Model::Impl::add_to_residual(size_t n) {
    const size_t count = n * static_cast<size_t>(config.hidden_size);
    backend.kernels().axpy(1.0f, ws.op_out.data(), ws.residual.data(), count);
}

// Double-gated short conv: B, C, x = split3(in_proj(u)); y = C * conv(B * x); out_proj(y).
// The depthwise causal conv reads the previous (kernel - 1) values of B*x from the sequence's
// conv state.
void Model::Impl::short_conv(const LayerWeights& layer, size_t layer_index, const std::vector<ForwardItem>& items,
                             const std::vector<Rows>& rows, size_t n) {
    const ShortConvWeights& w = layer.conv;
    const size_t hidden = static_cast<size_t>(config.hidden_size);
    const size_t width = 3 * hidden;
    const size_t kernel = static_cast<size_t>(config.conv_kernel);
    const size_t history = kernel - 1;
    float* bcx = ws.projected.data();
    backend.matmul(w.in_proj, ws.normed.data(), hidden, n, bcx, width);
    if (!w.in_proj_bias.empty()) backend.add_bias(w.in_proj_bias.data(), width, n, bcx, width);

    // B * x, written over x's third of each row.
    for (size_t r = 0; r < n; ++r) {
        float* x = bcx + r * width + 2 * hidden;
        backend.kernels().mul(bcx + r * width, x, x, hidden);
    }
    for (size_t i = 0; i < items.size(); ++i) {
        ConvState& conv_state = items[i].state->conv[layer_index];
        float* item_bcx = bcx + rows[i].begin * width;
        // The conv input at step s of this item (negative s reaches into the state).
        const auto input_at = [&](ptrdiff_t s) -> const float* {
            if (s >= 0) return item_bcx + static_cast<size_t>(s) * width + 2 * hidden;
            return conv_state.history.data() + static_cast<size_t>(static_cast<ptrdiff_t>(history) + s) * hidden;
        };
        for (size_t t = 0; t < rows[i].n; ++t) {
            float* y = ws.mixed.data() + (rows[i].begin + t) * hidden;
            if (w.conv_bias.empty()) {
                std::fill(y, y + hidden, 0.0f);
            } else {
                std::copy(w.conv_bias.begin(), w.conv_bias.end(), y);
            }
            for (size_t j = 0; j < kernel; ++j) {
                const float* in = input_at(static_cast<ptrdiff_t>(t + j) - static_cast<ptrdiff_t>(history));
                const float* tap = w.taps.data() + j * hidden;
                for (size_t c = 0; c < hidden; ++c) y[c] += tap[c] * in[c];
            }
            backend.kernels().mul(item_bcx + t * width + hidden, y, y, hidden);  // C * conv(B * x)
        }
        // Keep the last (kernel - 1) conv inputs for the next step.
        std::vector<float> next(history * hidden);
        for (size_t s = 0; s < history; ++s) {
            const float* src = input_at(static_cast<ptrdiff_t>(rows[i].n + s) - static_cast<ptrdiff_t>(history));
            std::copy(src, src + hidden, next.begin() + static_cast<ptrdiff_t>(s * hidden));
        }
        conv_state.history = std::move(next);
    }

    backend.matmul(w.out_proj, ws.mixed.data(), hidden, n, ws.op_out.data(), hidden);
    if (!w.out_proj_bias.empty()) backend.add_bias(w.out_proj_bias.data(), hidden, n, ws.op_out.data(), hidden);
}

// Grouped-query attention with per-head RMSNorm on q and k, RoPE, and each sequence's KV cache.
void Model::Impl::attention(const LayerWeights& layer, size_t layer_index, const std::vector<ForwardItem>& items,
                            const std::vector<Rows>& rows, size_t n) {
    const AttentionWeights& w = layer.attention;
    const size_t hidden = static_cast<size_t>(config.hidden_size);
    const size_t head_dim = static_cast<size_t>(config.head_dim);
    const size_t n_heads = static_cast<size_t>(config.n_heads);
    const size_t n_kv_heads = static_cast<size_t>(config.n_kv_heads);
    const size_t q_width = n_heads * head_dim;
    const size_t kv_width = n_kv_heads * head_dim;
    const float eps = config.norm_eps;

    float* q = ws.projected.data();
    float* k = ws.keys.data();
    float* v = ws.values.data();
    backend.matmul({{w.q_proj, q, q_width}, {w.k_proj, k, kv_width}, {w.v_proj, v, kv_width}}, ws.normed.data(),
                   hidden, n);
    backend.rmsnorm_rows(q, head_dim, w.q_norm.data(), head_dim, n * n_heads, eps, q, head_dim);
    backend.rmsnorm_rows(k, head_dim, w.k_norm.data(), head_dim, n * n_kv_heads, eps, k, head_dim);

    std::vector<float> cos(head_dim / 2), sin(head_dim / 2);
    std::vector<cpu::AttentionJob> jobs;
    for (size_t i = 0; i < items.size(); ++i) {
        KvCache& cache = items[i].state->kv[layer_index];
        const size_t n_past = items[i].state->n_past;
        for (size_t t = 0; t < rows[i].n; ++t) {
            const size_t r = rows[i].begin + t;
            const auto position = static_cast<float>(n_past + t);
            for (size_t f = 0; f < cos.size(); ++f) {
                const float angle = position * inv_freq[f];
                cos[f] = std::cos(angle);
                sin[f] = std::sin(angle);
            }
            apply_rope(q + r * q_width, n_heads, head_dim, cos.data(), sin.data());
            apply_rope(k + r * kv_width, n_kv_heads, head_dim, cos.data(), sin.data());
            cache.store(n_past + t, k + r * kv_width, v + r * kv_width);
        }
    }
    // Views are taken after every store: a store may add pages.
    for (size_t i = 0; i < items.size(); ++i) {
        jobs.push_back(cpu::AttentionJob{q + rows[i].begin * q_width, rows[i].n, items[i].state->n_past,
                                         items[i].state->kv[layer_index].view(),
                                         ws.mixed.data() + rows[i].begin * q_width});
    }
    backend.attention(jobs, n_heads, n_kv_heads, head_dim);
    backend.matmul(w.out_proj, ws.mixed.data(), q_width, n, ws.op_out.data(), hidden);
}

// SwiGLU: w2(silu(w1 u) * w3 u).
void Model::Impl::feed_forward(const LayerWeights& layer, size_t n) {
    const size_t hidden = static_cast<size_t>(config.hidden_size);
    const size_t ff = static_cast<size_t>(config.ff_dim);
    backend.matmul({{layer.w1, ws.gate.data(), ff}, {layer.w3, ws.up.data(), ff}}, ws.normed.data(), hidden, n);
    backend.silu_mul_rows(ws.gate.data(), ws.up.data(), ws.gate.data(), ff, n);
    backend.matmul(layer.w2, ws.gate.data(), ff, n, ws.op_out.data(), hidden);
}

Model::Model(ModelConfig config, const std::map<std::string, TensorView>& tensors,
             std::shared_ptr<const void> storage, const ModelOptions& options) {
    config.validate();
    impl_ = std::make_unique<Impl>(std::move(config), tensors, std::move(storage), options);
}

Model::~Model() = default;

const ModelConfig& Model::config() const { return impl_->config; }
int Model::n_threads() const { return impl_->backend.n_threads(); }
const char* Model::kernel_set() const { return impl_->backend.kernels().name; }
DType Model::kv_dtype() const { return impl_->kv_dtype; }

uint64_t Model::fingerprint() const {
    std::call_once(impl_->fingerprint_once, [this] { impl_->fingerprint = weights_fingerprint(impl_->config, impl_->tensors); });
    return impl_->fingerprint;
}

void Model::forward(const std::vector<ForwardItem>& items) const {
    if (items.empty()) return;
    for (const ForwardItem& item : items) {
        if (item.n == 0) throw InvalidArgument("a forward item has no tokens");
    }
    std::lock_guard<std::mutex> lock(impl_->compute_mutex);
    impl_->forward(items);
}

}  // namespace lfmrt
