// The LFM2 forward pass, top to bottom (DESIGN.md, "The model, exactly"):
//   h = embed(tokens)
//   for each block: h += op(rmsnorm(h)); h += ffn(rmsnorm(h))     op = short conv | GQA attention
//   logits = lm_head(rmsnorm(h))
#include "lfmrt/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>

#include "cpu/cpu_backend.h"
#include "cpu/dispatch.h"
#include "lfmrt/error.h"
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
    std::vector<float> gate, up;   // [n][ff_dim]

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

}  // namespace

struct Model::Impl {
    ModelConfig config;
    std::shared_ptr<const void> storage;  // keeps the borrowed weight memory alive
    ModelWeights weights;
    std::vector<float> inv_freq;

    std::mutex compute_mutex;  // one forward at a time: the backend and workspace are shared
    cpu::CpuBackend backend;
    Workspace ws;

    Impl(ModelConfig c, const std::map<std::string, TensorView>& tensors, std::shared_ptr<const void> s,
         const ModelOptions& options)
        : config(std::move(c)),
          storage(std::move(s)),
          weights(bind_weights(config, tensors)),
          inv_freq(rope_inverse_frequencies(config)),
          backend(cpu::select_kernels(options.isa), std::max(1, options.n_threads)) {}

    void forward(SequenceState& state, const int32_t* tokens, size_t n, bool all_logits, float* logits);
    void embed(const int32_t* tokens, size_t n);
    void short_conv(const LayerWeights& layer, ConvState& conv_state, size_t n);
    void attention(const LayerWeights& layer, KvCache& kv, size_t n_past, size_t n);
    void feed_forward(const LayerWeights& layer, size_t n);
    void add_to_residual(size_t n);
};

void Model::Impl::forward(SequenceState& state, const int32_t* tokens, size_t n, bool all_logits, float* logits) {
    const size_t hidden = static_cast<size_t>(config.hidden_size);
    const float eps = config.norm_eps;
    ws.reserve(config, n);

    embed(tokens, n);
    for (size_t i = 0; i < weights.layers.size(); ++i) {
        const LayerWeights& layer = weights.layers[i];
        backend.rmsnorm_rows(ws.residual.data(), hidden, layer.operator_norm.data(), hidden, n, eps,
                             ws.normed.data(), hidden);
        if (layer.kind == LayerKind::ShortConv) {
            short_conv(layer, state.conv[i], n);
        } else {
            attention(layer, state.kv[i], state.n_past, n);
        }
        add_to_residual(n);
        backend.rmsnorm_rows(ws.residual.data(), hidden, layer.ffn_norm.data(), hidden, n, eps, ws.normed.data(),
                             hidden);
        feed_forward(layer, n);
        add_to_residual(n);
    }
    state.n_past += n;
    if (logits == nullptr) return;

    // Only the rows whose logits are wanted go through the final norm and the (large) head.
    const size_t first = all_logits ? 0 : n - 1;
    const size_t rows = n - first;
    backend.rmsnorm_rows(ws.residual.data() + first * hidden, hidden, weights.embedding_norm.data(), hidden, rows,
                         eps, ws.normed.data(), hidden);
    backend.matmul(weights.lm_head, ws.normed.data(), hidden, rows, logits,
                   static_cast<size_t>(config.vocab_size));
}

void Model::Impl::embed(const int32_t* tokens, size_t n) {
    const size_t hidden = static_cast<size_t>(config.hidden_size);
    const size_t row_bytes = hidden * dtype_size(weights.embed_tokens.dtype);
    const auto* table = static_cast<const uint8_t*>(weights.embed_tokens.data);
    for (size_t t = 0; t < n; ++t) {
        convert_to_f32(table + static_cast<size_t>(tokens[t]) * row_bytes, weights.embed_tokens.dtype,
                       ws.residual.data() + t * hidden, hidden);
    }
}

void Model::Impl::add_to_residual(size_t n) {
    const size_t count = n * static_cast<size_t>(config.hidden_size);
    backend.kernels().axpy(1.0f, ws.op_out.data(), ws.residual.data(), count);
}

// Double-gated short conv: B, C, x = split3(in_proj(u)); y = C * conv(B * x); out_proj(y).
// The depthwise causal conv reads the previous (kernel - 1) values of B*x from conv_state.
void Model::Impl::short_conv(const LayerWeights& layer, ConvState& conv_state, size_t n) {
    const ShortConvWeights& w = layer.conv;
    const size_t hidden = static_cast<size_t>(config.hidden_size);
    const size_t width = 3 * hidden;
    const size_t kernel = static_cast<size_t>(config.conv_kernel);
    const size_t history = kernel - 1;
    float* bcx = ws.projected.data();
    backend.matmul(w.in_proj, ws.normed.data(), hidden, n, bcx, width);
    if (!w.in_proj_bias.empty()) backend.add_bias(w.in_proj_bias.data(), width, n, bcx, width);

    // B * x, written over x's third of each row.
    for (size_t t = 0; t < n; ++t) {
        const float* b = bcx + t * width;
        float* x = bcx + t * width + 2 * hidden;
        backend.kernels().mul(b, x, x, hidden);
    }
    // The conv input at step s (negative s reaches into the state).
    const auto input_at = [&](ptrdiff_t s) -> const float* {
        if (s >= 0) return bcx + static_cast<size_t>(s) * width + 2 * hidden;
        return conv_state.history.data() + static_cast<size_t>(static_cast<ptrdiff_t>(history) + s) * hidden;
    };
    for (size_t t = 0; t < n; ++t) {
        float* y = ws.mixed.data() + t * hidden;
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
        backend.kernels().mul(bcx + t * width + hidden, y, y, hidden);  // C * conv(B * x)
    }
    // Keep the last (kernel - 1) conv inputs for the next call.
    std::vector<float> next(history * hidden);
    for (size_t s = 0; s < history; ++s) {
        const float* src = input_at(static_cast<ptrdiff_t>(n + s) - static_cast<ptrdiff_t>(history));
        std::copy(src, src + hidden, next.begin() + static_cast<ptrdiff_t>(s * hidden));
    }
    conv_state.history = std::move(next);

    backend.matmul(w.out_proj, ws.mixed.data(), hidden, n, ws.op_out.data(), hidden);
    if (!w.out_proj_bias.empty()) backend.add_bias(w.out_proj_bias.data(), hidden, n, ws.op_out.data(), hidden);
}

// Grouped-query attention with per-head RMSNorm on q and k, RoPE, and the layer's KV cache.
void Model::Impl::attention(const LayerWeights& layer, KvCache& kv, size_t n_past, size_t n) {
    const AttentionWeights& w = layer.attention;
    const size_t hidden = static_cast<size_t>(config.hidden_size);
    const size_t head_dim = static_cast<size_t>(config.head_dim);
    const size_t n_heads = static_cast<size_t>(config.n_heads);
    const size_t n_kv_heads = static_cast<size_t>(config.n_kv_heads);
    const size_t q_width = n_heads * head_dim;
    const size_t kv_width = n_kv_heads * head_dim;
    const float eps = config.norm_eps;

    kv.reserve(n_past + n);
    float* q = ws.projected.data();
    float* k = kv.keys_at(n_past);
    float* v = kv.values_at(n_past);
    backend.matmul({{w.q_proj, q, q_width}, {w.k_proj, k, kv_width}, {w.v_proj, v, kv_width}}, ws.normed.data(),
                   hidden, n);
    backend.rmsnorm_rows(q, head_dim, w.q_norm.data(), head_dim, n * n_heads, eps, q, head_dim);
    backend.rmsnorm_rows(k, head_dim, w.k_norm.data(), head_dim, n * n_kv_heads, eps, k, head_dim);

    std::vector<float> cos(head_dim / 2), sin(head_dim / 2);
    for (size_t t = 0; t < n; ++t) {
        const auto position = static_cast<float>(n_past + t);
        for (size_t i = 0; i < cos.size(); ++i) {
            const float angle = position * inv_freq[i];
            cos[i] = std::cos(angle);
            sin[i] = std::sin(angle);
        }
        apply_rope(q + t * q_width, n_heads, head_dim, cos.data(), sin.data());
        apply_rope(k + t * kv_width, n_kv_heads, head_dim, cos.data(), sin.data());
    }

    backend.attention(q, n, n_past, kv.keys(), kv.values(), n_heads, n_kv_heads, head_dim, ws.mixed.data());
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

void Model::forward(SequenceState& state, const int32_t* tokens, size_t n, bool all_logits, float* logits) const {
    if (n == 0) return;
    std::lock_guard<std::mutex> lock(impl_->compute_mutex);
    impl_->forward(state, tokens, n, all_logits, logits);
}

}  // namespace lfmrt
