// The CPU backend's op set: what the forward pass calls. Each op splits its work across the
// thread pool and calls the kernel table chosen at load; no op's result depends on the
// number of threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "backends/cpu/kernels/kernels.h"
#include "backends/cpu/kernels/kv_kernels.h"
#include "backends/cpu/thread_pool.h"
#include "lfmrt/tensor.h"
#include "state/kv_cache.h"

namespace lfmrt::cpu {

// How a weight matrix's data is laid out.
enum class MatrixLayout {
    Rows,    // row-major in its stored dtype (GGUF's blocks, safetensors' elements)
    Panels,  // Q4_0 / Q8_0 / Q4_K / Q6_K in 16-row panels (backends/cpu/panels.h), repacked at load
};

// A borrowed weight matrix, rows x cols, in its stored dtype.
struct Matrix {
    const void* data = nullptr;
    DType dtype = DType::F32;
    int64_t rows = 0;
    int64_t cols = 0;
    MatrixLayout layout = MatrixLayout::Rows;
};

// One sequence's attention in a step: q and out are [n][n_heads * head_dim].
struct AttentionJob {
    const float* q;
    size_t n;
    size_t n_past;
    KvView kv;
    float* out;
};

class CpuBackend {
public:
    // The KV-cache kernels are those of the same ISA as `kernels`.
    CpuBackend(const KernelTable& kernels, int n_threads);

    const KernelTable& kernels() const { return kernels_; }
    int n_threads() const { return pool_.size(); }

    // Y[t, :] = W · X[t, :] for t in [0, n). X rows have stride ldx, Y rows stride ldy.
    // For block weights X is quantized (BlockQ8A) once per call and activation format, before
    // the row tasks start.
    void matmul(const Matrix& w, const float* x, size_t ldx, size_t n, float* y, size_t ldy);

    // Several matrices applied to the same input in one parallel region (q/k/v, w1/w3):
    // one thread barrier instead of one per matrix, which matters in decode.
    struct Projection {
        const Matrix& w;
        float* y;
        size_t ldy;
    };
    void matmul(std::initializer_list<Projection> projections, const float* x, size_t ldx, size_t n);

    // Whether the kernel table reads `dtype` in panels (then load repacks such matrices).
    bool has_panel_kernels(DType dtype) const;
    // Repacks row-major `w` into 16-row panels at `dst` (cpu::panel_matrix_bytes bytes),
    // split across the threads, and returns the packed matrix (reading dst).
    Matrix pack_panels(const Matrix& w, void* dst);

    // Y[t, :] += bias for t in [0, n).
    void add_bias(const float* bias, size_t width, size_t n, float* y, size_t ldy);

    // RMSNorm of each of `n` rows of `width` values, row stride ld, in place or into y.
    void rmsnorm_rows(const float* x, size_t ld_x, const float* weight, size_t width, size_t n, float eps,
                      float* y, size_t ld_y);

    // Causal grouped-query attention for each job: its n queries sit at positions n_past ..
    // n_past+n-1 and attend to the cached keys and values at positions 0 .. n_past+n-1.
    // Query head h reads kv head h / (n_heads / n_kv_heads).
    void attention(const std::vector<AttentionJob>& jobs, size_t n_heads, size_t n_kv_heads, size_t head_dim);

    // out[i] = silu(gate[i]) * up[i] over n rows of `width`, split across threads.
    void silu_mul_rows(const float* gate, const float* up, float* out, size_t width, size_t n);

private:
    const KernelTable& kernels_;
    const KvKernels& kv_kernels_;
    ThreadPool pool_;
    // X in a block activation format (Q8A or Q8A_K): [n][activation_row_bytes], per matmul call.
    const void* quantize_activations(ActivationFormat format, const float* x, size_t ldx, size_t n, size_t cols);

    // One matmul call's tasks: row ranges of its projections, reused across calls.
    struct RowTask {
        size_t projection;
        size_t begin, end;
    };
    std::vector<RowTask> row_tasks_;
    // Appends the tasks of projection `projection` (`rows` rows) for an input of n tokens.
    void plan_row_tasks(size_t projection, size_t rows, size_t n);

    std::vector<std::vector<float>> gemm_scratch_;   // one per thread, kGemmScratchBytes each
    std::vector<uint8_t> quantized_x_;    // ActivationFormat::Q8A
    std::vector<uint8_t> quantized_x_k_;  // ActivationFormat::Q8A_K
    std::vector<std::vector<float>> score_scratch_;  // one per thread, grows with the context
};

}  // namespace lfmrt::cpu
