// Kernels over sequence state: the short conv with its per-sequence conv state, KV stores into the
// paged cache, and attention over it.
//
// Attention here is one warp per (row, query head) walking the row's key positions in order with
// an online softmax (each lane holds head_dim / 32 of the query and output): correct for every
// page layout and GQA group, but neither split over positions for long decode contexts
// (flash-decoding) nor tiled for prefill. Both are left to do, and to measure, on a GPU.
#include "backends/cuda/kernels/device_common.cuh"
#include "backends/cuda/kernels/kernels.h"

namespace lfmrt::cuda::kernels {

namespace {

constexpr int kMaxHistory = 8;            // conv taps - 1 the conv kernel keeps in registers
constexpr int kDimsPerLane = kMaxHeadDim / kWarpSize;
constexpr unsigned kHeadsPerBlock = 4;    // warps per attention block

__device__ __forceinline__ const uint32_t* sequence_fields(const StepView& step, uint32_t s) {
    return step.sequences + s * kSequenceFields;
}

// Thread (c, s): channel c of sequence s, over the sequence's rows in order.
__global__ void short_conv_kernel(const float* bcx, const float* taps, const float* bias, ConvStates states,
                                  StepView step, float* out) {
    const size_t c = size_t{blockIdx.x} * blockDim.x + threadIdx.x;
    const uint32_t s = blockIdx.y;
    if (c >= states.hidden) return;
    const uint32_t* fields = sequence_fields(step, s);
    const size_t hidden = states.hidden, width = 3 * hidden, history = states.history;
    float* state = states.pool + size_t{fields[kConvState]} * states.state_floats + states.layer_offset;
    // window[j] = the conv input j - history steps before the current row (oldest first).
    float window[kMaxHistory + 1];
    for (size_t j = 0; j < history; ++j) window[j] = state[j * hidden + c];
    const size_t row_begin = fields[kRowBegin], n = fields[kRows];
    for (size_t t = 0; t < n; ++t) {
        const float* row = bcx + (row_begin + t) * width;
        window[history] = row[c] * row[2 * hidden + c];  // B * x
        float y = bias == nullptr ? 0.0f : bias[c];
        for (size_t j = 0; j <= history; ++j) y += taps[j * hidden + c] * window[j];
        out[(row_begin + t) * hidden + c] = row[hidden + c] * y;  // C * conv(B * x)
        for (size_t j = 0; j < history; ++j) window[j] = window[j + 1];
    }
    for (size_t j = 0; j < history; ++j) state[j * hidden + c] = window[j];
}

// Bytes of row r's slice of `head` (keys or values) in its sequence's pages.
__device__ __forceinline__ uint8_t* slice_at(const KvPages& kv, const StepView& step, uint32_t sequence,
                                             uint32_t position, uint32_t head, bool values) {
    const uint32_t page = step.pages[sequence_fields(step, sequence)[kFirstPage] + position / kv.page_positions];
    return kv.pool + size_t{page} * kv.page_bytes + (values ? kv.values_offset : kv.keys_offset) + head * kv.head_run +
           size_t{position % kv.page_positions} * kv.slice_bytes;
}

// Thread (head, r, keys|values) stores one head's head_dim values as quant::quantize_row does.
__global__ void kv_store_kernel(KvPages kv, const float* k, const float* v, StepView step) {
    const uint32_t head = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
    const bool values = blockIdx.z == 1;
    if (head >= kv.n_kv_heads) return;
    const float* x = (values ? v : k) + (size_t{r} * kv.n_kv_heads + head) * kv.head_dim;
    uint8_t* dst = slice_at(kv, step, step.row_sequence[r], step.positions[r], head, values);
    if (kv.dtype == DType::F32) {
        for (uint32_t i = 0; i < kv.head_dim; ++i) reinterpret_cast<float*>(dst)[i] = x[i];
    } else if (kv.dtype == DType::F16) {
        for (uint32_t i = 0; i < kv.head_dim; ++i) reinterpret_cast<uint16_t*>(dst)[i] = float_to_f16(x[i]);
    } else {  // Q8_0 blocks: f16 d, 32 int8 levels (quant::quantize_row_q8_0)
        for (uint32_t b = 0; b < kv.head_dim / 32; ++b, x += 32, dst += 34) {
            float amax = 0.0f;
            for (int i = 0; i < 32; ++i) amax = fmaxf(amax, fabsf(x[i]));
            const float d = amax / 127, id = d != 0 ? 1 / d : 0.0f;
            const uint16_t d16 = float_to_f16(d);
            dst[0] = static_cast<uint8_t>(d16 & 0xFF);
            dst[1] = static_cast<uint8_t>(d16 >> 8);
            for (int i = 0; i < 32; ++i) dst[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(roundf(x[i] * id)));
        }
    }
}

// Element i of a stored slice, widened to fp32.
__device__ __forceinline__ float stored_at(const uint8_t* slice, DType dtype, uint32_t i) {
    if (dtype == DType::F32) return reinterpret_cast<const float*>(slice)[i];
    if (dtype == DType::F16) return f16_to_float(reinterpret_cast<const uint16_t*>(slice)[i]);
    const uint8_t* block = slice + (i / 32) * 34;
    const float d = f16_to_float(static_cast<uint16_t>(block[0] | (block[1] << 8)));
    return d * static_cast<float>(static_cast<int8_t>(block[2 + i % 32]));
}

// Warp w of block (bx, r): query head 4 bx + w of row r.
__global__ void attention_kernel(KvPages kv, const float* q, unsigned n_heads, float scale, StepView step, float* out) {
    const unsigned head = blockIdx.x * kHeadsPerBlock + threadIdx.x / kWarpSize, r = blockIdx.y;
    if (head >= n_heads) return;
    const unsigned lane = threadIdx.x % kWarpSize, group = n_heads / kv.n_kv_heads, kv_head = head / group;
    const uint32_t sequence = step.row_sequence[r], position = step.positions[r];
    const float* query = q + (size_t{r} * n_heads + head) * kv.head_dim;
    float qv[kDimsPerLane], acc[kDimsPerLane];
    for (int j = 0; j < kDimsPerLane; ++j) {
        const unsigned i = lane + j * kWarpSize;
        qv[j] = i < kv.head_dim ? query[i] : 0.0f;
        acc[j] = 0.0f;
    }
    float running_max = -INFINITY, running_sum = 0.0f;
    for (uint32_t p = 0; p <= position; ++p) {
        const uint8_t* keys = slice_at(kv, step, sequence, p, kv_head, false);
        float dot = 0.0f;
        for (int j = 0; j < kDimsPerLane; ++j) {
            const unsigned i = lane + j * kWarpSize;
            if (i < kv.head_dim) dot += qv[j] * stored_at(keys, kv.dtype, i);
        }
        const float score = warp_sum(dot) * scale;
        const float new_max = fmaxf(running_max, score);
        const float rescale = expf(running_max - new_max), weight = expf(score - new_max);
        running_sum = running_sum * rescale + weight;
        running_max = new_max;
        const uint8_t* values = slice_at(kv, step, sequence, p, kv_head, true);
        for (int j = 0; j < kDimsPerLane; ++j) {
            const unsigned i = lane + j * kWarpSize;
            if (i < kv.head_dim) acc[j] = acc[j] * rescale + weight * stored_at(values, kv.dtype, i);
        }
    }
    float* o = out + (size_t{r} * n_heads + head) * kv.head_dim;
    for (int j = 0; j < kDimsPerLane; ++j) {
        const unsigned i = lane + j * kWarpSize;
        if (i < kv.head_dim) o[i] = acc[j] / running_sum;
    }
}

}  // namespace

cudaError_t short_conv(cudaStream_t stream, const float* bcx, const float* taps, const float* bias,
                       const ConvStates& states, const StepView& step, float* out) {
    if (states.history > kMaxHistory) return cudaErrorInvalidValue;
    constexpr unsigned kConvThreads = 128;
    return launch(stream, dim3(blocks_for(states.hidden, kConvThreads), step.n_sequences), dim3(kConvThreads), 0,
                  short_conv_kernel, bcx, taps, bias, states, step, out);
}

cudaError_t kv_store(cudaStream_t stream, const KvPages& kv, const float* k, const float* v, const StepView& step) {
    constexpr unsigned kStoreThreads = 32;
    return launch(stream, dim3(blocks_for(kv.n_kv_heads, kStoreThreads), step.rows, 2), dim3(kStoreThreads), 0,
                  kv_store_kernel, kv, k, v, step);
}

cudaError_t attention(cudaStream_t stream, const KvPages& kv, const float* q, size_t n_heads, float scale,
                      const StepView& step, float* out) {
    if (kv.head_dim > kMaxHeadDim) return cudaErrorInvalidValue;
    return launch(stream, dim3(blocks_for(n_heads, kHeadsPerBlock), step.rows), dim3(kHeadsPerBlock * kWarpSize), 0,
                  attention_kernel, kv, q, static_cast<unsigned>(n_heads), scale, step, out);
}

}  // namespace lfmrt::cuda::kernels
