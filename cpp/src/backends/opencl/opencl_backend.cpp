#include "backends/opencl/opencl_backend.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "backends/opencl/kernel_source.h"
#include "backends/opencl/program_cache.h"
#include "backends/opencl/weight_layout.h"
#include "formats/blocks.h"
#include "lfmrt/error.h"

namespace lfmrt::opencl {

namespace {

// Must match kernels/*.cl.
constexpr size_t kGemvRows = 4;         // GEMV_ROWS
constexpr size_t kGemmThreads = 64;     // GEMM_THREADS
constexpr size_t kGemmTileRows = 64;    // GEMM_TILE_ROWS
constexpr size_t kGemmTileTokens = 16;  // GEMM_TILE_TOKENS
constexpr size_t kAttentionHeads = 8;   // ATTN_MAX_HEADS
constexpr size_t kAttentionDims = 4;    // ATTN_MAX_DIMS
constexpr size_t kConvMaxHistory = 8;   // CONV_MAX_HISTORY
constexpr size_t kSequenceFields = 5;   // SEQ_FIELDS
constexpr size_t kMaxLocal = 256;       // no reduction needs more work-items than this

// The kernels' name suffix of each weight type, by DType.
constexpr const char* kTypeSuffix[kNumDTypes] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q5_k", "q6_k"};

size_t round_up(size_t value, size_t multiple) { return (value + multiple - 1) / multiple * multiple; }
size_t ceil_pow2(size_t value) {
    size_t p = 1;
    while (p < value) p *= 2;
    return p;
}
size_t floor_pow2(size_t value) {
    size_t p = 1;
    while (p * 2 <= value) p *= 2;
    return p;
}

cl_mem mem(const backend::Buffer& buffer) { return static_cast<const OpenClBuffer&>(buffer).memory.get(); }
const OpenClMatrix& cl_matrix(const backend::Matrix& m) { return static_cast<const OpenClMatrix&>(m); }
cl_uint u32(size_t value) { return static_cast<cl_uint>(value); }
cl_ulong u64(size_t value) { return static_cast<cl_ulong>(value); }

}  // namespace

// --- state pools -------------------------------------------------------------------------

OpenClBlockPool::OpenClBlockPool(std::shared_ptr<DeviceContext> context, size_t block_bytes, std::string what)
    : context_(std::move(context)), ids_(block_bytes), what_(std::move(what)) {}

// Moves the blocks into a new buffer for `capacity` blocks: ids stay valid. Commands queued on the
// old buffer run before the copy (the queue is in order), so none is lost.
void OpenClBlockPool::grow(size_t capacity) {
    DeviceMemory grown =
        context_->allocate(capacity * ids_.block_bytes(), what_ + " (" + std::to_string(capacity) + " blocks)");
    if (ids_.capacity() > 0) context_->copy(memory_.get(), 0, grown.get(), 0, ids_.capacity() * ids_.block_bytes());
    memory_ = std::move(grown);
}

uint32_t OpenClBlockPool::allocate() {
    std::lock_guard<std::mutex> lock(mutex_);
    return ids_.take([this](size_t capacity) { grow(capacity); });
}

void OpenClBlockPool::release(uint32_t block) {
    std::lock_guard<std::mutex> lock(mutex_);
    ids_.give_back(block);
}

void OpenClBlockPool::copy(uint32_t from, uint32_t to) {
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t source = ids_.byte_offset(from), target = ids_.byte_offset(to);
    if (ids_.block_bytes() > 0 && from != to) context_->copy(memory_.get(), source, memory_.get(), target, ids_.block_bytes());
}

void OpenClBlockPool::zero(uint32_t block) {
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t at = ids_.byte_offset(block);
    if (ids_.block_bytes() > 0) context_->fill_zero(memory_.get(), at, ids_.block_bytes());
}

void OpenClBlockPool::read(uint32_t block, size_t offset, size_t bytes, void* host) {
    ClHandle<cl_event> done;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        done = context_->enqueue_read(memory_.get(), ids_.byte_offset(block, offset, bytes), bytes, host);
    }
    context_->wait(std::move(done), "reading " + what_);
}

void OpenClBlockPool::write(uint32_t block, size_t offset, size_t bytes, const void* host) {
    ClHandle<cl_event> done;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        done = context_->enqueue_write(memory_.get(), ids_.byte_offset(block, offset, bytes), bytes, host);
    }
    context_->wait(std::move(done), "writing " + what_);
}

size_t OpenClBlockPool::allocated_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return ids_.bytes_in_use();
}

// --- the backend -------------------------------------------------------------------------

OpenClBackend::OpenClBackend(const DeviceDescription& device, const KernelPaths& paths)
    : context_(std::make_shared<DeviceContext>(device, paths)) {
    KernelPaths buffers = paths;
    buffers.images = false;
    kernels_ = build_kernels(buffers, false);
    if (paths.images) image_kernels_ = build_kernels(paths, true);
    init_state(StateLayout{});
}

OpenClBackend::~OpenClBackend() {
    // Pending commands may still read memory this backend owns on the host side (none here:
    // every host copy is waited for), but finish so that a driver error surfaces nowhere later.
    try {
        context_->finish();
    } catch (const std::exception&) {
    }
}

std::string OpenClBackend::kernel_set() const {
    const DeviceDescription& d = context_->description();
    const bool cached = kernels_.from_cache && (!context_->paths().images || image_kernels_.from_cache);
    return d.name + " (" + d.platform_name + "); " + context_->paths().describe() +
           (cached ? "; program from cache" : "; program compiled");
}

OpenClBackend::KernelSet OpenClBackend::build_kernels(const KernelPaths& paths, bool weights_only) {
    KernelSet set;
    BuiltProgram built = build_program(*context_, kernel_source(), paths.build_options(context_->description()));
    set.program = std::move(built.program);
    set.from_cache = built.from_cache;
    const auto make = [&](Kernel& kernel, const std::string& name) {
        cl_int status = CL_SUCCESS;
        kernel.handle = ClHandle<cl_kernel>(context_->cl().CreateKernel(set.program.get(), name.c_str(), &status));
        context_->check(status, "creating kernel " + name);
        kernel.name = name;
        const cl_device_id device = context_->description().device;
        context_->cl().GetKernelWorkGroupInfo(kernel.handle.get(), device, CL_KERNEL_WORK_GROUP_SIZE,
                                              sizeof kernel.max_work_group, &kernel.max_work_group, nullptr);
        context_->cl().GetKernelWorkGroupInfo(kernel.handle.get(), device, CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE,
                                              sizeof kernel.multiple, &kernel.multiple, nullptr);
        kernel.max_work_group = std::max<size_t>(1, kernel.max_work_group);
        kernel.multiple = std::max<size_t>(1, kernel.multiple);
    };
    for (int t = 0; t < kNumDTypes; ++t) {
        if (weights_only && !is_quantized(static_cast<DType>(t))) continue;
        const std::string suffix = kTypeSuffix[t];
        make(set.gemv[t], "gemv_" + suffix);
        make(set.gemm[t], "gemm_" + suffix);
        make(set.embed[t], "embed_" + suffix);
        if (set.gemm[t].max_work_group < kGemmThreads) {
            throw std::runtime_error(context_->label() + ": kernel gemm_" + suffix + " runs at most " +
                                     std::to_string(set.gemm[t].max_work_group) + " work-items per group; its tile needs " +
                                     std::to_string(kGemmThreads));
        }
    }
    if (weights_only) return set;
    make(set.quantize_activations, "quantize_activations");
    make(set.rmsnorm, "rmsnorm_rows");
    make(set.add, "add_values");
    make(set.add_bias, "add_bias_rows");
    make(set.silu_mul, "silu_mul_values");
    make(set.gather_rows, "gather_rows");
    make(set.argmax, "argmax_rows");
    make(set.rope, "rope_rows");
    make(set.short_conv, "short_conv_rows");
    for (DType kv : {DType::F32, DType::F16, DType::Q8_0}) {
        const int t = static_cast<int>(kv);
        make(set.kv_store[t], std::string("kv_store_") + kTypeSuffix[t]);
        make(set.attention[t], std::string("attention_") + kTypeSuffix[t]);
    }
    return set;
}

size_t OpenClBackend::local_size(const Kernel& kernel, size_t wanted) {
    const size_t limit = floor_pow2(std::min(kernel.max_work_group, kMaxLocal));
    const size_t least = std::min(limit, ceil_pow2(kernel.multiple));
    return std::clamp(ceil_pow2(std::max<size_t>(wanted, 1)), least, limit);
}

template <typename... Args>
void OpenClBackend::launch_1d(const Kernel& kernel, size_t count, const Args&... args) {
    if (count == 0) return;
    const size_t local = local_size(kernel, kMaxLocal);
    const size_t global = round_up(count, local);
    context_->launch(kernel.handle.get(), kernel.name.c_str(), 1, &global, &local, args...);
}

// --- memory ------------------------------------------------------------------------------

std::unique_ptr<backend::Buffer> OpenClBackend::allocate(size_t bytes) {
    return std::make_unique<OpenClBuffer>(context_->allocate(bytes, "activations"), bytes);
}

std::unique_ptr<backend::Buffer> OpenClBackend::upload(const float* values, size_t count) {
    const size_t bytes = count * sizeof(float);
    return std::make_unique<OpenClBuffer>(context_->allocate(bytes, "a vector", values), bytes);
}

void OpenClBackend::read(const backend::Buffer& buffer, size_t offset, size_t bytes, void* host) {
    if (offset + bytes > buffer.bytes()) throw std::out_of_range("read past a buffer");
    context_->read(mem(buffer), offset, bytes, host);
}

std::vector<std::shared_ptr<const backend::Matrix>> OpenClBackend::upload_matrices(
    const std::vector<backend::MatrixSource>& sources) {
    const DeviceDescription& d = context_->description();
    std::vector<std::shared_ptr<const backend::Matrix>> matrices;
    for (const backend::MatrixSource& source : sources) {
        const TensorView& view = source.view;
        const auto rows = static_cast<size_t>(view.shape[0]), cols = static_cast<size_t>(view.shape[1]);
        const PackedMatrix packed = pack_matrix(view.dtype, view.data, rows, cols);
        auto m = std::make_shared<OpenClMatrix>(view.dtype, view.shape[0], view.shape[1]);
        const std::string what = "tensor '" + source.name + "'";
        m->quants = context_->allocate(packed.quants.size(), what, packed.quants.data());
        if (!packed.a.empty()) m->a = context_->allocate(packed.a.size(), what, packed.a.data());
        if (!packed.b.empty()) m->b = context_->allocate(packed.b.size(), what, packed.b.data());
        if (!packed.c.empty()) m->c = context_->allocate(packed.c.size(), what, packed.c.data());
        // The image path, for quantized matrices whose texels fit the device's 1-D image limit
        // (others keep to buffers; each kernel set has both kinds).
        const size_t texels = packed.quants.size() / 16;
        if (context_->paths().images && is_quantized(view.dtype) && texels <= d.image_max_texels) {
            const cl_image_format format{CL_RGBA, CL_UNSIGNED_INT32};
            cl_image_desc desc{};
            desc.image_type = CL_MEM_OBJECT_IMAGE1D_BUFFER;
            desc.image_width = texels;
            desc.buffer = m->quants.get();
            cl_int status = CL_SUCCESS;
            m->image = ClHandle<cl_mem>(
                context_->cl().CreateImage(context_->context(), CL_MEM_READ_ONLY, &format, &desc, nullptr, &status));
            context_->check(status, "making an image of " + what);
        }
        weight_bytes_ += m->device_bytes();
        matrices.push_back(std::move(m));
    }
    return matrices;
}

// --- sequence state ----------------------------------------------------------------------

void OpenClBackend::init_state(const StateLayout& layout) {
    if (layout.conv_history > kConvMaxHistory) {
        throw InvalidArgument(context_->label() + " runs short convs of at most " + std::to_string(kConvMaxHistory + 1) +
                              " taps; this model's have " + std::to_string(layout.conv_history + 1));
    }
    layout_ = layout;
    kv_pages_ = std::make_unique<OpenClBlockPool>(context_, layout.kv_page_bytes(), "the KV page pool");
    conv_states_ = std::make_unique<OpenClBlockPool>(context_, layout.conv_state_bytes(), "the conv state pool");
}

void OpenClBackend::begin_step(const backend::Step& step) {
    step_rows_ = step.n;
    step_sequences_ = step.sequences.size();
    positions_at_ = u32(step.n);
    row_sequence_at_ = u32(2 * step.n);
    sequences_at_ = u32(3 * step.n);
    pages_at_ = u32(3 * step.n + kSequenceFields * step.sequences.size());
    step_host_.assign(pages_at_, 0);
    for (size_t r = 0; r < step.n; ++r) step_host_[r] = static_cast<uint32_t>(step.tokens[r]);
    for (size_t s = 0; s < step.sequences.size(); ++s) {
        const backend::StepSequence& seq = step.sequences[s];
        uint32_t* fields = step_host_.data() + sequences_at_ + kSequenceFields * s;
        fields[0] = u32(seq.row_begin);
        fields[1] = u32(seq.n);
        fields[2] = u32(seq.n_past);
        fields[3] = seq.conv_state;
        fields[4] = u32(step_host_.size() - pages_at_);
        step_host_.insert(step_host_.end(), seq.kv_pages.begin(), seq.kv_pages.end());
        for (size_t t = 0; t < seq.n; ++t) {
            step_host_[positions_at_ + seq.row_begin + t] = u32(seq.n_past + t);
            step_host_[row_sequence_at_ + seq.row_begin + t] = u32(s);
        }
    }
    upload_step_data();
}

// One write per step (it waits for the step before, which has finished by then in decoding: the
// logits or token ids were read).
void OpenClBackend::upload_step_data() {
    const size_t bytes = step_host_.size() * sizeof(uint32_t);
    if (step_buffer_.bytes() < bytes) {
        step_buffer_ = context_->allocate(std::max<size_t>(bytes, 2 * step_buffer_.bytes()), "the step's positions");
    }
    context_->write(step_buffer_.get(), 0, bytes, step_host_.data());
}

// --- ops ---------------------------------------------------------------------------------

cl_mem OpenClBackend::weight_quants(const OpenClMatrix& m) const { return m.image ? m.image.get() : m.quants.get(); }

const OpenClBackend::Kernel& OpenClBackend::matmul_kernel(const OpenClMatrix& m,
                                                          const Kernel (KernelSet::*kind)[kNumDTypes]) const {
    const KernelSet& set = m.image ? image_kernels_ : kernels_;
    return (set.*kind)[static_cast<int>(m.dtype)];
}

void OpenClBackend::embed(const backend::Matrix& table, backend::Buffer& out) {
    const OpenClMatrix& m = cl_matrix(table);
    const Kernel& kernel = matmul_kernel(m, &KernelSet::embed);
    const auto cols = static_cast<size_t>(m.cols);
    const size_t chunks = chunks_per_row(m.dtype, cols);
    const size_t local[2] = {local_size(kernel, chunks), 1};
    const size_t global[2] = {round_up(chunks, local[0]), step_rows_};
    if (step_rows_ == 0) return;
    context_->launch(kernel.handle.get(), kernel.name.c_str(), 2, global, local, weight_quants(m), m.a.get(), m.b.get(),
                     m.c.get(), u32(cols), step_buffer_.get(), mem(out));
}

void OpenClBackend::rmsnorm(const backend::Buffer& x, const backend::Buffer& weight, size_t width, size_t n_rows,
                            float eps, backend::Buffer& y) {
    if (n_rows == 0) return;
    const Kernel& kernel = kernels_.rmsnorm;
    const size_t local = local_size(kernel, width);
    const size_t global = n_rows * local;
    context_->launch(kernel.handle.get(), kernel.name.c_str(), 1, &global, &local, mem(x), mem(weight), u32(width), eps, mem(y),
                     LocalBytes{local * 4 * sizeof(float)});
}

// Which of quantized_x_'s activation groups a quantized weight type multiplies: 0 for Q8_0 /
// Q4_0 (32 values to a scale), 1 for the K-quants (256).
namespace {
size_t activation_slot(DType weight) { return block_elems(weight) == quant::kQK ? 1 : 0; }
}  // namespace

cl_mem OpenClBackend::quantized_activations(DType weight, const backend::Buffer& x, size_t n, size_t cols) {
    const size_t slot = activation_slot(weight);
    const size_t group = slot == 1 ? quant::kQK : quant::kQ32;
    DeviceMemory& buffer = quantized_x_[slot];
    const size_t bytes = n * cols * sizeof(float);
    if (buffer.bytes() < bytes) buffer = context_->allocate(bytes, "quantized activations");
    const Kernel& kernel = kernels_.quantize_activations;
    const size_t global[2] = {cols / group, n};  // the driver picks the work-group size
    context_->launch(kernel.handle.get(), kernel.name.c_str(), 2, global, nullptr, mem(x), u32(cols), u32(group),
                     buffer.get());
    return buffer.get();
}

void OpenClBackend::matmul(std::initializer_list<backend::Projection> projections, const backend::Buffer& x, size_t n) {
    // The projections share x; each activation group it is rounded to is made once.
    cl_mem rounded[2] = {nullptr, nullptr};
    for (const backend::Projection& p : projections) {
        const OpenClMatrix& m = cl_matrix(p.w);
        const auto rows = static_cast<size_t>(m.rows), cols = static_cast<size_t>(m.cols);
        cl_mem input = mem(x);
        if (is_quantized(m.dtype)) {
            cl_mem& r = rounded[activation_slot(m.dtype)];
            if (r == nullptr) r = quantized_activations(m.dtype, x, n, cols);
            input = r;
        }
        if (n == 1) {
            const Kernel& kernel = matmul_kernel(m, &KernelSet::gemv);
            const size_t local = local_size(kernel, chunks_per_row(m.dtype, cols));
            const size_t global = (rows + kGemvRows - 1) / kGemvRows * local;
            context_->launch(kernel.handle.get(), kernel.name.c_str(), 1, &global, &local, weight_quants(m), m.a.get(),
                             m.b.get(), m.c.get(), u32(rows), u32(cols), input, mem(p.y),
                             LocalBytes{local * 4 * sizeof(float)});
        } else {
            const Kernel& kernel = matmul_kernel(m, &KernelSet::gemm);
            const size_t local[2] = {kGemmThreads, 1};
            const size_t global[2] = {(rows + kGemmTileRows - 1) / kGemmTileRows * kGemmThreads,
                                      (n + kGemmTileTokens - 1) / kGemmTileTokens};
            context_->launch(kernel.handle.get(), kernel.name.c_str(), 2, global, local, weight_quants(m), m.a.get(),
                             m.b.get(), m.c.get(), u32(rows), u32(cols), input, u32(n), mem(p.y));
        }
    }
}

void OpenClBackend::add_bias(backend::Buffer& y, const backend::Buffer& bias, size_t width, size_t n) {
    launch_1d(kernels_.add_bias, n * width, mem(y), mem(bias), u32(width), u32(n * width));
}

void OpenClBackend::short_conv(size_t conv_layer, backend::Buffer& bcx, const backend::Buffer& taps,
                               const backend::Buffer* bias, size_t kernel_size, backend::Buffer& out) {
    if (kernel_size - 1 != layout_.conv_history) {
        throw std::logic_error("short_conv: the kernel size does not match the state layout");
    }
    const Kernel& kernel = kernels_.short_conv;
    const size_t hidden = layout_.hidden;
    const size_t local[2] = {local_size(kernel, hidden), 1};
    const size_t global[2] = {round_up(hidden, local[0]), step_sequences_};
    if (step_sequences_ == 0) return;
    conv_states_->with_buffer([&](cl_mem states) {
        context_->launch(kernel.handle.get(), kernel.name.c_str(), 2, global, local, mem(bcx), mem(taps),
                         bias ? mem(*bias) : cl_mem{nullptr}, cl_uint{bias != nullptr}, u32(kernel_size), u32(hidden),
                         states, u64(layout_.conv_state_bytes() / sizeof(float)),
                         u64(conv_layer * layout_.conv_layer_floats()), step_buffer_.get(), sequences_at_,
                         u32(step_sequences_), mem(out));
    });
}

void OpenClBackend::rope(backend::Buffer& q, size_t n_q_heads, backend::Buffer& k, size_t n_k_heads, size_t head_dim,
                         const backend::Buffer& inv_freq) {
    if (step_rows_ == 0) return;
    const Kernel& kernel = kernels_.rope;
    const size_t local[3] = {local_size(kernel, head_dim / 2), 1, 1};
    const size_t global[3] = {round_up(head_dim / 2, local[0]), n_q_heads + n_k_heads, step_rows_};
    context_->launch(kernel.handle.get(), kernel.name.c_str(), 3, global, local, mem(q), u32(n_q_heads), mem(k), u32(n_k_heads),
                     u32(head_dim), mem(inv_freq), step_buffer_.get(), positions_at_, u32(step_rows_));
}

void OpenClBackend::kv_store(size_t attention_layer, const backend::Buffer& k, const backend::Buffer& v) {
    if (step_rows_ == 0) return;
    const Kernel& kernel = kernels_.kv_store[static_cast<int>(layout_.kv_dtype)];
    const size_t local[3] = {local_size(kernel, layout_.n_kv_heads), 1, 1};
    const size_t global[3] = {round_up(layout_.n_kv_heads, local[0]), step_rows_, 2};
    kv_pages_->with_buffer([&](cl_mem pool) {
        context_->launch(kernel.handle.get(), kernel.name.c_str(), 3, global, local, pool, u64(layout_.kv_page_bytes()),
                         u64(layout_.kv_run_offset(attention_layer, false, 0)),
                         u64(layout_.kv_run_offset(attention_layer, true, 0)),
                         u64(layout_.page_positions * layout_.slice_bytes()), u32(layout_.page_positions),
                         u32(layout_.slice_bytes()), step_buffer_.get(), positions_at_, row_sequence_at_, sequences_at_,
                         pages_at_, mem(k), mem(v), u32(layout_.n_kv_heads), u32(layout_.head_dim), u32(step_rows_));
    });
}

void OpenClBackend::attention(size_t attention_layer, const backend::Buffer& q, size_t n_heads, backend::Buffer& out) {
    if (step_rows_ == 0) return;
    const Kernel& kernel = kernels_.attention[static_cast<int>(layout_.kv_dtype)];
    const size_t head_dim = layout_.head_dim, group = n_heads / layout_.n_kv_heads;
    const size_t local = local_size(kernel, std::max<size_t>(64, (head_dim + kAttentionDims - 1) / kAttentionDims));
    if (local * kAttentionDims < head_dim) {
        throw InvalidArgument(context_->label() + ": attention kernel runs " + std::to_string(local) +
                              " work-items per group, too few for head_dim " + std::to_string(head_dim));
    }
    const size_t heads_per_group = std::min(group, kAttentionHeads);
    const size_t local_bytes = (heads_per_group * head_dim + kAttentionHeads * local) * sizeof(float);
    if (local_bytes > context_->description().local_memory) {
        throw InvalidArgument(context_->label() + ": attention needs " + std::to_string(local_bytes) +
                              " bytes of local memory; the device has " +
                              std::to_string(context_->description().local_memory));
    }
    const size_t head_blocks = (group + kAttentionHeads - 1) / kAttentionHeads;
    const size_t locals[2] = {local, 1};
    const size_t global[2] = {layout_.n_kv_heads * head_blocks * local, step_rows_};
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    kv_pages_->with_buffer([&](cl_mem pool) {
        context_->launch(kernel.handle.get(), kernel.name.c_str(), 2, global, locals, pool, u64(layout_.kv_page_bytes()),
                         u64(layout_.kv_run_offset(attention_layer, false, 0)),
                         u64(layout_.kv_run_offset(attention_layer, true, 0)),
                         u64(layout_.page_positions * layout_.slice_bytes()), u32(layout_.page_positions),
                         u32(layout_.slice_bytes()), step_buffer_.get(), positions_at_, row_sequence_at_, sequences_at_,
                         pages_at_, mem(q), mem(out), u32(n_heads), u32(group), u32(head_dim), scale,
                         LocalBytes{heads_per_group * head_dim * sizeof(float)},
                         LocalBytes{kAttentionHeads * local * sizeof(float)});
    });
}

void OpenClBackend::silu_mul(const backend::Buffer& gate, const backend::Buffer& up, backend::Buffer& out,
                             size_t count) {
    launch_1d(kernels_.silu_mul, count, mem(gate), mem(up), mem(out), u32(count));
}

void OpenClBackend::add(backend::Buffer& y, const backend::Buffer& x, size_t count) {
    launch_1d(kernels_.add, count, mem(y), mem(x), u32(count));
}

void OpenClBackend::gather_rows(const backend::Buffer& x, size_t width, const std::vector<uint32_t>& rows,
                                backend::Buffer& out) {
    if (rows.empty()) return;
    const size_t bytes = rows.size() * sizeof(uint32_t);
    if (gather_buffer_.bytes() < bytes) gather_buffer_ = context_->allocate(std::max<size_t>(bytes, 256), "row indices");
    context_->write(gather_buffer_.get(), 0, bytes, rows.data());
    launch_1d(kernels_.gather_rows, rows.size() * width, mem(x), u32(width), gather_buffer_.get(), mem(out),
              u32(rows.size() * width));
}

void OpenClBackend::argmax(const backend::Buffer& x, size_t width, size_t n_rows, int32_t* ids) {
    if (n_rows == 0) return;
    const size_t bytes = n_rows * sizeof(int32_t);
    if (ids_buffer_.bytes() < bytes) ids_buffer_ = context_->allocate(std::max<size_t>(bytes, 256), "token ids");
    const Kernel& kernel = kernels_.argmax;
    const size_t local = local_size(kernel, width);
    const size_t global = n_rows * local;
    context_->launch(kernel.handle.get(), kernel.name.c_str(), 1, &global, &local, mem(x), u32(width), ids_buffer_.get(),
                     LocalBytes{local * sizeof(float)}, LocalBytes{local * sizeof(uint32_t)});
    context_->read(ids_buffer_.get(), 0, bytes, ids);
}

}  // namespace lfmrt::opencl
