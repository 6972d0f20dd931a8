// Kernel tests: every op of every SIMD table the CPU supports against the scalar table (the
// specification), on odd sizes, tails, unaligned pointers and mid-block row ranges; the panel
// layout's packing, and every table's panel kernels against the scalar row kernels.
//
//   lfmrt_kernel_tests           run the checks; prints one line per check and "N passed, M failed"
//   lfmrt_kernel_tests --bench   micro-benchmarks of the table dispatch picks (GEMM GOPS, GEMV
//                                GB/s; block types in the layout the model reads them in, then
//                                row-major against panels): the fastest, or the one LFMRT_ISA
//                                names. A kernel the table takes from another is labelled so.
//   lfmrt_kernel_tests --bench --all   also the transposed shapes and the float types
//   lfmrt_kernel_tests --count TYPE HEAD_TYPE TOKENS rows|panels PASSES   the matrix work of PASSES
//                                350M forward steps, for instruction counting (see run_count)
#include <algorithm>
#include <numeric>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/dispatch.h"
#include "backends/cpu/kernels/kernels.h"
#include "backends/cpu/kernels/kv_kernels.h"
#include "lfmrt/tensor.h"
#include "backends/cpu/weight_memory.h"
#include "formats/blocks.h"
#include "backends/cpu/panels.h"
#include "formats/quantize.h"
#include "report.h"

using lfmrt::DType;
using lfmrt::cpu::KernelTable;

namespace {

constexpr DType kDTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0,
                             DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};
// Float types: 4099 takes the AVX2 GEMV's long-row path (x of 16 KiB or more), with a tail.
constexpr size_t kCols[] = {1, 7, 15, 16, 17, 31, 33, 63, 100, 257, 1000, 1031, 4099};
// Block types: rows of whole blocks, one block up to several packed column chunks (the AVX2
// GEMM packs 2048 values at a time), with odd block counts; 8448 passes the 8192 values of
// activations the AVX-512 Q4_K / Q5_K GEMV prepares at a time.
constexpr size_t kCols32[] = {32, 96, 224, 1056, 2080, 4160};
constexpr size_t kCols256[] = {256, 768, 1280, 2304, 4352, 8448};

std::vector<size_t> cols_for(DType dtype) {
    if (lfmrt::block_elems(dtype) == 1) return {std::begin(kCols), std::end(kCols)};
    if (lfmrt::block_elems(dtype) == 32) return {std::begin(kCols32), std::end(kCols32)};
    return {std::begin(kCols256), std::end(kCols256)};
}
// Every token count from 1 to 13: below 4 the AVX2 GEMM works row by row and from 4 up it packs
// (7, 8, 13 and 12 reach its 3-, 4-, 5- and 6-token micro-kernels after splitting the tokens into
// even blocks); the AVX-512 GEMM packs from 2 and splits 9-13 tokens into two tiles of 4-7.
constexpr size_t kTokens[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
constexpr size_t kLengths[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 100, 257, 1000, 1031};

// Matrix results: error relative to sum_k |w[r][k] * x[k]|, the scale of rounding in a dot.
// (Block types: the integer dots are exact, only their fp32 scaling and summing round.)
constexpr double kMatTol = 1e-6;
// Elementwise results: error relative to the reference value (plus a tiny absolute floor).
constexpr double kElemTol = 2e-6;
constexpr double kAbsFloor = 1e-30;

std::vector<const KernelTable*> simd_tables() {
    std::vector<const KernelTable*> tables;
#if defined(__x86_64__) || defined(_M_X64)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c")) {
        tables.push_back(&lfmrt::cpu::avx2_kernels());
    } else {
        std::printf("SKIP avx2: CPU lacks AVX2/FMA/F16C\n");
    }
    const std::vector<std::string> sets = lfmrt::cpu::kernel_sets();
    if (std::find(sets.begin(), sets.end(), "avx512") != sets.end()) {
        tables.push_back(&lfmrt::cpu::avx512_kernels());
    } else {
        std::printf("SKIP avx512: CPU lacks AVX-512 F/BW/VL/VNNI\n");
    }
#elif defined(__aarch64__)
    tables.push_back(&lfmrt::cpu::neon_kernels());
    const std::vector<std::string> sets = lfmrt::cpu::kernel_sets();
    if (std::find(sets.begin(), sets.end(), "neon_dotprod") != sets.end()) {
        tables.push_back(&lfmrt::cpu::neon_dotprod_kernels());
    } else {
        std::printf("SKIP neon_dotprod: CPU lacks the dot-product instructions\n");
    }
    if (std::find(sets.begin(), sets.end(), "neon_i8mm") != sets.end()) {
        tables.push_back(&lfmrt::cpu::neon_i8mm_kernels());
    } else {
        std::printf("SKIP neon_i8mm: CPU lacks the int8 matrix-multiply instructions\n");
    }
#endif
    return tables;
}

// ---------------------------------------------------------------------------------------------
// Reporting: one check aggregates many cases and keeps the worst error (as a fraction of its
// tolerance) and the first failure, so the output stays one line per check.

using lfmrt::test::Report;

class Check {
public:
    // Compares got against ref with |got - ref| <= tol * scale + kAbsFloor. `where` names the
    // case: a string, or a function returning one (called only on failure: the hot loops check
    // millions of cases, and under emulation building their names would cost more than the checks).
    template <typename Where>
    void near(double got, double ref, double scale, double tol, const Where& where) {
        ++cases_;
        const double allowed = tol * scale + kAbsFloor;
        const double err = std::fabs(got - ref);
        const bool ok = err <= allowed || (std::isnan(got) && std::isnan(ref)) ||
                        (std::isinf(got) && got == ref);
        worst_ = std::max(worst_, ok ? err / allowed : 1e300);
        if (!ok) fail(describe(where) + ": got " + std::to_string(got) + " want " + std::to_string(ref));
    }
    template <typename Where>
    void that(bool ok, const Where& where) {
        ++cases_;
        if (!ok) fail(describe(where));
    }
    void finish(Report& report, const std::string& name) const {
        char detail[512];
        std::snprintf(detail, sizeof detail, "%zu cases, %zu bad, worst %.3g of tolerance%s%s",
                      cases_, bad_, worst_, first_failure_.empty() ? "" : "; first: ",
                      first_failure_.c_str());
        report.record(bad_ == 0, name, detail);
    }

private:
    template <typename Where>
    static std::string describe(const Where& where) {
        if constexpr (std::is_invocable_v<Where>) {
            return where();
        } else {
            return std::string(where);
        }
    }
    void fail(const std::string& where) {
        if (bad_++ == 0) first_failure_ = where;
    }
    size_t cases_ = 0;
    size_t bad_ = 0;
    double worst_ = 0.0;
    std::string first_failure_;
};

// ---------------------------------------------------------------------------------------------
// Test data.

std::vector<float> random_floats(size_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float& f : v) f = dist(rng);
    return v;
}

// A rows x cols weight matrix stored in `dtype`, plus its exact fp32 widening for reference
// magnitudes. By default it starts one element (block types: 2 bytes, their alignment) past an
// aligned address, so kernels cannot rely on alignment; `offset_elems` = 0 gives an aligned
// start.
class Weights {
public:
    Weights(DType dtype, size_t rows, size_t cols, std::mt19937& rng, size_t offset_elems = 1)
        : dtype_(dtype),
          rows_(rows),
          cols_(cols),
          offset_bytes_(offset_elems * (lfmrt::is_quantized(dtype) ? 2 : lfmrt::block_bytes(dtype))),
          bytes_(rows * lfmrt::row_bytes(dtype, cols) + offset_bytes_) {
        std::vector<float> values = random_floats(rows * cols, rng);
        // Some tiny values, so F16 subnormals are exercised too.
        for (size_t i = 0; i < values.size(); i += 97) values[i] *= 1e-6f;
        const size_t row_size = lfmrt::row_bytes(dtype, cols);
        for (size_t r = 0; r < rows; ++r) {
            lfmrt::quant::quantize_row(dtype, values.data() + r * cols, bytes_.data() + offset_bytes_ + r * row_size,
                                       cols);
        }
        widened_.resize(rows * cols);
        lfmrt::convert_to_f32(data(), dtype, widened_.data(), widened_.size());
    }
    const void* data() const { return bytes_.data() + offset_bytes_; }
    DType dtype() const { return dtype_; }
    size_t rows() const { return rows_; }
    size_t cols() const { return cols_; }
    // sum_k |W[r][k] * x[k]|
    double magnitude(size_t r, const float* x) const {
        double sum = 0.0;
        for (size_t k = 0; k < cols_; ++k) sum += std::fabs(double(widened_[r * cols_ + k]) * x[k]);
        return sum;
    }

private:
    DType dtype_;
    size_t rows_, cols_;
    size_t offset_bytes_;
    std::vector<uint8_t> bytes_;
    std::vector<float> widened_;
};

// A Q4_0 / Q8_0 / Q4_K / Q6_K matrix repacked into 16-row panels, as the model does at load; like Weights it
// starts 2 bytes past an aligned address.
class PanelWeights {
public:
    explicit PanelWeights(const Weights& w)
        : bytes_(lfmrt::cpu::panel_matrix_bytes(w.dtype(), w.rows(), w.cols()) + kOffset) {
        lfmrt::cpu::pack_panels(w.dtype(), w.data(), w.rows(), w.cols(), 0, lfmrt::cpu::panel_rows(w.rows()),
                                  data());
    }
    const void* data() const { return bytes_.data() + kOffset; }
    void* data() { return bytes_.data() + kOffset; }

private:
    static constexpr size_t kOffset = 2;
    std::vector<uint8_t> bytes_;
};

// A matmul's input as the kernels of `weight` take it: n rows of cols floats (stride ldx) as
// they are, or quantized to BlockQ8A rows by the scalar table (the specification). `values`
// holds what the kernels see, widened, for reference magnitudes.
class Activations {
public:
    Activations(DType weight, const float* x, size_t ldx, size_t n, size_t cols)
        : quantized_(lfmrt::is_quantized(weight)), floats_(x), ldx_(ldx) {
        if (!quantized_) return;
        stride_ = lfmrt::cpu::activation_row_bytes(weight, cols);
        bytes_.resize(n * stride_ + 1);
        values_.resize(n * cols);
        for (size_t t = 0; t < n; ++t) {
            const auto quantize = lfmrt::cpu::activation_quantizer(lfmrt::cpu::scalar_kernels(),
                                                                   lfmrt::cpu::activation_format(weight));
            quantize(x + t * ldx, bytes_.data() + t * stride_, cols);
            lfmrt::quant::dequantize_row_q8a(reinterpret_cast<const lfmrt::quant::BlockQ8A*>(bytes_.data() + t * stride_),
                                             values_.data() + t * cols, cols);
        }
        ldx_ = cols;
    }
    const void* data() const { return quantized_ ? static_cast<const void*>(bytes_.data()) : floats_; }
    size_t stride() const { return quantized_ ? stride_ : ldx_ * sizeof(float); }
    const float* values(size_t t) const { return (quantized_ ? values_.data() : floats_) + t * ldx_; }

private:
    bool quantized_;
    const float* floats_;
    size_t ldx_;
    size_t stride_ = 0;
    std::vector<uint8_t> bytes_;
    std::vector<float> values_;
};

// Output buffers are filled with this NaN so writes outside the requested rows show up.
constexpr uint32_t kSentinelBits = 0x7fc0dead;
float sentinel() {
    float f;
    std::memcpy(&f, &kSentinelBits, sizeof f);
    return f;
}
bool is_sentinel(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    return bits == kSentinelBits;
}

// A row range [begin, end) within `rows`.
struct RowRange {
    size_t begin, end;
};

// The full range plus ranges that start and end in the middle of 16-row GEMM panels.
std::vector<RowRange> row_ranges(size_t rows) {
    std::vector<RowRange> ranges = {{0, rows}};
    if (rows > 2) ranges.push_back({1, rows - 1});
    if (rows > 21) ranges.push_back({5, rows - 3});
    if (rows > 40) ranges.push_back({16, 32});
    return ranges;
}

std::string case_name(size_t rows, size_t cols, size_t n, RowRange range) {
    return "rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
           " n=" + std::to_string(n) + " range=[" + std::to_string(range.begin) + "," +
           std::to_string(range.end) + ")";
}

// Y (n tokens, stride ldy) from one GEMM call or from one GEMV call per token: the row kernels
// on w, or the panel kernels when `panels` (w packed) is given.
struct MatmulCall {
    const Weights& w;
    const Activations& x;
    size_t n, ldy;
    RowRange range;
    const PanelWeights* panels = nullptr;
};

std::vector<float> run_gemm(const KernelTable& table, const MatmulCall& c) {
    std::vector<float> y(c.n * c.ldy, sentinel());
    std::vector<uint8_t> scratch(lfmrt::cpu::kGemmScratchBytes);
    // The table bound first: GCC 12's UBSan miscompiles (a ? x : y)[f()] with arrays x, y (a false
    // "member call on null pointer"), which would stop tools/sanitize.sh here.
    const auto& gemms = c.panels ? table.gemm_panels : table.gemm;
    const auto gemm = gemms[int(c.w.dtype())];
    gemm(c.panels ? c.panels->data() : c.w.data(), c.w.cols(), c.x.data(), c.x.stride(), c.n, y.data(), c.ldy,
         c.range.begin, c.range.end, scratch.data());
    return y;
}

std::vector<float> run_gemv_per_token(const KernelTable& table, const MatmulCall& c) {
    std::vector<float> y(c.n * c.ldy, sentinel());
    const auto& gemvs = c.panels ? table.gemv_panels : table.gemv;  // as in run_gemm
    const auto gemv = gemvs[int(c.w.dtype())];
    for (size_t t = 0; t < c.n; ++t) {
        gemv(c.panels ? c.panels->data() : c.w.data(), c.w.cols(),
             static_cast<const uint8_t*>(c.x.data()) + t * c.x.stride(), y.data() + t * c.ldy, c.range.begin,
             c.range.end);
    }
    return y;
}

// The scale of rounding in each result of `c`: magnitudes[t * ldy + r] = sum_k |W[r][k] * X[t][k]|
// for the rows of c's range (computed once per call and input, then shared by its comparisons).
std::vector<double> magnitudes(const MatmulCall& c) {
    std::vector<double> result(c.n * c.ldy);
    for (size_t t = 0; t < c.n; ++t) {
        for (size_t r = c.range.begin; r < c.range.end; ++r) result[t * c.ldy + r] = c.w.magnitude(r, c.x.values(t));
    }
    return result;
}

// Compares two matmul outputs inside the row range and checks both left everything else alone.
// `tol` 0 asks for the same values exactly.
void compare_matmul(Check& check, const MatmulCall& c, const std::vector<double>& magnitude,
                    const std::vector<float>& got, const std::vector<float>& ref, const std::string& where,
                    double tol = kMatTol) {
    for (size_t t = 0; t < c.n; ++t) {
        for (size_t r = 0; r < c.ldy; ++r) {
            const size_t i = t * c.ldy + r;
            if (r >= c.range.begin && r < c.range.end) {
                check.near(got[i], ref[i], magnitude[i], tol,
                           [&] { return where + " t=" + std::to_string(t) + " r=" + std::to_string(r); });
            } else {
                check.that(is_sentinel(got[i]), [&] { return where + " wrote outside its rows"; });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Matrix kernels.

void test_gemv(Report& report, const KernelTable& simd, DType dtype, std::mt19937& rng) {
    Check check;
    for (size_t cols : cols_for(dtype)) {
        for (size_t rows : {1, 4, 5, 17, 37, 50}) {
            const Weights w(dtype, rows, cols, rng);
            const std::vector<float> x = random_floats(cols + 1, rng);
            const Activations input(dtype, x.data() + 1, cols, 1, cols);
            for (RowRange range : row_ranges(rows)) {
                const MatmulCall call{w, input, 1, rows, range};
                compare_matmul(check, call, magnitudes(call), run_gemv_per_token(simd, call),
                               run_gemv_per_token(lfmrt::cpu::scalar_kernels(), call),
                               case_name(rows, cols, 1, range));
            }
        }
    }
    check.finish(report, std::string(simd.name) + " gemv " + lfmrt::dtype_name(dtype));
}

// Shapes for GEMM: the column list against row counts around the 16-row panel, plus shapes that
// span several packed row blocks and column chunks.
struct Shape {
    size_t rows, cols;
};
std::vector<Shape> gemm_shapes(DType dtype) {
    std::vector<Shape> shapes;
    for (size_t cols : cols_for(dtype)) {
        for (size_t rows : {3, 16, 37}) shapes.push_back({rows, cols});
    }
    const bool blocks = lfmrt::is_quantized(dtype);
    shapes.push_back({300, blocks ? size_t{512} : size_t{600}});
    shapes.push_back({161, blocks ? size_t{1280} : size_t{1031}});
    return shapes;
}

void test_gemm(Report& report, const KernelTable& simd, DType dtype, std::mt19937& rng) {
    Check vs_scalar;
    Check vs_gemv;
    for (Shape shape : gemm_shapes(dtype)) {
        const Weights w(dtype, shape.rows, shape.cols, rng);
        const size_t ldx = shape.cols + 3;
        const size_t ldy = shape.rows + 5;
        const std::vector<float> x = random_floats(std::ranges::max(kTokens) * ldx + 1, rng);
        for (size_t n : kTokens) {
            const Activations input(dtype, x.data() + 1, ldx, n, shape.cols);
            // The scalar table's rows do not depend on the range (its row-split test checks
            // that), so one call over all rows is the reference for every range.
            const MatmulCall all_rows{w, input, n, ldy, {0, shape.rows}};
            const std::vector<double> magnitude = magnitudes(all_rows);
            const std::vector<float> scalar = run_gemm(lfmrt::cpu::scalar_kernels(), all_rows);
            for (RowRange range : row_ranges(shape.rows)) {
                const MatmulCall call{w, input, n, ldy, range};
                const std::vector<float> got = run_gemm(simd, call);
                const std::string where = case_name(shape.rows, shape.cols, n, range);
                compare_matmul(vs_scalar, call, magnitude, got, scalar, where);
                compare_matmul(vs_gemv, call, magnitude, got, run_gemv_per_token(simd, call), where);
            }
        }
    }
    {  // Many tokens on one small shape: past the NEON GEMMs' 64-token chunks.
        const Shape shape{37, cols_for(dtype)[1]};
        constexpr size_t kManyTokens = 70;
        const Weights w(dtype, shape.rows, shape.cols, rng);
        const std::vector<float> x = random_floats(kManyTokens * shape.cols, rng);
        const Activations input(dtype, x.data(), shape.cols, kManyTokens, shape.cols);
        const MatmulCall call{w, input, kManyTokens, shape.rows, {0, shape.rows}};
        const std::vector<double> magnitude = magnitudes(call);
        const std::vector<float> got = run_gemm(simd, call);
        const std::string where = case_name(shape.rows, shape.cols, kManyTokens, call.range);
        compare_matmul(vs_scalar, call, magnitude, got, run_gemm(lfmrt::cpu::scalar_kernels(), call), where);
        compare_matmul(vs_gemv, call, magnitude, got, run_gemv_per_token(simd, call), where);
    }
    const std::string name = std::string(simd.name) + " gemm " + lfmrt::dtype_name(dtype);
    vs_scalar.finish(report, name);
    vs_gemv.finish(report, name + " vs own gemv per token");
}

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Splitting [0, rows) into pieces, as threads do, must give the same bits as one call.
std::vector<float> run_split(const KernelTable& table, const MatmulCall& whole,
                             const std::vector<size_t>& split_points, bool use_gemm) {
    std::vector<float> y(whole.n * whole.ldy);
    size_t begin = 0;
    for (size_t i = 0; i <= split_points.size(); ++i) {
        const size_t rows = whole.w.rows();
        const size_t end = i < split_points.size() ? std::min(split_points[i], rows) : rows;
        if (end <= begin) continue;
        MatmulCall part = whole;
        part.range = {begin, end};
        const std::vector<float> y_part =
            use_gemm ? run_gemm(table, part) : run_gemv_per_token(table, part);
        for (size_t t = 0; t < whole.n; ++t) {
            std::copy(y_part.begin() + t * whole.ldy + begin, y_part.begin() + t * whole.ldy + end,
                      y.begin() + t * whole.ldy + begin);
        }
        begin = end;
    }
    return y;
}

// `wide`'s GEMM for `dtype` claims `narrow`'s arithmetic (the AVX-512 bf16 GEMM packs its panels
// differently but runs the AVX2 GEMM's FMA chains): their results must agree bit for bit, on every
// shape, token count and row range of test_gemm and on a token count with several token blocks.
void test_gemm_same_as(Report& report, const KernelTable& wide, const KernelTable& narrow, DType dtype,
                       std::mt19937& rng) {
    Check check;
    std::vector<Shape> shapes = gemm_shapes(dtype);
    shapes.push_back({300, 513});  // an odd last column chunk past the first
    for (Shape shape : shapes) {
        const Weights w(dtype, shape.rows, shape.cols, rng);
        const size_t ldx = shape.cols + 3;
        const size_t ldy = shape.rows + 5;
        constexpr size_t kManyTokens = 41;  // token blocks of 10 and 11
        const std::vector<float> x = random_floats(kManyTokens * ldx + 1, rng);
        std::vector<size_t> token_counts(std::begin(kTokens), std::end(kTokens));
        token_counts.push_back(kManyTokens);
        for (size_t n : token_counts) {
            const Activations input(dtype, x.data() + 1, ldx, n, shape.cols);
            for (RowRange range : row_ranges(shape.rows)) {
                const MatmulCall call{w, input, n, ldy, range};
                check.that(bit_identical(run_gemm(wide, call), run_gemm(narrow, call)),
                           case_name(shape.rows, shape.cols, n, range));
            }
        }
    }
    check.finish(report, std::string(wide.name) + " gemm " + lfmrt::dtype_name(dtype) + " bit-identical to " +
                             narrow.name + "'s");
}

void test_row_splits(Report& report, const KernelTable& table, DType dtype, std::mt19937& rng) {
    const std::vector<std::vector<size_t>> split_points = {
        {16}, {1}, {5, 21}, {32, 48, 64}, {7, 130, 131}, {128}};
    Check check;
    // Float types: odd column counts; block types: several packed column chunks, one block, a few.
    const size_t block = lfmrt::block_elems(dtype);
    const size_t wide = block == 1 ? 1031 : (block == 32 ? 2112 : 2304);
    const size_t narrow = block == 1 ? 33 : (block == 32 ? 96 : 768);
    const Shape shapes[] = {{77, wide}, {300, block == 1 ? size_t{257} : size_t{256}}, {170, narrow}};
    for (Shape shape : shapes) {
        const Weights w(dtype, shape.rows, shape.cols, rng);
        for (size_t n : {3, 13}) {  // both sides of the AVX2 GEMMs' packing thresholds
            const std::vector<float> x = random_floats(n * shape.cols, rng);
            const Activations input(dtype, x.data(), shape.cols, n, shape.cols);
            const MatmulCall whole{w, input, n, shape.rows, {0, shape.rows}};
            const std::vector<float> gemm_whole = run_gemm(table, whole);
            const std::vector<float> gemv_whole = run_gemv_per_token(table, whole);
            for (const std::vector<size_t>& points : split_points) {
                const std::string where = case_name(shape.rows, shape.cols, n, whole.range) +
                                          " split at " + std::to_string(points[0]) + "...";
                check.that(bit_identical(run_split(table, whole, points, true), gemm_whole),
                           "gemm " + where);
                check.that(bit_identical(run_split(table, whole, points, false), gemv_whole),
                           "gemv " + where);
            }
        }
    }
    check.finish(report, std::string(table.name) + " row splits bit-identical " +
                             lfmrt::dtype_name(dtype));
}

// Degenerate calls: an empty row range or no tokens writes nothing; no columns gives zeros.
void test_matmul_edges(Report& report, const KernelTable& table, DType dtype, std::mt19937& rng) {
    Check check;
    const size_t cols = lfmrt::is_quantized(dtype) ? lfmrt::block_elems(dtype) : 9;
    const Weights w(dtype, 20, cols, rng);
    const std::vector<float> x = random_floats(3 * cols, rng);
    const Activations input(dtype, x.data(), cols, 3, cols);
    const auto untouched = [](const std::vector<float>& y) {
        return std::all_of(y.begin(), y.end(), is_sentinel);
    };
    check.that(untouched(run_gemm(table, {w, input, 3, 20, {7, 7}})), "gemm empty range");
    check.that(untouched(run_gemm(table, {w, input, 0, 20, {0, 20}})), "gemm n=0");
    check.that(untouched(run_gemv_per_token(table, {w, input, 1, 20, {7, 7}})), "gemv empty range");

    std::vector<float> y(2 * 20, sentinel());
    std::vector<uint8_t> scratch(lfmrt::cpu::kGemmScratchBytes);
    table.gemm[int(dtype)](w.data(), 0, input.data(), input.stride(), 2, y.data(), 20, 3, 18, scratch.data());
    table.gemv[int(dtype)](w.data(), 0, input.data(), y.data(), 0, 2);
    for (size_t t = 0; t < 2; ++t) {
        for (size_t r = 3; r < 18; ++r) check.that(y[t * 20 + r] == 0.0f, "gemm cols=0 gives 0");
    }
    check.that(y[0] == 0.0f && y[1] == 0.0f && is_sentinel(y[2]), "gemv cols=0 gives 0");
    check.finish(report, std::string(table.name) + " matmul edge cases " + lfmrt::dtype_name(dtype));
}

// ---------------------------------------------------------------------------------------------
// The panel layout (backends/cpu/panels.h): packing, and each table's panel kernels against the scalar
// table's row kernels on the same logical weights.

constexpr DType kPanelTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K};
// Rows around the 16-row panel (1, 15: one partial panel; 17, 33, 50: a partial last one), and
// odd block counts, the last past the AVX-512 GEMV's 256-block chunk of activation sums.
constexpr size_t kPanelRowCounts[] = {1, 15, 16, 17, 33, 50};
constexpr size_t kPanelCols32[] = {32, 96, 224, 1056, 8224};
constexpr size_t kPanelCols256[] = {256, 768, 1280, 8448};
std::vector<size_t> panel_cols(DType dtype) {
    if (lfmrt::block_elems(dtype) == 32) return {std::begin(kPanelCols32), std::end(kPanelCols32)};
    return {std::begin(kPanelCols256), std::end(kPanelCols256)};
}

bool has_panel_kernels(const KernelTable& table, DType dtype) {
    return table.gemv_panels[int(dtype)] != nullptr && table.gemm_panels[int(dtype)] != nullptr;
}

// Unpacking gives back every row's GGUF bytes; the padding rows have scale 0; packing one
// panel-row at a time, in any order, gives the same bytes as packing all at once.
void test_panel_packing(Report& report, std::mt19937& rng) {
    namespace quant = lfmrt::quant;
    for (DType dtype : kPanelTypes) {
        Check check;
        for (size_t rows : kPanelRowCounts) {
            for (size_t cols : panel_cols(dtype)) {
                const std::string where = "rows=" + std::to_string(rows) + " cols=" + std::to_string(cols);
                const Weights w(dtype, rows, cols, rng);
                const PanelWeights packed(w);
                const size_t row_size = lfmrt::row_bytes(dtype, cols);
                std::vector<uint8_t> row(row_size);
                for (size_t r = 0; r < rows; ++r) {
                    lfmrt::cpu::unpack_panel_row(dtype, packed.data(), cols, r, row.data());
                    const auto* original = static_cast<const uint8_t*>(w.data()) + r * row_size;
                    check.that(std::memcmp(row.data(), original, row_size) == 0,
                               [&] { return where + " row " + std::to_string(r) + " differs after unpacking"; });
                }
                const size_t block_size = lfmrt::block_bytes(dtype);
                for (size_t r = rows; r < lfmrt::cpu::panel_rows(rows) * lfmrt::cpu::kPanelRows; ++r) {
                    lfmrt::cpu::unpack_panel_row(dtype, packed.data(), cols, r, row.data());
                    // Q6_K keeps its d at the end of the block.
                    const size_t d_offset = dtype == DType::Q6_K ? block_size - 2 : 0;
                    for (size_t b = 0; b < cols / lfmrt::block_elems(dtype); ++b) {
                        uint16_t d;
                        std::memcpy(&d, row.data() + b * block_size + d_offset, sizeof d);
                        check.that(d == 0,
                                   [&] { return where + " padding row " + std::to_string(r) + " has a scale"; });
                    }
                }
                const size_t bytes = lfmrt::cpu::panel_matrix_bytes(dtype, rows, cols);
                std::vector<uint8_t> pieces(bytes, 0xAB);
                for (size_t p = lfmrt::cpu::panel_rows(rows); p-- > 0;) {
                    lfmrt::cpu::pack_panels(dtype, w.data(), rows, cols, p, p + 1, pieces.data());
                }
                check.that(std::memcmp(pieces.data(), packed.data(), bytes) == 0, where + " packed in pieces differs");
            }
        }
        check.finish(report, std::string("panels pack/unpack round trip ") + lfmrt::dtype_name(dtype));
    }
}

// Row ranges for the panel kernels: all rows, ranges starting at a later panel (as thread splits
// do) and ranges starting and ending mid-panel (which the kernels take too).
std::vector<RowRange> panel_row_ranges(size_t rows) {
    std::vector<RowRange> ranges = {{0, rows}};
    if (rows > 16) ranges.push_back({16, rows});
    if (rows > 32) ranges.push_back({16, 32});
    if (rows > 8) ranges.push_back({3, rows - 5});
    return ranges;
}

// Panel GEMV and GEMM against the scalar row kernels: exactly for the scalar table (its panel
// kernels are the row kernels' arithmetic on the same decoded blocks), within kMatTol for SIMD
// tables; and each table's GEMM against its own GEMV per token, exactly (a row's arithmetic does
// not depend on the token count). Token counts 1-17 take every tile size; 53 takes the AVX2 Q6_K
// GEMM's unpacked levels (9 tiles).
void test_panel_matmul(Report& report, const KernelTable& table, DType dtype, std::mt19937& rng) {
    const bool is_scalar = &table == &lfmrt::cpu::scalar_kernels();
    Check vs_rows, gemm_vs_gemv;
    constexpr size_t kMaxTokens = 53;
    std::vector<size_t> token_counts(17);
    std::iota(token_counts.begin(), token_counts.end(), size_t{1});
    token_counts.push_back(kMaxTokens);
    for (size_t rows : kPanelRowCounts) {
        for (size_t cols : panel_cols(dtype)) {
            const Weights w(dtype, rows, cols, rng);
            const PanelWeights packed(w);
            const size_t ldx = cols + 5, ldy = rows + 3;
            const std::vector<float> x = random_floats(kMaxTokens * ldx + 1, rng);
            // The input, the reference and the magnitudes for kMaxTokens tokens serve every n: a
            // token's row does not depend on the tokens after it (the scalar GEMM is a GEMV per
            // token by definition), and computing them once keeps the run short under emulation.
            const Activations input(dtype, x.data() + 1, ldx, kMaxTokens, cols);
            const MatmulCall all_tokens{w, input, kMaxTokens, ldy, {0, rows}};
            const std::vector<double> magnitude = magnitudes(all_tokens);
            const std::vector<float> ref_all = run_gemm(lfmrt::cpu::scalar_kernels(), all_tokens);
            for (RowRange range : panel_row_ranges(rows)) {
                const std::vector<float> gemv_all =
                    run_gemv_per_token(table, MatmulCall{w, input, kMaxTokens, ldy, range, &packed});
                for (size_t n : token_counts) {
                    const std::vector<float> ref(ref_all.begin(), ref_all.begin() + n * ldy);
                    const std::vector<float> gemv(gemv_all.begin(), gemv_all.begin() + n * ldy);
                    const MatmulCall call{w, input, n, ldy, range, &packed};
                    const std::string where = case_name(rows, cols, n, range);
                    const std::vector<float> gemm = run_gemm(table, call);
                    if (n == 1 || n == kMaxTokens) {  // a GEMV's rows do not depend on n either
                        compare_matmul(vs_rows, call, magnitude, gemv, ref, "gemv " + where, is_scalar ? 0.0 : kMatTol);
                    }
                    compare_matmul(vs_rows, call, magnitude, gemm, ref, "gemm " + where, is_scalar ? 0.0 : kMatTol);
                    compare_matmul(gemm_vs_gemv, call, magnitude, gemm, gemv, where, 0.0);
                }
            }
        }
    }
    const std::string name = std::string(table.name) + " panel gemv/gemm " + lfmrt::dtype_name(dtype);
    vs_rows.finish(report, name + (is_scalar ? " bit-identical to the row kernels" : " vs scalar row kernels"));
    gemm_vs_gemv.finish(report, name + " gemm bit-identical to gemv per token");
}

// The same for panel kernels: `wide`'s and `narrow`'s panel GEMV and GEMM for `dtype` (the AVX2 and
// AVX-512 Q4_K panel kernels form the same fp32 products in the same order) agree bit for bit on
// test_panel_matmul's shapes, every token count up to 17 (each tile size of both) and row range.
void test_panel_matmul_same_as(Report& report, const KernelTable& wide, const KernelTable& narrow, DType dtype,
                               std::mt19937& rng) {
    Check check;
    constexpr size_t kMaxTokens = 17;
    for (size_t rows : kPanelRowCounts) {
        for (size_t cols : panel_cols(dtype)) {
            const Weights w(dtype, rows, cols, rng);
            const PanelWeights packed(w);
            const size_t ldx = cols + 5, ldy = rows + 3;
            const std::vector<float> x = random_floats(kMaxTokens * ldx + 1, rng);
            for (size_t n = 1; n <= kMaxTokens; ++n) {
                const Activations input(dtype, x.data() + 1, ldx, n, cols);
                for (RowRange range : panel_row_ranges(rows)) {
                    const MatmulCall call{w, input, n, ldy, range, &packed};
                    const std::string where = case_name(rows, cols, n, range);
                    check.that(bit_identical(run_gemm(wide, call), run_gemm(narrow, call)), "gemm " + where);
                    check.that(bit_identical(run_gemv_per_token(wide, call), run_gemv_per_token(narrow, call)),
                               "gemv " + where);
                }
            }
        }
    }
    check.finish(report, std::string(wide.name) + " panel gemv/gemm " + lfmrt::dtype_name(dtype) +
                             " bit-identical to " + narrow.name + "'s");
}

// Row splits (thread splits are whole panels, odd ones mid-panel) give the same bits as one
// call, and degenerate calls behave as the row kernels' do.
void test_panel_splits_and_edges(Report& report, const KernelTable& table, DType dtype, std::mt19937& rng) {
    const std::vector<std::vector<size_t>> split_points = {{16}, {32, 48, 64}, {128}, {1}, {5, 21}, {7, 130, 131}};
    Check check;
    const bool k_quant = lfmrt::block_elems(dtype) == 256;
    const Shape shapes[] = {
        {77, k_quant ? size_t{2304} : size_t{2112}}, {300, 256}, {170, k_quant ? size_t{768} : size_t{96}}};
    for (Shape shape : shapes) {
        const Weights w(dtype, shape.rows, shape.cols, rng);
        const PanelWeights packed(w);
        for (size_t n : {1, 3, 13, 16}) {
            const std::vector<float> x = random_floats(n * shape.cols, rng);
            const Activations input(dtype, x.data(), shape.cols, n, shape.cols);
            const MatmulCall whole{w, input, n, shape.rows, {0, shape.rows}, &packed};
            const std::vector<float> gemm_whole = run_gemm(table, whole);
            const std::vector<float> gemv_whole = run_gemv_per_token(table, whole);
            for (const std::vector<size_t>& points : split_points) {
                const std::string where = case_name(shape.rows, shape.cols, n, whole.range) + " split at " +
                                          std::to_string(points[0]) + "...";
                check.that(bit_identical(run_split(table, whole, points, true), gemm_whole), "gemm " + where);
                check.that(bit_identical(run_split(table, whole, points, false), gemv_whole), "gemv " + where);
            }
        }
    }
    const size_t cols = lfmrt::block_elems(dtype);
    const Weights w(dtype, 20, cols, rng);
    const PanelWeights packed(w);
    const std::vector<float> x = random_floats(3 * cols, rng);
    const Activations input(dtype, x.data(), cols, 3, cols);
    const auto untouched = [](const std::vector<float>& y) { return std::all_of(y.begin(), y.end(), is_sentinel); };
    check.that(untouched(run_gemm(table, {w, input, 3, 20, {7, 7}, &packed})), "gemm empty range");
    check.that(untouched(run_gemm(table, {w, input, 3, 20, {16, 16}, &packed})), "gemm empty range at a panel");
    check.that(untouched(run_gemm(table, {w, input, 0, 20, {0, 20}, &packed})), "gemm n=0");
    check.that(untouched(run_gemv_per_token(table, {w, input, 1, 20, {7, 7}, &packed})), "gemv empty range");
    std::vector<float> y(2 * 20, sentinel());
    table.gemm_panels[int(dtype)](packed.data(), 0, input.data(), input.stride(), 2, y.data(), 20, 3, 18, nullptr);
    for (size_t t = 0; t < 2; ++t) {
        for (size_t r = 3; r < 18; ++r) check.that(y[t * 20 + r] == 0.0f, "gemm cols=0 gives 0");
    }
    check.finish(report, std::string(table.name) + " panel row splits bit-identical, edge cases " +
                             lfmrt::dtype_name(dtype));
}

// A matrix uploaded to a CPU backend from `w`'s bytes.
std::shared_ptr<const lfmrt::backend::Matrix> upload_matrix(lfmrt::cpu::CpuBackend& backend, const Weights& w,
                                                             lfmrt::backend::MatrixUse use) {
    lfmrt::TensorView view;
    view.data = w.data();
    view.dtype = w.dtype();
    view.shape = {int64_t(w.rows()), int64_t(w.cols())};
    return backend.upload_matrices({{"w", view, use}})[0];
}

// The backend's matmul over its buffers: x (n rows) in, each projection's y read back.
std::vector<std::vector<float>> backend_matmul(lfmrt::cpu::CpuBackend& backend,
                                               const std::vector<const lfmrt::backend::Matrix*>& matrices,
                                               const std::vector<float>& x, size_t n) {
    const auto input = backend.upload(x.data(), x.size());
    std::vector<std::unique_ptr<lfmrt::backend::Buffer>> outputs;
    for (const auto* m : matrices) outputs.push_back(backend.allocate(n * size_t(m->rows) * sizeof(float)));
    if (matrices.size() == 1) {
        backend.matmul({{*matrices[0], *outputs[0]}}, *input, n);
    } else {
        backend.matmul({{*matrices[0], *outputs[0]}, {*matrices[1], *outputs[1]}, {*matrices[2], *outputs[2]}},
                       *input, n);
    }
    std::vector<std::vector<float>> ys;
    for (size_t i = 0; i < matrices.size(); ++i) {
        ys.emplace_back(n * size_t(matrices[i]->rows));
        backend.read(*outputs[i], 0, ys.back().size() * sizeof(float), ys.back().data());
    }
    return ys;
}

// Through the backend, as the model uses it: uploading a matrix it multiplies by gives
// lfmrt::cpu::pack_panels' bytes, a packed matrix's matmul goes to the panel kernels (the scalar
// table's equal its row kernels exactly), and 1 or 3 threads give the same bits. (A lookup-only
// upload stays in rows: the row kernels' result, for comparison.)
void test_backend_panels(Report& report, const KernelTable& table, DType dtype, std::mt19937& rng) {
    using lfmrt::backend::MatrixUse;
    const bool is_scalar = &table == &lfmrt::cpu::scalar_kernels();
    Check check;
    const size_t rows = 300, cols = lfmrt::block_elems(dtype) == 256 ? 1280 : 1056;
    const Weights w(dtype, rows, cols, rng);
    const PanelWeights packed(w);
    lfmrt::cpu::CpuBackend one(table, 1), three(table, 3);
    const auto row_major = upload_matrix(one, w, MatrixUse::Lookup);
    const auto panels_one = upload_matrix(one, w, MatrixUse::Multiply);
    const auto panels_three = upload_matrix(three, w, MatrixUse::Multiply);
    const auto& uploaded = static_cast<const lfmrt::cpu::CpuMatrix&>(*panels_three);
    check.that(uploaded.layout == lfmrt::cpu::MatrixLayout::Panels, "multiplied matrix not packed");
    check.that(static_cast<const lfmrt::cpu::CpuMatrix&>(*row_major).layout == lfmrt::cpu::MatrixLayout::Rows,
               "looked-up matrix packed");
    check.that(std::memcmp(uploaded.data, packed.data(), lfmrt::cpu::panel_matrix_bytes(dtype, rows, cols)) == 0,
               "backend packing differs");
    for (size_t n : {1, 5, 16}) {
        const std::vector<float> x = random_floats(n * cols, rng);
        const std::vector<float> y_rows = backend_matmul(one, {row_major.get()}, x, n)[0];
        const std::vector<float> y_one = backend_matmul(one, {panels_one.get()}, x, n)[0];
        const std::vector<float> y_three = backend_matmul(three, {panels_three.get()}, x, n)[0];
        const std::string where = "n=" + std::to_string(n);
        check.that(bit_identical(y_one, y_three), where + ": 1 and 3 threads differ");
        const Activations input(dtype, x.data(), cols, n, cols);
        const MatmulCall call{w, input, n, rows, {0, rows}};
        compare_matmul(check, call, magnitudes(call), y_one, y_rows, where, is_scalar ? 0.0 : kMatTol);
    }
    check.finish(report, std::string(table.name) + " backend panels " + lfmrt::dtype_name(dtype));
}

// One backend matmul over projections of different activation formats sharing an input (the
// demo's Q4_K_M file mixes Q8_0 and K-quant matrices so): each projection gets its own type's
// activations, so its output equals that of its kernel called alone, bit for bit.
void test_backend_mixed_projections(Report& report, const KernelTable& table, std::mt19937& rng) {
    Check check;
    const size_t cols = 1280;
    const Weights q8(DType::Q8_0, 40, cols, rng), q4k(DType::Q4_K, 33, cols, rng), f16(DType::F16, 20, cols, rng);
    lfmrt::cpu::CpuBackend backend(table, 2);
    // Lookup uploads keep GGUF's rows, which the row kernels alone read.
    const auto m8 = upload_matrix(backend, q8, lfmrt::backend::MatrixUse::Lookup);
    const auto m4 = upload_matrix(backend, q4k, lfmrt::backend::MatrixUse::Lookup);
    const auto m16 = upload_matrix(backend, f16, lfmrt::backend::MatrixUse::Lookup);
    for (size_t n : {1, 7}) {
        const std::vector<float> x = random_floats(n * cols, rng);
        const std::vector<std::vector<float>> ys = backend_matmul(backend, {m8.get(), m4.get(), m16.get()}, x, n);
        size_t i = 0;
        for (const Weights* w : {&q8, &q4k, &f16}) {
            const Activations input(w->dtype(), x.data(), cols, n, cols);
            const MatmulCall call{*w, input, n, w->rows(), {0, w->rows()}};
            const std::vector<float> alone = n == 1 ? run_gemv_per_token(table, call) : run_gemm(table, call);
            compare_matmul(check, call, magnitudes(call), ys[i++], alone,
                           std::string(lfmrt::dtype_name(w->dtype())) + " n=" + std::to_string(n), 0.0);
        }
    }
    check.finish(report, std::string(table.name) + " backend projections of mixed activation formats");
}

// The activation blocks' scale is amax / 127 rounded to 11 significant bits: exactly the fp16
// value (checked against lfmrt's exact fp16 conversion) wherever fp16 is normal, and the same
// rounding, not fp16's flush to subnormals or infinity, outside that range.
void test_activation_scale(Report& report, std::mt19937& rng) {
    Check check;
    std::uniform_real_distribution<float> exponent(-40.0f, 40.0f), mantissa(1.0f, 2.0f);
    for (int i = 0; i < 200000; ++i) {
        const float amax = std::ldexp(mantissa(rng), static_cast<int>(exponent(rng)));
        const float d = lfmrt::quant::activation_scale(amax), exact = amax / 127;
        const std::string where = "amax=" + std::to_string(amax);
        if (exact >= 0x1p-14f && exact <= 65504.0f) {
            check.that(d == lfmrt::f16_to_f32(lfmrt::f32_to_f16(exact)), where + ": not the fp16 rounding");
        }
        uint32_t bits;
        std::memcpy(&bits, &d, sizeof bits);
        check.that((bits & 0x1fffu) == 0, where + ": more than 11 significant bits");
        check.that(std::fabs(d - exact) <= std::ldexp(std::fabs(exact), -11), where + ": off by more than half a step");
    }
    check.that(lfmrt::quant::activation_scale(0.0f) == 0.0f, "amax 0");
    // A block of one value: its level is 127 and the scale the rounded amax / 127.
    std::vector<float> x(32, 0.0f);
    x[5] = -3.3f;
    lfmrt::quant::BlockQ8A block;
    lfmrt::cpu::scalar_kernels().quantize_q8a(x.data(), &block, 32);
    check.that(block.qs[5] == -127 && block.d == lfmrt::f16_to_f32(lfmrt::f32_to_f16(3.3f / 127)) &&
                   block.dsum == -127 * block.d,
               "one-value block");
    check.finish(report, "activation scale: fp16's rounding with fp32's range");
}

// K-quant activations share one scale across each 256 values, as llama.cpp's Q8_K: the level
// factor 127 / amax of the 256 values and the fp32 scale 1 / factor in all 8 blocks.
void test_activation_scale_k(Report& report, std::mt19937& rng) {
    Check check;
    for (float scale : {1.0f, 3e-7f, 5e4f}) {
        std::vector<float> x = random_floats(512, rng, -scale, scale);
        x[300] = -1.75f * scale;  // the second group's amax, in its second block
        std::vector<lfmrt::quant::BlockQ8A> blocks(16);
        lfmrt::cpu::scalar_kernels().quantize_q8a_k(x.data(), blocks.data(), 512);
        for (size_t g = 0; g < 2; ++g) {
            float amax = 0.0f;
            for (size_t i = 0; i < 256; ++i) amax = std::max(amax, std::fabs(x[256 * g + i]));
            const float factor = 127 / amax, d = 1 / factor;
            for (size_t b = 0; b < 8; ++b) {
                const auto& block = blocks[8 * g + b];
                const std::string where = "scale=" + std::to_string(scale) + " block " + std::to_string(8 * g + b);
                check.that(block.d == d, where + ": not the group's 1 / (127 / amax)");
                int sum = 0;
                for (size_t i = 0; i < 32; ++i) {
                    const float v = x[256 * g + 32 * b + i] * factor;
                    check.that(block.qs[i] == static_cast<int>(std::nearbyint(v)),
                               where + ": level not round(x * factor)");
                    sum += block.qs[i];
                }
                check.that(block.dsum == d * static_cast<float>(sum), where + ": dsum");
            }
        }
        check.that(blocks[9].qs[300 - 288] == -127, "the group's amax is not level -127");
    }
    check.finish(report, "activation scale K: one per 256 values, Q8_K's");
}

// The SIMD activation quantizers must give the reference's bytes exactly (so every table sees
// the same integers), including all-zero blocks, huge and tiny values and exact .5 ties.
void test_quantize_q8a(Report& report, const KernelTable& simd, lfmrt::cpu::ActivationFormat format,
                       std::mt19937& rng) {
    const bool k = format == lfmrt::cpu::ActivationFormat::Q8A_K;
    Check check;
    for (size_t cols : k ? std::vector<size_t>{256, 512, 1024, 4608} : std::vector<size_t>{32, 64, 1024, 4608}) {
        for (float scale : {1.0f, 1e-20f, 1e20f, 1e-38f}) {
            std::vector<float> x = random_floats(cols + 1, rng, -scale, scale);
            // The first block (Q8A) or group (Q8A_K) all zeros.
            for (size_t i = 1; i <= (k ? 256 : 32) && i < x.size(); ++i) x[i] = 0.0f;
            if (cols >= 64) {  // a block of exact ties at the scale 127 / 127 = 1 (in Q8A_K's second group)
                const size_t at = k ? 257 : 33;
                for (size_t i = 0; i < 32 && at + i < x.size(); ++i) {
                    x[at + i] = (i == 0) ? 127.0f : static_cast<float>(i % 7) + 0.5f;
                }
            }
            const size_t bytes = cols / 32 * sizeof(lfmrt::quant::BlockQ8A);
            std::vector<uint8_t> got(bytes + 1, 0xAB), ref(bytes, 0);
            lfmrt::cpu::activation_quantizer(simd, format)(x.data() + 1, got.data(), cols);
            lfmrt::cpu::activation_quantizer(lfmrt::cpu::scalar_kernels(), format)(x.data() + 1, ref.data(), cols);
            check.that(std::memcmp(got.data(), ref.data(), bytes) == 0,
                       "cols=" + std::to_string(cols) + " scale=" + std::to_string(scale) + " differs");
            check.that(got[bytes] == 0xAB, "wrote past the end");
            if (scale == 1e-38f) {  // below activation_level_factor's floor: every level 0
                const auto* blocks = reinterpret_cast<const lfmrt::quant::BlockQ8A*>(got.data());
                for (size_t b = 0; b < cols / 32; ++b) {
                    if (k ? (b / 8 == 1) : (b == 1 && cols >= 64)) continue;  // the block (group) of ties
                    for (int8_t q : blocks[b].qs) check.that(q == 0, "a level of a subnormal block is not 0");
                }
            }
        }
    }
    check.finish(report, std::string(simd.name) + (k ? " quantize_q8a_k" : " quantize_q8a") + " bit-identical");
}

// ---------------------------------------------------------------------------------------------
// Vector kernels. Each runs on copies of the same inputs through both tables.

void test_dot(Report& report, const KernelTable& simd, std::mt19937& rng) {
    Check check;
    for (size_t n : kLengths) {
        const std::vector<float> a = random_floats(n + 1, rng), b = random_floats(n + 1, rng);
        double magnitude = 0.0;
        for (size_t i = 1; i <= n; ++i) magnitude += std::fabs(double(a[i]) * b[i]);
        check.near(simd.dot(a.data() + 1, b.data() + 1, n),
                   lfmrt::cpu::scalar_kernels().dot(a.data() + 1, b.data() + 1, n), magnitude,
                   kMatTol, "n=" + std::to_string(n));
    }
    check.finish(report, std::string(simd.name) + " dot");
}

// Runs `op(table, out)` for both tables on copies of `init` and compares element by element with
// a tolerance relative to each reference value; checks the element past the end is untouched.
template <typename Op>
void compare_elementwise(Check& check, const KernelTable& simd, const std::vector<float>& init,
                         double tol, const std::string& where, Op op) {
    std::vector<float> got = init, ref = init;
    got.push_back(sentinel());
    op(simd, got.data());
    op(lfmrt::cpu::scalar_kernels(), ref.data());
    for (size_t i = 0; i < ref.size(); ++i) {
        check.near(got[i], ref[i], std::fabs(ref[i]), tol, [&] { return where + " i=" + std::to_string(i); });
    }
    check.that(is_sentinel(got.back()), where + " wrote past the end");
}

void test_axpy(Report& report, const KernelTable& simd, std::mt19937& rng) {
    Check check;
    for (size_t n : kLengths) {
        const std::vector<float> x = random_floats(n, rng), y = random_floats(n, rng);
        // The error scales with |a x| + |y|, not with the result (the two may cancel).
        std::vector<float> got = y, ref = y;
        got.push_back(sentinel());
        simd.axpy(0.37f, x.data(), got.data(), n);
        lfmrt::cpu::scalar_kernels().axpy(0.37f, x.data(), ref.data(), n);
        for (size_t i = 0; i < n; ++i) {
            check.near(got[i], ref[i], std::fabs(0.37 * x[i]) + std::fabs(y[i]), kElemTol,
                       "n=" + std::to_string(n) + " i=" + std::to_string(i));
        }
        check.that(is_sentinel(got.back()), "n=" + std::to_string(n) + " wrote past the end");
    }
    check.finish(report, std::string(simd.name) + " axpy");
}

void test_rmsnorm(Report& report, const KernelTable& simd, std::mt19937& rng) {
    Check check;
    for (size_t n : kLengths) {
        const std::vector<float> x = random_floats(n, rng, -4.0f, 4.0f);
        const std::vector<float> weight = random_floats(n, rng, 0.5f, 1.5f);
        compare_elementwise(check, simd, x, kElemTol, "n=" + std::to_string(n),
                            [&](const KernelTable& t, float* io) {  // in place: y aliases x
                                t.rmsnorm(io, weight.data(), n, 1e-5f, io);
                            });
    }
    check.finish(report, std::string(simd.name) + " rmsnorm");
}

void test_silu_mul(Report& report, const KernelTable& simd, std::mt19937& rng) {
    Check check;
    for (size_t n : kLengths) {
        std::vector<float> gate = random_floats(n, rng, -12.0f, 12.0f);
        // Extremes where exp over- or underflows.
        const float extremes[] = {-100.0f, 100.0f, -88.5f, 88.5f, -87.0f, 0.0f, -0.0f};
        for (size_t i = 0; i < n && i < std::size(extremes); ++i) gate[i * 7 % n] = extremes[i];
        const std::vector<float> up = random_floats(n, rng, -2.0f, 2.0f);
        compare_elementwise(check, simd, gate, kElemTol, "n=" + std::to_string(n),
                            [&](const KernelTable& t, float* io) {  // out aliases gate
                                t.silu_mul(io, up.data(), io, n);
                            });
    }
    check.finish(report, std::string(simd.name) + " silu_mul");
}

void test_mul(Report& report, const KernelTable& simd, std::mt19937& rng) {
    Check check;
    for (size_t n : kLengths) {
        const std::vector<float> a = random_floats(n, rng), b = random_floats(n, rng);
        compare_elementwise(check, simd, a, 0.0, "n=" + std::to_string(n),
                            [&](const KernelTable& t, float* io) { t.mul(io, b.data(), io, n); });
    }
    check.finish(report, std::string(simd.name) + " mul");
}

// KV-cache kernels: the queries of a GQA group against runs of stored keys, and weighted sums of
// runs of stored values, for each storage type, against the scalar table; row lengths are head
// sizes (whole Q8_0 blocks for Q8_0) and odd ones for the float types, groups of 1 to 7 heads
// (the AVX2 kernels take them in pieces of 4, 2 and 1), runs of odd lengths, rows padded and
// off vector alignment on purpose, output rows strided.
void test_kv_kernels(Report& report, const lfmrt::cpu::KvKernels& simd, std::mt19937& rng) {
    const lfmrt::cpu::KvKernels& scalar = lfmrt::cpu::scalar_kv_kernels();
    for (DType dtype : {DType::F32, DType::F16, DType::Q8_0}) {
        Check scores_check, mix_check;
        const int type = static_cast<int>(dtype);
        const std::vector<size_t> sizes = dtype == DType::Q8_0 ? std::vector<size_t>{32, 64, 96, 128, 256}
                                                               : std::vector<size_t>{13, 32, 64, 71, 96, 128, 256};
        for (size_t n : sizes) {
            for (size_t count : {1u, 2u, 7u, 33u}) {
                for (size_t group : {1u, 2u, 3u, 4u, 7u}) {
                    // Rows off vector alignment by one element (a Q8_0 block's f16 scale), as far as
                    // the kernels' contract allows: C++ reads a float or an f16 only at its own
                    // alignment (UBSan, tools/sanitize.sh, reports any other), as the KV cache keeps it.
                    const size_t skew = dtype == DType::F32 ? sizeof(float) : sizeof(uint16_t);
                    const size_t stride = lfmrt::row_bytes(dtype, n) + 3 * skew;
                    std::vector<uint8_t> stored(count * stride + skew);
                    std::vector<float> widened(count * n);
                    for (size_t j = 0; j < count; ++j) {
                        const std::vector<float> values = random_floats(n, rng, -3.0f, 3.0f);
                        lfmrt::quant::quantize_row(dtype, values.data(), stored.data() + skew + j * stride, n);
                        lfmrt::quant::dequantize_row(dtype, stored.data() + skew + j * stride, widened.data() + j * n, n);
                    }
                    const size_t out_stride = count + 3;
                    const std::vector<float> q = random_floats(group * n, rng);
                    const std::vector<float> weights = random_floats(group * out_stride, rng, 0.0f, 1.0f);
                    const std::string where = std::string(lfmrt::dtype_name(dtype)) + " n=" + std::to_string(n) +
                                              " count=" + std::to_string(count) + " group=" + std::to_string(group);
                    std::vector<float> got(group * out_stride), want(group * out_stride);
                    simd.scores[type](q.data(), group, stored.data() + skew, stride, count, n, 0.125f, got.data(),
                                      out_stride);
                    scalar.scores[type](q.data(), group, stored.data() + skew, stride, count, n, 0.125f, want.data(),
                                        out_stride);
                    for (size_t h = 0; h < group; ++h) {
                        for (size_t j = 0; j < count; ++j) {
                            double magnitude = 0.0;
                            for (size_t i = 0; i < n; ++i) {
                                magnitude += std::fabs(double(q[h * n + i]) * widened[j * n + i]) * 0.125;
                            }
                            scores_check.near(got[h * out_stride + j], want[h * out_stride + j], magnitude, kMatTol,
                                              where);
                        }
                    }
                    std::vector<float> mixed = random_floats(group * n, rng), expected = mixed;
                    simd.mix[type](weights.data(), out_stride, group, stored.data() + skew, stride, count, n, mixed.data());
                    scalar.mix[type](weights.data(), out_stride, group, stored.data() + skew, stride, count, n,
                                     expected.data());
                    for (size_t h = 0; h < group; ++h) {
                        for (size_t i = 0; i < n; ++i) {
                            double magnitude = std::fabs(expected[h * n + i]) + 1.0;
                            for (size_t j = 0; j < count; ++j) {
                                magnitude += std::fabs(double(weights[h * out_stride + j]) * widened[j * n + i]);
                            }
                            mix_check.near(mixed[h * n + i], expected[h * n + i], magnitude, 1e-6, where);
                        }
                    }
                }
            }
        }
        scores_check.finish(report, std::string(simd.name) + " kv scores " + lfmrt::dtype_name(dtype));
        mix_check.finish(report, std::string(simd.name) + " kv mix " + lfmrt::dtype_name(dtype));
    }
}

// exp_sum, online softmax's step: every length around the vector widths, shifts at and above
// the run's maximum (the attention op passes the running maximum), and -inf entries.
void test_exp_sum(Report& report, const lfmrt::cpu::KvKernels& simd, std::mt19937& rng) {
    const lfmrt::cpu::KvKernels& scalar = lfmrt::cpu::scalar_kv_kernels();
    Check check;
    for (size_t n : kLengths) {
        for (float spread : {1.0f, 30.0f, 200.0f}) {
            std::vector<float> x = random_floats(n, rng, -spread, spread);
            if (n > 3) x[n / 2] = -INFINITY;
            const float top = *std::max_element(x.begin(), x.end());
            for (float shift : {top, top + 5.0f}) {
                std::vector<float> got = x, want = x;
                const float got_sum = simd.exp_sum(got.data(), n, shift);
                const float want_sum = scalar.exp_sum(want.data(), n, shift);
                const std::string where = "n=" + std::to_string(n) + " spread=" + std::to_string(spread);
                for (size_t i = 0; i < n; ++i) check.near(got[i], want[i], std::fabs(want[i]), kElemTol, where);
                check.near(got_sum, want_sum, want_sum, kElemTol, where + " sum");
            }
        }
    }
    check.finish(report, std::string(simd.name) + " kv exp_sum");
}

int run_tests() {
    Report report;
    std::mt19937 rng(1234);
    // The scalar table's own invariants (gemm as gemv per token is its definition, so only the
    // row-split property is meaningful there).
    for (DType dtype : kDTypes) {
        test_row_splits(report, lfmrt::cpu::scalar_kernels(), dtype, rng);
        test_matmul_edges(report, lfmrt::cpu::scalar_kernels(), dtype, rng);
    }
    test_activation_scale(report, rng);
    test_activation_scale_k(report, rng);
    test_backend_mixed_projections(report, lfmrt::cpu::scalar_kernels(), rng);
    test_panel_packing(report, rng);
    for (DType dtype : kPanelTypes) {
        test_panel_matmul(report, lfmrt::cpu::scalar_kernels(), dtype, rng);
        test_panel_splits_and_edges(report, lfmrt::cpu::scalar_kernels(), dtype, rng);
        test_backend_panels(report, lfmrt::cpu::scalar_kernels(), dtype, rng);
    }
    // Tables share kernels (neon_dotprod has neon's float kernels, for one): a kernel already
    // tested in an earlier table is not tested again, which matters most under emulation.
    std::vector<const KernelTable*> tested;
    for (const KernelTable* simd : simd_tables()) {
        // `get` reads one kernel (or a pair) from a table; true unless an earlier table has it.
        const auto is_new = [&](const std::string& what, auto get) {
            const bool seen = std::any_of(tested.begin(), tested.end(),
                                          [&](const KernelTable* t) { return get(*t) == get(*simd); });
            if (seen) std::printf("SHARED %s %s: tested above\n", simd->name, what.c_str());
            return !seen;
        };
        for (DType dtype : kDTypes) {
            const auto matmuls = [dtype](const KernelTable& t) {
                return std::pair(t.gemv[int(dtype)], t.gemm[int(dtype)]);
            };
            if (is_new(std::string("gemv/gemm ") + lfmrt::dtype_name(dtype), matmuls)) {
                test_gemv(report, *simd, dtype, rng);
                test_gemm(report, *simd, dtype, rng);
                test_row_splits(report, *simd, dtype, rng);
                test_matmul_edges(report, *simd, dtype, rng);
            }
            const auto panel_matmuls = [dtype](const KernelTable& t) {
                return std::pair(t.gemv_panels[int(dtype)], t.gemm_panels[int(dtype)]);
            };
            if (has_panel_kernels(*simd, dtype) &&
                is_new(std::string("panel gemv/gemm ") + lfmrt::dtype_name(dtype), panel_matmuls)) {
                test_panel_matmul(report, *simd, dtype, rng);
                test_panel_splits_and_edges(report, *simd, dtype, rng);
                test_backend_panels(report, *simd, dtype, rng);
            }
        }
        if (is_new("quantize_q8a", [](const KernelTable& t) { return t.quantize_q8a; })) {
            test_quantize_q8a(report, *simd, lfmrt::cpu::ActivationFormat::Q8A, rng);
        }
        if (is_new("quantize_q8a_k", [](const KernelTable& t) { return t.quantize_q8a_k; })) {
            test_quantize_q8a(report, *simd, lfmrt::cpu::ActivationFormat::Q8A_K, rng);
        }
        test_backend_mixed_projections(report, *simd, rng);
        if (is_new("dot", [](const KernelTable& t) { return t.dot; })) test_dot(report, *simd, rng);
        if (is_new("axpy", [](const KernelTable& t) { return t.axpy; })) test_axpy(report, *simd, rng);
        if (is_new("rmsnorm", [](const KernelTable& t) { return t.rmsnorm; })) test_rmsnorm(report, *simd, rng);
        if (is_new("silu_mul", [](const KernelTable& t) { return t.silu_mul; })) test_silu_mul(report, *simd, rng);
        if (is_new("mul", [](const KernelTable& t) { return t.mul; })) test_mul(report, *simd, rng);
        tested.push_back(simd);
    }
#if defined(__x86_64__) || defined(_M_X64)
    if (simd_tables().size() == 2) {  // avx2 and avx512
        test_gemm_same_as(report, lfmrt::cpu::avx512_kernels(), lfmrt::cpu::avx2_kernels(), DType::BF16, rng);
        test_panel_matmul_same_as(report, lfmrt::cpu::avx512_kernels(), lfmrt::cpu::avx2_kernels(), DType::Q4_K,
                                  rng);
    }
    if (!simd_tables().empty()) {
        test_kv_kernels(report, lfmrt::cpu::avx2_kv_kernels(), rng);
        test_exp_sum(report, lfmrt::cpu::avx2_kv_kernels(), rng);
    }
#elif defined(__aarch64__)
    test_kv_kernels(report, lfmrt::cpu::neon_kv_kernels(), rng);
    test_exp_sum(report, lfmrt::cpu::neon_kv_kernels(), rng);
#endif
    report.summary();
    return report.failed() == 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// Benchmarks (single thread): best of a few repetitions.

template <typename Fn>
double best_seconds(int reps, Fn fn) {
    double best = 1e300;
    for (int i = 0; i < reps; ++i) {
        const auto start = std::chrono::steady_clock::now();
        fn();
        const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
        best = std::min(best, elapsed.count());
    }
    return best;
}

#if defined(__x86_64__) || defined(_M_X64)
// Runs 12 independent chains of 8-wide FMAs in registers for `steps` steps; returns a value
// derived from the result so the work cannot be dropped.
__attribute__((target("avx2,fma"))) float run_fma_chains(long steps) {
    constexpr int kChains = 12;
    __m256 acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(0.001f * i);
    const __m256 m = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-4f);
    for (long k = 0; k < steps; ++k) {
#pragma GCC unroll 12
        for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, c);
    }
    float sum = 0.0f;
    for (int i = 0; i < kChains; ++i) sum += _mm256_cvtss_f32(acc[i]);
    return sum;
}

// The FMA throughput of this core right now. The machine may be shared, so GEMM figures are
// also given as a fraction of this.
double fma_peak_gflops() {
    constexpr long kSteps = 2'000'000;  // ~3 ms: short enough to fit between other processes
    volatile float sink = 0.0f;
    const double seconds = best_seconds(20, [&] { sink = run_fma_chains(kSteps); });
    return 2.0 * 8 * 12 * kSteps / seconds * 1e-9;
}

// Synthetic loops of the integer GEMMs' instruction mixes, from registers and L1 (no weight
// stream): what the micro-kernels could reach on this core. Each returns GOPS (2 per
// multiply-add, as the GEMM lines count them). The asm statements keep every running sum a
// chain and the broadcast words loads, as in the kernels.
// Per 32-value block of 8 rows and each of 6 tokens: 8 x (vpbroadcastd, vpmaddubsw, vpaddw),
// then vpmaddwd, vcvtdq2ps, vmulps, vfmadd: the Q4_0 / Q4_K / Q6_K micro-tiles' inner mix.
__attribute__((target("avx2,fma,f16c"))) float avx2_q4_mix_loop(long kSteps, const int32_t* x) {
    const __m256i levels = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    __m256 acc[6];
    for (__m256& a : acc) a = _mm256_setzero_ps();
    for (long k = 0; k < kSteps; ++k) {
        __m256i sum[6];
#pragma GCC unroll 6
        for (int t = 0; t < 6; ++t) sum[t] = _mm256_set1_epi32(x[48 + t]);
#pragma GCC unroll 8
        for (int g = 0; g < 8; ++g) {
#pragma GCC unroll 6
            for (int t = 0; t < 6; ++t) {
                sum[t] = _mm256_add_epi16(sum[t], _mm256_maddubs_epi16(levels, _mm256_set1_epi32(x[8 * t + g])));
                asm("" : "+x"(sum[t]));
            }
        }
#pragma GCC unroll 6
        for (int t = 0; t < 6; ++t) {
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(sum[t], ones)),
                                     _mm256_mul_ps(acc[(t + 1) % 6], _mm256_set1_ps(1e-9f)), acc[t]);
        }
        asm volatile("" : "+r"(x));
}
return _mm256_cvtss_f32(acc[0]);
}
double avx2_q4_mix_gops() {
    constexpr long kSteps = 20000;
    alignas(64) int32_t words[128] = {};
    volatile float sink = 0.0f;
    const double seconds = best_seconds(20, [&] { sink = avx2_q4_mix_loop(kSteps, words); });
    return 2.0 * 6 * 8 * 32 * kSteps / seconds * 1e-9;
}

// vpmaddubsw and vpaddw alone, 10 chains from registers (each product feeds its own chain's next
// multiply, so nothing can be hoisted): the most any AVX2 byte-dot tile could reach, broadcasts,
// unpacking and scaling aside.
__attribute__((target("avx2"), always_inline)) inline void maddubs_step(__m256i& v, __m256i b) {
    v = _mm256_add_epi16(v, _mm256_maddubs_epi16(v, b));
    asm("" : "+x"(v));
}
__attribute__((target("avx2"))) int avx2_maddubs_loop(long kSteps) {
    // Named variables, not an array: GCC keeps an array of them in memory here.
    __m256i s0 = _mm256_set1_epi8(1), s1 = _mm256_set1_epi8(2), s2 = _mm256_set1_epi8(3), s3 = _mm256_set1_epi8(4),
            s4 = _mm256_set1_epi8(5), s5 = _mm256_set1_epi8(6), s6 = _mm256_set1_epi8(7), s7 = _mm256_set1_epi8(8),
            s8 = _mm256_set1_epi8(9), s9 = _mm256_set1_epi8(10);
    const __m256i b = _mm256_set1_epi8(1);
    for (long k = 0; k < kSteps; ++k) {
        maddubs_step(s0, b), maddubs_step(s1, b), maddubs_step(s2, b), maddubs_step(s3, b), maddubs_step(s4, b);
        maddubs_step(s5, b), maddubs_step(s6, b), maddubs_step(s7, b), maddubs_step(s8, b), maddubs_step(s9, b);
    }
    const __m256i all = _mm256_add_epi16(
        _mm256_add_epi16(_mm256_add_epi16(s0, s1), _mm256_add_epi16(s2, s3)),
        _mm256_add_epi16(_mm256_add_epi16(s4, s5), _mm256_add_epi16(_mm256_add_epi16(s6, s7), _mm256_add_epi16(s8, s9))));
    return _mm256_extract_epi16(all, 0);
}
double avx2_maddubs_gops() {
    constexpr long kSteps = 200000;
    volatile int sink = 0;
    const double seconds = best_seconds(20, [&] { sink = avx2_maddubs_loop(kSteps); });
    return 2.0 * 10 * 32 * kSteps / seconds * 1e-9;
}

// Per 4 values of 8 rows and each of 6 tokens: vpbroadcastd, vpsignb, vpmaddubsw, vpmaddwd,
// vpaddd (Q8_0's sign trick), then per 8 of those vcvtdq2ps, vmulps, vfmadd.
__attribute__((target("avx2,fma,f16c"))) float avx2_q8_mix_loop(long kSteps, const int32_t* x) {
    const __m256i level = _mm256_set1_epi8(-3), magnitude = _mm256_abs_epi8(level), ones = _mm256_set1_epi16(1);
    __m256 acc[6];
    for (__m256& a : acc) a = _mm256_setzero_ps();
    for (long k = 0; k < kSteps; ++k) {
        __m256i sum[6];
#pragma GCC unroll 6
        for (int t = 0; t < 6; ++t) sum[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int g = 0; g < 8; ++g) {
#pragma GCC unroll 6
            for (int t = 0; t < 6; ++t) {
                const __m256i xs = _mm256_sign_epi8(_mm256_set1_epi32(x[8 * t + g]), level);
                sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, xs), ones));
                asm("" : "+x"(sum[t]));
            }
        }
#pragma GCC unroll 6
        for (int t = 0; t < 6; ++t) {
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[t]), _mm256_mul_ps(acc[(t + 1) % 6], _mm256_set1_ps(1e-9f)),
                                     acc[t]);
        }
        asm volatile("" : "+r"(x));
}
return _mm256_cvtss_f32(acc[0]);
}
double avx2_q8_mix_gops() {
    constexpr long kSteps = 20000;
    alignas(64) int32_t words[128] = {};
    volatile float sink = 0.0f;
    const double seconds = best_seconds(20, [&] { sink = avx2_q8_mix_loop(kSteps, words); });
    return 2.0 * 6 * 8 * 32 * kSteps / seconds * 1e-9;
}

// Per 4 values of 16 rows and each of 8 tokens: vpbroadcastd, vpdpbusd; per 8 of those
// vcvtdq2ps, vmulps, vfmadd (the AVX-512 panel micro-tile's mix).
__attribute__((target("avx512f,avx512bw,avx512vnni"))) float avx512_vnni_mix_loop(long kSteps, const int32_t* x) {
    const __m512i levels = _mm512_set1_epi8(3);
    __m512 acc[8];
    for (__m512& a : acc) a = _mm512_setzero_ps();
    for (long k = 0; k < kSteps; ++k) {
        __m512i sum[8];
#pragma GCC unroll 8
        for (int t = 0; t < 8; ++t) sum[t] = _mm512_set1_epi32(x[64 + t]);
#pragma GCC unroll 8
        for (int g = 0; g < 8; ++g) {
#pragma GCC unroll 8
            for (int t = 0; t < 8; ++t) {
                sum[t] = _mm512_dpbusd_epi32(sum[t], levels, _mm512_set1_epi32(x[8 * t + g]));
                asm("" : "+v"(sum[t]));
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < 8; ++t) {
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[t]), _mm512_mul_ps(acc[(t + 1) % 8], _mm512_set1_ps(1e-9f)),
                                     acc[t]);
        }
        asm volatile("" : "+r"(x));
}
return _mm512_reduce_add_ps(acc[0]);
}
double avx512_vnni_mix_gops() {
    constexpr long kSteps = 20000;
    alignas(64) int32_t words[128] = {};
    volatile float sink = 0.0f;
    const double seconds = best_seconds(20, [&] { sink = avx512_vnni_mix_loop(kSteps, words); });
    return 2.0 * 8 * 8 * 64 * kSteps / seconds * 1e-9;
}
#endif

// The layout a benchmark's block matrix is read in: GGUF's rows, or 16-row panels (the panel
// kernels, where the table has them for the type).
enum class Layout { Rows, Panels };
const char* layout_name(Layout layout) { return layout == Layout::Rows ? "rows  " : "panels"; }

// A benchmark's weight matrix in the layout asked for.
std::vector<uint8_t> bench_matrix(const Weights& w, Layout layout) {
    const auto* data = static_cast<const uint8_t*>(w.data());
    if (layout == Layout::Rows) {
        return std::vector<uint8_t>(data, data + w.rows() * lfmrt::row_bytes(w.dtype(), w.cols()));
    }
    std::vector<uint8_t> packed(lfmrt::cpu::panel_matrix_bytes(w.dtype(), w.rows(), w.cols()));
    lfmrt::cpu::pack_panels(w.dtype(), data, w.rows(), w.cols(), 0, lfmrt::cpu::panel_rows(w.rows()),
                              packed.data());
    return packed;
}

// The layout the model reads a `dtype` matrix in with `table`: panels where the table has panel
// kernels for the type (the model repacks those matrices at load), else GGUF's rows.
Layout model_layout(const KernelTable& table, DType dtype) {
    return has_panel_kernels(table, dtype) ? Layout::Panels : Layout::Rows;
}

// A table's GEMV or GEMM for `dtype` matrices in `layout` (nullptr where it has none).
lfmrt::cpu::GemvFn gemv_in(const KernelTable& table, DType dtype, Layout layout) {
    return (layout == Layout::Rows ? table.gemv : table.gemv_panels)[int(dtype)];
}
lfmrt::cpu::GemmFn gemm_in(const KernelTable& table, DType dtype, Layout layout) {
    return (layout == Layout::Rows ? table.gemm : table.gemm_panels)[int(dtype)];
}

// A bench line's label: `table`'s name, plus "(avx2's kernel)" (say) where the entry `get` reads
// from a table is the same kernel in a simpler table, as the AVX-512 table's row-layout Q4_0
// kernels are the AVX2 table's.
template <typename Get>
std::string kernel_label(const KernelTable& table, Get get) {
#if defined(__x86_64__) || defined(_M_X64)
    const KernelTable* simpler[] = {&lfmrt::cpu::scalar_kernels(), &lfmrt::cpu::avx2_kernels()};
#elif defined(__aarch64__)
    const KernelTable* simpler[] = {&lfmrt::cpu::scalar_kernels(), &lfmrt::cpu::neon_kernels()};
#else
    const KernelTable* simpler[] = {&lfmrt::cpu::scalar_kernels()};
#endif
    for (const KernelTable* other : simpler) {
        if (other == &table) break;
        if (get(*other) == get(table)) return std::string(table.name) + " (" + other->name + "'s kernel)";
    }
    return table.name;
}

// A benchmark GEMM's operands: a random rows x cols matrix of `dtype` (from `seed`), n tokens of
// random activations in its input format, the output and one thread's packing scratch.
struct GemmInputs {
    GemmInputs(DType dtype, size_t rows, size_t cols, size_t n, unsigned seed)
        : rows(rows),
          cols(cols),
          n(n),
          rng(seed),
          w(dtype, rows, cols, rng),
          x(random_floats(n * cols, rng)),
          input(dtype, x.data(), cols, n, cols),
          y(n * rows),
          scratch(lfmrt::cpu::kGemmScratchBytes) {}

    // Y = W X over every row, with W at `matrix` (w's data, or a copy or packing of it).
    void run(lfmrt::cpu::GemmFn gemm, const void* matrix) {
        gemm(matrix, cols, input.data(), input.stride(), n, y.data(), rows, 0, rows, scratch.data());
    }

    size_t rows, cols, n;
    std::mt19937 rng;
    const Weights w;
    const std::vector<float> x;
    const Activations input;
    std::vector<float> y;
    std::vector<uint8_t> scratch;
};

// Integer and float matmuls are both reported as GOPS: 2 operations (multiply, add) per weight
// per token.
// This core's peaks now (0 where not measured): fp32 FMA, and the synthetic integer mixes above.
struct Peaks {
    double fma = 0.0, avx2_q4 = 0.0, avx2_q8 = 0.0, avx512_vnni = 0.0;

    // The peak a `table` GEMM of `dtype` is read against: its micro-tile's mix (the AVX-512
    // table's K-quants other than Q4_K and Q6_K use AVX2-style rows, not read against any).
    double for_gemm(const KernelTable& table, DType dtype) const {
        if (!lfmrt::is_quantized(dtype)) return fma;
#if defined(__x86_64__) || defined(_M_X64)
        if (&table == &lfmrt::cpu::avx512_kernels()) return has_panel_kernels(table, dtype) ? avx512_vnni : 0.0;
        if (&table == &lfmrt::cpu::avx2_kernels()) return dtype == DType::Q8_0 ? avx2_q8 : avx2_q4;
#endif
        return 0.0;
    }
};

void bench_gemm(const KernelTable& table, DType dtype, size_t rows, size_t cols, size_t n, const Peaks& peaks) {
    const double peak_gflops = peaks.for_gemm(table, dtype);
    GemmInputs operands(dtype, rows, cols, n, 1);
    const Layout layout = model_layout(table, dtype);
    const std::vector<uint8_t> panels =
        layout == Layout::Panels ? bench_matrix(operands.w, layout) : std::vector<uint8_t>();
    const void* matrix = layout == Layout::Panels ? panels.data() : operands.w.data();
    const auto get = [&](const KernelTable& t) { return gemm_in(t, dtype, layout); };
    const auto gemm = get(table);
    const double seconds = best_seconds(5, [&] {
        operands.run(gemm, matrix);
    });
    const double gops = 2.0 * rows * cols * n / seconds * 1e-9;
    std::printf("%s gemm %-4s %s rows=%zu cols=%zu n=%zu: %.1f GOPS (%.1f ms", kernel_label(table, get).c_str(),
                lfmrt::dtype_name(dtype), layout_name(layout), rows, cols, n, gops, seconds * 1e3);
    if (peak_gflops > 0.0) {
        std::printf(", %.0f%% of %s peak", 100.0 * gops / peak_gflops, lfmrt::is_quantized(dtype) ? "its mix's" : "FMA");
    }
    std::printf(")\n");
}

void bench_gemv(const KernelTable& table, DType dtype, size_t rows, size_t cols,
                size_t offset_elems = 0) {
    std::mt19937 rng(2);
    const Weights w(dtype, rows, cols, rng, offset_elems);
    const std::vector<float> x = random_floats(cols, rng);
    const Activations input(dtype, x.data(), cols, 1, cols);
    std::vector<float> y(rows);
    const Layout layout = model_layout(table, dtype);
    const std::vector<uint8_t> panels = layout == Layout::Panels ? bench_matrix(w, layout) : std::vector<uint8_t>();
    const void* matrix = layout == Layout::Panels ? panels.data() : w.data();
    const auto get = [&](const KernelTable& t) { return gemv_in(t, dtype, layout); };
    const auto gemv = get(table);
    const double seconds = best_seconds(10, [&] { gemv(matrix, cols, input.data(), y.data(), 0, rows); });
    const double bytes = double(rows) * lfmrt::row_bytes(dtype, cols);
    std::printf("%s gemv %-4s %s rows=%zu cols=%zu (%.1f MB%s): %.1f GB/s, %.1f GOPS (%.3f ms)\n",
                kernel_label(table, get).c_str(), lfmrt::dtype_name(dtype), layout_name(layout), rows, cols,
                bytes * 1e-6, offset_elems ? ", misaligned" : "", bytes / seconds * 1e-9,
                2.0 * rows * cols / seconds * 1e-9, seconds * 1e3);
}

void bench_gemm_layouts(const KernelTable& table, DType dtype, size_t rows, size_t cols, size_t n) {
    GemmInputs operands(dtype, rows, cols, n, 1);
    for (Layout layout : {Layout::Rows, Layout::Panels}) {
        const auto get = [&](const KernelTable& t) { return gemm_in(t, dtype, layout); };
        const auto gemm = get(table);
        if (gemm == nullptr) continue;
        const std::vector<uint8_t> matrix = bench_matrix(operands.w, layout);
        const double seconds = best_seconds(n > 64 ? 5 : 50, [&] {
            operands.run(gemm, matrix.data());
        });
        std::printf("%s gemm %-4s %s rows=%zu cols=%zu n=%zu: %.1f GOPS (%.3f ms)\n",
                    kernel_label(table, get).c_str(), lfmrt::dtype_name(dtype), layout_name(layout), rows, cols, n,
                    2.0 * rows * cols * n / seconds * 1e-9, seconds * 1e3);
    }
}

// `copies` copies of a matrix, each starting on a cache line, in 2 MiB pages (a HugePageBuffer,
// as the model allocates its panels) or in ordinary 4 KiB pages: a round over them that starts
// from the first reads every one from memory, not from a cache.
class MatrixCopies {
public:
    MatrixCopies(const std::vector<uint8_t>& matrix, size_t copies, bool huge_pages)
        : stride_((matrix.size() + 63) / 64 * 64),
          huge_(huge_pages ? copies * stride_ : 0),
          small_(huge_pages ? 0 : copies * stride_),
          base_(huge_pages ? static_cast<uint8_t*>(huge_.data()) : small_.data()) {
        for (size_t i = 0; i < copies; ++i) std::memcpy(base_ + i * stride_, matrix.data(), matrix.size());
    }
    const uint8_t* at(size_t i) const { return base_ + i * stride_; }

private:
    size_t stride_;
    lfmrt::HugePageBuffer huge_;
    std::vector<uint8_t> small_;
    uint8_t* base_;
};

// GEMV from memory: a round over enough copies of the matrix (at least 256 MB) that none is
// still cached when its turn comes, as in a decode step. Rows and panels in ordinary (4 KiB)
// pages, then panels in 2 MiB pages, as the model allocates them (rows stay in the file's pages).
void bench_gemv_from_dram(const KernelTable& table, DType dtype, size_t rows, size_t cols) {
    std::mt19937 rng(2);
    const Weights w(dtype, rows, cols, rng, 0);
    const std::vector<float> x = random_floats(cols, rng);
    const Activations input(dtype, x.data(), cols, 1, cols);
    std::vector<float> y(rows);
    const double bytes = double(rows) * lfmrt::row_bytes(dtype, cols);
    const size_t copies = std::max<size_t>(1, size_t(256e6 / bytes));
    for (Layout layout : {Layout::Rows, Layout::Panels}) {
        const auto get = [&](const KernelTable& t) { return gemv_in(t, dtype, layout); };
        const auto gemv = get(table);
        if (gemv == nullptr) continue;
        const std::vector<uint8_t> matrix = bench_matrix(w, layout);
        for (bool huge_pages : {false, true}) {
            if (huge_pages && layout == Layout::Rows) continue;
            const MatrixCopies in_memory(matrix, copies, huge_pages);
            const double seconds = best_seconds(5, [&] {
                for (size_t i = 0; i < copies; ++i) gemv(in_memory.at(i), cols, input.data(), y.data(), 0, rows);
            }) / double(copies);
            std::printf("%s gemv %-4s %s rows=%zu cols=%zu from DRAM (%zu x %.1f MB, %s pages): %.1f GB/s (%.3f ms)\n",
                        kernel_label(table, get).c_str(), lfmrt::dtype_name(dtype), layout_name(layout), rows, cols,
                        copies, bytes * 1e-6, huge_pages ? "2 MiB" : "4 KiB", bytes / seconds * 1e-9, seconds * 1e3);
        }
    }
}

// GEMM of n tokens from memory (batched decode): a round over enough copies of the matrix (at
// least 256 MB) that none is cached when its turn comes, in the layout and pages the model uses
// (panels in 2 MiB pages, rows in 4 KiB). Read next to bench_gemm's figure from cache: the gap is
// what the weight reads cost when they do not overlap the arithmetic.
void bench_gemm_from_dram(const KernelTable& table, DType dtype, size_t rows, size_t cols, size_t n) {
    GemmInputs operands(dtype, rows, cols, n, 6);
    const Layout layout = model_layout(table, dtype);
    const auto get = [&](const KernelTable& t) { return gemm_in(t, dtype, layout); };
    const auto gemm = get(table);
    const std::vector<uint8_t> matrix = bench_matrix(operands.w, layout);
    const size_t copies = std::max<size_t>(1, size_t(256e6 / double(matrix.size())));
    const MatrixCopies in_memory(matrix, copies, layout == Layout::Panels);
    const double seconds = best_seconds(3, [&] {
        for (size_t i = 0; i < copies; ++i) {
            operands.run(gemm, in_memory.at(i));
        }
    }) / double(copies);
    std::printf("%s gemm %-4s %s rows=%zu cols=%zu n=%zu from DRAM (%zu x %.1f MB): %.1f GOPS, %.1f GB/s (%.3f ms)\n",
                kernel_label(table, get).c_str(), lfmrt::dtype_name(dtype), layout_name(layout), rows, cols, n,
                copies, double(matrix.size()) * 1e-6, 2.0 * rows * cols * n / seconds * 1e-9,
                double(matrix.size()) / seconds * 1e-9, seconds * 1e3);
}

// Quantizing one matmul input (the 350M's 512 x 1024 prefill chunk) to BlockQ8A.
void bench_quantize_q8a(const KernelTable& table, size_t n, size_t cols) {
    std::mt19937 rng(4);
    const std::vector<float> x = random_floats(n * cols, rng);
    std::vector<uint8_t> out(n * lfmrt::cpu::activation_row_bytes(DType::Q8_0, cols));
    const size_t stride = lfmrt::cpu::activation_row_bytes(DType::Q8_0, cols);
    const double seconds = best_seconds(5, [&] {
        for (size_t t = 0; t < n; ++t) table.quantize_q8a(x.data() + t * cols, out.data() + t * stride, cols);
    });
    std::printf("%s quantize_q8a n=%zu cols=%zu: %.1f GB/s of fp32 in (%.3f ms)\n", table.name, n, cols,
                4.0 * n * cols / seconds * 1e-9, seconds * 1e3);
}

// One decode step's matrix-vector products in the 350M's shapes, each matrix in its own memory
// (so nothing is cached between steps, as in a real decode): per layer w1, w3 (4608 x 1024) and
// w2 (1024 x 4608) in `dtype` plus a 4096 x 1024 mix of the layer's other projections, then the
// 65536 x 1024 head in `head`. Matrices of one shape are copies of one quantized matrix.
void bench_decode_step(const KernelTable& table, DType dtype, DType head, Layout layout) {
    struct Shape {
        size_t rows, cols;
        DType dtype;
        size_t copies;
    };
    const Shape shapes[] = {{4608, 1024, dtype, 32}, {1024, 4608, dtype, 16}, {4096, 1024, dtype, 16},
                            {65536, 1024, head, 1}};
    std::mt19937 rng(5);
    std::vector<std::vector<uint8_t>> matrices;
    std::vector<const Shape*> of_matrix;
    double bytes = 0.0;
    // Panels for the types the table reads that way, as the model packs them at load.
    const auto layout_of = [&](DType type) {
        return layout == Layout::Panels ? model_layout(table, type) : Layout::Rows;
    };
    for (const Shape& shape : shapes) {
        const Weights w(shape.dtype, shape.rows, shape.cols, rng, 0);
        for (size_t i = 0; i < shape.copies; ++i) {
            matrices.push_back(bench_matrix(w, layout_of(shape.dtype)));
            of_matrix.push_back(&shape);
            bytes += double(matrices.back().size());
        }
    }
    const std::vector<float> x = random_floats(4608, rng);
    const Activations input(dtype, x.data(), 4608, 1, 4608);
    std::vector<float> y(65536);
    const double seconds = best_seconds(5, [&] {
        for (size_t i = 0; i < matrices.size(); ++i) {
            const Shape& shape = *of_matrix[i];
            const auto gemv = gemv_in(table, shape.dtype, layout_of(shape.dtype));
            gemv(matrices[i].data(), shape.cols, input.data(), y.data(), 0, shape.rows);
        }
    });
    // Labelled with a simpler table's name where both types' kernels are that table's.
    const auto label_of = [&](DType type) {
        return kernel_label(table, [&](const KernelTable& t) { return gemv_in(t, type, layout_of(type)); });
    };
    const std::string label = label_of(dtype) == label_of(head) ? label_of(dtype) : table.name;
    std::printf("%s decode step %s + %s head, %s (%.0f MB, distinct matrices): %.1f ms, %.1f GB/s\n", label.c_str(),
                lfmrt::dtype_name(dtype), lfmrt::dtype_name(head), layout_name(layout), bytes * 1e-6, seconds * 1e3,
                bytes / seconds * 1e-9);
}

// dot(a, a) over a buffer far larger than the caches reads it once: the memory bandwidth one
// core gets, to read the GEMV figures against.
void bench_read_bandwidth(const KernelTable& table, size_t bytes) {
    std::mt19937 rng(3);
    const std::vector<float> a = random_floats(bytes / 4, rng);
    volatile float sink = 0.0f;
    const double seconds = best_seconds(10, [&] { sink = table.dot(a.data(), a.data(), a.size()); });
    std::printf("%s dot (read reference, %.1f MB): %.1f GB/s\n", table.name, bytes * 1e-6,
                bytes / seconds * 1e-9);
}

int run_benchmarks(bool argc_all) {
    const char* isa = std::getenv("LFMRT_ISA");
    const KernelTable& table = lfmrt::cpu::select_kernels(isa != nullptr ? isa : "");
    Peaks peak;
#if defined(__x86_64__) || defined(_M_X64)
    if (&table != &lfmrt::cpu::scalar_kernels()) {
        peak.fma = fma_peak_gflops();
        peak.avx2_q4 = avx2_q4_mix_gops();
        peak.avx2_q8 = avx2_q8_mix_gops();
        std::printf("fma peak (one core, 8-wide fp32 FMA, now): %.1f GFLOP/s\n", peak.fma);
        std::printf("int8 mix peaks (one core, from registers): avx2 Q4_0/Q4_K/Q6_K tile %.1f GOPS, avx2 Q8_0 tile %.1f GOPS"
                    " (vpmaddubsw + vpaddw alone %.1f)",
                    peak.avx2_q4, peak.avx2_q8, avx2_maddubs_gops());
        if (&table == &lfmrt::cpu::avx512_kernels()) {
            peak.avx512_vnni = avx512_vnni_mix_gops();
            std::printf(", avx512 vnni tile %.1f GOPS", peak.avx512_vnni);
        }
        std::printf("\n");
    }
#endif
    // The LFM2-350M shapes: w1/w3 (4608 x 1024) and w2 (1024 x 4608), a 512-token prefill.
    const bool all = argc_all;
    for (DType dtype : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
        bench_gemm(table, dtype, 4608, 1024, 512, peak);
        if (all) bench_gemm(table, dtype, 1024, 4608, 512, peak);
    }
    bench_gemm(table, DType::Q4_0, 4608, 1024, 7, peak);
    bench_quantize_q8a(table, 512, 1024);
    for (DType dtype : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
        bench_gemv(table, dtype, 4608, 1024);
    }
    bench_gemv(table, DType::Q4_0, 65536, 1024);
    bench_gemv(table, DType::Q8_0, 65536, 1024);
    if (all) {
        for (DType dtype : {DType::BF16, DType::F16, DType::F32}) {
            bench_gemm(table, dtype, 4608, 1024, 512, peak);
        }
        bench_gemm(table, DType::BF16, 1024, 4608, 512, peak);
        bench_gemm(table, DType::BF16, 4608, 1024, 7, peak);
        for (DType dtype : {DType::BF16, DType::F16, DType::F32}) bench_gemv(table, dtype, 4608, 1024);
        bench_gemv(table, DType::BF16, 4608, 1024, 1);
        bench_gemv(table, DType::BF16, 65536, 1024);
    }
    // Row-major GGUF against 16-row panels, where the table has panel kernels.
    for (DType dtype : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
        bench_gemv_from_dram(table, dtype, 4608, 1024);
        bench_gemv_from_dram(table, dtype, 65536, 1024);
        bench_gemm_layouts(table, dtype, 4608, 1024, 16);
        bench_gemm_layouts(table, dtype, 4608, 1024, 512);
    }
    for (DType dtype : {DType::Q4_0, DType::Q8_0, DType::BF16}) bench_gemm_from_dram(table, dtype, 4608, 1024, 16);
    for (Layout layout : {Layout::Rows, Layout::Panels}) {
        bench_decode_step(table, DType::Q4_0, DType::Q6_K, layout);
        bench_decode_step(table, DType::Q8_0, DType::Q8_0, layout);
    }
    bench_read_bandwidth(table, size_t{65536} * 1024 * 2);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Instruction counting (--count): the matrix work of one LFM2-350M forward step, run `passes` times
// on one thread, for QEMU's instruction-counting plugin (bench/qemu/): the difference between the
// counts of two runs that differ by one pass is the instructions of one pass, which no timer on
// an emulator gives. Weights are random bytes (these kernels' instruction counts do not depend on
// the values, and the reference quantizers would take minutes under emulation), one matrix per
// shape, in GGUF's rows or in panels where the table has panel kernels.

// One step of n tokens: per layer the FFN (w1, w3: 4608 x 1024; w2: 1024 x 4608) and the operator's
// projections (10 conv layers: in_proj 3072 x 1024, out_proj 1024 x 1024; 6 attention layers: q and
// o 1024 x 1024, k and v 512 x 1024), each input quantized once per matrix shape group as the
// backend does, and the tied LM head (65536 x 1024, `head`) on the last token.
int run_count(DType dtype, DType head, size_t n, Layout wanted, int passes) {
    const char* isa = std::getenv("LFMRT_ISA");
    const KernelTable& table = lfmrt::cpu::select_kernels(isa != nullptr ? isa : "");
    struct Use {
        size_t rows, cols, per_step;
        DType dtype;
    };
    const Use uses[] = {{4608, 1024, 32, dtype}, {1024, 4608, 16, dtype}, {3072, 1024, 10, dtype},
                        {1024, 1024, 22, dtype}, {512, 1024, 12, dtype},  {65536, 1024, 1, head}};
    std::mt19937_64 rng(7);
    std::vector<std::vector<uint8_t>> matrices;
    for (const Use& use : uses) {
        std::vector<uint8_t> bytes(use.rows * lfmrt::row_bytes(use.dtype, use.cols));
        for (size_t i = 0; i + 8 <= bytes.size(); i += 8) {
            const uint64_t word = rng() & 0x3BFF3BFF3BFF3BFFull;  // every fp16 scale finite
            std::memcpy(&bytes[i], &word, 8);
        }
        const Layout layout = wanted == Layout::Panels ? model_layout(table, use.dtype) : Layout::Rows;
        if (layout == Layout::Panels) {
            std::vector<uint8_t> packed(lfmrt::cpu::panel_matrix_bytes(use.dtype, use.rows, use.cols));
            lfmrt::cpu::pack_panels(use.dtype, bytes.data(), use.rows, use.cols, 0, lfmrt::cpu::panel_rows(use.rows),
                                    packed.data());
            bytes.swap(packed);
        }
        matrices.push_back(std::move(bytes));
    }
    std::mt19937 frng(8);
    const std::vector<float> x = random_floats(n * 4608, frng);
    // Room for the widest input format of any use: fp32 rows for float weights.
    std::vector<uint8_t> xq(n * std::max(lfmrt::cpu::activation_row_bytes(dtype, 4608),
                                         lfmrt::cpu::activation_row_bytes(head, 4608)));
    std::vector<float> y(n * 65536);
    std::vector<uint8_t> scratch(lfmrt::cpu::kGemmScratchBytes);
    for (int pass = 0; pass < passes; ++pass) {
        for (size_t u = 0; u < std::size(uses); ++u) {
            const Use& use = uses[u];
            const bool is_head = u + 1 == std::size(uses);
            const size_t tokens = is_head ? 1 : n;
            const Layout layout = wanted == Layout::Panels ? model_layout(table, use.dtype) : Layout::Rows;
            const size_t stride = lfmrt::cpu::activation_row_bytes(use.dtype, use.cols);
            const auto quantize = lfmrt::cpu::activation_quantizer(table, lfmrt::cpu::activation_format(use.dtype));
            for (size_t i = 0; i < use.per_step; ++i) {
                // The backend quantizes one input for the matrices that share it (w1 and w3, q/k/v):
                // about one quantization per two matrices here.
                if (i % 2 == 0) {
                    for (size_t t = 0; t < tokens; ++t) quantize(x.data() + t * use.cols, xq.data() + t * stride, use.cols);
                }
                if (tokens == 1) {
                    gemv_in(table, use.dtype, layout)(matrices[u].data(), use.cols, xq.data(), y.data(), 0, use.rows);
                } else {
                    gemm_in(table, use.dtype, layout)(matrices[u].data(), use.cols, xq.data(), stride, tokens, y.data(),
                                                      use.rows, 0, use.rows, scratch.data());
                }
            }
        }
    }
    std::printf("counted %s: %d pass(es) of a 350M step, %zu token(s), %s + %s head, %s\n", table.name, passes, n,
                lfmrt::dtype_name(dtype), lfmrt::dtype_name(head), layout_name(wanted));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // one line per check, as it finishes, even into a pipe
    if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) {
        return run_benchmarks(argc > 2 && std::strcmp(argv[2], "--all") == 0);
    }
    if (argc == 7 && std::strcmp(argv[1], "--count") == 0) {
        return run_count(lfmrt::dtype_from_name(argv[2]), lfmrt::dtype_from_name(argv[3]), std::stoul(argv[4]),
                         std::strcmp(argv[5], "panels") == 0 ? Layout::Panels : Layout::Rows, std::stoi(argv[6]));
    }
    return run_tests();
}
