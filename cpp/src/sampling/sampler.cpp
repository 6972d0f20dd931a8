#include "lfmrt/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <unordered_map>

#include "core/argmax.h"
#include "lfmrt/error.h"

namespace lfmrt {

namespace {
void require(bool ok, const char* field, const std::string& why) {
    if (!ok) throw InvalidArgument(std::string(field) + " " + why);
}

}  // namespace

void SamplingParams::validate(int64_t vocab_size) const {
    require(std::isfinite(temperature) && temperature >= 0, "temperature", "must be >= 0");
    require(top_k >= 0, "top_k", "must be >= 0 (0 disables it)");
    require(top_p > 0 && top_p <= 1, "top_p", "must be in (0, 1]");
    require(min_p >= 0 && min_p <= 1, "min_p", "must be in [0, 1]");
    require(std::isfinite(repetition_penalty) && repetition_penalty > 0, "repetition_penalty", "must be > 0");
    require(std::isfinite(presence_penalty), "presence_penalty", "must be finite");
    require(std::isfinite(frequency_penalty), "frequency_penalty", "must be finite");
    require(logprobs >= -1 && logprobs <= kMaxTopLogprobs, "top_logprobs",
            "must be in [0, " + std::to_string(kMaxTopLogprobs) + "]");
    for (const auto& [token, bias] : logit_bias) {
        require(token >= 0 && token < vocab_size, "logit_bias",
                "names token " + std::to_string(token) + " outside the vocabulary");
        require(!std::isnan(bias), "logit_bias", "has a NaN bias for token " + std::to_string(token));
    }
}

Sampler::Sampler(SamplingParams params) : params_(std::move(params)), rng_(params_.seed) {}

namespace {

// InvalidArgument when the mask is too short; ConstraintError when it allows no token at all.
void check_mask(const TokenMask& mask, size_t vocab) {
    const size_t needed = (vocab + 31) / 32;
    if (mask.words == nullptr || mask.n_words < needed) {
        throw InvalidArgument("the token mask has " + std::to_string(mask.n_words) + " 32-bit words; a vocabulary of " +
                              std::to_string(vocab) + " tokens needs " + std::to_string(needed));
    }
    for (size_t w = 0; w + 1 < needed; ++w) {
        if (mask.words[w] != 0) return;
    }
    const size_t tail_bits = vocab - (needed - 1) * 32;  // 1..32 tokens in the last word
    const uint32_t tail = tail_bits == 32 ? ~0u : (1u << tail_bits) - 1u;
    if ((mask.words[needed - 1] & tail) != 0) return;
    throw ConstraintError("the constraint allows no next token (its grammar has no continuation here)");
}

// Banned tokens get -inf, so no later step (bias, penalties, temperature) can bring them back.
void apply_mask(const TokenMask& mask, float* scores, size_t vocab) {
    constexpr float banned = -std::numeric_limits<float>::infinity();
    for (size_t w = 0; w * 32 < vocab; ++w) {
        const uint32_t word = mask.words[w];
        if (word == ~0u) continue;
        const size_t end = std::min(vocab, w * 32 + 32);
        for (size_t t = w * 32; t < end; ++t) {
            if (!((word >> (t % 32)) & 1u)) scores[t] = banned;
        }
    }
}

}  // namespace

int32_t Sampler::sample(const float* logits, size_t vocab, const std::vector<int32_t>& history, const TokenMask* mask) {
    if (mask != nullptr) check_mask(*mask, vocab);
    const bool penalised = params_.repetition_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                           params_.frequency_penalty != 0.0f;
    const float* scores = logits;  // plain greedy and plain sampling read the logits as they are
    if (mask != nullptr || penalised || !params_.logit_bias.empty()) {
        adjusted_.assign(logits, logits + vocab);
        if (mask != nullptr) apply_mask(*mask, adjusted_.data(), vocab);
        for (const auto& [token, bias] : params_.logit_bias) adjusted_[static_cast<size_t>(token)] += bias;
        if (penalised) {
            std::unordered_map<int32_t, int> counts;
            for (int32_t token : history) {
                if (token >= 0 && static_cast<size_t>(token) < vocab) ++counts[token];
            }
            for (const auto& [token, count] : counts) {
                float& logit = adjusted_[static_cast<size_t>(token)];
                logit = logit > 0 ? logit / params_.repetition_penalty : logit * params_.repetition_penalty;
                logit -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(count);
            }
        }
        scores = adjusted_.data();
        if (mask != nullptr) {
            constexpr float banned = -std::numeric_limits<float>::infinity();
            const bool any_left = std::any_of(adjusted_.begin(), adjusted_.end(), [](float s) { return s > banned; });
            if (!any_left) {
                throw ConstraintError(
                    "every token the constraint allows next has probability 0 after logit_bias and penalties");
            }
        }
    }
    // Greedy ties go to the lowest id, as argmax does in the reference.
    const auto token = params_.temperature == 0.0f ? static_cast<int32_t>(argmax(scores, vocab)) : draw(scores, vocab);
    if (params_.logprobs >= 0) record_logprobs(scores, vocab, token);
    return token;
}

void Sampler::record_logprobs(const float* scores, size_t vocab, int32_t token) {
    // log-softmax over the tokens still possible (NaN and -inf scores are not).
    constexpr float banned = -std::numeric_limits<float>::infinity();
    float max_score = banned;
    for (size_t i = 0; i < vocab; ++i) max_score = std::max(max_score, scores[i] > banned ? scores[i] : banned);
    double total = 0;
    for (size_t i = 0; i < vocab; ++i) {
        if (scores[i] > banned) total += std::exp(static_cast<double>(scores[i]) - max_score);
    }
    const double log_total = static_cast<double>(max_score) + std::log(total);
    const auto logprob = [&](size_t i) {
        return scores[i] > banned ? static_cast<float>(scores[i] - log_total) : banned;
    };
    last_logprobs_.logprob = logprob(static_cast<size_t>(token));
    last_logprobs_.top.clear();
    ranked_.clear();
    for (size_t i = 0; i < vocab; ++i) {
        if (scores[i] > banned) ranked_.push_back(static_cast<int32_t>(i));
    }
    const auto k = std::min(ranked_.size(), static_cast<size_t>(params_.logprobs));
    const auto more_likely = [&](int32_t a, int32_t b) { return scores[a] > scores[b] || (scores[a] == scores[b] && a < b); };
    std::partial_sort(ranked_.begin(), ranked_.begin() + static_cast<ptrdiff_t>(k), ranked_.end(), more_likely);
    for (size_t i = 0; i < k; ++i) last_logprobs_.top.emplace_back(ranked_[i], logprob(static_cast<size_t>(ranked_[i])));
}

int32_t Sampler::draw(const float* scores, size_t vocab) {
    // Unnormalised probabilities at this temperature, relative to the most likely token (= 1).
    const float max_logit = *std::max_element(scores, scores + vocab);
    if (!(max_logit > -std::numeric_limits<float>::infinity())) return 0;  // everything -inf, no mask given
    candidates_.clear();
    double total = 0;
    for (size_t i = 0; i < vocab; ++i) {
        const float weight = std::exp((scores[i] - max_logit) / params_.temperature);
        if (weight > 0) {
            candidates_.emplace_back(weight, static_cast<int32_t>(i));
            total += weight;
        }
    }

    // top-k, then top-p: both keep a head of the list sorted by probability, so only that head
    // is sorted (grown geometrically until it holds top_p of the mass), not the whole vocabulary.
    const auto more_likely = [](const auto& a, const auto& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    size_t keep = candidates_.size();
    if (params_.top_k > 0) keep = std::min(keep, static_cast<size_t>(params_.top_k));
    const bool nucleus = params_.top_p < 1.0f;
    size_t sorted = 0;
    if (keep < candidates_.size() || nucleus) {
        for (size_t head = std::min<size_t>(keep, 64);; head = std::min(keep, head * 4)) {
            std::partial_sort(candidates_.begin() + static_cast<ptrdiff_t>(sorted),
                              candidates_.begin() + static_cast<ptrdiff_t>(head), candidates_.end(), more_likely);
            sorted = head;
            if (!nucleus || head == keep) break;
            double mass = 0;
            for (size_t i = 0; i < head; ++i) mass += candidates_[i].first;
            if (mass >= params_.top_p * total) break;
        }
        candidates_.resize(keep);
        if (nucleus) {
            double kept_total = 0;
            for (const auto& candidate : candidates_) kept_total += candidate.first;
            double cumulative = 0;
            size_t cut = 0;
            while (cut < candidates_.size() && cumulative < params_.top_p * kept_total) {
                cumulative += candidates_[cut++].first;
            }
            candidates_.resize(std::max<size_t>(cut, 1));
        }
    }
    // min-p: drop tokens less likely than min_p times the most likely one (whose weight is 1).
    if (params_.min_p > 0) {
        candidates_.erase(std::remove_if(candidates_.begin(), candidates_.end(),
                                         [&](const auto& c) { return c.first < params_.min_p; }),
                          candidates_.end());
    }

    double mass = 0;
    for (const auto& candidate : candidates_) mass += candidate.first;
    std::uniform_real_distribution<double> uniform(0.0, mass);
    double target = uniform(rng_);
    for (const auto& [weight, token] : candidates_) {
        target -= weight;
        if (target < 0) return token;
    }
    return candidates_.back().second;
}

}  // namespace lfmrt
