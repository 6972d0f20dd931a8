// The ops that read positions and sequence state: RoPE, the short conv with its state, the KV
// store and attention over the paged KV cache. State blocks are addressed by id inside one
// buffer per pool (block id * block bytes), as the step buffer's sequences name them: no
// pointer tables.
//
// The step buffer (uints, written by begin_step): tokens[n], positions[n], row_sequence[n],
// SEQ_FIELDS per sequence, then every sequence's KV page ids; kernels get the offsets.

// Rotates pairs (i, i + head_dim/2) of every q and k head of a row by position * inv_freq[i]:
// work-item (i, head, row), heads [0, n_q) of q then [0, n_k) of k.
__kernel void rope_rows(__global float* q, uint n_q_heads, __global float* k, uint n_k_heads, uint head_dim,
                        __global const float* inv_freq, __global const uint* step, uint positions_at, uint rows) {
    const uint i = get_global_id(0), head = get_global_id(1), row = get_global_id(2);
    const uint half_dim = head_dim / 2;
    if (i >= half_dim || head >= n_q_heads + n_k_heads || row >= rows) return;
    const float angle = (float)step[positions_at + row] * inv_freq[i];
    const float c = cos(angle), s = sin(angle);
    __global float* x = head < n_q_heads ? q + ((size_t)row * n_q_heads + head) * head_dim
                                         : k + ((size_t)row * n_k_heads + head - n_q_heads) * head_dim;
    const float x1 = x[i], x2 = x[i + half_dim];
    x[i] = x1 * c - x2 * s;
    x[i + half_dim] = x2 * c + x1 * s;
}

// LFM2's double-gated short conv of one layer: work-item (channel, sequence) walks the
// sequence's rows in order. Each row of bcx is B, C, x; the conv input is B * x; row t's output
// is C * (bias + sum_j taps[j] * input(t + j - history)), inputs before the step coming from
// the conv state, which then holds the last `history` inputs. The state's old values are read
// into registers first, so the work-item may overwrite them.
#define CONV_MAX_HISTORY 8

__kernel void short_conv_rows(__global const float* bcx, __global const float* taps, __global const float* bias,
                              uint has_bias, uint kernel_size, uint hidden, __global float* states,
                              ulong state_floats, ulong layer_offset, __global const uint* step, uint sequences_at,
                              uint n_sequences, __global float* out) {
    const uint c = get_global_id(0), s = get_global_id(1);
    if (c >= hidden || s >= n_sequences) return;
    __global const uint* sequence = step + sequences_at + s * SEQ_FIELDS;
    const uint row_begin = sequence[SEQ_ROW_BEGIN], n = sequence[SEQ_ROWS];
    __global float* state = states + sequence[SEQ_CONV_STATE] * state_floats + layer_offset;
    const int history = (int)kernel_size - 1;
    const size_t width = 3 * (size_t)hidden;
    float old[CONV_MAX_HISTORY];
    for (int h = 0; h < history; ++h) old[h] = state[(size_t)h * hidden + c];
    for (uint t = 0; t < n; ++t) {
        float y = has_bias ? bias[c] : 0.0f;
        for (uint j = 0; j < kernel_size; ++j) {
            const int at = (int)(t + j) - history;
            const size_t r = (size_t)row_begin + (size_t)at;
            const float in = at >= 0 ? bcx[r * width + c] * bcx[r * width + 2 * hidden + c] : old[history + at];
            y += taps[(size_t)j * hidden + c] * in;
        }
        const size_t r = (size_t)row_begin + t;
        out[r * hidden + c] = bcx[r * width + hidden + c] * y;
    }
    for (int h = 0; h < history; ++h) {
        const int at = (int)n + h - history;
        const size_t r = (size_t)row_begin + (size_t)at;
        state[(size_t)h * hidden + c] = at >= 0 ? bcx[r * width + c] * bcx[r * width + 2 * hidden + c] : old[history + at];
    }
}

// --- the KV cache ---------------------------------------------------------------------------
// A page holds page_positions positions of every attention layer (StateLayout, backend.h); one
// head's keys (or values) of a layer over a page are one run of slices. kv_slice() finds the
// slice of `position` for a layer's run at `run_offset` (keys or values, of head `head`).
inline __global uchar* kv_slice(__global uchar* pool, __global const uint* pages, ulong page_bytes, ulong run_offset,
                                ulong head_run, uint head, uint page_positions, uint slice_bytes, uint position) {
    return pool + pages[position / page_positions] * page_bytes + run_offset + head * head_run +
           (ulong)(position % page_positions) * slice_bytes;
}

// One slice of head_dim values in each KV type: stored (as quantize_row does: F16 rounded to
// nearest even; Q8_0 blocks of 32 with d = amax / 127 in fp16 and levels round(x / d)) and read.
inline void store_f32(__global const float* x, __global uchar* slice, uint n) {
    for (uint i = 0; i < n; ++i) ((__global float*)slice)[i] = x[i];
}
inline void store_f16(__global const float* x, __global uchar* slice, uint n) {
    for (uint i = 0; i < n; ++i) vstore_half_rte(x[i], i, (__global half*)slice);
}
inline void store_q8_0(__global const float* x, __global uchar* slice, uint n) {
    for (uint b = 0; b < n / 32; ++b) {
        __global uchar* block = slice + b * 34;
        float amax = 0.0f;
        for (uint i = 0; i < 32; ++i) amax = fmax(amax, fabs(x[32 * b + i]));
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        vstore_half_rte(d, 0, (__global half*)block);
        for (uint i = 0; i < 32; ++i) ((__global char*)block)[2 + i] = (char)round(x[32 * b + i] * id);
    }
}

inline float load_f32(__global const uchar* slice, uint i) { return ((__global const float*)slice)[i]; }
inline float load_f16(__global const uchar* slice, uint i) { return load_half(slice, i); }
inline float load_q8_0(__global const uchar* slice, uint i) {
    __global const uchar* block = slice + (i / 32) * 34;
    return load_half(block, 0) * (float)((__global const char*)block)[2 + i % 32];
}

// Every row's keys and values ([rows][n_kv_heads * head_dim]) into its sequence's pages at its
// position: work-item (head, row, keys or values).
#define DEFINE_KV_STORE(NAME)                                                                                \
    __kernel void kv_store_##NAME(__global uchar* pool, ulong page_bytes, ulong keys_offset, ulong values_offset, \
                                  ulong head_run, uint page_positions, uint slice_bytes, __global const uint* step, \
                                  uint positions_at, uint row_sequence_at, uint sequences_at, uint pages_at,    \
                                  __global const float* k, __global const float* v, uint n_kv_heads,           \
                                  uint head_dim, uint rows) {                                                  \
        const uint head = get_global_id(0), row = get_global_id(1), values = get_global_id(2);                 \
        if (head >= n_kv_heads || row >= rows) return;                                                         \
        const uint sequence = step[row_sequence_at + row];                                                     \
        __global const uint* pages = step + pages_at + step[sequences_at + sequence * SEQ_FIELDS + SEQ_PAGES];  \
        __global uchar* slice = kv_slice(pool, pages, page_bytes, values ? values_offset : keys_offset, head_run, \
                                         head, page_positions, slice_bytes, step[positions_at + row]);         \
        __global const float* x = (values ? v : k) + ((size_t)row * n_kv_heads + head) * head_dim;             \
        store_##NAME(x, slice, head_dim);                                                                      \
    }

// Causal grouped-query attention in one pass with an online softmax (flash-decoding style).
// A work-group serves one row and up to ATTN_MAX_HEADS query heads of one kv head's group, so a
// stored key or value is read once for all of them. It walks the row's positions 0..its own in
// tiles of its local size L: each work-item scores one position of the tile against every query
// head (into local memory), then all rescale their running sums by the tile's maximum and each
// accumulates the value dimensions it owns (d = lid, lid + L, ...: ATTN_MAX_DIMS of them, so
// head_dim <= ATTN_MAX_DIMS * L). Local memory: the queries (heads * head_dim floats) and the
// tile's weights (heads * L floats): 8 KB + 2 KB at 8 heads, head_dim 256, L 64.
#define ATTN_MAX_HEADS 8
#define ATTN_MAX_DIMS 4

#define DEFINE_ATTENTION(NAME)                                                                                 \
    __kernel void attention_##NAME(                                                                            \
        __global uchar* pool, ulong page_bytes, ulong keys_offset, ulong values_offset, ulong head_run,        \
        uint page_positions, uint slice_bytes, __global const uint* step, uint positions_at,                   \
        uint row_sequence_at, uint sequences_at, uint pages_at, __global const float* q, __global float* out,  \
        uint n_heads, uint group, uint head_dim, float scale, __local float* queries, __local float* weights) { \
        const uint lid = get_local_id(0), L = get_local_size(0);                                               \
        const uint head_blocks = (group + ATTN_MAX_HEADS - 1) / ATTN_MAX_HEADS;                                \
        const uint kv_head = get_group_id(0) / head_blocks;                                                    \
        const uint first = kv_head * group + (get_group_id(0) % head_blocks) * ATTN_MAX_HEADS;                 \
        const uint G = min((uint)ATTN_MAX_HEADS, kv_head * group + group - first);                             \
        const uint row = get_group_id(1);                                                                      \
        const uint sequence = step[row_sequence_at + row];                                                     \
        __global const uint* pages = step + pages_at + step[sequences_at + sequence * SEQ_FIELDS + SEQ_PAGES];  \
        const uint n_ctx = step[positions_at + row] + 1;                                                       \
        __global const float* row_q = q + ((size_t)row * n_heads + first) * head_dim;                          \
        for (uint i = lid; i < G * head_dim; i += L) queries[i] = row_q[i];                                    \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                          \
        float running_max[ATTN_MAX_HEADS], running_sum[ATTN_MAX_HEADS], acc[ATTN_MAX_HEADS][ATTN_MAX_DIMS];    \
        for (uint g = 0; g < ATTN_MAX_HEADS; ++g) {                                                            \
            running_max[g] = -INFINITY;                                                                        \
            running_sum[g] = 0.0f;                                                                             \
            for (uint i = 0; i < ATTN_MAX_DIMS; ++i) acc[g][i] = 0.0f;                                         \
        }                                                                                                      \
        for (uint tile = 0; tile < n_ctx; tile += L) {                                                         \
            const uint count = min(L, n_ctx - tile);                                                           \
            if (lid < count) {                                                                                 \
                __global const uchar* key = kv_slice(pool, pages, page_bytes, keys_offset, head_run, kv_head,  \
                                                     page_positions, slice_bytes, tile + lid);                 \
                for (uint g = 0; g < ATTN_MAX_HEADS; ++g) {                                                    \
                    if (g >= G) break;                                                                         \
                    float dot = 0.0f;                                                                          \
                    for (uint d = 0; d < head_dim; ++d) dot += queries[g * head_dim + d] * load_##NAME(key, d); \
                    weights[g * L + lid] = dot * scale;                                                        \
                }                                                                                              \
            }                                                                                                  \
            barrier(CLK_LOCAL_MEM_FENCE);                                                                      \
            float tile_max[ATTN_MAX_HEADS];                                                                    \
            for (uint g = 0; g < ATTN_MAX_HEADS; ++g) {                                                        \
                tile_max[g] = running_max[g];                                                                  \
                if (g >= G) continue;                                                                          \
                for (uint j = 0; j < count; ++j) tile_max[g] = fmax(tile_max[g], weights[g * L + j]);          \
            }                                                                                                  \
            barrier(CLK_LOCAL_MEM_FENCE);                                                                      \
            if (lid < count) {                                                                                 \
                for (uint g = 0; g < ATTN_MAX_HEADS; ++g) {                                                    \
                    if (g >= G) break;                                                                         \
                    weights[g * L + lid] = exp(weights[g * L + lid] - tile_max[g]);                            \
                }                                                                                              \
            }                                                                                                  \
            barrier(CLK_LOCAL_MEM_FENCE);                                                                      \
            for (uint g = 0; g < ATTN_MAX_HEADS; ++g) {                                                        \
                const float rescale = exp(running_max[g] - tile_max[g]);                                       \
                running_max[g] = tile_max[g];                                                                  \
                running_sum[g] *= rescale;                                                                     \
                for (uint i = 0; i < ATTN_MAX_DIMS; ++i) acc[g][i] *= rescale;                                 \
            }                                                                                                  \
            for (uint j = 0; j < count; ++j) {                                                                 \
                __global const uchar* value = kv_slice(pool, pages, page_bytes, values_offset, head_run,       \
                                                       kv_head, page_positions, slice_bytes, tile + j);        \
                float v[ATTN_MAX_DIMS];                                                                        \
                for (uint i = 0; i < ATTN_MAX_DIMS; ++i) {                                                     \
                    const uint d = lid + i * L;                                                                \
                    v[i] = d < head_dim ? load_##NAME(value, d) : 0.0f;                                        \
                }                                                                                              \
                for (uint g = 0; g < ATTN_MAX_HEADS; ++g) {                                                    \
                    if (g >= G) break;                                                                         \
                    const float p = weights[g * L + j];                                                        \
                    running_sum[g] += p;                                                                       \
                    for (uint i = 0; i < ATTN_MAX_DIMS; ++i) acc[g][i] += p * v[i];                            \
                }                                                                                              \
            }                                                                                                  \
            barrier(CLK_LOCAL_MEM_FENCE);                                                                      \
        }                                                                                                      \
        __global float* row_out = out + ((size_t)row * n_heads + first) * head_dim;                            \
        for (uint g = 0; g < ATTN_MAX_HEADS; ++g) {                                                            \
            if (g >= G) break;                                                                                 \
            for (uint i = 0; i < ATTN_MAX_DIMS; ++i) {                                                         \
                const uint d = lid + i * L;                                                                    \
                if (d < head_dim) row_out[g * head_dim + d] = acc[g][i] / running_sum[g];                      \
            }                                                                                                  \
        }                                                                                                      \
    }

DEFINE_KV_STORE(f32)
DEFINE_KV_STORE(f16)
DEFINE_KV_STORE(q8_0)
DEFINE_ATTENTION(f32)
DEFINE_ATTENTION(f16)
DEFINE_ATTENTION(q8_0)
