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
    // Throws InvalidArgument for a bad token id or a context overflow, leaving the session
    // unchanged.
    std::vector<float> append(const std::vector<int32_t>& tokens, size_t chunk_size, bool all_logits);

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

    const std::vector<int32_t>& tokens() const { return tokens_; }
    size_t n_tokens() const { return tokens_.size(); }
    const std::vector<float>& last_logits() const { return last_logits_; }
    size_t memory_bytes() const;
    // Tokens run through the model since the session was made (re-runs after a rewind included).
    uint64_t n_forwarded() const { return n_forwarded_; }
    size_t n_checkpoints() const;
    const Model& model() const { return *model_; }
    const SessionOptions& options() const { return options_; }

    // One decode step for several sessions of one model together: each appends one token, and
    // the weights are read once for all of them. Sessions must be distinct.
    static void decode_batch(const std::vector<Session*>& sessions, const std::vector<int32_t>& tokens);

private:
    void check_tokens(const std::vector<int32_t>& tokens) const;
    void run(const int32_t* tokens, size_t n, size_t chunk_size, bool all_logits, float* logits);

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
