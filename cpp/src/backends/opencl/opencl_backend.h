// The OpenCL backend: the op set as OpenCL kernels (kernels/*.cl, built once per device through
// the program cache) on one in-order queue. Activations are fp32 device buffers; weights are
// repacked at upload into the kernels' struct-of-arrays layout (weight_layout.h); each state pool
// is one device buffer addressed by block id, grown by reallocation and copy when full.
//
// Thread safety: the Model runs one forward at a time, while sessions fork, rewind and save from
// other threads through the pools. Every enqueue and kernel-argument update holds the device's
// queue lock (DeviceContext); a pool holds its own lock while it enqueues on its buffer, so the
// buffer cannot be replaced under a command, and waits for results outside both. Lock order:
// pool, then queue.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backends/block_ids.h"
#include "backends/opencl/device_context.h"
#include "backends/opencl/opencl_device.h"
#include "lfmrt/backend.h"

namespace lfmrt::opencl {

class OpenClBuffer final : public backend::Buffer {
public:
    OpenClBuffer(DeviceMemory memory, size_t bytes) : Buffer(bytes), memory(std::move(memory)) {}
    DeviceMemory memory;
};

class OpenClMatrix final : public backend::Matrix {
public:
    OpenClMatrix(DType dtype, int64_t rows, int64_t cols) : Matrix(dtype, rows, cols) {}
    DeviceMemory quants, a, b, c;  // weight_layout.h's arrays (a, b, c empty when unused)
    ClHandle<cl_mem> image;        // an image1d_buffer_t over `quants`, on the image path

    size_t device_bytes() const { return quants.bytes() + a.bytes() + b.bytes() + c.bytes(); }
};

// Blocks of state in one device buffer, block `id` at id * block_bytes. Thread-safe.
class OpenClBlockPool final : public backend::BlockPool {
public:
    OpenClBlockPool(std::shared_ptr<DeviceContext> context, size_t block_bytes, std::string what);

    size_t block_bytes() const override { return ids_.block_bytes(); }
    uint32_t allocate() override;
    void release(uint32_t block) override;
    void copy(uint32_t from, uint32_t to) override;
    void zero(uint32_t block) override;
    void read(uint32_t block, size_t offset, size_t bytes, void* host) override;
    void write(uint32_t block, size_t offset, size_t bytes, const void* host) override;
    size_t allocated_bytes() const override;

    // Runs `enqueue(buffer)` with the pool's buffer, which cannot be replaced meanwhile; commands
    // it queues keep that buffer alive after it is replaced (OpenCL defers the release).
    template <typename F>
    void with_buffer(F&& enqueue) {
        std::lock_guard<std::mutex> lock(mutex_);
        enqueue(memory_.get());
    }

private:
    void grow(size_t capacity);  // caller holds mutex_

    std::shared_ptr<DeviceContext> context_;
    backend::BlockIds ids_;
    std::string what_;
    mutable std::mutex mutex_;
    DeviceMemory memory_;
};

class OpenClBackend final : public backend::Backend {
public:
    OpenClBackend(const DeviceDescription& device, const KernelPaths& paths);
    ~OpenClBackend() override;

    std::string device() const override { return context_->description().id(); }
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

    struct Kernel {
        ClHandle<cl_kernel> handle;
        std::string name;
        size_t max_work_group = 0;  // CL_KERNEL_WORK_GROUP_SIZE
        size_t multiple = 1;        // CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE
    };
    // One build of the kernels' program, and its kernels (by DType for the weight formats).
    struct KernelSet {
        ClHandle<cl_program> program;
        bool from_cache = false;
        Kernel gemv[kNumDTypes], gemm[kNumDTypes], embed[kNumDTypes];
        Kernel quantize_activations;
        Kernel rmsnorm, add, add_bias, silu_mul, gather_rows, argmax, rope, short_conv;
        Kernel kv_store[kNumDTypes], attention[kNumDTypes];  // F32, F16 and Q8_0
    };

private:
    KernelSet build_kernels(const KernelPaths& paths, bool weights_only);
    // A local size for `kernel`: a power of two, at least enough for `wanted` work-items where the
    // kernel allows, from the kernel's limit and preferred multiple (never a constant).
    static size_t local_size(const Kernel& kernel, size_t wanted);
    // Launches a one-dimensional elementwise kernel over `count` items.
    template <typename... Args>
    void launch_1d(const Kernel& kernel, size_t count, const Args&... args);
    // The weight arguments of `m` for a kernel of the image set (true) or the buffer set.
    const Kernel& matmul_kernel(const OpenClMatrix& m, const Kernel (KernelSet::*kind)[kNumDTypes]) const;
    cl_mem weight_quants(const OpenClMatrix& m) const;
    void upload_step_data();
    // `x` (n rows of `cols`) rounded as the CPU rounds the activations of a `weight`-typed
    // matrix (kernels/matmul.cl's quantize_activations), in a buffer kept for the next call.
    cl_mem quantized_activations(DType weight, const backend::Buffer& x, size_t n, size_t cols);

    std::shared_ptr<DeviceContext> context_;
    KernelSet kernels_;         // built with images off (everything runs from it)
    KernelSet image_kernels_;   // the weight kernels reading image1d_buffer_t (image path only)
    size_t weight_bytes_ = 0;
    StateLayout layout_;
    std::unique_ptr<OpenClBlockPool> kv_pages_, conv_states_;

    // The step begun last, on the device: tokens, positions, row -> sequence, the sequences'
    // fields (SEQ_* in kernels/common.cl) and their page ids, as one uint array.
    std::vector<uint32_t> step_host_;
    DeviceMemory step_buffer_;
    size_t step_rows_ = 0, step_sequences_ = 0;
    cl_uint positions_at_ = 0, row_sequence_at_ = 0, sequences_at_ = 0, pages_at_ = 0;
    DeviceMemory gather_buffer_, ids_buffer_;
    DeviceMemory quantized_x_[2];  // per activation group: 32 values (Q8_0, Q4_0), 256 (K-quants)
};

}  // namespace lfmrt::opencl
