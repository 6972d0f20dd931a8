#include "backends/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#include "backends/cpu/dispatch.h"
#include "backends/cpu/panels.h"
#include "core/argmax.h"
#include "formats/quantize.h"
#include "lfmrt/error.h"

namespace lfmrt::cpu {

namespace {

size_t round_up(size_t value, size_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Rows per GEMM task: several tasks per thread so a slow (shared) core does not stall the others,
// in whole GEMM panels (partial panels take masked loads; any split gives the same bits).
size_t rows_per_task(size_t rows, int n_threads) {
    const size_t target_tasks = static_cast<size_t>(n_threads) * 4;
    return std::max(kRowBlock, round_up((rows + target_tasks - 1) / target_tasks, kRowBlock));
}

float* floats(backend::Buffer& buffer) { return static_cast<CpuBuffer&>(buffer).data(); }
const float* floats(const backend::Buffer& buffer) { return static_cast<const CpuBuffer&>(buffer).data(); }
const CpuMatrix& cpu_matrix(const backend::Matrix& m) { return static_cast<const CpuMatrix&>(m); }

// Each packed matrix starts on a cache line.
size_t packed_bytes(const TensorView& view) {
    constexpr size_t kAlign = 64;
    const auto rows = static_cast<size_t>(view.shape[0]), cols = static_cast<size_t>(view.shape[1]);
    return round_up(panel_matrix_bytes(view.dtype, rows, cols), kAlign);
}

}  // namespace

AlignedBytes::AlignedBytes(size_t bytes) {
    constexpr size_t kAlign = 64;
    data_.reset(static_cast<uint8_t*>(std::aligned_alloc(kAlign, round_up(std::max<size_t>(bytes, 1), kAlign))));
    if (!data_) throw std::bad_alloc();
}

// --- state blocks ------------------------------------------------------------------------

uint32_t CpuBlockPool::allocate() {
    AlignedBytes memory(ids_.block_bytes());  // outside the lock: the allocation is the slow part
    std::lock_guard<std::mutex> lock(mutex_);
    const uint32_t id = ids_.take([](size_t) {});  // each block its own allocation: nothing to grow
    if (id >= blocks_.size()) blocks_.resize(id + 1);
    blocks_[id] = std::move(memory);
    return id;
}

void CpuBlockPool::release(uint32_t block) {
    AlignedBytes memory;  // freed after the lock is dropped
    std::lock_guard<std::mutex> lock(mutex_);
    ids_.give_back(block);
    memory = std::move(blocks_[block]);
}

uint8_t* CpuBlockPool::data(uint32_t block, size_t offset, size_t bytes) const {
    std::lock_guard<std::mutex> lock(mutex_);
    ids_.check(block, offset, bytes);
    return blocks_[block].data() + offset;
}

void CpuBlockPool::copy(uint32_t from, uint32_t to) {
    uint8_t* target = data(to);
    const uint8_t* source = data(from);
    if (source != target) std::memcpy(target, source, ids_.block_bytes());
}
void CpuBlockPool::zero(uint32_t block) { std::memset(data(block), 0, ids_.block_bytes()); }

void CpuBlockPool::read(uint32_t block, size_t offset, size_t bytes, void* host) {
    std::memcpy(host, data(block, offset, bytes), bytes);
}

void CpuBlockPool::write(uint32_t block, size_t offset, size_t bytes, const void* host) {
    std::memcpy(data(block, offset, bytes), host, bytes);
}

size_t CpuBlockPool::allocated_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return ids_.bytes_in_use();
}

// --- the backend -------------------------------------------------------------------------

CpuBackend::CpuBackend(const KernelTable& kernels, int n_threads)
    : kernels_(kernels),
      kv_kernels_(kv_kernels_for(kernels)),
      pool_(n_threads),
      gemm_scratch_(static_cast<size_t>(n_threads), std::vector<float>(kGemmScratchBytes / sizeof(float))),
      attention_scratch_(static_cast<size_t>(n_threads)) {}

std::string CpuBackend::device() const { return std::string("cpu:") + kernels_.name; }

bool CpuBackend::supports(DType dtype) const {
    const int type = static_cast<int>(dtype);
    return kernels_.gemv[type] != nullptr && kernels_.gemm[type] != nullptr;
}

std::unique_ptr<backend::Buffer> CpuBackend::allocate(size_t bytes) { return std::make_unique<CpuBuffer>(bytes); }

std::unique_ptr<backend::Buffer> CpuBackend::upload(const float* values, size_t count) {
    auto buffer = std::make_unique<CpuBuffer>(count * sizeof(float));
    std::copy(values, values + count, buffer->data());
    return buffer;
}

void CpuBackend::read(const backend::Buffer& buffer, size_t offset, size_t bytes, void* host) {
    if (offset + bytes > buffer.bytes()) throw std::out_of_range("read past a buffer");
    std::memcpy(host, reinterpret_cast<const uint8_t*>(floats(buffer)) + offset, bytes);
}

bool CpuBackend::has_panel_kernels(DType dtype) const {
    const int type = static_cast<int>(dtype);
    return kernels_.gemv_panels[type] != nullptr && kernels_.gemm_panels[type] != nullptr;
}

void CpuBackend::pack_panels(const TensorView& source, void* dst) {
    const auto rows = static_cast<size_t>(source.shape[0]);
    const auto cols = static_cast<size_t>(source.shape[1]);
    const size_t n_panels = panel_rows(rows);
    // A few tasks per thread, in whole panel-rows (the pack's unit).
    const size_t per_task = std::max<size_t>(1, (n_panels + 4 * pool_.size() - 1) / (4 * pool_.size()));
    pool_.parallel_for((n_panels + per_task - 1) / per_task, [&](size_t task, int) {
        const size_t begin = task * per_task;
        cpu::pack_panels(source.dtype, source.data, rows, cols, begin, std::min(n_panels, begin + per_task), dst);
    });
}

// Matrices the forward pass multiplies by and whose type the kernel table reads in panels
// (Q4_0, Q8_0 and Q6_K on x86-64, and Q4_K with AVX-512) are repacked into one arena, one matrix
// at a time. Once a matrix is packed, the pages of its source are released when they are a
// file mapping, so resident memory never holds both copies of more than one matrix; other
// sources (arrays made at load, e.g. quantized on load) keep their pages, as the fingerprint and
// the caller's arrays still refer to them. Lookups (the embedding) read the matrix in whichever
// layout it has.
std::vector<std::shared_ptr<const backend::Matrix>> CpuBackend::upload_matrices(
    const std::vector<backend::MatrixSource>& sources) {
    const auto packable = [this](const backend::MatrixSource& s) {
        return s.use != backend::MatrixUse::Lookup && has_panel_kernels(s.view.dtype);
    };
    size_t total = 0;
    for (const backend::MatrixSource& source : sources) {
        if (!supports(source.view.dtype)) {
            throw LoadError("tensor '" + source.name + "': the " + kernels_.name + " kernels cannot run " +
                            dtype_name(source.view.dtype) + " matrices");
        }
        if (packable(source)) total += packed_bytes(source.view);
    }
    panels_.emplace_back(total);
    auto* next = static_cast<uint8_t*>(panels_.back().data());
    std::vector<std::shared_ptr<const backend::Matrix>> matrices;
    for (const backend::MatrixSource& source : sources) {
        const TensorView& view = source.view;
        const void* data = view.data;
        MatrixLayout layout = MatrixLayout::Rows;
        if (packable(source)) {
            pack_panels(view, next);
            data = next;
            layout = MatrixLayout::Panels;
            next += packed_bytes(view);
            if (view.file_mapped) release_file_pages(view.data, view.nbytes());
        }
        matrices.push_back(std::make_shared<CpuMatrix>(view.dtype, view.shape[0], view.shape[1], data, layout));
    }
    return matrices;
}

size_t CpuBackend::weight_bytes() const {
    size_t bytes = 0;
    for (const HugePageBuffer& arena : panels_) bytes += arena.size();
    return bytes;
}

void CpuBackend::init_state(const StateLayout& layout) {
    layout_ = layout;
    kv_pages_ = std::make_unique<CpuBlockPool>(layout.kv_page_bytes());
    conv_states_ = std::make_unique<CpuBlockPool>(layout.conv_state_bytes());
}

void CpuBackend::begin_step(const backend::Step& step) {
    step_tokens_ = step.tokens;
    step_rows_ = step.n;
    step_.clear();
    step_positions_.resize(step.n);
    for (const backend::StepSequence& s : step.sequences) {
        ResolvedSequence resolved{s.row_begin, s.n, s.n_past, nullptr, {}};
        if (layout_.n_conv_layers > 0) {
            resolved.conv_state = reinterpret_cast<float*>(conv_states_->data(s.conv_state));
        }
        for (uint32_t page : s.kv_pages) resolved.kv_pages.push_back(kv_pages_->data(page));
        for (size_t t = 0; t < s.n; ++t) step_positions_[s.row_begin + t] = static_cast<int32_t>(s.n_past + t);
        step_.push_back(std::move(resolved));
    }
}

void CpuBackend::embed(const backend::Matrix& table, backend::Buffer& out) {
    const CpuMatrix& m = cpu_matrix(table);
    const auto hidden = static_cast<size_t>(m.cols);
    const size_t embedding_bytes = row_bytes(m.dtype, hidden);
    const auto* rows = static_cast<const uint8_t*>(m.data);
    float* y = floats(out);
    looked_up_row_.resize(embedding_bytes);
    for (size_t r = 0; r < step_rows_; ++r) {
        const auto token = static_cast<size_t>(step_tokens_[r]);
        const uint8_t* row = rows + token * embedding_bytes;
        if (m.layout == MatrixLayout::Panels) {
            unpack_panel_row(m.dtype, m.data, hidden, token, looked_up_row_.data());
            row = looked_up_row_.data();
        }
        convert_to_f32(row, m.dtype, y + r * hidden, hidden);
    }
}

void CpuBackend::rmsnorm(const backend::Buffer& x, const backend::Buffer& weight, size_t width, size_t n_rows,
                         float eps, backend::Buffer& y) {
    const float* in = floats(x);
    const float* w = floats(weight);
    float* out = floats(y);
    for (size_t r = 0; r < n_rows; ++r) kernels_.rmsnorm(in + r * width, w, width, eps, out + r * width);
}

void CpuBackend::matmul(std::initializer_list<backend::Projection> projections, const backend::Buffer& x, size_t n) {
    std::vector<RawProjection> raw;
    raw.reserve(projections.size());
    for (const backend::Projection& p : projections) {
        const CpuMatrix& w = cpu_matrix(p.w);
        raw.push_back(RawProjection{w, floats(p.y), static_cast<size_t>(w.rows)});
    }
    if (raw.empty()) throw std::logic_error("matmul takes at least one projection");
    matmul_rows(raw.data(), raw.size(), floats(x), static_cast<size_t>(raw[0].w.cols), n);
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

// All projections read the same X, so one copy per activation format serves every matrix: X
// itself for float weights, one quantization per block format, made before the tasks run; and
// one parallel region serves them all (one thread barrier instead of one per matrix, which
// matters in decode).
void CpuBackend::matmul_rows(const RawProjection* projections, size_t count, const float* x, size_t ldx, size_t n) {
    row_tasks_.clear();
    const auto cols = static_cast<size_t>(projections[0].w.cols);
    const void* input_in[kNumActivationFormats] = {x};  // indexed by ActivationFormat; F32 is X
    for (size_t i = 0; i < count; ++i) {
        const CpuMatrix& w = projections[i].w;
        plan_row_tasks(i, static_cast<size_t>(w.rows), n);
        const ActivationFormat format = activation_format(w.dtype);
        const void*& input = input_in[static_cast<int>(format)];
        if (input == nullptr) input = quantize_activations(format, x, ldx, n, cols);
    }
    pool_.parallel_for(row_tasks_.size(), [&](size_t task, int thread) {
        const RowTask& range = row_tasks_[task];
        const RawProjection& p = projections[range.projection];
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

void CpuBackend::add_bias(backend::Buffer& y, const backend::Buffer& bias, size_t width, size_t n) {
    float* out = floats(y);
    for (size_t t = 0; t < n; ++t) kernels_.axpy(1.0f, floats(bias), out + t * width, width);
}

void CpuBackend::short_conv(size_t conv_layer, backend::Buffer& bcx_buffer, const backend::Buffer& taps_buffer,
                            const backend::Buffer* bias_buffer, size_t kernel, backend::Buffer& out) {
    const size_t hidden = layout_.hidden;
    const size_t width = 3 * hidden;
    const size_t history = kernel - 1;
    float* bcx = floats(bcx_buffer);
    const float* taps = floats(taps_buffer);
    const float* bias = bias_buffer == nullptr ? nullptr : floats(*bias_buffer);
    float* mixed = floats(out);

    // B * x, written over x's third of each row.
    for (size_t r = 0; r < step_rows_; ++r) {
        float* x = bcx + r * width + 2 * hidden;
        kernels_.mul(bcx + r * width, x, x, hidden);
    }
    std::vector<float> next(history * hidden);
    for (const ResolvedSequence& s : step_) {
        float* state = s.conv_state + conv_layer * layout_.conv_layer_floats();
        float* item_bcx = bcx + s.row_begin * width;
        // The conv input at step t of this sequence (negative t reaches into the state).
        const auto input_at = [&](ptrdiff_t t) -> const float* {
            if (t >= 0) return item_bcx + static_cast<size_t>(t) * width + 2 * hidden;
            return state + static_cast<size_t>(static_cast<ptrdiff_t>(history) + t) * hidden;
        };
        for (size_t t = 0; t < s.n; ++t) {
            float* y = mixed + (s.row_begin + t) * hidden;
            if (bias == nullptr) {
                std::fill(y, y + hidden, 0.0f);
            } else {
                std::copy(bias, bias + hidden, y);
            }
            for (size_t j = 0; j < kernel; ++j) {
                const float* in = input_at(static_cast<ptrdiff_t>(t + j) - static_cast<ptrdiff_t>(history));
                const float* tap = taps + j * hidden;
                for (size_t c = 0; c < hidden; ++c) y[c] += tap[c] * in[c];
            }
            kernels_.mul(item_bcx + t * width + hidden, y, y, hidden);  // C * conv(B * x)
        }
        // Keep the last (kernel - 1) conv inputs for the next step (gathered first: they may
        // come from the state itself).
        for (size_t h = 0; h < history; ++h) {
            const float* src = input_at(static_cast<ptrdiff_t>(s.n + h) - static_cast<ptrdiff_t>(history));
            std::copy(src, src + hidden, next.begin() + static_cast<ptrdiff_t>(h * hidden));
        }
        std::copy(next.begin(), next.end(), state);
    }
}

namespace {
// Rotates pairs (i, i + head_dim/2) of each of `n_heads` heads in `row` (rotate_half style).
void rotate_heads(float* row, size_t n_heads, size_t head_dim, const float* cos, const float* sin) {
    const size_t half = head_dim / 2;
    for (size_t h = 0; h < n_heads; ++h) {
        float* head = row + h * head_dim;
        for (size_t i = 0; i < half; ++i) {
            const float x1 = head[i];
            const float x2 = head[i + half];
            head[i] = x1 * cos[i] - x2 * sin[i];
            head[i + half] = x2 * cos[i] + x1 * sin[i];
        }
    }
}
}  // namespace

void CpuBackend::rope(backend::Buffer& q, size_t n_q_heads, backend::Buffer& k, size_t n_k_heads, size_t head_dim,
                      const backend::Buffer& inv_freq_buffer) {
    const float* inv_freq = floats(inv_freq_buffer);
    std::vector<float> cos(head_dim / 2), sin(head_dim / 2);
    for (size_t r = 0; r < step_rows_; ++r) {
        const auto position = static_cast<float>(step_positions_[r]);
        for (size_t f = 0; f < cos.size(); ++f) {
            const float angle = position * inv_freq[f];
            cos[f] = std::cos(angle);
            sin[f] = std::sin(angle);
        }
        rotate_heads(floats(q) + r * n_q_heads * head_dim, n_q_heads, head_dim, cos.data(), sin.data());
        rotate_heads(floats(k) + r * n_k_heads * head_dim, n_k_heads, head_dim, cos.data(), sin.data());
    }
}

void CpuBackend::kv_store(size_t attention_layer, const backend::Buffer& k, const backend::Buffer& v) {
    const size_t head_dim = layout_.head_dim, n_heads = layout_.n_kv_heads, slice = layout_.slice_bytes();
    const size_t width = n_heads * head_dim;
    for (const ResolvedSequence& s : step_) {
        for (size_t t = 0; t < s.n; ++t) {
            const size_t position = s.n_past + t;
            uint8_t* page = s.kv_pages[position / layout_.page_positions];
            const size_t in_run = (position % layout_.page_positions) * slice;
            const size_t r = s.row_begin + t;
            for (size_t h = 0; h < n_heads; ++h) {
                quant::quantize_row(layout_.kv_dtype, floats(k) + r * width + h * head_dim,
                                    page + layout_.kv_run_offset(attention_layer, false, h) + in_run, head_dim);
                quant::quantize_row(layout_.kv_dtype, floats(v) + r * width + h * head_dim,
                                    page + layout_.kv_run_offset(attention_layer, true, h) + in_run, head_dim);
            }
        }
    }
}

namespace {

// Queries of one sequence that walk its KV pages together: each page's keys and values of a head
// (32 KB each at head_dim 64 in f16) are read from memory once for the whole block and then
// served from cache, instead of once per query (at 16k positions a head's keys and values are
// 4 MB, far more than a core's L2, so query after query streamed them all from DRAM).
constexpr size_t kQueryBlock = 32;
// A block of at least this many query rows (queries x the kv head's query heads) meets each
// page as two matrix products (scores = Q K^T, then P V) on the float GEMM kernels; smaller ones
// (decode) take the KV kernels' per-query dots and axpys.
constexpr size_t kMinGemmRows = 16;
// A decode query (one per sequence) over at least this many pages may have its pages split
// between several tasks when there are fewer tasks than threads to keep busy.
constexpr size_t kMinPagesToSplit = 2;

// Online softmax's step for one row of scores over `count` new positions: the running maximum
// moves, the row's earlier sum and output are rescaled to it, and the scores become weights.
void softmax_step(const KvKernels& kv, float* scores, size_t count, SoftmaxState& state, float* out, size_t head_dim) {
    const float top = *std::max_element(scores, scores + count);
    const float new_max = std::max(state.max, top);
    const float rescale = std::exp(state.max - new_max);  // 0 on the first page
    state.sum = state.sum * rescale + kv.exp_sum(scores, count, new_max);
    state.max = new_max;
    if (rescale != 1.0f) {
        for (size_t i = 0; i < head_dim; ++i) out[i] *= rescale;
    }
}

}  // namespace

// Tiled ("flash") attention: a task is a block of a sequence's queries against one kv head
// (serving the head's group of query heads, so a stored key or value is widened once for all of
// them), walking the pages with an online softmax; causal, each query sees positions up to its
// own. Decode queries at long contexts may split their pages over several tasks, whose partial
// softmax states are merged at the end.
void CpuBackend::attention(size_t attention_layer, const backend::Buffer& q_buffer, size_t n_heads,
                           backend::Buffer& out) {
    const size_t head_dim = layout_.head_dim, n_kv_heads = layout_.n_kv_heads;
    const size_t group = n_heads / n_kv_heads;
    const size_t q_stride = n_heads * head_dim;
    const size_t slice = layout_.slice_bytes(), page_positions = layout_.page_positions;
    const size_t head_run = page_positions * slice;  // one head's run in a page
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const float* q = floats(q_buffer);
    float* mixed = floats(out);
    const size_t keys_offset = layout_.kv_run_offset(attention_layer, false, 0);
    const size_t values_offset = layout_.kv_run_offset(attention_layer, true, 0);
    const DType kv_dtype = layout_.kv_dtype;
    const KvScoresFn scores_of = kv_kernels_.scores[static_cast<int>(kv_dtype)];
    const KvMixFn mix = kv_kernels_.mix[static_cast<int>(kv_dtype)];

    struct Task {
        size_t sequence, t_begin, t_end, kv_head, page_begin, page_end;
        size_t partial;  // SIZE_MAX: writes its rows; else its slot among the partial results
    };
    std::vector<Task> tasks;
    size_t base_tasks = 0;
    for (const ResolvedSequence& s : step_) base_tasks += (s.n + kQueryBlock - 1) / kQueryBlock * n_kv_heads;
    size_t n_partials = 0;
    for (size_t j = 0; j < step_.size(); ++j) {
        const ResolvedSequence& s = step_[j];
        const size_t pages = (s.n_past + s.n + page_positions - 1) / page_positions;
        const size_t wanted_splits = (2 * static_cast<size_t>(pool_.size()) + base_tasks - 1) / base_tasks;
        const size_t splits = s.n == 1 && pages >= kMinPagesToSplit ? std::min(pages, wanted_splits) : 1;
        for (size_t kv_head = 0; kv_head < n_kv_heads; ++kv_head) {
            if (splits > 1) {
                for (size_t i = 0; i < splits; ++i) {
                    tasks.push_back({j, 0, 1, kv_head, pages * i / splits, pages * (i + 1) / splits, n_partials++});
                }
                continue;
            }
            for (size_t t = 0; t < s.n; t += kQueryBlock) {
                const size_t t_end = std::min(s.n, t + kQueryBlock);
                const size_t last_pages = (s.n_past + t_end + page_positions - 1) / page_positions;
                tasks.push_back({j, t, t_end, kv_head, 0, last_pages, SIZE_MAX});
            }
        }
    }
    // A split task's result: its softmax states and unnormalised output rows, merged below.
    std::vector<SoftmaxState> partial_states(n_partials * group);
    std::vector<float> partial_rows(n_partials * group * head_dim);

    pool_.parallel_for(tasks.size(), [&](size_t index, int thread) {
        const Task& task = tasks[index];
        const ResolvedSequence& s = step_[task.sequence];
        AttentionScratch& scratch = attention_scratch_[static_cast<size_t>(thread)];
        // Row r of the block is query t_begin + r / group, head r % group of this kv head's group.
        const size_t n_rows = (task.t_end - task.t_begin) * group;
        const size_t position_of_row0 = s.n_past + task.t_begin;
        const bool partial = task.partial != SIZE_MAX;
        const auto out_row = [&](size_t r) {
            if (partial) return partial_rows.data() + (task.partial * group + r) * head_dim;
            const size_t t = task.t_begin + r / group;
            return mixed + (s.row_begin + t) * q_stride + (task.kv_head * group + r % group) * head_dim;
        };
        const auto query_row = [&](size_t r) {
            const size_t t = task.t_begin + r / group;
            return q + (s.row_begin + t) * q_stride + (task.kv_head * group + r % group) * head_dim;
        };
        SoftmaxState* states = partial ? partial_states.data() + task.partial * group : nullptr;
        if (!partial) {
            scratch.states.assign(n_rows, SoftmaxState{});
            states = scratch.states.data();
        }
        for (size_t r = 0; r < n_rows; ++r) std::fill(out_row(r), out_row(r) + head_dim, 0.0f);
        const bool as_gemm = n_rows >= kMinGemmRows;
        if (as_gemm) scratch.prepare_block(query_row, n_rows, head_dim, page_positions, scale);
        scratch.scores.resize(std::max(n_rows, group) * page_positions);

        for (size_t page = task.page_begin; page < task.page_end; ++page) {
            const size_t begin = page * page_positions;
            const uint8_t* keys = s.kv_pages[page] + keys_offset + task.kv_head * head_run;
            const uint8_t* values = s.kv_pages[page] + values_offset + task.kv_head * head_run;
            // Causal: row r sees positions up to its query's; `count_of(r)` of this page's.
            const auto count_of = [&](size_t r) -> size_t {
                const size_t n_ctx = position_of_row0 + r / group + 1;
                return n_ctx > begin ? std::min(n_ctx, begin + page_positions) - begin : 0;
            };
            if (as_gemm) {
                page_scores(scratch, keys, count_of(n_rows - 1), n_rows, thread);
                for (size_t r = 0; r < n_rows; ++r) {
                    float* row_scores = scratch.scores.data() + r * page_positions;
                    const size_t count = count_of(r);
                    if (count > 0) softmax_step(kv_kernels_, row_scores, count, states[r], out_row(r), head_dim);
                    std::fill(row_scores + count, row_scores + count_of(n_rows - 1), 0.0f);  // masked: no weight
                }
                add_page_values(scratch, values, count_of(n_rows - 1), n_rows, out_row, thread);
                continue;
            }
            for (size_t r = 0; r < n_rows; r += group) {  // one query's heads together
                const size_t count = count_of(r);
                if (count == 0) continue;
                float* scores = scratch.scores.data();
                scores_of(query_row(r), group, keys, slice, count, head_dim, scale, scores, page_positions);
                for (size_t h = 0; h < group; ++h) {
                    softmax_step(kv_kernels_, scores + h * page_positions, count, states[r + h], out_row(r + h),
                                 head_dim);
                }
                mix(scores, page_positions, group, values, slice, count, head_dim, out_row(r));
            }
        }
        if (partial) return;  // merged below
        for (size_t r = 0; r < n_rows; ++r) {
            const float inverse = 1.0f / states[r].sum;
            float* row = out_row(r);
            for (size_t i = 0; i < head_dim; ++i) row[i] *= inverse;
        }
    });

    // Merge each split decode query's partial results: rescale every part to the common maximum.
    for (size_t first = 0; first < tasks.size();) {
        if (tasks[first].partial == SIZE_MAX) {
            ++first;
            continue;
        }
        size_t last = first;
        while (last + 1 < tasks.size() && tasks[last + 1].partial != SIZE_MAX &&
               tasks[last + 1].sequence == tasks[first].sequence && tasks[last + 1].kv_head == tasks[first].kv_head) {
            ++last;
        }
        const Task& task = tasks[first];
        float* rows = mixed + step_[task.sequence].row_begin * q_stride + task.kv_head * group * head_dim;
        for (size_t h = 0; h < group; ++h) {
            float top = -INFINITY;
            for (size_t i = first; i <= last; ++i) top = std::max(top, partial_states[tasks[i].partial * group + h].max);
            float sum = 0.0f;
            std::fill(rows + h * head_dim, rows + (h + 1) * head_dim, 0.0f);
            for (size_t i = first; i <= last; ++i) {
                const SoftmaxState& part = partial_states[tasks[i].partial * group + h];
                const float weight = std::exp(part.max - top);
                sum += part.sum * weight;
                const float* part_row = partial_rows.data() + (tasks[i].partial * group + h) * head_dim;
                for (size_t d = 0; d < head_dim; ++d) rows[h * head_dim + d] += weight * part_row[d];
            }
            const float inverse = 1.0f / sum;
            for (size_t d = 0; d < head_dim; ++d) rows[h * head_dim + d] *= inverse;
        }
        first = last + 1;
    }
}

// The block's queries gathered into one matrix, pre-scaled by 1/sqrt(head_dim).
template <typename QueryRow>
void CpuBackend::AttentionScratch::prepare_block(const QueryRow& query_row, size_t n_rows, size_t head_dim,
                                                 size_t page_positions, float scale) {
    queries.resize(n_rows * head_dim);
    for (size_t r = 0; r < n_rows; ++r) {
        const float* row = query_row(r);
        for (size_t i = 0; i < head_dim; ++i) queries[r * head_dim + i] = row[i] * scale;
    }
    scores.resize(n_rows * page_positions);
    values_part.resize(n_rows * head_dim);
}

// scores[r][j] = q_r . k_j for the page's first `count` keys: the keys' run is a row-major matrix
// [count][head_dim] (F32 or F16 as stored; Q8_0 widened first: its GEMM would quantize the
// queries to 8 bits).
void CpuBackend::page_scores(AttentionScratch& scratch, const uint8_t* keys, size_t count, size_t n_rows, int thread) {
    const size_t head_dim = layout_.head_dim, slice = layout_.slice_bytes();
    DType type = layout_.kv_dtype;
    const void* matrix = keys;
    if (type == DType::Q8_0) {
        scratch.widened.resize(count * head_dim);
        for (size_t j = 0; j < count; ++j) {
            quant::dequantize_row(type, keys + j * slice, scratch.widened.data() + j * head_dim, head_dim);
        }
        matrix = scratch.widened.data();
        type = DType::F32;
    }
    kernels_.gemm[static_cast<int>(type)](matrix, head_dim, scratch.queries.data(), head_dim * sizeof(float), n_rows,
                                          scratch.scores.data(), layout_.page_positions, 0, count,
                                          gemm_scratch_[static_cast<size_t>(thread)].data());
}

// out_r += sum_j weights[r][j] v_j over the page's first `count` values, as the product of the
// weights and the values transposed ([head_dim][count], F16 kept as F16, the rest widened).
template <typename OutRow>
void CpuBackend::add_page_values(AttentionScratch& scratch, const uint8_t* values, size_t count, size_t n_rows,
                                 const OutRow& out_row, int thread) {
    const size_t head_dim = layout_.head_dim, slice = layout_.slice_bytes();
    const DType stored = layout_.kv_dtype;
    const void* transposed;
    DType type;
    if (stored == DType::F16) {
        scratch.transposed16.resize(head_dim * count);
        for (size_t j = 0; j < count; ++j) {
            const auto* row = reinterpret_cast<const uint16_t*>(values + j * slice);
            for (size_t i = 0; i < head_dim; ++i) scratch.transposed16[i * count + j] = row[i];
        }
        transposed = scratch.transposed16.data();
        type = DType::F16;
    } else {
        scratch.widened.resize(count * head_dim);
        for (size_t j = 0; j < count; ++j) {
            quant::dequantize_row(stored, values + j * slice, scratch.widened.data() + j * head_dim, head_dim);
        }
        scratch.transposed32.resize(head_dim * count);
        for (size_t j = 0; j < count; ++j) {
            for (size_t i = 0; i < head_dim; ++i) scratch.transposed32[i * count + j] = scratch.widened[j * head_dim + i];
        }
        transposed = scratch.transposed32.data();
        type = DType::F32;
    }
    kernels_.gemm[static_cast<int>(type)](transposed, count, scratch.scores.data(),
                                          layout_.page_positions * sizeof(float), n_rows, scratch.values_part.data(),
                                          head_dim, 0, head_dim, gemm_scratch_[static_cast<size_t>(thread)].data());
    for (size_t r = 0; r < n_rows; ++r) kernels_.axpy(1.0f, scratch.values_part.data() + r * head_dim, out_row(r), head_dim);
}

void CpuBackend::silu_mul(const backend::Buffer& gate_buffer, const backend::Buffer& up_buffer,
                          backend::Buffer& out_buffer, size_t count) {
    const float* gate = floats(gate_buffer);
    const float* up = floats(up_buffer);
    float* out = floats(out_buffer);
    // Treat the rows as one long vector split into even pieces, of at least kMinPiece: one
    // decode step's 4608 values take ~1 us, less than waking the pool.
    constexpr size_t kMinPiece = 8192;
    const size_t piece = round_up(std::max(kMinPiece, (count + 4 * pool_.size() - 1) / (4 * pool_.size())), 64);
    pool_.parallel_for((count + piece - 1) / piece, [&](size_t task, int) {
        const size_t begin = task * piece;
        kernels_.silu_mul(gate + begin, up + begin, out + begin, std::min(count, begin + piece) - begin);
    });
}

void CpuBackend::add(backend::Buffer& y, const backend::Buffer& x, size_t count) {
    kernels_.axpy(1.0f, floats(x), floats(y), count);
}

void CpuBackend::gather_rows(const backend::Buffer& x, size_t width, const std::vector<uint32_t>& rows,
                             backend::Buffer& out) {
    const float* in = floats(x);
    float* y = floats(out);
    for (size_t i = 0; i < rows.size(); ++i) std::copy_n(in + size_t{rows[i]} * width, width, y + i * width);
}

void CpuBackend::argmax(const backend::Buffer& x, size_t width, size_t n_rows, int32_t* ids) {
    const float* in = floats(x);
    for (size_t r = 0; r < n_rows; ++r) ids[r] = static_cast<int32_t>(lfmrt::argmax(in + r * width, width));
}

}  // namespace lfmrt::cpu
