// Every op of every backend present, checked against the CPU backend's scalar kernel set on
// odd sizes and tails (as llama.cpp's test-backend-ops checks each backend against the CPU), so
// a backend is right op by op before it runs a whole model.
//
//   lfmrt_backend_ops_test [DEVICE ...]
//   lfmrt_backend_ops_test --devices    (every device but the CPU; exits 2 when there is none)
//
// Default: every CPU kernel set this CPU runs, then every other device lfmrt::list_devices()
// reports. The reference is always "cpu:scalar". A quantized matmul's reference is the scalar
// kernels on the same matrix: every backend rounds the activations of a quantized matrix as the
// CPU's integer kernels do, so results differ by the rounding of the sums alone. Prints one line
// per check; exits 1 on any failure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/cpu/dispatch.h"
#include "backends/registry.h"
#include "formats/quantize.h"
#include "lfmrt/backend.h"
#include "lfmrt/error.h"
#include "report.h"

namespace {

using lfmrt::DType;
using lfmrt::StateLayout;
using lfmrt::backend::Backend;
using lfmrt::backend::Buffer;
using lfmrt::backend::Matrix;
using lfmrt::backend::MatrixUse;

using lfmrt::test::Report;

// Aggregates many comparisons into one line: |got - want| <= tol * scale (+ a tiny floor).
class Check {
public:
    void close(double got, double want, double scale, double tol, const std::function<std::string()>& where) {
        ++cases_;
        const double limit = tol * scale + 1e-30;
        const double err = std::fabs(got - want);
        const bool ok = err <= limit && !std::isnan(got) == !std::isnan(want);
        worst_ = std::max(worst_, std::isnan(err) ? INFINITY : err / limit);
        if (!ok && first_failure_.empty()) {
            first_failure_ = where() + ": got " + std::to_string(got) + ", want " + std::to_string(want);
        }
        if (!ok) ++bad_;
    }
    void that(bool ok, const std::string& what) {
        ++cases_;
        if (!ok) {
            ++bad_;
            if (first_failure_.empty()) first_failure_ = what;
        }
    }
    void finish(Report& report, const std::string& name) const {
        char detail[160];
        std::snprintf(detail, sizeof detail, "%zu cases, %zu bad, worst %.3g of tolerance", cases_, bad_, worst_);
        report.record(bad_ == 0 && cases_ > 0, name, bad_ == 0 ? detail : std::string(detail) + "; " + first_failure_);
    }

private:
    size_t cases_ = 0, bad_ = 0;
    double worst_ = 0;
    std::string first_failure_;
};

std::vector<float> random_floats(size_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> values(n);
    for (float& v : values) v = dist(rng);
    return values;
}

std::vector<float> read_floats(Backend& backend, const Buffer& buffer, size_t count) {
    std::vector<float> values(count);
    backend.read(buffer, 0, count * sizeof(float), values.data());
    return values;
}

// A device under test and the reference, each with its own copies of every input.
struct Pair {
    Backend& test;
    Backend& ref;
};

// --- matmul and embed ----------------------------------------------------------------------

// A random matrix quantized to `dtype`: its bytes, and those bytes widened back to fp32.
struct RandomMatrix {
    DType dtype;
    size_t rows, cols;
    std::vector<uint8_t> bytes;
    std::vector<float> values;  // dequantized

    RandomMatrix(DType d, size_t r, size_t c, std::mt19937& rng) : dtype(d), rows(r), cols(c) {
        const std::vector<float> source = random_floats(r * c, rng);
        const size_t row = lfmrt::row_bytes(d, c);
        bytes.resize(r * row);
        values.resize(r * c);
        for (size_t i = 0; i < r; ++i) {
            lfmrt::quant::quantize_row(d, source.data() + i * c, bytes.data() + i * row, c);
            lfmrt::quant::dequantize_row(d, bytes.data() + i * row, values.data() + i * c, c);
        }
    }
    lfmrt::TensorView view(DType as) const {
        lfmrt::TensorView v;
        v.data = as == dtype ? static_cast<const void*>(bytes.data()) : values.data();
        v.dtype = as;
        v.shape = {int64_t(rows), int64_t(cols)};
        return v;
    }
};

std::shared_ptr<const Matrix> upload(Backend& backend, const RandomMatrix& m, DType as, MatrixUse use) {
    return backend.upload_matrices({{"m", m.view(as), use}})[0];
}

std::vector<size_t> cols_for(DType dtype) {
    switch (lfmrt::block_elems(dtype)) {
        case 1: return {1, 7, 33, 100, 1031};
        case 32: return {32, 96, 1056};
        default: return {256, 768, 2304};
    }
}

void test_matmul(Report& report, const Pair& p, DType dtype, std::mt19937& rng) {
    Check check;
    for (size_t cols : cols_for(dtype)) {
        for (size_t rows : {1, 17, 300}) {
            // Three projections of different heights sharing the input, as q/k/v do.
            std::vector<RandomMatrix> ms;
            for (size_t r : {rows, rows / 2 + 1, size_t(5)}) ms.emplace_back(dtype, r, cols, rng);
            std::vector<std::shared_ptr<const Matrix>> on_test, on_ref;
            for (const RandomMatrix& m : ms) {
                on_test.push_back(upload(p.test, m, dtype, MatrixUse::Multiply));
                on_ref.push_back(upload(p.ref, m, dtype, MatrixUse::Multiply));
            }
            for (size_t n : {1, 3, 16, 33}) {
                const std::vector<float> x = random_floats(n * cols, rng);
                const auto run = [&](Backend& b, const std::vector<std::shared_ptr<const Matrix>>& w) {
                    const auto in = b.upload(x.data(), x.size());
                    std::vector<std::unique_ptr<Buffer>> ys;
                    for (const RandomMatrix& m : ms) ys.push_back(b.allocate(n * m.rows * sizeof(float)));
                    b.matmul({{*w[0], *ys[0]}, {*w[1], *ys[1]}, {*w[2], *ys[2]}}, *in, n);
                    std::vector<std::vector<float>> out;
                    for (size_t i = 0; i < ms.size(); ++i) out.push_back(read_floats(b, *ys[i], n * ms[i].rows));
                    return out;
                };
                const auto got = run(p.test, on_test), want = run(p.ref, on_ref);
                for (size_t i = 0; i < ms.size(); ++i) {
                    for (size_t t = 0; t < n; ++t) {
                        for (size_t r = 0; r < ms[i].rows; ++r) {
                            // Rounding in a dot scales with sum |w x|.
                            double scale = 0;
                            for (size_t k = 0; k < cols; ++k) scale += std::fabs(ms[i].values[r * cols + k] * x[t * cols + k]);
                            check.close(got[i][t * ms[i].rows + r], want[i][t * ms[i].rows + r], scale, 2e-6, [&] {
                                return std::to_string(ms[i].rows) + "x" + std::to_string(cols) + " n=" +
                                       std::to_string(n) + " token " + std::to_string(t) + " row " + std::to_string(r);
                            });
                        }
                    }
                }
            }
        }
    }
    check.finish(report, p.test.device() + " matmul " + lfmrt::dtype_name(dtype));
}

// A step of `sequences` (n, n_past) pairs with the given tokens; no state.
lfmrt::backend::Step plain_step(const std::vector<int32_t>& tokens) {
    lfmrt::backend::Step step;
    step.tokens = tokens.data();
    step.n = tokens.size();
    step.sequences.push_back({0, tokens.size(), 0, 0, {}});
    return step;
}

void init_no_state(Backend& b) {
    StateLayout layout;
    layout.hidden = 1;
    b.init_state(layout);
}

// Lookups read a matrix in whatever layout its use gave it (the CPU repacks a tied embedding,
// looked up and multiplied, into panels).
void test_embed(Report& report, const Pair& p, DType dtype, std::mt19937& rng) {
    Check check;
    const size_t vocab = 300;
    for (size_t hidden : cols_for(dtype)) {
        const RandomMatrix m(dtype, vocab, hidden, rng);
        std::vector<int32_t> tokens = {0, int32_t(vocab - 1), 7, 7, 123, 17, 16, 15};
        for (Backend* b : {&p.test, &p.ref}) b->begin_step(plain_step(tokens));
        const auto table_ref = upload(p.ref, m, dtype, MatrixUse::Lookup);
        const auto out_ref = p.ref.allocate(tokens.size() * hidden * sizeof(float));
        p.ref.embed(*table_ref, *out_ref);
        const auto want = read_floats(p.ref, *out_ref, tokens.size() * hidden);
        for (MatrixUse use : {MatrixUse::Lookup, MatrixUse::MultiplyAndLookup}) {
            const auto table_test = upload(p.test, m, dtype, use);
            const auto out_test = p.test.allocate(tokens.size() * hidden * sizeof(float));
            p.test.embed(*table_test, *out_test);
            const auto got = read_floats(p.test, *out_test, tokens.size() * hidden);
            for (size_t i = 0; i < got.size(); ++i) {
                check.close(got[i], want[i], std::fabs(want[i]), 1e-6, [&] {
                    return "hidden " + std::to_string(hidden) + (use == MatrixUse::Lookup ? " lookup" : " multiply+lookup");
                });
            }
        }
    }
    check.finish(report, p.test.device() + " embed " + lfmrt::dtype_name(dtype));
}

// --- elementwise ops -----------------------------------------------------------------------

// Runs `op` on both backends over the same inputs and compares the first output's values.
struct Inputs {
    std::vector<std::vector<float>> values;
};

using BufferOp = std::function<void(Backend&, std::vector<std::unique_ptr<Buffer>>&)>;

// Uploads `inputs` to each backend, runs op over them and compares buffer `result` (of `count`
// values) elementwise, relative to each reference value.
void compare_op(Check& check, const Pair& p, const Inputs& inputs, const BufferOp& op, size_t result, size_t count,
                double tol, const std::string& where) {
    std::vector<std::vector<float>> outs;
    for (Backend* b : {&p.test, &p.ref}) {
        std::vector<std::unique_ptr<Buffer>> buffers;
        for (const auto& v : inputs.values) buffers.push_back(b->upload(v.data(), v.size()));
        op(*b, buffers);
        outs.push_back(read_floats(*b, *buffers[result], count));
    }
    for (size_t i = 0; i < count; ++i) {
        check.close(outs[0][i], outs[1][i], std::max(1.0, double(std::fabs(outs[1][i]))), tol,
                    [&] { return where + " value " + std::to_string(i); });
    }
}

void test_elementwise(Report& report, const Pair& p, std::mt19937& rng) {
    const std::vector<size_t> widths = {1, 7, 64, 100, 1031};
    {
        Check check;
        for (size_t width : widths) {
            for (size_t rows : {1, 5}) {
                const Inputs in{{random_floats(rows * width, rng, -3, 3), random_floats(width, rng),
                                 std::vector<float>(rows * width)}};
                for (bool in_place : {false, true}) {
                    compare_op(check, p, in,
                               [&](Backend& b, auto& buf) {
                                   b.rmsnorm(*buf[0], *buf[1], width, rows, 1e-5f, in_place ? *buf[0] : *buf[2]);
                               },
                               in_place ? 0 : 2, rows * width, 2e-6, "width " + std::to_string(width));
                }
            }
        }
        check.finish(report, p.test.device() + " rmsnorm");
    }
    {
        Check check;
        for (size_t width : widths) {
            const size_t rows = 3;
            const Inputs in{{random_floats(rows * width, rng), random_floats(width, rng)}};
            compare_op(check, p, in, [&](Backend& b, auto& buf) { b.add_bias(*buf[0], *buf[1], width, rows); }, 0,
                       rows * width, 1e-7, "width " + std::to_string(width));
            const Inputs sum{{random_floats(rows * width, rng), random_floats(rows * width, rng)}};
            compare_op(check, p, sum, [&](Backend& b, auto& buf) { b.add(*buf[0], *buf[1], rows * width); }, 0,
                       rows * width, 1e-7, "add width " + std::to_string(width));
        }
        check.finish(report, p.test.device() + " add_bias, add");
    }
    {
        Check check;
        for (size_t count : {1, 7, 8, 100, 4608, 20001}) {
            const Inputs in{{random_floats(count, rng, -8, 8), random_floats(count, rng), std::vector<float>(count)}};
            compare_op(check, p, in, [&](Backend& b, auto& buf) { b.silu_mul(*buf[0], *buf[1], *buf[2], count); }, 2,
                       count, 2e-6, "count " + std::to_string(count));
            compare_op(check, p, in, [&](Backend& b, auto& buf) { b.silu_mul(*buf[0], *buf[1], *buf[0], count); }, 0,
                       count, 2e-6, "in place, count " + std::to_string(count));
        }
        check.finish(report, p.test.device() + " silu_mul");
    }
    {
        Check check;
        for (size_t width : widths) {
            const std::vector<uint32_t> rows = {4, 0, 4, 2};
            const Inputs in{{random_floats(5 * width, rng), std::vector<float>(rows.size() * width)}};
            compare_op(check, p, in, [&](Backend& b, auto& buf) { b.gather_rows(*buf[0], width, rows, *buf[1]); }, 1,
                       rows.size() * width, 0.0, "width " + std::to_string(width));
        }
        check.finish(report, p.test.device() + " gather_rows");
    }
    {
        Check check;
        for (size_t width : {1, 7, 1000, 65536}) {
            const size_t rows = 4;
            std::vector<float> x = random_floats(rows * width, rng);
            x[1 * width + width / 2] = 5.0f;  // row 1: a tie at two places, the lower wins
            x[1 * width + width - 1] = 5.0f;
            x[2 * width] = NAN;  // row 2: a NaN never wins
            std::vector<int32_t> got(rows), want(rows);
            for (auto [b, ids] : {std::pair{&p.test, &got}, std::pair{&p.ref, &want}}) {
                const auto buffer = b->upload(x.data(), x.size());
                b->argmax(*buffer, width, rows, ids->data());
            }
            for (size_t r = 0; r < rows; ++r) {
                check.that(got[r] == want[r], "width " + std::to_string(width) + " row " + std::to_string(r) + ": " +
                                                  std::to_string(got[r]) + " vs " + std::to_string(want[r]));
            }
        }
        check.finish(report, p.test.device() + " argmax");
    }
}

// --- ops with positions and state ------------------------------------------------------------

// Sequences (n, n_past) making up a step; rows follow each other.
struct SequenceShape {
    size_t n, n_past;
};

// A step over the given sequences; conv states and KV pages from `pages_of` (per sequence).
lfmrt::backend::Step state_step(const std::vector<SequenceShape>& shapes, const std::vector<int32_t>& tokens,
                                const std::vector<uint32_t>& conv_states,
                                const std::vector<std::vector<uint32_t>>& pages) {
    lfmrt::backend::Step step;
    step.tokens = tokens.data();
    size_t row = 0;
    for (size_t i = 0; i < shapes.size(); ++i) {
        step.sequences.push_back({row, shapes[i].n, shapes[i].n_past, conv_states.empty() ? 0 : conv_states[i],
                                  pages.empty() ? std::vector<uint32_t>() : pages[i]});
        row += shapes[i].n;
    }
    step.n = row;
    return step;
}

void test_rope(Report& report, const Pair& p, std::mt19937& rng) {
    Check check;
    for (size_t head_dim : {16, 64}) {
        const std::vector<SequenceShape> shapes = {{3, 0}, {1, 32767}, {5, 1000}};
        std::vector<int32_t> tokens(9, 0);
        std::vector<float> inv_freq(head_dim / 2);
        for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = 1.0f / std::pow(1e6f, float(2 * i) / float(head_dim));
        const size_t nq = 4, nk = 2, rows = tokens.size();
        const Inputs in{{random_floats(rows * nq * head_dim, rng), random_floats(rows * nk * head_dim, rng), inv_freq}};
        for (Backend* b : {&p.test, &p.ref}) b->begin_step(state_step(shapes, tokens, {}, {}));
        const BufferOp op = [&](Backend& b, auto& buf) { b.rope(*buf[0], nq, *buf[1], nk, head_dim, *buf[2]); };
        // Angles reach 32767 radians: both sides take fp32 cos/sin of the same fp32 angle.
        compare_op(check, p, in, op, 0, rows * nq * head_dim, 2e-6, "q, head_dim " + std::to_string(head_dim));
        compare_op(check, p, in, op, 1, rows * nk * head_dim, 2e-6, "k, head_dim " + std::to_string(head_dim));
    }
    check.finish(report, p.test.device() + " rope");
}

void test_short_conv(Report& report, const Pair& p, std::mt19937& rng) {
    Check check;
    for (size_t hidden : {7, 64, 100}) {
        for (size_t kernel : {2, 3, 4}) {
            for (bool with_bias : {false, true}) {
                StateLayout layout;
                layout.n_conv_layers = 2;
                layout.conv_history = kernel - 1;
                layout.hidden = hidden;
                const std::vector<SequenceShape> shapes = {{1, 4}, {5, 0}, {2, 9}};
                std::vector<int32_t> tokens(8, 0);
                const size_t rows = tokens.size();
                const std::vector<float> bcx = random_floats(rows * 3 * hidden, rng);
                const std::vector<float> taps = random_floats(kernel * hidden, rng);
                const std::vector<float> bias = random_floats(hidden, rng);
                std::vector<std::vector<float>> states;
                for (size_t i = 0; i < shapes.size(); ++i) states.push_back(random_floats(layout.conv_state_bytes() / 4, rng));
                std::vector<std::vector<float>> outs, new_states;
                for (Backend* b : {&p.test, &p.ref}) {
                    b->init_state(layout);
                    std::vector<uint32_t> ids;
                    for (const auto& state : states) {
                        ids.push_back(b->conv_states().allocate());
                        b->conv_states().write(ids.back(), 0, layout.conv_state_bytes(), state.data());
                    }
                    b->begin_step(state_step(shapes, tokens, ids, {}));
                    const auto bcx_buffer = b->upload(bcx.data(), bcx.size());
                    const auto taps_buffer = b->upload(taps.data(), taps.size());
                    const auto bias_buffer = b->upload(bias.data(), bias.size());
                    const auto out = b->allocate(rows * hidden * sizeof(float));
                    b->short_conv(1, *bcx_buffer, *taps_buffer, with_bias ? bias_buffer.get() : nullptr, kernel, *out);
                    outs.push_back(read_floats(*b, *out, rows * hidden));
                    std::vector<float> all;
                    for (uint32_t id : ids) {
                        std::vector<float> state(layout.conv_state_bytes() / 4);
                        b->conv_states().read(id, 0, layout.conv_state_bytes(), state.data());
                        all.insert(all.end(), state.begin(), state.end());
                        b->conv_states().release(id);
                    }
                    new_states.push_back(all);
                }
                const std::string where = "hidden " + std::to_string(hidden) + " kernel " + std::to_string(kernel);
                for (size_t i = 0; i < outs[0].size(); ++i) {
                    check.close(outs[0][i], outs[1][i], std::max(1.0f, std::fabs(outs[1][i])), 2e-6,
                                [&] { return where + " out " + std::to_string(i); });
                }
                // The states: layer 0 untouched, layer 1 the last B*x rows.
                for (size_t i = 0; i < new_states[0].size(); ++i) {
                    check.close(new_states[0][i], new_states[1][i], std::max(1.0f, std::fabs(new_states[1][i])), 1e-7,
                                [&] { return where + " state " + std::to_string(i); });
                }
            }
        }
    }
    check.finish(report, p.test.device() + " short_conv");
}

// kv_store then attention over pages already holding earlier positions, for each KV type.
void test_attention(Report& report, const Pair& p, DType kv_dtype, std::mt19937& rng) {
    Check check;
    for (size_t head_dim : {32, 64}) {
        for (auto [n_heads, n_kv_heads] : {std::pair<size_t, size_t>{2, 1}, {4, 2}, {6, 3}, {18, 2}}) {
            StateLayout layout;
            layout.n_attention_layers = 2;
            layout.n_kv_heads = n_kv_heads;
            layout.head_dim = head_dim;
            layout.kv_dtype = kv_dtype;
            layout.page_positions = 256;
            layout.hidden = 1;
            // Sequences starting fresh, mid-page, and crossing a page boundary in this step.
            const std::vector<SequenceShape> shapes = {{3, 0}, {1, 700}, {17, 250}};
            std::vector<int32_t> tokens(21, 0);
            const size_t rows = tokens.size(), q_width = n_heads * head_dim, kv_width = n_kv_heads * head_dim;
            // Earlier positions' pages: the same random bytes on both (valid values of kv_dtype).
            std::vector<std::vector<std::vector<uint8_t>>> page_bytes;  // [sequence][page]
            for (const SequenceShape& s : shapes) {
                std::vector<std::vector<uint8_t>> pages;
                for (size_t page = 0; page * 256 < s.n_past + s.n; ++page) {
                    const size_t values = layout.kv_page_bytes() / lfmrt::row_bytes(kv_dtype, head_dim) * head_dim;
                    const std::vector<float> v = random_floats(values, rng, -2, 2);
                    std::vector<uint8_t> bytes(layout.kv_page_bytes());
                    for (size_t i = 0; i < values / head_dim; ++i) {
                        lfmrt::quant::quantize_row(kv_dtype, v.data() + i * head_dim,
                                                   bytes.data() + i * lfmrt::row_bytes(kv_dtype, head_dim), head_dim);
                    }
                    pages.push_back(std::move(bytes));
                }
                page_bytes.push_back(std::move(pages));
            }
            const std::vector<float> q = random_floats(rows * q_width, rng, -2, 2);
            const std::vector<float> k = random_floats(rows * kv_width, rng, -2, 2);
            const std::vector<float> v = random_floats(rows * kv_width, rng, -2, 2);
            std::vector<std::vector<float>> outs;
            std::vector<std::vector<std::vector<uint8_t>>> stored;  // [backend][page, all sequences]
            for (Backend* b : {&p.test, &p.ref}) {
                b->init_state(layout);
                std::vector<std::vector<uint32_t>> ids(shapes.size());
                for (size_t s = 0; s < shapes.size(); ++s) {
                    for (const auto& bytes : page_bytes[s]) {
                        ids[s].push_back(b->kv_pages().allocate());
                        b->kv_pages().write(ids[s].back(), 0, bytes.size(), bytes.data());
                    }
                }
                b->begin_step(state_step(shapes, tokens, {}, ids));
                const auto q_buffer = b->upload(q.data(), q.size());
                const auto k_buffer = b->upload(k.data(), k.size());
                const auto v_buffer = b->upload(v.data(), v.size());
                const auto out = b->allocate(rows * q_width * sizeof(float));
                b->kv_store(1, *k_buffer, *v_buffer);
                b->attention(1, *q_buffer, n_heads, *out);
                outs.push_back(read_floats(*b, *out, rows * q_width));
                std::vector<std::vector<uint8_t>> pages;
                for (const auto& sequence : ids) {
                    for (uint32_t id : sequence) {
                        pages.emplace_back(layout.kv_page_bytes());
                        b->kv_pages().read(id, 0, pages.back().size(), pages.back().data());
                        b->kv_pages().release(id);
                    }
                }
                stored.push_back(std::move(pages));
            }
            const std::string where = std::string(lfmrt::dtype_name(kv_dtype)) + " head_dim " + std::to_string(head_dim) +
                                      " heads " + std::to_string(n_heads) + "/" + std::to_string(n_kv_heads);
            for (size_t i = 0; i < outs[0].size(); ++i) {
                check.close(outs[0][i], outs[1][i], 1.0, 2e-5, [&] { return where + " out " + std::to_string(i); });
            }
            // The reference itself against attention written out naively in double precision
            // over the values it stored (its three paths: per-query kernels for the 3-query
            // sequence, split pages for the decode one, matrix products for the 17-query block).
            {
                const size_t group = n_heads / n_kv_heads, slice_bytes = lfmrt::row_bytes(kv_dtype, head_dim);
                std::vector<float> key(head_dim), value(head_dim);
                size_t page_index = 0, row = 0;
                for (const SequenceShape& shape : shapes) {
                    const size_t n_pages = (shape.n_past + shape.n + 255) / 256;
                    const auto stored_at = [&](size_t position, bool values_part, size_t kv_head, float* out) {
                        const auto& page = stored[1][page_index + position / 256];
                        lfmrt::quant::dequantize_row(
                            kv_dtype, page.data() + layout.kv_run_offset(1, values_part, kv_head) + (position % 256) * slice_bytes,
                            out, head_dim);
                    };
                    for (size_t t = 0; t < shape.n; ++t, ++row) {
                        const size_t n_ctx = shape.n_past + t + 1;
                        for (size_t h = 0; h < n_heads; ++h) {
                            const size_t kv_head = h / group;
                            std::vector<double> scores(n_ctx);
                            double top = -INFINITY;
                            for (size_t j = 0; j < n_ctx; ++j) {
                                stored_at(j, false, kv_head, key.data());
                                double dot = 0;
                                for (size_t i = 0; i < head_dim; ++i) dot += double(q[row * q_width + h * head_dim + i]) * key[i];
                                scores[j] = dot / std::sqrt(double(head_dim));
                                top = std::max(top, scores[j]);
                            }
                            double sum = 0;
                            for (double& x : scores) sum += (x = std::exp(x - top));
                            std::vector<double> mixed(head_dim, 0.0);
                            for (size_t j = 0; j < n_ctx; ++j) {
                                stored_at(j, true, kv_head, value.data());
                                for (size_t i = 0; i < head_dim; ++i) mixed[i] += scores[j] / sum * value[i];
                            }
                            for (size_t i = 0; i < head_dim; ++i) {
                                check.close(outs[1][row * q_width + h * head_dim + i], mixed[i], 1.0, 2e-5,
                                            [&] { return where + " reference vs naive, row " + std::to_string(row); });
                            }
                        }
                    }
                    page_index += n_pages;
                }
            }
            // The stored pages, compared as values (a Q8_0 rounding tie may differ by one level).
            const size_t slice = lfmrt::row_bytes(kv_dtype, head_dim);
            std::vector<float> a(head_dim), b(head_dim);
            for (size_t page = 0; page < stored[0].size(); ++page) {
                for (size_t offset = 0; offset < layout.kv_page_bytes(); offset += slice) {
                    lfmrt::quant::dequantize_row(kv_dtype, stored[0][page].data() + offset, a.data(), head_dim);
                    lfmrt::quant::dequantize_row(kv_dtype, stored[1][page].data() + offset, b.data(), head_dim);
                    const double step = kv_dtype == DType::Q8_0 ? 2.0 / 127 : 0.0;
                    for (size_t i = 0; i < head_dim; ++i) {
                        check.close(a[i], b[i], 1.0, step + 1e-7, [&] { return where + " stored page " + std::to_string(page); });
                    }
                }
            }
        }
    }
    check.finish(report, p.test.device() + " kv_store + attention, KV " + lfmrt::dtype_name(kv_dtype));
}

void test_pools(Report& report, Backend& b, std::mt19937& rng) {
    Check check;
    StateLayout layout;
    layout.n_attention_layers = 1;
    layout.n_kv_heads = 2;
    layout.head_dim = 32;
    layout.kv_dtype = DType::F16;
    layout.n_conv_layers = 3;
    layout.conv_history = 2;
    layout.hidden = 33;
    b.init_state(layout);
    for (lfmrt::backend::BlockPool* pool : {&b.kv_pages(), &b.conv_states()}) {
        const size_t bytes = pool->block_bytes();
        std::vector<uint32_t> ids{pool->allocate()};
        std::vector<uint8_t> data(bytes), back(bytes);
        for (auto& d : data) d = static_cast<uint8_t>(rng());
        pool->write(ids[0], 0, bytes, data.data());
        for (int i = 1; i < 5; ++i) ids.push_back(pool->allocate());  // a device pool grows past 4 blocks here
        pool->read(ids[0], 0, bytes, back.data());
        check.that(back == data, "a block's contents survive the pool's growth");
        pool->copy(ids[0], ids[3]);
        pool->read(ids[3], 0, bytes, back.data());
        check.that(back == data, "copy");
        pool->write(ids[3], 7, 5, data.data() + 100);
        pool->read(ids[3], 7, 5, back.data());
        check.that(std::memcmp(back.data(), data.data() + 100, 5) == 0, "partial write/read");
        pool->zero(ids[2]);
        pool->read(ids[2], 0, bytes, back.data());
        check.that(std::all_of(back.begin(), back.end(), [](uint8_t x) { return x == 0; }), "zero");
        check.that(pool->allocated_bytes() == 5 * bytes, "allocated bytes");
        pool->release(ids[1]);
        const uint32_t again = pool->allocate();
        check.that(std::find(ids.begin(), ids.end(), again) != ids.end() || again >= 5, "id reuse");
        pool->read(ids[0], 0, bytes, back.data());
        check.that(back == data, "other blocks untouched");
        const auto throws = [&](auto&& use, auto exception) {
            try {
                use();
            } catch (const decltype(exception)&) {
                return true;
            } catch (...) {
            }
            return false;
        };
        check.that(throws([&] { pool->read(ids[0], bytes - 3, 4, back.data()); }, std::out_of_range("")),
                   "a read past the block's end is out_of_range");
        check.that(throws([&] { pool->write(ids[0], bytes, 1, data.data()); }, std::out_of_range("")),
                   "a write past the block's end is out_of_range");
        for (uint32_t id : {ids[0], ids[2], ids[3], ids[4], again}) pool->release(id);
        check.that(pool->allocated_bytes() == 0, "all released");
        check.that(throws([&] { pool->zero(ids[0]); }, std::logic_error("")), "a released block's use is a logic_error");
        check.that(throws([&] { pool->release(ids[0]); }, std::logic_error("")), "a second release is a logic_error");
    }
    check.finish(report, b.device() + " state pools");
}

std::vector<std::string> other_devices() {
    std::vector<std::string> devices;
    for (const lfmrt::DeviceInfo& info : lfmrt::list_devices()) {
        if (info.kind != "cpu") devices.push_back(info.id);
    }
    return devices;
}

std::vector<std::string> default_devices() {
    std::vector<std::string> devices;
    for (const std::string& set : lfmrt::cpu::kernel_sets()) devices.push_back("cpu:" + set);
    for (const std::string& device : other_devices()) devices.push_back(device);
    return devices;
}

void test_device(Report& report, const std::string& device, std::mt19937& rng) {
    const auto reference = lfmrt::make_backend("cpu:scalar", {1});
    const auto backend = lfmrt::make_backend(device, {3});
    const Pair p{*backend, *reference};
    std::printf("device %s (%s)\n", backend->device().c_str(), backend->kernel_set().c_str());
    test_pools(report, *backend, rng);
    init_no_state(*backend);
    init_no_state(*reference);
    for (DType dtype : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K,
                        DType::Q6_K}) {
        if (!backend->supports(dtype)) {
            std::printf("SKIP %s matmul/embed %s: not supported\n", device.c_str(), lfmrt::dtype_name(dtype));
            continue;
        }
        test_matmul(report, p, dtype, rng);
        test_embed(report, p, dtype, rng);
    }
    test_elementwise(report, p, rng);
    test_rope(report, p, rng);
    test_short_conv(report, p, rng);
    for (DType kv : {DType::F32, DType::F16, DType::Q8_0}) {
        if (backend->supports_kv(kv)) test_attention(report, p, kv, rng);
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> devices(argv + 1, argv + argc);
    if (devices.empty()) devices = default_devices();
    if (devices.size() == 1 && devices[0] == "--devices") {
        devices = other_devices();
        if (devices.empty()) {
            std::printf("no device but the CPU\n");
            return 2;
        }
    }
    Report report;
    std::mt19937 rng(1234);
    for (const std::string& device : devices) {
        try {
            test_device(report, device, rng);
        } catch (const std::exception& e) {
            report.record(false, device, std::string("threw: ") + e.what());
        }
    }
    report.summary();
    return report.failed() == 0 ? 0 : 1;
}
