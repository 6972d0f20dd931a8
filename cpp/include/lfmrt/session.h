// One sequence's state on a shared Model: its tokens so far, the logits of the last one, and
// conv-state checkpoints that let it rewind to any earlier position.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lfmrt/model.h"

namespace lfmrt {

struct SequenceState;
class ConvCheckpoints;

struct SessionOptions {
    size_t checkpoint_interval = 256;  // conv-state checkpoint every this many positions
    size_t max_checkpoints = 32;       // bound on checkpoint memory (the closest pair merges)
};

class Session {
public:
    explicit Session(std::shared_ptr<const Model> model, SessionOptions options = {});
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Appends tokens, running them through the model in chunks of at most `chunk_size`
    // (prefill as matrix products). Returns the logits of the last token, or of every appended
    // token (n * vocab) with all_logits. Takes a conv checkpoint at every multiple of the
    // checkpoint interval and at the end of a multi-token append (a turn boundary).
    // Throws InvalidArgument for no tokens, a bad token id or a context overflow, leaving the session
    // unchanged.
    std::vector<float> append(const std::vector<int32_t>& tokens, size_t chunk_size, bool all_logits);

    // Throws InvalidArgument unless 0 <= id < the model's vocabulary size; `index` is the id's
    // place in its list, for the message. Takes 64-bit ids so that a caller converting wider
    // integers (Python's) gets this error, not a failed conversion, for any id out of range.
    void check_token_id(int64_t id, size_t index) const;

    // Goes back to holding only the first `n_tokens` tokens, exactly as if only they had been
    // appended: restores the nearest conv checkpoint at or before n_tokens and re-runs the
    // tokens after it. last_logits() is empty until the next append.
    void rewind(size_t n_tokens, size_t chunk_size);

    // Records a conv checkpoint at the current position (e.g. at the end of a chat turn).
    void checkpoint();

    // An independent copy; KV pages are shared copy-on-write, so this is cheap.
    std::unique_ptr<Session> fork() const;

    // Forgets everything: the session is as new.
    void reset();

    // A versioned snapshot tied to the model's fingerprint; restore() refuses another model's
    // snapshot and a corrupt or truncated one (LoadError) without crashing.
    std::string save() const;
    static std::unique_ptr<Session> restore(std::shared_ptr<const Model> model, const std::string& snapshot,
                                            SessionOptions options = {});

    // The readers take the session's lock and return copies, so they are safe while another
    // thread appends to the same session.
    std::vector<int32_t> tokens() const;
    size_t n_tokens() const;
    std::vector<float> last_logits() const;
    // Calls read(last_logits, tokens) under the session's lock and returns its result: a reader
    // of both (the sampler, every decode step) without copying the vocabulary-sized logits.
    template <typename Reader>
    auto read_state(Reader&& read) const {
        std::lock_guard<std::mutex> lock(mutex_);
        return read(last_logits_, tokens_);  // const members here: read sees const references
    }
    size_t memory_bytes() const;
    // Tokens run through the model since the session was made (re-runs after a rewind included).
    uint64_t n_forwarded() const;
    size_t n_checkpoints() const;
    const Model& model() const { return *model_; }
    const SessionOptions& options() const { return options_; }

    // Appends tokens[i] to sessions[i] for every i, the sessions sharing each forward step (the
    // weights are read once per step for all of them): the same as calling append on each, and
    // each session's logits land in its last_logits(). A step holds at most `chunk_size` tokens
    // in all, taken in session order; a session's share of a step ends at its next checkpoint
    // position. An empty token list leaves its session as it is. Sessions must be distinct and
    // share one model. Throws InvalidArgument for a bad token id or a context overflow in any of
    // them, leaving every session unchanged.
    static void append_batch(const std::vector<Session*>& sessions, const std::vector<std::vector<int32_t>>& tokens,
                             size_t chunk_size);

    // One decode step for several sessions together: append_batch with one token each.
    static void decode_batch(const std::vector<Session*>& sessions, const std::vector<int32_t>& tokens);

private:
    struct PendingRun;  // tokens on their way through the model for one session

    void check_tokens(const std::vector<int32_t>& tokens) const;
    void run(const int32_t* tokens, size_t n, size_t chunk_size, bool all_logits, float* logits);
    static void run_together(std::vector<PendingRun>& runs, size_t chunk_size);
    ForwardItem next_forward_item(PendingRun& run, size_t budget) const;
    void finish_forward_item(size_t count);
    void appended(const std::vector<int32_t>& tokens);

    std::shared_ptr<const Model> model_;
    SessionOptions options_;
    std::unique_ptr<SequenceState> state_;
    std::unique_ptr<ConvCheckpoints> checkpoints_;
    std::vector<int32_t> tokens_;
    std::vector<float> last_logits_;
    uint64_t n_forwarded_ = 0;
    mutable std::mutex mutex_;  // one operation at a time on this session
};

}  // namespace lfmrt
