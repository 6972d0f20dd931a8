// The CUDA backend: the op set as CUDA kernels (kernels/) on one non-blocking stream. Activations
// are fp32 device buffers; weights are repacked at upload into packed_format.h's layout and stay
// resident on the device; each state pool is one device allocation addressed by block id, grown by
// reallocation and copy when full.
//
// Thread safety: the Model runs one forward at a time, while sessions fork, rewind and save from
// other threads through the pools. CUDA streams take work from any thread; a pool holds its lock
// while it queues work on its memory (and while a kernel reading that memory is queued), so the
// memory cannot be replaced under a command; replaced memory is freed only after the stream's
// queued work (DeviceMemory).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backends/block_ids.h"
#include "backends/cuda/device_context.h"
#include "backends/cuda/step_plan.h"
#include "lfmrt/backend.h"

namespace lfmrt::cuda {

class CudaBuffer final : public backend::Buffer {
public:
    CudaBuffer(DeviceMemory memory, size_t bytes) : Buffer(bytes), memory(std::move(memory)) {}
    DeviceMemory memory;
};

class CudaMatrix final : public backend::Matrix {
public:
    CudaMatrix(DType dtype, int64_t rows, int64_t cols) : Matrix(dtype, rows, cols) {}
    DeviceMemory quants, side;  // packed_format.h's arrays (side empty for float types)
};

// Blocks of state in one device allocation, block `id` at id * block_bytes. Thread-safe.
class CudaBlockPool final : public backend::BlockPool {
public:
    CudaBlockPool(std::shared_ptr<DeviceContext> context, size_t block_bytes, std::string what);

    size_t block_bytes() const override { return ids_.block_bytes(); }
    uint32_t allocate() override;
    void release(uint32_t block) override;
    void copy(uint32_t from, uint32_t to) override;
    void zero(uint32_t block) override;
    void read(uint32_t block, size_t offset, size_t bytes, void* host) override;
    void write(uint32_t block, size_t offset, size_t bytes, const void* host) override;
    size_t allocated_bytes() const override;

    // Runs `enqueue(base)` with the pool's memory, which cannot be replaced meanwhile.
    template <typename F>
    void with_memory(F&& enqueue) {
        std::lock_guard<std::mutex> lock(mutex_);
        enqueue(memory_.get<uint8_t>());
    }

private:
    void grow(size_t capacity);  // caller holds mutex_

    std::shared_ptr<DeviceContext> context_;
    backend::BlockIds ids_;
    std::string what_;
    mutable std::mutex mutex_;
    DeviceMemory memory_;
};

class CudaBackend final : public backend::Backend {
public:
    explicit CudaBackend(std::shared_ptr<DeviceContext> context);
    ~CudaBackend() override;

    std::string device() const override { return "cuda:" + std::to_string(context_->ordinal()); }
    std::string kernel_set() const override;
    int n_threads() const override { return 1; }
    bool supports(DType) const override { return true; }
    bool supports_kv(DType kv_dtype) const override { return is_kv_dtype(kv_dtype); }

    std::unique_ptr<backend::Buffer> allocate(size_t bytes) override;
    std::unique_ptr<backend::Buffer> upload(const float* values, size_t count) override;
    std::vector<std::shared_ptr<const backend::Matrix>> upload_matrices(
        const std::vector<backend::MatrixSource>& sources) override;
    void read(const backend::Buffer& buffer, size_t offset, size_t bytes, void* host) override;
    size_t weight_bytes() const override { return weight_bytes_; }

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

private:
    // `memory` holding at least `bytes`, reallocated (its contents dropped) when smaller.
    void ensure(DeviceMemory& memory, size_t bytes, const std::string& what);

    std::shared_ptr<DeviceContext> context_;
    size_t weight_bytes_ = 0;
    StateLayout layout_;
    std::unique_ptr<CudaBlockPool> kv_pages_, conv_states_;

    StepTable step_table_;  // the step begun last, and its copy on the device
    StepView step_view_{};
    DeviceMemory step_memory_, gather_memory_, ids_memory_;
    DeviceMemory activations_[2];  // quantized matmul inputs: per-32 and per-256 scales
};

}  // namespace lfmrt::cuda
