// Turns logits into the next token: a constraint's token mask first, then logit bias, penalties,
// temperature, top-k, top-p, min-p, seed; optionally the log-probabilities of what it picked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace lfmrt {

struct SamplingParams {
    float temperature = 0.3f;         // 0 = greedy (argmax)
    int32_t top_k = 0;                // 0 = off
    float top_p = 1.0f;               // 1 = off
    float min_p = 0.0f;               // 0 = off; keeps tokens with p >= min_p * p_max
    float repetition_penalty = 1.0f;  // transformers' rule: divide positive logits, multiply negative
    float presence_penalty = 0.0f;    // OpenAI's rule: subtract once per token present
    float frequency_penalty = 0.0f;   // OpenAI's rule: subtract per occurrence
    uint64_t seed = 0;
    std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logits (after the mask)
    // -1: no log-probabilities; k in [0, kMaxTopLogprobs]: each sample records the sampled
    // token's log-probability and the k most likely tokens' (see Sampler::last_logprobs).
    int32_t logprobs = -1;

    static constexpr int32_t kMaxTopLogprobs = 20;  // OpenAI's limit for top_logprobs

    // Throws InvalidArgument naming the first field out of range.
    void validate(int64_t vocab_size) const;
};

// Which tokens a constraint (a grammar engine) allows next: bit (t % 32) of words[t / 32] is
// set when token t is allowed, the layout llguidance and xgrammar write. Bits past the
// vocabulary in the last word are ignored.
struct TokenMask {
    const uint32_t* words = nullptr;
    size_t n_words = 0;

    bool allows(size_t token) const { return (words[token / 32] >> (token % 32)) & 1u; }
};

// The log-probabilities recorded with a sample: log-softmax of the logits the sampler drew from,
// after the mask, logit bias and penalties and before temperature and truncation (top-k, top-p,
// min-p). Without a mask, bias or penalties that is the model's own log-softmax, what OpenAI
// reports; a banned token has -inf and is never listed.
struct TokenLogprobs {
    float logprob = 0.0f;                         // of the sampled token
    std::vector<std::pair<int32_t, float>> top;   // the most likely tokens, most likely first
};

class Sampler {
public:
    explicit Sampler(SamplingParams params);

    // Picks a token from `logits` (vocab floats); `history` is the sequence so far, for penalties.
    // With a `mask`, only tokens it allows can be picked: it is applied before every other step.
    // Throws InvalidArgument for a mask too short for the vocabulary, and ConstraintError when
    // the mask allows no token, or none is left once logit bias and penalties are applied.
    int32_t sample(const float* logits, size_t vocab, const std::vector<int32_t>& history,
                   const TokenMask* mask = nullptr);

    // The log-probabilities recorded by the last sample() (params.logprobs >= 0 only).
    const TokenLogprobs& last_logprobs() const { return last_logprobs_; }
    const SamplingParams& params() const { return params_; }

private:
    int32_t draw(const float* scores, size_t vocab);
    void record_logprobs(const float* scores, size_t vocab, int32_t token);

    SamplingParams params_;
    std::mt19937_64 rng_;
    std::vector<float> adjusted_;
    std::vector<std::pair<float, int32_t>> candidates_;
    std::vector<int32_t> ranked_;
    TokenLogprobs last_logprobs_;
};

}  // namespace lfmrt
