// The CPU backend: the op set on the kernel table chosen at load (dispatch.h), split across the
// backend's thread pool; no op's result depends on the number of threads. Memory is the
// process's: activations in aligned host buffers, weights borrowed from the loader's mapping or
// repacked into 16-row panels (panels.h), state blocks on the heap.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "backends/block_ids.h"
#include "backends/cpu/kernels/kernels.h"
#include "backends/cpu/kernels/kv_kernels.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/weight_memory.h"
#include "lfmrt/backend.h"

namespace lfmrt::cpu {

// How a weight matrix's data is laid out.
enum class MatrixLayout {
    Rows,    // row-major in its stored dtype (GGUF's blocks, safetensors' elements)
    Panels,  // Q4_0 / Q8_0 / Q4_K / Q6_K in 16-row panels (panels.h), repacked at load
};

// 64-byte aligned, uninitialised host memory.
class AlignedBytes {
public:
    AlignedBytes() = default;
    explicit AlignedBytes(size_t bytes);
    uint8_t* data() const { return data_.get(); }

private:
    struct Free {
        void operator()(uint8_t* p) const { std::free(p); }
    };
    std::unique_ptr<uint8_t, Free> data_;
};

class CpuBuffer final : public backend::Buffer {
public:
    explicit CpuBuffer(size_t bytes) : Buffer(bytes), memory_(bytes) {}
    float* data() const { return reinterpret_cast<float*>(memory_.data()); }

private:
    AlignedBytes memory_;
};

class CpuMatrix final : public backend::Matrix {
public:
    CpuMatrix(DType dtype, int64_t rows, int64_t cols, const void* data, MatrixLayout layout)
        : Matrix(dtype, rows, cols), data(data), layout(layout) {}
    const void* data;  // the matrix in `layout` (embedding lookups read it too, so a tied
                       // embedding's rows are never faulted back in beside its panels)
    MatrixLayout layout;
};

// State blocks, each its own aligned heap allocation, by id.
class CpuBlockPool final : public backend::BlockPool {
public:
    explicit CpuBlockPool(size_t block_bytes) : ids_(block_bytes) {}
    size_t block_bytes() const override { return ids_.block_bytes(); }
    uint32_t allocate() override;
    void release(uint32_t block) override;
    void copy(uint32_t from, uint32_t to) override;
    void zero(uint32_t block) override;
    void read(uint32_t block, size_t offset, size_t bytes, void* host) override;
    void write(uint32_t block, size_t offset, size_t bytes, const void* host) override;
    size_t allocated_bytes() const override;
    // Bytes [offset, offset + bytes) of the block's memory (stable until it is released), checked
    // as BlockIds::check does.
    uint8_t* data(uint32_t block, size_t offset = 0, size_t bytes = 0) const;

private:
    mutable std::mutex mutex_;
    backend::BlockIds ids_;
    std::vector<AlignedBytes> blocks_;  // by id; empty = free
};

// Online softmax state of one query head in attention: the running maximum score and the sum of
// exp(score - maximum) so far.
struct SoftmaxState {
    float max = -INFINITY;
    float sum = 0.0f;
};

class CpuBackend final : public backend::Backend {
public:
    // The KV-cache kernels are those of the same ISA as `kernels`.
    CpuBackend(const KernelTable& kernels, int n_threads);

    const KernelTable& kernels() const { return kernels_; }

    std::string device() const override;
    std::string kernel_set() const override { return kernels_.name; }
    int n_threads() const override { return pool_.size(); }
    bool supports(DType dtype) const override;
    bool supports_kv(DType kv_dtype) const override { return is_kv_dtype(kv_dtype); }

    std::unique_ptr<backend::Buffer> allocate(size_t bytes) override;
    std::unique_ptr<backend::Buffer> upload(const float* values, size_t count) override;
    std::vector<std::shared_ptr<const backend::Matrix>> upload_matrices(
        const std::vector<backend::MatrixSource>& sources) override;
    void read(const backend::Buffer& buffer, size_t offset, size_t bytes, void* host) override;
    size_t weight_bytes() const override;

    void init_state(const StateLayout& layout) override;
    backend::BlockPool& kv_pages() override { return *kv_pages_; }
    backend::BlockPool& conv_states() override { return *conv_states_; }

    void begin_step(const backend::Step& step) override;
    void embed(const backend::Matrix& table, backend::Buffer& out) override;
    void rmsnorm(const backend::Buffer& x, const backend::Buffer& weight, size_t width, size_t n_rows, float eps,
                 backend::Buffer& y) override;
    void matmul(std::initializer_list<backend::Projection> projections, const backend::Buffer& x, size_t n) override;
    void add_bias(backend::Buffer& y, const backend::Buffer& bias, size_t width, size_t n) override;
    void short_conv(size_t conv_layer, backend::Buffer& bcx, const backend::Buffer& taps, const backend::Buffer* bias,
                    size_t kernel, backend::Buffer& out) override;
    void rope(backend::Buffer& q, size_t n_q_heads, backend::Buffer& k, size_t n_k_heads, size_t head_dim,
              const backend::Buffer& inv_freq) override;
    void kv_store(size_t attention_layer, const backend::Buffer& k, const backend::Buffer& v) override;
    void attention(size_t attention_layer, const backend::Buffer& q, size_t n_heads, backend::Buffer& out) override;
    void silu_mul(const backend::Buffer& gate, const backend::Buffer& up, backend::Buffer& out, size_t count) override;
    void add(backend::Buffer& y, const backend::Buffer& x, size_t count) override;
    void gather_rows(const backend::Buffer& x, size_t width, const std::vector<uint32_t>& rows,
                     backend::Buffer& out) override;
    void argmax(const backend::Buffer& x, size_t width, size_t n_rows, int32_t* ids) override;

    // Whether the kernel table reads `dtype` in panels (then upload repacks such matrices).
    bool has_panel_kernels(DType dtype) const;

private:
    // Y = X W^T over raw rows (X's rows ldx floats apart, Y's ldy) for every projection.
    struct RawProjection {
        const CpuMatrix& w;
        float* y;
        size_t ldy;
    };
    void matmul_rows(const RawProjection* projections, size_t count, const float* x, size_t ldx, size_t n);
    // X in a block activation format (Q8A or Q8A_K): [n][activation_row_bytes], per matmul call.
    const void* quantize_activations(ActivationFormat format, const float* x, size_t ldx, size_t n, size_t cols);
    struct AttentionScratch;
    // Attention's two matrix products for a block of n_rows query rows against a page's first
    // `count` positions: the scores (into scratch.scores), and the weighted values (added to each
    // row's output).
    void page_scores(AttentionScratch& scratch, const uint8_t* keys, size_t count, size_t n_rows, int thread);
    template <typename OutRow>
    void add_page_values(AttentionScratch& scratch, const uint8_t* values, size_t count, size_t n_rows,
                         const OutRow& out_row, int thread);
    // Repacks row-major `source` into panels at `dst`, split across the threads.
    void pack_panels(const TensorView& source, void* dst);

    // One matmul call's tasks: row ranges of its projections, reused across calls.
    struct RowTask {
        size_t projection;
        size_t begin, end;
    };
    // Appends the tasks of projection `projection` (`rows` rows) for an input of n tokens.
    void plan_row_tasks(size_t projection, size_t rows, size_t n);

    // A sequence of the step begun last, with its state blocks resolved to memory.
    struct ResolvedSequence {
        size_t row_begin, n, n_past;
        float* conv_state;
        std::vector<uint8_t*> kv_pages;
    };

    const KernelTable& kernels_;
    const KvKernels& kv_kernels_;
    ThreadPool pool_;
    std::vector<HugePageBuffer> panels_;  // the matrices repacked at load, an arena per upload
    StateLayout layout_;
    std::unique_ptr<CpuBlockPool> kv_pages_, conv_states_;

    const int32_t* step_tokens_ = nullptr;
    size_t step_rows_ = 0;
    std::vector<ResolvedSequence> step_;
    std::vector<int32_t> step_positions_;  // per row

    std::vector<RowTask> row_tasks_;
    std::vector<std::vector<float>> gemm_scratch_;   // one per thread, kGemmScratchBytes each
    std::vector<uint8_t> looked_up_row_;  // embed: a row unpacked from panels
    std::vector<uint8_t> quantized_x_;    // ActivationFormat::Q8A
    std::vector<uint8_t> quantized_x_k_;  // ActivationFormat::Q8A_K
    // Attention's per-thread memory: a block's scaled queries, a page of scores, softmax states,
    // and a page's keys or values widened / transposed for the matrix products.
    struct AttentionScratch {
        std::vector<float> queries, scores, values_part, widened, transposed32;
        std::vector<uint16_t> transposed16;
        std::vector<SoftmaxState> states;
        template <typename QueryRow>
        void prepare_block(const QueryRow& query_row, size_t n_rows, size_t head_dim, size_t page_positions,
                           float scale);
    };
    std::vector<AttentionScratch> attention_scratch_;  // one per thread
};

}  // namespace lfmrt::cpu
