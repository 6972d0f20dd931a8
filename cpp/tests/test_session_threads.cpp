// Sessions driven from several std::threads on one Model, checked against the same work done on
// one thread. Forward passes are serialised per Model, but everything around them (forks that
// share KV pages, checkpoints, snapshots, the batched-append bookkeeping, readers of a session
// that another thread is appending to) runs concurrently. Built with -DLFMRT_SANITIZE=thread,
// ThreadSanitizer reports any data race it sees on the way; tests/test_session_threads.py runs
// the ordinary build.
//
//   lfmrt_session_thread_test     prints one line per check and "N passed, M failed"
//
// The model is a tiny random LFM2 (conv and attention layers) made here, twice: f32 weights with
// an f16 KV cache, and Q4_0 weights with a Q8_0 KV cache (the integer kernels).
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "lfmrt/config.h"
#include "lfmrt/model.h"
#include "lfmrt/session.h"
#include "lfmrt/tensor.h"
#include "formats/quantize.h"
#include "report.h"

namespace {

using lfmrt::DType;
using lfmrt::Model;
using lfmrt::Session;
using lfmrt::SessionOptions;

constexpr size_t kChunk = 7;                 // prefill chunks end mid-prompt
const SessionOptions kOptions{5, 8};         // a checkpoint every 5 positions, at most 8 kept
constexpr int kThreads = 6;

using lfmrt::test::Report;

// ---- a tiny random model ------------------------------------------------------------------

lfmrt::ModelConfig tiny_config() {
    lfmrt::ModelConfig c;
    c.vocab_size = 96;
    c.hidden_size = 64;
    c.ff_dim = 128;
    c.layers = {lfmrt::LayerKind::ShortConv, lfmrt::LayerKind::Attention, lfmrt::LayerKind::ShortConv,
                lfmrt::LayerKind::Attention};
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 32;  // a Q8_0 KV cache needs whole blocks per head
    c.max_context = 1024;
    return c;
}

// Random tensors in memory the model borrows (the shared_ptr keeps it alive for the model).
class RandomTensors {
public:
    RandomTensors(DType matrix_dtype, uint32_t seed) : matrix_dtype_(matrix_dtype), rng_(seed) {}

    // A weight matrix [rows][cols] in the matrix dtype, values of about 1/sqrt(cols).
    void matrix(const std::string& name, int64_t rows, int64_t cols) {
        const std::vector<float> values = random_values(static_cast<size_t>(rows * cols), 0.0f, 1.0f / std::sqrt(float(cols)));
        const size_t row_bytes = lfmrt::row_bytes(matrix_dtype_, static_cast<size_t>(cols));
        std::vector<uint8_t> bytes(static_cast<size_t>(rows) * row_bytes);
        for (int64_t r = 0; r < rows; ++r) {
            lfmrt::quant::quantize_row(matrix_dtype_, values.data() + r * cols, bytes.data() + r * row_bytes,
                                       static_cast<size_t>(cols));
        }
        add(name, matrix_dtype_, {rows, cols}, std::move(bytes));
    }

    // An f32 tensor of values around `center` (norm weights near 1, conv taps near 0).
    void floats(const std::string& name, std::vector<int64_t> shape, float center) {
        int64_t n = 1;
        for (int64_t dim : shape) n *= dim;
        const std::vector<float> values = random_values(static_cast<size_t>(n), center, 0.2f);
        std::vector<uint8_t> bytes(values.size() * sizeof(float));
        std::memcpy(bytes.data(), values.data(), bytes.size());
        add(name, DType::F32, std::move(shape), std::move(bytes));
    }

    const std::map<std::string, lfmrt::TensorView>& views() const { return views_; }
    std::shared_ptr<const void> storage() const { return storage_; }

private:
    std::vector<float> random_values(size_t n, float center, float spread) {
        std::normal_distribution<float> normal(center, spread);
        std::vector<float> values(n);
        for (float& v : values) v = normal(rng_);
        return values;
    }

    void add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
        storage_->push_back(std::move(bytes));  // moving a vector keeps its buffer where it is
        lfmrt::TensorView view;
        view.data = storage_->back().data();
        view.dtype = dtype;
        view.shape = std::move(shape);
        views_[name] = view;
    }

    DType matrix_dtype_;
    std::mt19937 rng_;
    std::shared_ptr<std::vector<std::vector<uint8_t>>> storage_ = std::make_shared<std::vector<std::vector<uint8_t>>>();
    std::map<std::string, lfmrt::TensorView> views_;
};

std::shared_ptr<const Model> tiny_model(DType matrix_dtype, DType kv_dtype) {
    const lfmrt::ModelConfig c = tiny_config();
    RandomTensors t(matrix_dtype, 42);
    t.matrix("embed_tokens.weight", c.vocab_size, c.hidden_size);  // tied: also the LM head
    t.floats("embedding_norm.weight", {c.hidden_size}, 1.0f);
    for (size_t i = 0; i < c.layers.size(); ++i) {
        const std::string layer = "layers." + std::to_string(i) + ".";
        t.floats(layer + "operator_norm.weight", {c.hidden_size}, 1.0f);
        t.floats(layer + "ffn_norm.weight", {c.hidden_size}, 1.0f);
        t.matrix(layer + "feed_forward.w1.weight", c.ff_dim, c.hidden_size);
        t.matrix(layer + "feed_forward.w3.weight", c.ff_dim, c.hidden_size);
        t.matrix(layer + "feed_forward.w2.weight", c.hidden_size, c.ff_dim);
        if (c.layers[i] == lfmrt::LayerKind::ShortConv) {
            t.matrix(layer + "conv.in_proj.weight", 3 * c.hidden_size, c.hidden_size);
            t.matrix(layer + "conv.out_proj.weight", c.hidden_size, c.hidden_size);
            t.floats(layer + "conv.conv.weight", {c.hidden_size, 1, c.conv_kernel}, 0.0f);
        } else {
            const int64_t q_width = c.n_heads * c.head_dim, kv_width = c.n_kv_heads * c.head_dim;
            t.matrix(layer + "self_attn.q_proj.weight", q_width, c.hidden_size);
            t.matrix(layer + "self_attn.k_proj.weight", kv_width, c.hidden_size);
            t.matrix(layer + "self_attn.v_proj.weight", kv_width, c.hidden_size);
            t.matrix(layer + "self_attn.out_proj.weight", c.hidden_size, q_width);
            t.floats(layer + "self_attn.q_layernorm.weight", {c.head_dim}, 1.0f);
            t.floats(layer + "self_attn.k_layernorm.weight", {c.head_dim}, 1.0f);
        }
    }
    lfmrt::ModelOptions options;
    options.n_threads = 2;  // the model's own pool runs too, under the threads calling it
    options.kv_dtype = kv_dtype;
    return std::make_shared<const Model>(c, t.views(), t.storage(), options);
}

// ---- the work each thread does: deterministic, so one thread's result is the reference ------

std::vector<int32_t> tokens_of(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(tiny_config().vocab_size) - 1);
    std::vector<int32_t> tokens(n);
    for (int32_t& t : tokens) t = token(rng);
    return tokens;
}

void keep(std::vector<float>& trace, const std::vector<float>& logits) {
    trace.insert(trace.end(), logits.begin(), logits.end());
}

// One conversation on a fork of `base` (forks share KV pages copy-on-write): a chunked prefill,
// decode steps, a rewind, a snapshot restored into a new session, more decoding. Returns every
// logit it saw.
std::vector<float> conversation(const std::shared_ptr<const Model>& model, const Session& base, uint32_t seed) {
    std::vector<float> trace;
    std::unique_ptr<Session> session = base.fork();
    keep(trace, session->append(tokens_of(19 + seed % 5, seed), kChunk, false));
    for (int32_t token : tokens_of(6, seed + 100)) keep(trace, session->append({token}, kChunk, false));
    session->rewind(session->n_tokens() - 9, kChunk);
    keep(trace, session->append(tokens_of(4, seed + 200), kChunk, true));
    std::unique_ptr<Session> restored = Session::restore(model, session->save(), kOptions);
    for (int32_t token : tokens_of(5, seed + 300)) keep(trace, restored->append({token}, kChunk, false));
    return trace;
}

// Three forks of `base` prefilled together (prompts of different lengths) and decoded together.
std::vector<float> batched_conversations(const Session& base, uint32_t seed) {
    std::vector<float> trace;
    std::vector<std::unique_ptr<Session>> owned;
    std::vector<Session*> sessions;
    std::vector<std::vector<int32_t>> prompts;
    for (uint32_t i = 0; i < 3; ++i) {
        owned.push_back(base.fork());
        sessions.push_back(owned.back().get());
        prompts.push_back(tokens_of(3 + 11 * i + seed % 3, seed * 10 + i));
    }
    Session::append_batch(sessions, prompts, 2 * kChunk);
    for (uint32_t step = 0; step < 6; ++step) {
        Session::decode_batch(sessions, tokens_of(sessions.size(), seed * 100 + step));
        for (const Session* session : sessions) keep(trace, session->last_logits());
    }
    return trace;
}

// ---- the checks ---------------------------------------------------------------------------

template <typename Work>
std::vector<std::vector<float>> run_on_threads(int n, Work work) {
    std::vector<std::vector<float>> results(static_cast<size_t>(n));
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) threads.emplace_back([&, i] { results[static_cast<size_t>(i)] = work(i); });
    for (std::thread& thread : threads) thread.join();
    return results;
}

// Conversations and batched conversations, all at once on one model, each equal to its run alone.
void check_sessions_on_threads(Report& report, const std::shared_ptr<const Model>& model, const std::string& name) {
    Session base(model, kOptions);
    base.append(tokens_of(12, 7), kChunk, false);
    const auto work = [&](int i) {
        const auto seed = static_cast<uint32_t>(i);
        return i % 2 == 0 ? conversation(model, base, seed) : batched_conversations(base, seed);
    };
    std::vector<std::vector<float>> alone;
    for (int i = 0; i < kThreads; ++i) alone.push_back(work(i));
    const std::vector<std::vector<float>> together = run_on_threads(kThreads, work);
    report.record(together == alone, name + ": " + std::to_string(kThreads) +
                                         " threads of sessions (forks, rewinds, snapshots, batches) equal their runs alone");
}

// Writers append to one session while a reader watches it; the result equals replaying the
// order the tokens went in on one thread.
void check_one_shared_session(Report& report, const std::shared_ptr<const Model>& model, const std::string& name) {
    Session shared(model, kOptions);
    const std::vector<int32_t> prompt = tokens_of(10, 99);
    shared.append(prompt, kChunk, false);
    constexpr int kWriters = 4, kTokensEach = 12;
    std::atomic<int> writing{kWriters};
    bool reader_ok = true;
    std::thread reader([&] {
        size_t last_seen = 0;
        while (writing.load() > 0) {
            const size_t n = shared.n_tokens();
            reader_ok &= n >= last_seen && shared.last_logits().size() == size_t(tiny_config().vocab_size);
            reader_ok &= shared.tokens().size() >= n && shared.memory_bytes() > 0 && shared.n_checkpoints() > 0;
            reader_ok &= !shared.save().empty() && shared.fork()->n_tokens() >= n;
            last_seen = n;
        }
    });
    run_on_threads(kWriters, [&](int i) {
        for (int32_t token : tokens_of(kTokensEach, 500 + static_cast<uint32_t>(i))) shared.append({token}, kChunk, false);
        writing.fetch_sub(1);
        return std::vector<float>();
    });
    reader.join();
    report.record(reader_ok, name + ": a reader sees a consistent session while writers append");

    const std::vector<int32_t> held = shared.tokens();
    Session replay(model, kOptions);
    replay.append(prompt, kChunk, false);
    for (size_t i = prompt.size(); i < held.size(); ++i) replay.append({held[i]}, kChunk, false);
    report.record(held.size() == prompt.size() + kWriters * kTokensEach && replay.last_logits() == shared.last_logits(),
                 name + ": one session shared by " + std::to_string(kWriters) +
                     " writer threads equals replaying its tokens on one thread");
}

// Batches over overlapping sets of sessions lock them in one global order: no deadlock, and
// every session gets every token meant for it.
void check_overlapping_batches(Report& report, const std::shared_ptr<const Model>& model, const std::string& name) {
    std::vector<std::unique_ptr<Session>> sessions;
    for (int i = 0; i < kThreads; ++i) sessions.push_back(std::make_unique<Session>(model, kOptions));
    constexpr int kSteps = 8;
    run_on_threads(kThreads, [&](int i) {
        // Thread i steps sessions i and i + 1, in an order that differs between neighbours.
        Session* mine = sessions[static_cast<size_t>(i)].get();
        Session* next = sessions[static_cast<size_t>((i + 1) % kThreads)].get();
        const std::vector<Session*> pair = i % 2 == 0 ? std::vector{mine, next} : std::vector{next, mine};
        for (int step = 0; step < kSteps; ++step) Session::decode_batch(pair, {1, 2});
        return std::vector<float>();
    });
    bool all_there = true;
    for (const auto& session : sessions) all_there &= session->n_tokens() == 2 * kSteps;
    report.record(all_there, name + ": overlapping batches on " + std::to_string(kThreads) + " threads all finish");
}

}  // namespace

int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    Report report;
    const std::vector<std::pair<std::string, std::shared_ptr<const Model>>> models = {
        {"f32 weights, f16 KV", tiny_model(DType::F32, DType::F16)},
        {"q4_0 weights, q8_0 KV", tiny_model(DType::Q4_0, DType::Q8_0)},
    };
    for (const auto& [name, model] : models) {
        std::printf("model: %s, kernels %s\n", name.c_str(), model->kernel_set().c_str());
        check_sessions_on_threads(report, model, name);
        check_one_shared_session(report, model, name);
        check_overlapping_batches(report, model, name);
    }
    report.summary();
    return report.failed() == 0 ? 0 : 1;
}
