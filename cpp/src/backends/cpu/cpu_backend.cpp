#include "backends/cpu/cpu_backend.h"

#include "backends/cpu/dispatch.h"
#include "backends/cpu/panels.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace lfmrt::cpu {

namespace {

size_t round_up(size_t value, size_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Rows per GEMM task: several tasks per thread so a slow (shared) core does not stall the others,
// in whole GEMM panels (partial panels take masked loads; any split gives the same bits).
size_t rows_per_task(size_t rows, int n_threads) {
    const size_t target_tasks = static_cast<size_t>(n_threads) * 4;
    return std::max(kRowBlock, round_up((rows + target_tasks - 1) / target_tasks, kRowBlock));
}

}  // namespace

CpuBackend::CpuBackend(const KernelTable& kernels, int n_threads)
    : kernels_(kernels),
      kv_kernels_(kv_kernels_for(kernels)),
      pool_(n_threads),
      gemm_scratch_(static_cast<size_t>(n_threads), std::vector<float>(kGemmScratchBytes / sizeof(float))),
      score_scratch_(static_cast<size_t>(n_threads)) {}

void CpuBackend::matmul(const Matrix& w, const float* x, size_t ldx, size_t n, float* y, size_t ldy) {
    matmul({Projection{w, y, ldy}}, x, ldx, n);
}

const void* CpuBackend::quantize_activations(ActivationFormat format, const float* x, size_t ldx, size_t n,
                                             size_t cols) {
    const size_t stride = activation_row_bytes(DType::Q8_0, cols);
    std::vector<uint8_t>& buffer = format == ActivationFormat::Q8A_K ? quantized_x_k_ : quantized_x_;
    if (buffer.size() < n * stride) buffer.resize(n * stride);
    uint8_t* out = buffer.data();
    const QuantizeRowFn quantize = activation_quantizer(kernels_, format);
    if (n == 1) {  // decode: not worth waking the pool for one row
        quantize(x, out, cols);
        return out;
    }
    const size_t rows_per_task = std::max<size_t>(1, n / (4 * static_cast<size_t>(pool_.size())));
    pool_.parallel_for((n + rows_per_task - 1) / rows_per_task, [&](size_t task, int) {
        const size_t end = std::min(n, (task + 1) * rows_per_task);
        for (size_t t = task * rows_per_task; t < end; ++t) quantize(x + t * ldx, out + t * stride, cols);
    });
    return out;
}

void CpuBackend::plan_row_tasks(size_t projection, size_t rows, size_t n) {
    if (n > 1) {
        const size_t chunk = rows_per_task(rows, pool_.size());
        for (size_t begin = 0; begin < rows; begin += chunk) {
            row_tasks_.push_back({projection, begin, std::min(rows, begin + chunk)});
        }
        return;
    }
    // GEMV is a memory stream: each task takes 1/n_threads of the rows still unassigned (guided
    // scheduling, in whole row blocks), so the first tasks are long streams and the last ones
    // short, and the threads finish together; a thread on a slow core just takes fewer of the
    // small tasks. Measured against 4 equal tasks per thread: decode steps 1-5% faster (2 threads,
    // the 350M shape, in-process A/B).
    for (size_t begin = 0; begin < rows;) {
        const size_t size = std::max(kRowBlock, round_up((rows - begin) / pool_.size(), kRowBlock));
        const size_t end = std::min(rows, begin + size);
        row_tasks_.push_back({projection, begin, end});
        begin = end;
    }
}

void CpuBackend::matmul(std::initializer_list<Projection> projections, const float* x, size_t ldx, size_t n) {
    if (projections.size() == 0) throw std::logic_error("matmul takes at least one projection");
    row_tasks_.clear();
    const Projection* list = projections.begin();
    const auto cols = static_cast<size_t>(list[0].w.cols);
    // All projections read the same X, so one copy per activation format serves every matrix:
    // X itself for float weights, one quantization per block format, made before the tasks run.
    const void* input_in[kNumActivationFormats] = {x};  // indexed by ActivationFormat; F32 is X
    size_t i = 0;
    for (const Projection& p : projections) {
        plan_row_tasks(i++, static_cast<size_t>(p.w.rows), n);
        const ActivationFormat format = activation_format(p.w.dtype);
        const void*& input = input_in[static_cast<int>(format)];
        if (input == nullptr) input = quantize_activations(format, x, ldx, n, cols);
    }
    pool_.parallel_for(row_tasks_.size(), [&](size_t task, int thread) {
        const RowTask& range = row_tasks_[task];
        const Projection& p = list[range.projection];
        const int type = static_cast<int>(p.w.dtype);
        const ActivationFormat format = activation_format(p.w.dtype);
        const void* input = input_in[static_cast<int>(format)];
        const size_t stride =
            format == ActivationFormat::F32 ? ldx * sizeof(float) : activation_row_bytes(p.w.dtype, cols);
        const bool panels = p.w.layout == MatrixLayout::Panels;
        if (n == 1) {
            (panels ? kernels_.gemv_panels : kernels_.gemv)[type](p.w.data, cols, input, p.y, range.begin, range.end);
        } else {
            (panels ? kernels_.gemm_panels : kernels_.gemm)[type](p.w.data, cols, input, stride, n, p.y, p.ldy,
                                                                 range.begin, range.end,
                                                                 gemm_scratch_[static_cast<size_t>(thread)].data());
        }
    });
}

bool CpuBackend::has_panel_kernels(DType dtype) const {
    const int type = static_cast<int>(dtype);
    return kernels_.gemv_panels[type] != nullptr && kernels_.gemm_panels[type] != nullptr;
}

Matrix CpuBackend::pack_panels(const Matrix& w, void* dst) {
    if (w.layout != MatrixLayout::Rows || !has_panel_kernels(w.dtype)) {
        throw std::logic_error("pack_panels takes a row-major matrix of a type with panel kernels");
    }
    const auto rows = static_cast<size_t>(w.rows);
    const auto cols = static_cast<size_t>(w.cols);
    const size_t n_panels = cpu::panel_rows(rows);
    // A few tasks per thread, in whole panel-rows (the pack's unit).
    const size_t per_task = std::max<size_t>(1, (n_panels + 4 * pool_.size() - 1) / (4 * pool_.size()));
    pool_.parallel_for((n_panels + per_task - 1) / per_task, [&](size_t task, int) {
        const size_t begin = task * per_task;
        cpu::pack_panels(w.dtype, w.data, rows, cols, begin, std::min(n_panels, begin + per_task), dst);
    });
    return Matrix{dst, w.dtype, w.rows, w.cols, MatrixLayout::Panels};
}

void CpuBackend::add_bias(const float* bias, size_t width, size_t n, float* y, size_t ldy) {
    for (size_t t = 0; t < n; ++t) kernels_.axpy(1.0f, bias, y + t * ldy, width);
}

void CpuBackend::rmsnorm_rows(const float* x, size_t ld_x, const float* weight, size_t width, size_t n,
                              float eps, float* y, size_t ld_y) {
    for (size_t t = 0; t < n; ++t) kernels_.rmsnorm(x + t * ld_x, weight, width, eps, y + t * ld_y);
}

void CpuBackend::silu_mul_rows(const float* gate, const float* up, float* out, size_t width, size_t n) {
    // Rows are contiguous here, so treat the block as one long vector split into even pieces, of
    // at least kMinPiece: one decode step's 4608 values take ~1 us, less than waking the pool.
    constexpr size_t kMinPiece = 8192;
    const size_t total = width * n;
    const size_t piece = round_up(std::max(kMinPiece, (total + 4 * pool_.size() - 1) / (4 * pool_.size())), 64);
    pool_.parallel_for((total + piece - 1) / piece, [&](size_t task, int) {
        const size_t begin = task * piece;
        kernels_.silu_mul(gate + begin, up + begin, out + begin, std::min(total, begin + piece) - begin);
    });
}

void CpuBackend::attention(const std::vector<AttentionJob>& jobs, size_t n_heads, size_t n_kv_heads,
                           size_t head_dim) {
    const size_t group = n_heads / n_kv_heads;
    const size_t q_stride = n_heads * head_dim;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    // Tasks are (job, query, kv head) triples, each serving the kv head's group of query heads
    // so a stored key or value is read (and widened) once for all of them. first_task[j] is
    // job j's first task.
    std::vector<size_t> first_task;
    size_t n_tasks = 0;
    size_t longest = 0;
    for (const AttentionJob& job : jobs) {
        first_task.push_back(n_tasks);
        n_tasks += job.n * n_kv_heads;
        longest = std::max(longest, job.n_past + job.n);
    }
    for (auto& scores : score_scratch_) {
        if (scores.size() < group * longest) scores.resize(std::max(group * longest, 2 * scores.size()));
    }
    pool_.parallel_for(n_tasks, [&](size_t task, int thread) {
        const size_t j = static_cast<size_t>(std::upper_bound(first_task.begin(), first_task.end(), task) -
                                             first_task.begin()) - 1;
        const AttentionJob& job = jobs[j];
        const KvView& kv = job.kv;
        const size_t t = (task - first_task[j]) / n_kv_heads;
        const size_t kv_head = (task - first_task[j]) % n_kv_heads;
        const size_t head_offset = kv.head_offset(kv_head);  // bytes into a page
        const size_t n_ctx = job.n_past + t + 1;  // causal: positions up to and including this query's
        const KvScoresFn scores_of = kv_kernels_.scores[static_cast<int>(kv.dtype)];
        const KvMixFn mix = kv_kernels_.mix[static_cast<int>(kv.dtype)];
        float* scores = score_scratch_[static_cast<size_t>(thread)].data();  // [group][n_ctx]
        const float* queries = job.q + t * q_stride + kv_head * group * head_dim;
        float* results = job.out + t * q_stride + kv_head * group * head_dim;

        // Walk the pages: positions [page * P, page * P + P) live in page `page`.
        for (size_t begin = 0, page = 0; begin < n_ctx; begin += kv.page_positions, ++page) {
            const size_t count = std::min(n_ctx, begin + kv.page_positions) - begin;
            scores_of(queries, group, kv.key_pages[page] + head_offset, kv.slice_bytes, count, head_dim, scale,
                      scores + begin, n_ctx);
        }
        for (size_t h = 0; h < group; ++h) kernels_.softmax(scores + h * n_ctx, n_ctx);
        std::fill(results, results + group * head_dim, 0.0f);
        for (size_t begin = 0, page = 0; begin < n_ctx; begin += kv.page_positions, ++page) {
            const size_t count = std::min(n_ctx, begin + kv.page_positions) - begin;
            mix(scores + begin, n_ctx, group, kv.value_pages[page] + head_offset, kv.slice_bytes, count, head_dim,
                results);
        }
    });
}

}  // namespace lfmrt::cpu
