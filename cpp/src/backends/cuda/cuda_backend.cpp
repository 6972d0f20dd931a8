#include "backends/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "backends/cuda/kernels/kernels.h"
#include "backends/cuda/packed_format.h"
#include "backends/cuda/weight_packing.h"
#include "lfmrt/error.h"

namespace lfmrt::cuda {

namespace {

constexpr size_t kMaxConvHistory = 8;  // short_conv_kernel's kMaxHistory
constexpr size_t kMaxStepRows = 65535;  // kernels put a step's rows on a grid's y or z (CUDA's limit)

float* floats(const backend::Buffer& buffer) { return static_cast<const CudaBuffer&>(buffer).memory.get<float>(); }
const CudaMatrix& cuda_matrix(const backend::Matrix& m) { return static_cast<const CudaMatrix&>(m); }

kernels::PackedWeights weights_of(const CudaMatrix& m) {
    return {m.dtype, m.quants.get<uint8_t>(), m.side.get<float>(), static_cast<size_t>(m.rows),
            static_cast<size_t>(m.cols)};
}

bool is_float(DType dtype) { return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16; }

}  // namespace

// --- state pools -------------------------------------------------------------------------

CudaBlockPool::CudaBlockPool(std::shared_ptr<DeviceContext> context, size_t block_bytes, std::string what)
    : context_(std::move(context)), ids_(block_bytes), what_(std::move(what)) {}

// Moves the blocks into new memory for `capacity` blocks on the stream: ids stay valid, and
// commands queued on the old memory run before the copy; the old memory is freed after them.
void CudaBlockPool::grow(size_t capacity) {
    DeviceMemory grown =
        context_->allocate(capacity * ids_.block_bytes(), what_ + " (" + std::to_string(capacity) + " blocks)");
    if (ids_.capacity() > 0) {
        context_->check(cudaMemcpyAsync(grown.get(), memory_.get(), ids_.capacity() * ids_.block_bytes(),
                                        cudaMemcpyDeviceToDevice, context_->stream()),
                        "growing " + what_);
    }
    memory_ = std::move(grown);
}

uint32_t CudaBlockPool::allocate() {
    std::lock_guard<std::mutex> lock(mutex_);
    return ids_.take([this](size_t capacity) { grow(capacity); });
}

void CudaBlockPool::release(uint32_t block) {
    std::lock_guard<std::mutex> lock(mutex_);
    ids_.give_back(block);
}

void CudaBlockPool::copy(uint32_t from, uint32_t to) {
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t source = ids_.byte_offset(from), target = ids_.byte_offset(to);
    if (ids_.block_bytes() == 0 || from == to) return;
    context_->activate();
    uint8_t* base = memory_.get<uint8_t>();
    context_->check(cudaMemcpyAsync(base + target, base + source, ids_.block_bytes(), cudaMemcpyDeviceToDevice,
                                    context_->stream()),
                    "copying a block of " + what_);
}

void CudaBlockPool::zero(uint32_t block) {
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t at = ids_.byte_offset(block);
    if (ids_.block_bytes() == 0) return;
    context_->activate();
    context_->check(cudaMemsetAsync(memory_.get<uint8_t>() + at, 0, ids_.block_bytes(), context_->stream()),
                    "zeroing a block of " + what_);
}

void CudaBlockPool::read(uint32_t block, size_t offset, size_t bytes, void* host) {
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t at = ids_.byte_offset(block, offset, bytes);
    context_->download(host, memory_.get<uint8_t>() + at, bytes, "reading " + what_);
}

void CudaBlockPool::write(uint32_t block, size_t offset, size_t bytes, const void* host) {
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t at = ids_.byte_offset(block, offset, bytes);
    context_->upload_async(memory_.get<uint8_t>() + at, host, bytes, "writing " + what_);
}

size_t CudaBlockPool::allocated_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return ids_.bytes_in_use();
}

// --- the backend -------------------------------------------------------------------------

CudaBackend::CudaBackend(std::shared_ptr<DeviceContext> context) : context_(std::move(context)) {
    init_state(StateLayout{});
}

CudaBackend::~CudaBackend() {
    // Surface nothing later: the stream's work finishes before any memory goes.
    try {
        context_->synchronize("finishing the stream");
    } catch (const std::exception&) {
    }
}

std::string CudaBackend::kernel_set() const {
    const cudaDeviceProp& p = context_->properties();
    return context_->label() + ", sm_" + std::to_string(p.major) + std::to_string(p.minor) +
           "; warp-per-row GEMV (dp4a for block types), warp-per-head attention";
}

void CudaBackend::ensure(DeviceMemory& memory, size_t bytes, const std::string& what) {
    if (memory.bytes() < bytes) memory = context_->allocate(std::max<size_t>(bytes, 2 * memory.bytes()), what);
}

std::unique_ptr<backend::Buffer> CudaBackend::allocate(size_t bytes) {
    return std::make_unique<CudaBuffer>(context_->allocate(bytes, "an activation buffer"), bytes);
}

std::unique_ptr<backend::Buffer> CudaBackend::upload(const float* values, size_t count) {
    const size_t bytes = count * sizeof(float);
    return std::make_unique<CudaBuffer>(context_->allocate(bytes, "a vector", values), bytes);
}

void CudaBackend::read(const backend::Buffer& buffer, size_t offset, size_t bytes, void* host) {
    if (offset + bytes > buffer.bytes()) throw std::out_of_range("read past a buffer");
    context_->download(host, static_cast<const CudaBuffer&>(buffer).memory.get<uint8_t>() + offset, bytes, "a buffer");
}

std::vector<std::shared_ptr<const backend::Matrix>> CudaBackend::upload_matrices(
    const std::vector<backend::MatrixSource>& sources) {
    std::vector<std::shared_ptr<const backend::Matrix>> matrices;
    for (const backend::MatrixSource& source : sources) {
        const TensorView& view = source.view;
        const auto rows = static_cast<size_t>(view.shape[0]), cols = static_cast<size_t>(view.shape[1]);
        const std::string what = "tensor '" + source.name + "'";
        if (cols % block_elems(view.dtype) != 0) {
            throw LoadError(what + ": " + std::to_string(cols) + " columns are not whole " + dtype_name(view.dtype) +
                            " blocks");
        }
        const PackedMatrix packed = pack_matrix(view.dtype, view.data, rows, cols);
        auto m = std::make_shared<CudaMatrix>(view.dtype, view.shape[0], view.shape[1]);
        m->quants = context_->allocate(packed.quants.size(), what, packed.quants.data());
        if (!packed.side.empty()) {
            m->side = context_->allocate(packed.side.size() * sizeof(float), what, packed.side.data());
        }
        weight_bytes_ += m->quants.bytes() + m->side.bytes();
        matrices.push_back(std::move(m));
    }
    return matrices;
}

// --- sequence state ----------------------------------------------------------------------

void CudaBackend::init_state(const StateLayout& layout) {
    if (layout.conv_history > kMaxConvHistory) {
        throw InvalidArgument(context_->label() + " runs short convs of at most " + std::to_string(kMaxConvHistory + 1) +
                              " taps; this model's have " + std::to_string(layout.conv_history + 1));
    }
    if (layout.head_dim > kernels::kMaxHeadDim) {
        throw InvalidArgument(context_->label() + " runs attention heads of at most " +
                              std::to_string(kernels::kMaxHeadDim) + " values; this model's have " +
                              std::to_string(layout.head_dim));
    }
    layout_ = layout;
    kv_pages_ = std::make_unique<CudaBlockPool>(context_, layout.kv_page_bytes(), "the KV page pool");
    conv_states_ = std::make_unique<CudaBlockPool>(context_, layout.conv_state_bytes(), "the conv state pool");
}

// One copy per step; the host table is kept until the next step, though the copy from pageable
// memory has taken its bytes already when it returns.
void CudaBackend::begin_step(const backend::Step& step) {
    if (step.n > kMaxStepRows) {
        throw InvalidArgument(context_->label() + " runs steps of at most " + std::to_string(kMaxStepRows) +
                              " rows; this one has " + std::to_string(step.n));
    }
    step_table_ = build_step_table(step);
    const size_t bytes = step_table_.words.size() * sizeof(uint32_t);
    ensure(step_memory_, bytes, "the step's positions");
    context_->upload_async(step_memory_.get(), step_table_.words.data(), bytes, "the step's positions");
    step_view_ = step_view(step_table_, step_memory_.get<uint32_t>());
}

// --- ops ---------------------------------------------------------------------------------

void CudaBackend::embed(const backend::Matrix& table, backend::Buffer& out) {
    context_->activate();
    context_->check(kernels::embed(context_->stream(), weights_of(cuda_matrix(table)), step_view_, floats(out)), "embed");
}

void CudaBackend::rmsnorm(const backend::Buffer& x, const backend::Buffer& weight, size_t width, size_t n_rows,
                          float eps, backend::Buffer& y) {
    context_->activate();
    context_->check(kernels::rmsnorm(context_->stream(), floats(x), floats(weight), width, n_rows, eps, floats(y)),
                    "rmsnorm");
}

void CudaBackend::matmul(std::initializer_list<backend::Projection> projections, const backend::Buffer& x, size_t n) {
    if (n == 0) return;
    context_->activate();
    cudaStream_t stream = context_->stream();
    bool quantized[2] = {false, false};  // x quantized already, per activation format
    for (const backend::Projection& p : projections) {
        const CudaMatrix& m = cuda_matrix(p.w);
        const kernels::PackedWeights w = weights_of(m);
        if (is_float(m.dtype)) {
            context_->check(kernels::matmul_float(stream, w, floats(x), n, floats(p.y)), "matmul");
            continue;
        }
        const bool per_256 = kernels::shares_scale_per_256(m.dtype);
        DeviceMemory& memory = activations_[per_256 ? 1 : 0];
        const size_t values = n * w.cols, groups = values / kGroup;
        if (!quantized[per_256]) {
            ensure(memory, values + 2 * groups * sizeof(float), "quantized activations");
        }
        // levels, then the scales and the scaled sums (4-byte aligned: values is a multiple of 32).
        auto* base = memory.get<uint8_t>();
        const kernels::QuantizedRows rows{reinterpret_cast<int8_t*>(base), reinterpret_cast<float*>(base + values),
                                          reinterpret_cast<float*>(base + values) + groups};
        if (!quantized[per_256]) {
            context_->check(kernels::quantize_activations(stream, floats(x), n, w.cols, per_256, rows),
                            "quantizing activations");
            quantized[per_256] = true;
        }
        context_->check(kernels::matmul_quantized(stream, w, rows, n, floats(p.y)), "matmul");
    }
}

void CudaBackend::add_bias(backend::Buffer& y, const backend::Buffer& bias, size_t width, size_t n) {
    context_->activate();
    context_->check(kernels::add_bias(context_->stream(), floats(y), floats(bias), width, n), "add_bias");
}

void CudaBackend::short_conv(size_t conv_layer, backend::Buffer& bcx, const backend::Buffer& taps,
                             const backend::Buffer* bias, size_t kernel, backend::Buffer& out) {
    if (kernel - 1 != layout_.conv_history) {
        throw std::logic_error("short_conv: the kernel size does not match the state layout");
    }
    context_->activate();
    conv_states_->with_memory([&](uint8_t* pool) {
        const kernels::ConvStates states{reinterpret_cast<float*>(pool), layout_.conv_state_bytes() / sizeof(float),
                                         conv_layer * layout_.conv_layer_floats(), layout_.conv_history, layout_.hidden};
        context_->check(kernels::short_conv(context_->stream(), floats(bcx), floats(taps),
                                            bias == nullptr ? nullptr : floats(*bias), states, step_view_, floats(out)),
                        "short_conv");
    });
}

void CudaBackend::rope(backend::Buffer& q, size_t n_q_heads, backend::Buffer& k, size_t n_k_heads, size_t head_dim,
                       const backend::Buffer& inv_freq) {
    context_->activate();
    context_->check(
        kernels::rope(context_->stream(), floats(q), n_q_heads, floats(k), n_k_heads, head_dim, floats(inv_freq), step_view_),
        "rope");
}

namespace {
kernels::KvPages kv_pages_of(const StateLayout& layout, size_t attention_layer, uint8_t* pool) {
    return {pool,
            layout.kv_page_bytes(),
            layout.kv_run_offset(attention_layer, false, 0),
            layout.kv_run_offset(attention_layer, true, 0),
            layout.page_positions * layout.slice_bytes(),
            static_cast<uint32_t>(layout.page_positions),
            static_cast<uint32_t>(layout.slice_bytes()),
            static_cast<uint32_t>(layout.n_kv_heads),
            static_cast<uint32_t>(layout.head_dim),
            layout.kv_dtype};
}
}  // namespace

void CudaBackend::kv_store(size_t attention_layer, const backend::Buffer& k, const backend::Buffer& v) {
    context_->activate();
    kv_pages_->with_memory([&](uint8_t* pool) {
        context_->check(kernels::kv_store(context_->stream(), kv_pages_of(layout_, attention_layer, pool), floats(k),
                                          floats(v), step_view_),
                        "kv_store");
    });
}

void CudaBackend::attention(size_t attention_layer, const backend::Buffer& q, size_t n_heads, backend::Buffer& out) {
    context_->activate();
    const float scale = 1.0f / std::sqrt(static_cast<float>(layout_.head_dim));
    kv_pages_->with_memory([&](uint8_t* pool) {
        context_->check(kernels::attention(context_->stream(), kv_pages_of(layout_, attention_layer, pool), floats(q),
                                           n_heads, scale, step_view_, floats(out)),
                        "attention");
    });
}

void CudaBackend::silu_mul(const backend::Buffer& gate, const backend::Buffer& up, backend::Buffer& out, size_t count) {
    context_->activate();
    context_->check(kernels::silu_mul(context_->stream(), floats(gate), floats(up), floats(out), count), "silu_mul");
}

void CudaBackend::add(backend::Buffer& y, const backend::Buffer& x, size_t count) {
    context_->activate();
    context_->check(kernels::add(context_->stream(), floats(y), floats(x), count), "add");
}

void CudaBackend::gather_rows(const backend::Buffer& x, size_t width, const std::vector<uint32_t>& rows,
                              backend::Buffer& out) {
    if (rows.empty()) return;
    context_->activate();
    const size_t bytes = rows.size() * sizeof(uint32_t);
    ensure(gather_memory_, std::max<size_t>(bytes, 256), "row indices");
    context_->upload_async(gather_memory_.get(), rows.data(), bytes, "row indices");
    context_->check(
        kernels::gather_rows(context_->stream(), floats(x), width, gather_memory_.get<uint32_t>(), rows.size(), floats(out)),
        "gather_rows");
}

void CudaBackend::argmax(const backend::Buffer& x, size_t width, size_t n_rows, int32_t* ids) {
    if (n_rows == 0) return;
    context_->activate();
    const size_t bytes = n_rows * sizeof(int32_t);
    ensure(ids_memory_, std::max<size_t>(bytes, 256), "token ids");
    context_->check(kernels::argmax(context_->stream(), floats(x), width, n_rows, ids_memory_.get<int32_t>()), "argmax");
    context_->download(ids, ids_memory_.get(), bytes, "token ids");
}

}  // namespace lfmrt::cuda
