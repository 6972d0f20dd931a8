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
    for (const auto& [token, bias] : logit_bias) {
        require(token >= 0 && token < vocab_size, "logit_bias",
                "names token " + std::to_string(token) + " outside the vocabulary");
        require(!std::isnan(bias), "logit_bias", "has a NaN bias for token " + std::to_string(token));
    }
}

Sampler::Sampler(SamplingParams params) : params_(std::move(params)), rng_(params_.seed) {}

int32_t Sampler::sample(const float* logits, size_t vocab, const std::vector<int32_t>& history) {
    const bool penalised = params_.repetition_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                           params_.frequency_penalty != 0.0f;
    if (params_.temperature == 0.0f && !penalised && params_.logit_bias.empty()) {
        return static_cast<int32_t>(argmax(logits, vocab));  // plain greedy: nothing to adjust
    }
    adjusted_.assign(logits, logits + vocab);
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

    if (params_.temperature == 0.0f) {
        // Greedy; ties go to the lowest id, as argmax does in the reference.
        return static_cast<int32_t>(argmax(adjusted_.data(), vocab));
    }

    // Unnormalised probabilities at this temperature, relative to the most likely token (= 1).
    const float max_logit = *std::max_element(adjusted_.begin(), adjusted_.end());
    if (!(max_logit > -std::numeric_limits<float>::infinity())) return 0;  // everything masked
    candidates_.clear();
    double total = 0;
    for (size_t i = 0; i < vocab; ++i) {
        const float weight = std::exp((adjusted_[i] - max_logit) / params_.temperature);
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
