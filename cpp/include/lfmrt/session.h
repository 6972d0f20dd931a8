// One sequence's state on a shared Model: its tokens so far and the logits of the last one.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "lfmrt/model.h"

namespace lfmrt {

class Session {
public:
    explicit Session(std::shared_ptr<const Model> model);
    ~Session();
    Session(Session&&) noexcept;

    // Appends tokens, running them through the model in chunks of at most `chunk_size`
    // (prefill as matrix products). Returns the logits of the last token, or of every appended
    // token (n * vocab) with all_logits. Throws InvalidArgument for a bad token id or a
    // context overflow, leaving the session unchanged.
    std::vector<float> append(const std::vector<int32_t>& tokens, size_t chunk_size, bool all_logits);

    // Forgets everything: the session is as new.
    void reset();

    const std::vector<int32_t>& tokens() const { return tokens_; }
    size_t n_tokens() const { return tokens_.size(); }
    // Logits after the last appended token (empty before the first append).
    const std::vector<float>& last_logits() const { return last_logits_; }
    size_t memory_bytes() const;
    const Model& model() const { return *model_; }

private:
    std::shared_ptr<const Model> model_;
    std::unique_ptr<SequenceState> state_;
    std::vector<int32_t> tokens_;
    std::vector<float> last_logits_;
};

}  // namespace lfmrt
