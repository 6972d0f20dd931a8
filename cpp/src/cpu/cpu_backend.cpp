#include "cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>

namespace lfmrt::cpu {

namespace {

size_t round_up(size_t value, size_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Rows per task: several tasks per thread so a slow (shared) core does not stall the others,
// in whole GEMM panels so the split never changes a result.
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
    const auto rows = static_cast<size_t>(w.rows);
    const auto cols = static_cast<size_t>(w.cols);
    const size_t chunk = rows_per_task(rows, pool_.size());
    const size_t n_tasks = (rows + chunk - 1) / chunk;
    const int type = static_cast<int>(w.dtype);
    if (n == 1) {
        const GemvFn gemv = kernels_.gemv[type];
        pool_.parallel_for(n_tasks, [&](size_t task, int) {
            gemv(w.data, cols, x, y, task * chunk, std::min(rows, (task + 1) * chunk));
        });
        return;
    }
    const GemmFn gemm = kernels_.gemm[type];
    pool_.parallel_for(n_tasks, [&](size_t task, int thread) {
        gemm(w.data, cols, x, ldx, n, y, ldy, task * chunk, std::min(rows, (task + 1) * chunk),
             gemm_scratch_[static_cast<size_t>(thread)].data());
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
