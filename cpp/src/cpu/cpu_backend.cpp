#include "cpu/cpu_backend.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>

namespace lfmrt::cpu {

namespace {

size_t round_up(size_t value, size_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Rows per task: several tasks per thread so a slow (shared) core does not stall the others,
// in whole GEMM panels (partial panels take masked loads; any split gives the same bits).
size_t rows_per_task(size_t rows, int n_threads) {
    const size_t target_tasks = static_cast<size_t>(n_threads) * 4;
    return std::max(kRowBlock, round_up((rows + target_tasks - 1) / target_tasks, kRowBlock));
}

}  // namespace

CpuBackend::CpuBackend(const KernelTable& kernels, int n_threads)
    : kernels_(kernels),
      pool_(n_threads),
      gemm_scratch_(static_cast<size_t>(n_threads), std::vector<float>(kGemmScratchFloats)),
      score_scratch_(static_cast<size_t>(n_threads)) {}

void CpuBackend::matmul(const Matrix& w, const float* x, size_t ldx, size_t n, float* y, size_t ldy) {
    matmul({Projection{w, y, ldy}}, x, ldx, n);
}

void CpuBackend::matmul(std::initializer_list<Projection> projections, const float* x, size_t ldx, size_t n) {
    // Tasks are row chunks of each matrix in turn; task_begin[i] is matrix i's first task.
    constexpr size_t kMaxProjections = 4;
    const size_t n_matrices = projections.size();
    if (n_matrices == 0 || n_matrices > kMaxProjections) throw std::logic_error("matmul takes 1 to 4 projections");
    std::array<size_t, kMaxProjections> chunk{}, task_begin{};
    size_t n_tasks = 0;
    size_t i = 0;
    for (const Projection& p : projections) {
        const auto rows = static_cast<size_t>(p.w.rows);
        chunk[i] = rows_per_task(rows, pool_.size());
        task_begin[i] = n_tasks;
        n_tasks += (rows + chunk[i] - 1) / chunk[i];
        ++i;
    }
    const Projection* list = projections.begin();
    pool_.parallel_for(n_tasks, [&](size_t task, int thread) {
        size_t m = n_matrices - 1;
        while (task < task_begin[m]) --m;
        const Projection& p = list[m];
        const auto rows = static_cast<size_t>(p.w.rows);
        const auto cols = static_cast<size_t>(p.w.cols);
        const size_t row_begin = (task - task_begin[m]) * chunk[m];
        const size_t row_end = std::min(rows, row_begin + chunk[m]);
        const int type = static_cast<int>(p.w.dtype);
        if (n == 1) {
            kernels_.gemv[type](p.w.data, cols, x, p.y, row_begin, row_end);
        } else {
            kernels_.gemm[type](p.w.data, cols, x, ldx, n, p.y, p.ldy, row_begin, row_end,
                                gemm_scratch_[static_cast<size_t>(thread)].data());
        }
    });
}

void CpuBackend::add_bias(const float* bias, size_t width, size_t n, float* y, size_t ldy) {
    for (size_t t = 0; t < n; ++t) kernels_.axpy(1.0f, bias, y + t * ldy, width);
}

void CpuBackend::rmsnorm_rows(const float* x, size_t ld_x, const float* weight, size_t width, size_t n,
                              float eps, float* y, size_t ld_y) {
    for (size_t t = 0; t < n; ++t) kernels_.rmsnorm(x + t * ld_x, weight, width, eps, y + t * ld_y);
}

void CpuBackend::silu_mul_rows(const float* gate, const float* up, float* out, size_t width, size_t n) {
    // Rows are contiguous here, so treat the block as one long vector split into even pieces.
    const size_t total = width * n;
    const size_t piece = round_up((total + 4 * pool_.size() - 1) / (4 * pool_.size()), 64);
    pool_.parallel_for((total + piece - 1) / piece, [&](size_t task, int) {
        const size_t begin = task * piece;
        kernels_.silu_mul(gate + begin, up + begin, out + begin, std::min(total, begin + piece) - begin);
    });
}

void CpuBackend::attention(const float* q, size_t n, size_t n_past, const float* k_cache, const float* v_cache,
                           size_t n_heads, size_t n_kv_heads, size_t head_dim, float* out) {
    const size_t group = n_heads / n_kv_heads;
    const size_t q_stride = n_heads * head_dim;
    const size_t kv_stride = n_kv_heads * head_dim;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    for (auto& scores : score_scratch_) {
        if (scores.size() < n_past + n) scores.resize(std::max(n_past + n, 2 * scores.size()));
    }
    pool_.parallel_for(n * n_heads, [&](size_t task, int thread) {
        const size_t t = task / n_heads;
        const size_t head = task % n_heads;
        const size_t kv_head = head / group;
        const size_t n_ctx = n_past + t + 1;  // causal: positions up to and including this query's
        const float* query = q + t * q_stride + head * head_dim;
        const float* keys = k_cache + kv_head * head_dim;
        const float* values = v_cache + kv_head * head_dim;
        float* scores = score_scratch_[static_cast<size_t>(thread)].data();
        for (size_t j = 0; j < n_ctx; ++j) scores[j] = kernels_.dot(query, keys + j * kv_stride, head_dim) * scale;
        kernels_.softmax(scores, n_ctx);
        float* result = out + t * q_stride + head * head_dim;
        std::fill(result, result + head_dim, 0.0f);
        for (size_t j = 0; j < n_ctx; ++j) kernels_.axpy(scores[j], values + j * kv_stride, result, head_dim);
    });
}

}  // namespace lfmrt::cpu
