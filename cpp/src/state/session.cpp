#include "lfmrt/session.h"

#include <algorithm>
#include <set>
#include <string>

#include "lfmrt/error.h"
#include "state/conv_checkpoints.h"
#include "state/sequence_state.h"
#include "state/snapshot.h"

namespace lfmrt {

Session::Session(std::shared_ptr<const Model> model, SessionOptions options)
    : model_(std::move(model)),
      options_(options),
      state_(std::make_unique<SequenceState>(model_->config(), model_->kv_dtype())),
      checkpoints_(std::make_unique<ConvCheckpoints>(options.max_checkpoints)) {
    if (options_.checkpoint_interval == 0) throw InvalidArgument("checkpoint_interval must be positive");
}

Session::~Session() = default;

void Session::check_tokens(const std::vector<int32_t>& tokens) const {
    const ModelConfig& config = model_->config();
    for (size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i] < 0 || tokens[i] >= config.vocab_size) {
            throw InvalidArgument("token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                                  " is outside the vocabulary [0, " + std::to_string(config.vocab_size) + ")");
        }
    }
    if (tokens_.size() + tokens.size() > static_cast<size_t>(config.max_context)) {
        throw InvalidArgument("context overflow: " + std::to_string(tokens_.size()) + " tokens in the session + " +
                              std::to_string(tokens.size()) + " new exceed the context length " +
                              std::to_string(config.max_context));
    }
}

// Runs tokens through the model in chunks that end on checkpoint positions, recording a
// checkpoint there. `logits` receives the last token's (or every token's) logits, or nothing.
void Session::run(const int32_t* tokens, size_t n, size_t chunk_size, bool all_logits, float* logits) {
    if (chunk_size == 0) throw InvalidArgument("chunk_size must be positive");
    const auto vocab = static_cast<size_t>(model_->config().vocab_size);
    const size_t interval = options_.checkpoint_interval;
    for (size_t begin = 0; begin < n;) {
        const size_t position = state_->n_past;
        const size_t to_checkpoint = interval - position % interval;
        const size_t count = std::min({chunk_size, n - begin, to_checkpoint});
        const bool last_chunk = begin + count == n;
        float* out = nullptr;
        if (logits != nullptr && all_logits) out = logits + begin * vocab;
        if (logits != nullptr && !all_logits && last_chunk) out = logits;
        model_->forward({ForwardItem{state_.get(), tokens + begin, count, all_logits, out}});
        n_forwarded_ += count;
        if (state_->n_past % interval == 0) checkpoints_->record(*state_);
        begin += count;
    }
}

std::vector<float> Session::append(const std::vector<int32_t>& tokens, size_t chunk_size, bool all_logits) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_tokens(tokens);
    if (chunk_size == 0) throw InvalidArgument("chunk_size must be positive");
    if (tokens.empty()) return all_logits ? std::vector<float>() : last_logits_;
    const auto vocab = static_cast<size_t>(model_->config().vocab_size);
    std::vector<float> logits(all_logits ? tokens.size() * vocab : vocab);
    run(tokens.data(), tokens.size(), chunk_size, all_logits, logits.data());
    tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
    if (tokens.size() > 1) checkpoints_->record(*state_);  // a turn boundary
    last_logits_.assign(logits.end() - static_cast<ptrdiff_t>(vocab), logits.end());
    return logits;
}

void Session::rewind(size_t n_tokens, size_t chunk_size) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (n_tokens > tokens_.size()) {
        throw InvalidArgument("cannot rewind to " + std::to_string(n_tokens) + " tokens: the session holds " +
                              std::to_string(tokens_.size()));
    }
    if (chunk_size == 0) throw InvalidArgument("chunk_size must be positive");
    if (n_tokens == tokens_.size()) return;
    checkpoints_->truncate(n_tokens);
    const size_t restart = checkpoints_->restore_at_or_before(n_tokens, *state_);
    state_->truncate_kv(restart);
    state_->n_past = restart;
    tokens_.resize(n_tokens);
    last_logits_.clear();
    run(tokens_.data() + restart, n_tokens - restart, chunk_size, false, nullptr);
}

void Session::checkpoint() {
    std::lock_guard<std::mutex> lock(mutex_);
    checkpoints_->record(*state_);
}

std::unique_ptr<Session> Session::fork() const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto copy = std::make_unique<Session>(model_, options_);
    *copy->state_ = *state_;
    *copy->checkpoints_ = *checkpoints_;
    copy->tokens_ = tokens_;
    copy->last_logits_ = last_logits_;
    return copy;
}

void Session::reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    state_ = std::make_unique<SequenceState>(model_->config(), model_->kv_dtype());
    checkpoints_->clear();
    tokens_.clear();
    last_logits_.clear();
}

size_t Session::n_checkpoints() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return checkpoints_->count();
}

size_t Session::memory_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return state_->memory_bytes() + checkpoints_->memory_bytes() + tokens_.capacity() * sizeof(int32_t) +
           last_logits_.capacity() * sizeof(float);
}

std::string Session::save() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return write_snapshot(*model_, tokens_, *state_, *checkpoints_);
}

std::unique_ptr<Session> Session::restore(std::shared_ptr<const Model> model, const std::string& snapshot,
                                          SessionOptions options) {
    auto session = std::make_unique<Session>(model, options);
    read_snapshot(*model, snapshot, session->tokens_, *session->state_, *session->checkpoints_);
    return session;
}

void Session::decode_batch(const std::vector<Session*>& sessions, const std::vector<int32_t>& tokens) {
    if (sessions.size() != tokens.size()) throw InvalidArgument("decode_batch needs one token per session");
    if (sessions.empty()) return;
    if (std::set<Session*>(sessions.begin(), sessions.end()).size() != sessions.size()) {
        throw InvalidArgument("decode_batch got the same session twice");
    }
    const Model& model = sessions[0]->model();
    // Lock in address order so two overlapping batches cannot deadlock.
    std::vector<Session*> ordered(sessions);
    std::sort(ordered.begin(), ordered.end());
    std::vector<std::unique_lock<std::mutex>> locks;
    for (Session* session : ordered) locks.emplace_back(session->mutex_);
    for (size_t i = 0; i < sessions.size(); ++i) {
        if (&sessions[i]->model() != &model) throw InvalidArgument("decode_batch sessions belong to different models");
        sessions[i]->check_tokens({tokens[i]});
    }
    const auto vocab = static_cast<size_t>(model.config().vocab_size);
    std::vector<ForwardItem> items;
    for (size_t i = 0; i < sessions.size(); ++i) {
        Session& session = *sessions[i];
        session.last_logits_.resize(vocab);
        items.push_back(ForwardItem{session.state_.get(), &tokens[i], 1, false, session.last_logits_.data()});
    }
    model.forward(items);
    for (size_t i = 0; i < sessions.size(); ++i) {
        Session& session = *sessions[i];
        session.tokens_.push_back(tokens[i]);
        session.n_forwarded_ += 1;
        if (session.state_->n_past % session.options_.checkpoint_interval == 0) {
            session.checkpoints_->record(*session.state_);
        }
    }
}

}  // namespace lfmrt
