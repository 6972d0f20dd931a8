// The interface every compute backend implements (CPU, OpenCL, CUDA), and the devices present.
//
// The LFM2 forward pass (cpp/src/model/) is written once against `Backend`; it knows no ISA,
// device API or weight packing. As in ggml-backend, memory is apart from compute: a backend
// hands out buffers (activations), uploads weights into its own private layout (`Matrix`), and
// keeps every session's state in two pools of fixed-size blocks (KV pages and conv states) that
// `cpp/src/state/` addresses by id, so that the state policy (page tables, copy-on-write, conv
// checkpoints, snapshots) lives in one place for every backend. As in MLX, there is one op set
// and each backend implements all of it; the CPU backend's scalar kernel set is the reference
// each op of every other backend is tested against (cpp/tests/test_backend_ops.cpp).
//
// An op set rather than a graph: LFM2's forward pass is fixed, so the model calls the ops in
// order and stays readable top to bottom; a GPU backend may still record a step inside.
//
// Ops run in call order on the backend's one stream (a device queue, or the CPU's thread pool),
// and results become visible to the host through `read` (which waits for the work before it).
// A Backend is used by one forward pass at a time (the Model serialises them); its block pools
// may also be used from other threads meanwhile (sessions forking, rewinding, saving), so pools
// are thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "lfmrt/tensor.h"

namespace lfmrt {

// A device lfmrt can run on, as lfmrt.devices() lists it.
struct DeviceInfo {
    std::string id;           // what Model.load(device=...) takes: "cpu", "opencl:0", "cuda:0"
    std::string name;         // e.g. "AMD EPYC", "Intel(R) Core(TM) i7", "NVIDIA H100"
    std::string kind;         // "cpu", "opencl" or "cuda"
    uint64_t memory_bytes = 0;  // global memory (system memory for the CPU)
    bool fp16 = false;        // half-precision arithmetic (cl_khr_fp16, or the CPU's F16C/fp16)
    bool subgroups = false;   // subgroup / warp reductions
    std::string details;      // driver and version, kernel sets, extensions that matter
};

// The types a KV cache can be stored as.
inline bool is_kv_dtype(DType dtype) { return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::Q8_0; }

// Where sequence state lives inside the backend's block pools: the contract between
// cpp/src/state/ (which decides which block holds what) and every backend's kernels (which read
// and write the bytes). Fixed per model.
//
// A KV page holds `page_positions` consecutive positions of every attention layer:
// [attention layer][keys | values][kv head][position in page][head_dim values in kv_dtype], so a
// layer's keys of one head over a page are one contiguous run (attention reads them so). A conv
// state holds every short-conv layer's last (kernel - 1) conv inputs, fp32:
// [conv layer][kernel - 1][hidden], oldest first.
struct StateLayout {
    size_t page_positions = 256;
    size_t n_attention_layers = 0;
    size_t n_kv_heads = 0;
    size_t head_dim = 0;
    DType kv_dtype = DType::F16;  // F32, F16 or Q8_0
    size_t n_conv_layers = 0;
    size_t conv_history = 0;      // kernel - 1
    size_t hidden = 0;

    // One head's values at one position.
    size_t slice_bytes() const { return row_bytes(kv_dtype, head_dim); }
    // Bytes from a page's start to the run of `head`'s keys (or values) of `attention_layer`.
    size_t kv_run_offset(size_t attention_layer, bool values, size_t head) const {
        return ((attention_layer * 2 + (values ? 1 : 0)) * n_kv_heads + head) * page_positions * slice_bytes();
    }
    size_t kv_page_bytes() const { return n_attention_layers * 2 * n_kv_heads * page_positions * slice_bytes(); }
    size_t conv_layer_floats() const { return conv_history * hidden; }
    size_t conv_state_bytes() const { return n_conv_layers * conv_layer_floats() * sizeof(float); }
};

namespace backend {

// Backend memory: activations (fp32 rows, dense: row r of a buffer of width w starts at r * w)
// and small fp32 vectors (norm weights, biases, conv taps). Each backend subclasses it.
class Buffer {
public:
    virtual ~Buffer() = default;
    size_t bytes() const { return bytes_; }

protected:
    explicit Buffer(size_t bytes) : bytes_(bytes) {}

private:
    size_t bytes_;
};

// A weight matrix (rows x cols, in `dtype`) as the backend's kernels want it: borrowed,
// repacked or uploaded. Each backend subclasses it.
class Matrix {
public:
    virtual ~Matrix() = default;
    DType dtype;
    int64_t rows, cols;

protected:
    Matrix(DType d, int64_t r, int64_t c) : dtype(d), rows(r), cols(c) {}
};

// Fixed-size blocks of state memory by id. Thread-safe.
class BlockPool {
public:
    virtual ~BlockPool() = default;
    virtual size_t block_bytes() const = 0;
    // A block whose contents are undefined. Throws std::bad_alloc (or a backend's error naming
    // the device) when the device is out of memory.
    virtual uint32_t allocate() = 0;
    virtual void release(uint32_t block) = 0;
    virtual void copy(uint32_t from, uint32_t to) = 0;
    virtual void zero(uint32_t block) = 0;
    virtual void read(uint32_t block, size_t offset, size_t bytes, void* host) = 0;
    virtual void write(uint32_t block, size_t offset, size_t bytes, const void* host) = 0;
    // Bytes of blocks allocated now (for memory reports).
    virtual size_t allocated_bytes() const = 0;
};

// What the forward pass does with a matrix: multiply by it (matmul), look rows up (embed), or
// both (a tied embedding is also the LM head).
enum class MatrixUse { Multiply, Lookup, MultiplyAndLookup };

// A matrix to upload: the checkpoint's tensor, still in the host memory the loader mapped.
struct MatrixSource {
    std::string name;  // for messages
    TensorView view;   // 2-D, [rows, cols]
    MatrixUse use = MatrixUse::Multiply;
};

// One sequence's share of a step: its rows of the step's activations and its state.
struct StepSequence {
    size_t row_begin = 0;          // its first row among the step's rows
    size_t n = 0;                  // its rows (tokens) in this step
    size_t n_past = 0;             // positions before them: row t is at position n_past + t
    uint32_t conv_state = 0;       // its block in the conv-state pool
    std::vector<uint32_t> kv_pages;  // its KV pages, covering positions [0, n_past + n)
};

// What one forward step runs: every row's token, sequence after sequence.
struct Step {
    const int32_t* tokens = nullptr;
    size_t n = 0;  // rows in all
    std::vector<StepSequence> sequences;
};

// Several matrices applied to the same input (q/k/v, w1/w3): y = x W^T for each.
struct Projection {
    const Matrix& w;
    Buffer& y;  // [n][w.rows]
};

class Backend {
public:
    virtual ~Backend() = default;

    // --- what it is ---------------------------------------------------------------------
    // The device string that makes it ("cpu", "opencl:0"), and a description for reports
    // (the CPU's kernel set, the OpenCL device's name).
    virtual std::string device() const = 0;
    virtual std::string kernel_set() const = 0;
    virtual int n_threads() const = 0;
    // Whether it runs matrices of `dtype`, and KV caches stored as `kv_dtype`.
    virtual bool supports(DType dtype) const = 0;
    virtual bool supports_kv(DType kv_dtype) const = 0;

    // --- memory -------------------------------------------------------------------------
    virtual std::unique_ptr<Buffer> allocate(size_t bytes) = 0;
    virtual std::unique_ptr<Buffer> upload(const float* values, size_t count) = 0;
    // Uploads every matrix at once, so the backend can plan its memory (the CPU repacks into one
    // arena and releases each source's file pages as it goes). A backend may keep borrowing a
    // source's memory: the Model keeps the loader's memory alive for its whole life. Throws
    // LoadError naming the tensor for a type the backend does not run.
    virtual std::vector<std::shared_ptr<const Matrix>> upload_matrices(const std::vector<MatrixSource>& sources) = 0;
    // Copies bytes of `buffer` to the host, after every op before it.
    virtual void read(const Buffer& buffer, size_t offset, size_t bytes, void* host) = 0;
    // Bytes of weights and workspace the backend holds (for memory reports).
    virtual size_t weight_bytes() const = 0;

    // --- sequence state -----------------------------------------------------------------
    // Called once, before any step: makes the two pools for this layout.
    virtual void init_state(const StateLayout& layout) = 0;
    virtual BlockPool& kv_pages() = 0;
    virtual BlockPool& conv_states() = 0;

    // --- ops, in the order the forward pass calls them ----------------------------------
    // Every op of a step refers to the step begun last (its tokens, positions and state).
    virtual void begin_step(const Step& step) = 0;
    // out[r] = row tokens[r] of `table` (widened to fp32).
    virtual void embed(const Matrix& table, Buffer& out) = 0;
    // y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, for n_rows rows of `width` (y may be x).
    virtual void rmsnorm(const Buffer& x, const Buffer& weight, size_t width, size_t n_rows, float eps,
                         Buffer& y) = 0;
    // y = x W^T for every projection; x is [n][cols], each y [n][rows].
    virtual void matmul(std::initializer_list<Projection> projections, const Buffer& x, size_t n) = 0;
    // y[r] += bias for n rows of `width`.
    virtual void add_bias(Buffer& y, const Buffer& bias, size_t width, size_t n) = 0;
    // LFM2's double-gated short conv of conv layer `conv_layer`: each row of `bcx` is B, C, x
    // (hidden values each); out[r] = C * (conv(B * x) + bias), the depthwise causal conv of
    // `kernel` taps ([kernel][hidden], tap-major) reading each sequence's previous (kernel - 1)
    // B*x rows from its conv state, which it then replaces with its last (kernel - 1). `bcx` is
    // scratch afterwards. `bias` ([hidden]) may be null.
    virtual void short_conv(size_t conv_layer, Buffer& bcx, const Buffer& taps, const Buffer* bias, size_t kernel,
                            Buffer& out) = 0;
    // Rotates q ([n][n_q_heads][head_dim]) and k ([n][n_k_heads][head_dim]) in place by each row's
    // position: pairs (i, i + head_dim/2) by angle position * inv_freq[i] (rotate_half RoPE).
    virtual void rope(Buffer& q, size_t n_q_heads, Buffer& k, size_t n_k_heads, size_t head_dim,
                      const Buffer& inv_freq) = 0;
    // Stores every row's keys and values ([n][n_kv_heads * head_dim]) of `attention_layer` at its
    // position in its sequence's KV pages, in the layout's kv_dtype.
    virtual void kv_store(size_t attention_layer, const Buffer& k, const Buffer& v) = 0;
    // Causal grouped-query attention of `attention_layer`: each row's query heads attend to its
    // sequence's stored keys and values at positions 0 .. its own; out is [n][n_heads * head_dim].
    // Query head h reads kv head h / (n_heads / n_kv_heads).
    virtual void attention(size_t attention_layer, const Buffer& q, size_t n_heads, Buffer& out) = 0;
    // out[i] = silu(gate[i]) * up[i] for `count` values (out may be gate or up).
    virtual void silu_mul(const Buffer& gate, const Buffer& up, Buffer& out, size_t count) = 0;
    // y[i] += x[i] for `count` values.
    virtual void add(Buffer& y, const Buffer& x, size_t count) = 0;
    // out[i] = x[rows[i]] for rows of `width` values.
    virtual void gather_rows(const Buffer& x, size_t width, const std::vector<uint32_t>& rows, Buffer& out) = 0;
    // ids[r] = the index of row r's largest value (the lowest such index; NaN never wins), for
    // n_rows rows of `width`, copied to the host: greedy decoding without copying logits.
    virtual void argmax(const Buffer& x, size_t width, size_t n_rows, int32_t* ids) = 0;
};

}  // namespace backend

// The devices this build and machine offer, the CPU first.
std::vector<DeviceInfo> list_devices();

}  // namespace lfmrt
