#include "lfmrt/session.h"

#include <algorithm>
#include <string>

#include "lfmrt/error.h"
#include "state/sequence_state.h"

namespace lfmrt {

Session::Session(std::shared_ptr<const Model> model)
    : model_(std::move(model)), state_(std::make_unique<SequenceState>(model_->config())) {}

Session::~Session() = default;
Session::Session(Session&&) noexcept = default;

std::vector<float> Session::append(const std::vector<int32_t>& tokens, size_t chunk_size, bool all_logits) {
    const ModelConfig& config = model_->config();
    const auto vocab = static_cast<size_t>(config.vocab_size);
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
    if (chunk_size == 0) throw InvalidArgument("chunk_size must be positive");
    if (tokens.empty()) return all_logits ? std::vector<float>() : last_logits_;

    std::vector<float> logits(all_logits ? tokens.size() * vocab : vocab);
    for (size_t begin = 0; begin < tokens.size(); begin += chunk_size) {
        const size_t n = std::min(chunk_size, tokens.size() - begin);
        const bool last_chunk = begin + n == tokens.size();
        // Only the last chunk's logits are wanted, unless every row is.
        float* out = all_logits ? logits.data() + begin * vocab : (last_chunk ? logits.data() : nullptr);
        model_->forward(*state_, tokens.data() + begin, n, all_logits, out);
        tokens_.insert(tokens_.end(), tokens.begin() + static_cast<ptrdiff_t>(begin),
                       tokens.begin() + static_cast<ptrdiff_t>(begin + n));
    }
    last_logits_.assign(logits.end() - static_cast<ptrdiff_t>(vocab), logits.end());
    return logits;
}

void Session::reset() {
    state_ = std::make_unique<SequenceState>(model_->config());
    tokens_.clear();
    last_logits_.clear();
}

size_t Session::memory_bytes() const {
    return state_->memory_bytes() + tokens_.capacity() * sizeof(int32_t) + last_logits_.capacity() * sizeof(float);
}

}  // namespace lfmrt
