// A golden model's forward pass through the C++ API alone, checked against transformers'
// logits. Needs no Python at run time, so it runs wherever the runtime does (under qemu for
// the aarch64 build); tests/test_aarch64.py writes its input and runs it.
//
//   lfmrt_forward_test CASE_DIR [ISA]    ISA: a kernel set name, default the best one
//
// CASE_DIR holds three files written by tests/test_aarch64.py (write_forward_case):
//   case.txt     one record per line, fields separated by spaces:
//                  config <field> <value...>                 (ModelConfig; `layers` lists conv/attention)
//                  tensor <name> <dtype> <offset> <nbytes> <dim...>   (bytes in weights.bin)
//                  prompt <offset> <n> <token...>             (logits: n x vocab floats in golden.bin)
//                  atol <max-abs tolerance>
//   weights.bin  the tensors, each at an offset aligned for its type
//   golden.bin   the reference logits, little-endian float32
// Each prompt runs twice on fresh sessions: all of it at once (prefill, matrix products), and
// half of it then the rest one token at a time (decode, matrix-vector products). The KV cache
// is f32 so that only the weights' numerics are measured. Prints one line per check; exits 1
// on any failure, 2 on a bad case directory.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "lfmrt/config.h"
#include "lfmrt/model.h"
#include "lfmrt/session.h"
#include "lfmrt/tensor.h"

namespace {

struct Prompt {
    size_t logits_offset;  // floats into golden.bin
    std::vector<int32_t> tokens;
};

struct Case {
    lfmrt::ModelConfig config;
    std::map<std::string, lfmrt::TensorView> tensors;
    std::shared_ptr<std::vector<uint64_t>> weights;  // 8-byte aligned: every tensor's type is satisfied
    std::vector<float> golden;
    std::vector<Prompt> prompts;
    double atol = 0.0;
};

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
}

void set_config(lfmrt::ModelConfig& c, const std::string& field, std::istringstream& values) {
    if (field == "layers") {
        for (std::string kind; values >> kind;) {
            if (kind != "conv" && kind != "attention") throw std::runtime_error("unknown layer kind " + kind);
            c.layers.push_back(kind == "conv" ? lfmrt::LayerKind::ShortConv : lfmrt::LayerKind::Attention);
        }
        return;
    }
    const std::map<std::string, int64_t*> integers = {
        {"vocab_size", &c.vocab_size}, {"hidden_size", &c.hidden_size}, {"ff_dim", &c.ff_dim},
        {"n_heads", &c.n_heads},       {"n_kv_heads", &c.n_kv_heads},   {"head_dim", &c.head_dim},
        {"conv_kernel", &c.conv_kernel}, {"max_context", &c.max_context}};
    const std::map<std::string, float*> floats = {{"norm_eps", &c.norm_eps}, {"rope_theta", &c.rope_theta}};
    const std::map<std::string, bool*> flags = {{"conv_bias", &c.conv_bias}, {"tie_embeddings", &c.tie_embeddings}};
    if (auto it = integers.find(field); it != integers.end()) {
        values >> *it->second;
    } else if (auto it = floats.find(field); it != floats.end()) {
        values >> *it->second;
    } else if (auto it = flags.find(field); it != flags.end()) {
        int flag = 0;
        values >> flag;
        *it->second = flag != 0;
    } else {
        throw std::runtime_error("unknown config field " + field);
    }
}

Case read_case(const std::string& dir) {
    Case result;
    const std::string weight_bytes = read_file(dir + "/weights.bin");
    result.weights = std::make_shared<std::vector<uint64_t>>((weight_bytes.size() + 7) / 8);
    std::copy(weight_bytes.begin(), weight_bytes.end(), reinterpret_cast<char*>(result.weights->data()));
    const std::string golden_bytes = read_file(dir + "/golden.bin");
    result.golden.resize(golden_bytes.size() / sizeof(float));
    std::copy(golden_bytes.begin(), golden_bytes.end(), reinterpret_cast<char*>(result.golden.data()));

    std::istringstream lines(read_file(dir + "/case.txt"));
    std::string line;
    while (std::getline(lines, line)) {
        std::istringstream fields(line);
        std::string kind;
        if (!(fields >> kind)) continue;
        if (kind == "config") {
            std::string field;
            fields >> field;
            set_config(result.config, field, fields);
        } else if (kind == "tensor") {
            std::string name, dtype;
            size_t offset = 0, nbytes = 0;
            fields >> name >> dtype >> offset >> nbytes;
            lfmrt::TensorView view;
            view.dtype = lfmrt::dtype_from_name(dtype);
            for (int64_t dim; fields >> dim;) view.shape.push_back(dim);
            if (offset + nbytes > weight_bytes.size() || view.nbytes() != nbytes) {
                throw std::runtime_error("tensor " + name + " does not fit weights.bin");
            }
            view.data = reinterpret_cast<const char*>(result.weights->data()) + offset;
            result.tensors[name] = view;
        } else if (kind == "prompt") {
            Prompt prompt;
            size_t n = 0;
            fields >> prompt.logits_offset >> n;
            prompt.tokens.resize(n);
            for (int32_t& token : prompt.tokens) fields >> token;
            result.prompts.push_back(std::move(prompt));
        } else if (kind == "atol") {
            fields >> result.atol;
        } else {
            throw std::runtime_error("unknown record " + kind);
        }
        if (fields.fail() && !fields.eof()) throw std::runtime_error("malformed line: " + line);
    }
    const size_t vocab = static_cast<size_t>(result.config.vocab_size);
    for (const Prompt& p : result.prompts) {
        if (p.logits_offset + p.tokens.size() * vocab > result.golden.size()) {
            throw std::runtime_error("prompt logits do not fit golden.bin");
        }
    }
    if (result.prompts.empty() || result.atol <= 0.0) throw std::runtime_error("no prompts or no tolerance");
    return result;
}

// Largest |got - want| over `n` floats; NaN counts as infinitely wrong.
double max_abs_diff(const float* got, const float* want, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; ++i) {
        const double diff = std::fabs(double(got[i]) - double(want[i]));
        worst = std::isnan(diff) ? INFINITY : std::max(worst, diff);
    }
    return worst;
}

int run(const Case& c, const std::string& isa) {
    lfmrt::ModelOptions options;
    options.device = isa.empty() ? "cpu" : "cpu:" + isa;
    options.kv_dtype = lfmrt::DType::F32;
    options.n_threads = 2;  // the row split across threads is part of what is checked
    const auto model = std::make_shared<const lfmrt::Model>(c.config, c.tensors, c.weights, options);
    std::printf("kernels %s\n", model->kernel_set().c_str());

    const size_t vocab = static_cast<size_t>(c.config.vocab_size);
    int failed = 0;
    const auto check = [&](const std::string& what, const float* got, const float* want, size_t rows) {
        const double worst = max_abs_diff(got, want, rows * vocab);
        const bool ok = worst <= c.atol;
        failed += ok ? 0 : 1;
        std::printf("%s %s: max |diff| %.3g (atol %g)\n", ok ? "PASS" : "FAIL", what.c_str(), worst, c.atol);
    };
    for (size_t i = 0; i < c.prompts.size(); ++i) {
        const Prompt& p = c.prompts[i];
        const float* want = c.golden.data() + p.logits_offset;
        const std::string name = "prompt " + std::to_string(i) + " (" + std::to_string(p.tokens.size()) + " tokens)";

        lfmrt::Session prefill(model);
        const std::vector<float> all = prefill.append(p.tokens, 512, true);
        check(name + " prefill", all.data(), want, p.tokens.size());

        lfmrt::Session decode(model);
        const size_t half = p.tokens.size() / 2;
        std::vector<float> logits;
        if (half > 0) logits = decode.append({p.tokens.begin(), p.tokens.begin() + half}, 512, true);
        for (size_t t = half; t < p.tokens.size(); ++t) {
            const std::vector<float> step = decode.append({p.tokens[t]}, 512, false);
            logits.insert(logits.end(), step.begin(), step.end());
        }
        check(name + " prefill half, decode the rest", logits.data(), want, p.tokens.size());
    }
    std::printf("%d failed\n", failed);
    return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || argc > 3) {
        std::fprintf(stderr, "usage: %s CASE_DIR [ISA]\n", argv[0]);
        return 2;
    }
    Case c;
    try {
        c = read_case(argv[1]);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bad case %s: %s\n", argv[1], e.what());
        return 2;
    }
    try {
        return run(c, argc == 3 ? argv[2] : "");
    } catch (const std::exception& e) {  // e.g. a kernel set this CPU lacks
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
