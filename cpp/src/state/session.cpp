#include "lfmrt/session.h"

#include <algorithm>
#include <set>
#include <string>

#include "lfmrt/error.h"
#include "state/conv_checkpoints.h"
#include "state/sequence_state.h"
#include "state/snapshot.h"

namespace lfmrt {

namespace {

// Locks every session's mutex, in address order so that two overlapping batches cannot deadlock.
std::vector<std::unique_lock<std::mutex>> lock_all(std::vector<std::mutex*> mutexes) {
    std::sort(mutexes.begin(), mutexes.end());
    std::vector<std::unique_lock<std::mutex>> locks;
    locks.reserve(mutexes.size());
    for (std::mutex* mutex : mutexes) locks.emplace_back(*mutex);
    return locks;
}

}  // namespace

// Tokens on their way through the model for one session, and where their logits go.
struct Session::PendingRun {
    Session* session;
    const int32_t* tokens;
    size_t n;
    bool all_logits;  // logits for every token (n * vocab floats), else for the last
    float* logits;    // nullptr: none wanted
    size_t done = 0;  // tokens already run
};

Session::Session(std::shared_ptr<const Model> model, SessionOptions options)
    : model_(std::move(model)),
      options_(options),
      state_(std::make_unique<SequenceState>(model_->state_pools())),
      checkpoints_(std::make_unique<ConvCheckpoints>(options.max_checkpoints)) {
    if (options_.checkpoint_interval == 0) throw InvalidArgument("checkpoint_interval must be positive");
}

Session::~Session() = default;

void Session::check_token_id(int64_t id, size_t index) const {
    const int64_t vocab = model_->config().vocab_size;
    if (id < 0 || id >= vocab) {
        throw InvalidArgument("token id " + std::to_string(id) + " at index " + std::to_string(index) +
                              " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
}

void Session::check_tokens(const std::vector<int32_t>& tokens) const {
    const ModelConfig& config = model_->config();
    for (size_t i = 0; i < tokens.size(); ++i) check_token_id(tokens[i], i);
    if (tokens_.size() + tokens.size() > static_cast<size_t>(config.max_context)) {
        throw InvalidArgument("context overflow: " + std::to_string(tokens_.size()) + " tokens in the session + " +
                              std::to_string(tokens.size()) + " new exceed the context length " +
                              std::to_string(config.max_context));
    }
}

// Runs tokens through the model in chunks that end on checkpoint positions, recording a
// checkpoint there. `logits` receives the last token's (or every token's) logits, or nothing.
void Session::run(const int32_t* tokens, size_t n, size_t chunk_size, bool all_logits, float* logits) {
    std::vector<PendingRun> runs{PendingRun{this, tokens, n, all_logits, logits}};
    run_together(runs, chunk_size);
}

// Runs every pending run to its end, the sessions sharing each forward step: a step takes up to
// `chunk_size` tokens in all, in run order. The caller holds every session's lock.
void Session::run_together(std::vector<PendingRun>& runs, size_t chunk_size) {
    if (chunk_size == 0) throw InvalidArgument("chunk_size must be positive");
    std::vector<ForwardItem> items;
    std::vector<PendingRun*> stepping;
    for (;;) {
        items.clear();
        stepping.clear();
        size_t budget = chunk_size;
        for (PendingRun& run : runs) {
            if (run.done == run.n || budget == 0) continue;
            items.push_back(run.session->next_forward_item(run, budget));
            stepping.push_back(&run);
            budget -= items.back().n;
        }
        if (items.empty()) return;
        stepping.front()->session->model().forward(items);
        for (size_t i = 0; i < items.size(); ++i) {
            stepping[i]->session->finish_forward_item(items[i].n);
            stepping[i]->done += items[i].n;
        }
    }
}

// This session's share of the next forward step: at most `budget` of the run's remaining
// tokens, ending at the next checkpoint position so that the checkpoint can be taken there.
ForwardItem Session::next_forward_item(PendingRun& run, size_t budget) const {
    const auto vocab = static_cast<size_t>(model_->config().vocab_size);
    const size_t interval = options_.checkpoint_interval;
    const size_t to_checkpoint = interval - state_->n_past % interval;
    const size_t count = std::min({budget, run.n - run.done, to_checkpoint});
    const bool last_chunk = run.done + count == run.n;
    float* out = nullptr;
    if (run.logits != nullptr && run.all_logits) out = run.logits + run.done * vocab;
    if (run.logits != nullptr && !run.all_logits && last_chunk) out = run.logits;
    return ForwardItem{state_.get(), run.tokens + run.done, count, run.all_logits, out};
}

// Bookkeeping after a forward step ran `count` of this session's tokens.
void Session::finish_forward_item(size_t count) {
    n_forwarded_ += count;
    if (state_->n_past % options_.checkpoint_interval == 0) checkpoints_->record(*state_);
}

// Bookkeeping after `tokens` went through the model: they join the sequence, and the end of a
// multi-token append is a turn boundary, worth a checkpoint.
void Session::appended(const std::vector<int32_t>& tokens) {
    tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
    if (tokens.size() > 1) checkpoints_->record(*state_);
}

std::vector<float> Session::append(const std::vector<int32_t>& tokens, size_t chunk_size, bool all_logits) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_tokens(tokens);
    if (chunk_size == 0) throw InvalidArgument("chunk_size must be positive");
    // Nothing to run means no logits to return (a fresh session has none at all).
    if (tokens.empty()) throw InvalidArgument("append needs at least one token");
    const auto vocab = static_cast<size_t>(model_->config().vocab_size);
    std::vector<float> logits(all_logits ? tokens.size() * vocab : vocab);
    run(tokens.data(), tokens.size(), chunk_size, all_logits, logits.data());
    appended(tokens);
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
    state_->kv.truncate(restart);
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
    copy->state_ = std::make_unique<SequenceState>(state_->fork());
    *copy->checkpoints_ = *checkpoints_;  // checkpoints never change: the copies share them
    copy->tokens_ = tokens_;
    copy->last_logits_ = last_logits_;
    return copy;
}

void Session::reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    state_ = std::make_unique<SequenceState>(model_->state_pools());
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

void Session::append_batch(const std::vector<Session*>& sessions, const std::vector<std::vector<int32_t>>& tokens,
                           size_t chunk_size) {
    if (sessions.size() != tokens.size()) throw InvalidArgument("append_batch needs one token list per session");
    if (chunk_size == 0) throw InvalidArgument("chunk_size must be positive");
    if (sessions.empty()) return;
    if (std::set<Session*>(sessions.begin(), sessions.end()).size() != sessions.size()) {
        throw InvalidArgument("a batch got the same session twice");
    }
    const Model& model = sessions[0]->model();
    for (const Session* session : sessions) {
        if (&session->model() != &model) throw InvalidArgument("a batch's sessions belong to different models");
    }
    std::vector<std::mutex*> mutexes;
    for (Session* session : sessions) mutexes.push_back(&session->mutex_);
    const auto locks = lock_all(std::move(mutexes));
    for (size_t i = 0; i < sessions.size(); ++i) sessions[i]->check_tokens(tokens[i]);

    const auto vocab = static_cast<size_t>(model.config().vocab_size);
    std::vector<PendingRun> runs;
    for (size_t i = 0; i < sessions.size(); ++i) {
        if (tokens[i].empty()) continue;
        Session& session = *sessions[i];
        session.last_logits_.resize(vocab);
        runs.push_back(PendingRun{&session, tokens[i].data(), tokens[i].size(), false, session.last_logits_.data()});
    }
    run_together(runs, chunk_size);
    for (size_t i = 0; i < sessions.size(); ++i) sessions[i]->appended(tokens[i]);
}

void Session::decode_batch(const std::vector<Session*>& sessions, const std::vector<int32_t>& tokens) {
    if (sessions.size() != tokens.size()) throw InvalidArgument("decode_batch needs one token per session");
    std::vector<std::vector<int32_t>> one_each;
    one_each.reserve(tokens.size());
    for (int32_t token : tokens) one_each.push_back({token});
    append_batch(sessions, one_each, std::max<size_t>(sessions.size(), 1));
}

std::vector<int32_t> Session::tokens() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return tokens_;
}

size_t Session::n_tokens() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return tokens_.size();
}

std::vector<float> Session::last_logits() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_logits_;
}

uint64_t Session::n_forwarded() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return n_forwarded_;
}

}  // namespace lfmrt
