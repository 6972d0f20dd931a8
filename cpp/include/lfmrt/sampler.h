// Turns logits into the next token: penalties, temperature, top-k, top-p, min-p, seed.
#pragma once

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
    std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logits before anything else

    // Throws InvalidArgument naming the first field out of range.
    void validate(int64_t vocab_size) const;
};

class Sampler {
public:
    explicit Sampler(SamplingParams params);

    // Picks a token from `logits` (vocab floats); `history` is the sequence so far, for penalties.
    int32_t sample(const float* logits, size_t vocab, const std::vector<int32_t>& history);

private:
    SamplingParams params_;
    std::mt19937_64 rng_;
    std::vector<float> adjusted_;
    std::vector<std::pair<float, int32_t>> candidates_;
};

}  // namespace lfmrt
