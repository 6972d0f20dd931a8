// y = x W^T: a GEMV for one row of activations (decode), a tiled GEMM for several (prefill,
// batched decode), and embedding lookups, for every weight format of weights.cl. Products and
// sums are fp32.

// --- GEMV ---------------------------------------------------------------------------------
// A work-group computes GEMV_ROWS outputs: its work-items stride over the rows' chunks (so a
// subgroup's loads of one row are contiguous 16-byte vectors), each accumulating all GEMV_ROWS
// rows for the activations it loaded, then the work-group sums them (group_sum4: subgroups
// where the device has them, local memory otherwise). The local size is the host's: a power of
// two from the kernel's CL_KERNEL_WORK_GROUP_SIZE and preferred multiple, no larger than a row's
// chunks need. Rows past the end are computed on the last row again and not stored.
#define GEMV_ROWS 4

#define DEFINE_GEMV(NAME, KIND, ELEMS)                                                                      \
    REDUCTION_KERNEL void gemv_##NAME(KIND##_ARGS, uint rows, uint cols, __global const float* x, __global float* y, \
                                      __local float4* scratch) {                                           \
        const uint row0 = get_group_id(0) * GEMV_ROWS;                                                      \
        const uint last = rows - 1;                                                                         \
        const uint chunks = (cols + ELEMS - 1) / ELEMS;                                                     \
        float4 acc = 0.0f;                                                                                  \
        for (uint c = get_local_id(0); c < chunks; c += get_local_size(0)) {                                \
            acc.s0 += dot_##NAME(WEIGHT_PASS, cols, min(row0, last), c, x);                                 \
            acc.s1 += dot_##NAME(WEIGHT_PASS, cols, min(row0 + 1, last), c, x);                             \
            acc.s2 += dot_##NAME(WEIGHT_PASS, cols, min(row0 + 2, last), c, x);                             \
            acc.s3 += dot_##NAME(WEIGHT_PASS, cols, min(row0 + 3, last), c, x);                             \
        }                                                                                                   \
        const float4 total = group_sum4(acc, scratch);                                                      \
        if (get_local_id(0) == 0) {                                                                         \
            y[row0] = total.s0;                                                                             \
            if (row0 + 1 < rows) y[row0 + 1] = total.s1;                                                    \
            if (row0 + 2 < rows) y[row0 + 2] = total.s2;                                                    \
            if (row0 + 3 < rows) y[row0 + 3] = total.s3;                                                    \
        }                                                                                                   \
    }

// --- GEMM ---------------------------------------------------------------------------------
// A work-group of GEMM_THREADS computes a tile of GEMM_TILE_ROWS weight rows x GEMM_TILE_TOKENS
// tokens, stepping through the columns GEMM_TILE_K at a time: the weights' tile is widened to
// fp32 into local memory once per step (8 KB), the activations' tile copied beside it (2 KB),
// and each work-item accumulates a 4 x 4 block of outputs (rows rb + 16 i, tokens tb + 4 j, so
// neighbouring work-items read neighbouring local words). 10 KB of local memory, under the 32 KB
// an Adreno work-group may take. The work-group size is fixed by the tile (reqd_work_group_size
// lets the compiler plan registers for it); the host checks the kernel allows it.
#define GEMM_THREADS 64
#define GEMM_TILE_ROWS 64
#define GEMM_TILE_TOKENS 16
#define GEMM_TILE_K 32

#define DEFINE_GEMM(NAME, KIND, ELEMS)                                                                         \
    __kernel __attribute__((reqd_work_group_size(GEMM_THREADS, 1, 1))) void gemm_##NAME(                       \
        KIND##_ARGS, uint rows, uint cols, __global const float* x, uint n, __global float* y) {                      \
        __local float w_tile[GEMM_TILE_K][GEMM_TILE_ROWS];                                                     \
        __local float x_tile[GEMM_TILE_K][GEMM_TILE_TOKENS];                                                   \
        const uint lid = get_local_id(0);                                                                      \
        const uint row0 = get_group_id(0) * GEMM_TILE_ROWS, token0 = get_group_id(1) * GEMM_TILE_TOKENS;      \
        const uint rb = lid % 16, tb = lid / 16;                                                               \
        const uint chunks = (cols + ELEMS - 1) / ELEMS;                                                        \
        float acc[4][4];                                                                                       \
        for (uint j = 0; j < 4; ++j)                                                                           \
            for (uint i = 0; i < 4; ++i) acc[j][i] = 0.0f;                                                     \
        for (uint k0 = 0; k0 < cols; k0 += GEMM_TILE_K) {                                                      \
            for (uint t = lid; t < GEMM_TILE_ROWS * (GEMM_TILE_K / ELEMS); t += GEMM_THREADS) {                \
                const uint r = t / (GEMM_TILE_K / ELEMS), part = t % (GEMM_TILE_K / ELEMS);                    \
                const uint chunk = k0 / ELEMS + part;                                                          \
                float v[ELEMS];                                                                                \
                if (row0 + r < rows && chunk < chunks) {                                                       \
                    dequant_##NAME(WEIGHT_PASS, cols, row0 + r, chunk, v);                                     \
                } else {                                                                                       \
                    for (uint e = 0; e < ELEMS; ++e) v[e] = 0.0f;                                              \
                }                                                                                              \
                for (uint e = 0; e < ELEMS; ++e) w_tile[part * ELEMS + e][r] = v[e];                           \
            }                                                                                                  \
            for (uint t = lid; t < GEMM_TILE_K * GEMM_TILE_TOKENS; t += GEMM_THREADS) {                        \
                const uint m = t / GEMM_TILE_K, k = t % GEMM_TILE_K;                                           \
                x_tile[k][m] = token0 + m < n && k0 + k < cols ? x[(size_t)(token0 + m) * cols + k0 + k] : 0.0f; \
            }                                                                                                  \
            barrier(CLK_LOCAL_MEM_FENCE);                                                                      \
            for (uint k = 0; k < GEMM_TILE_K; ++k) {                                                           \
                float w[4], xv[4];                                                                             \
                for (uint i = 0; i < 4; ++i) w[i] = w_tile[k][rb + 16 * i];                                    \
                for (uint j = 0; j < 4; ++j) xv[j] = x_tile[k][tb + 4 * j];                                    \
                for (uint j = 0; j < 4; ++j)                                                                   \
                    for (uint i = 0; i < 4; ++i) acc[j][i] += w[i] * xv[j];                                    \
            }                                                                                                  \
            barrier(CLK_LOCAL_MEM_FENCE);                                                                      \
        }                                                                                                      \
        for (uint j = 0; j < 4; ++j) {                                                                         \
            const uint m = token0 + tb + 4 * j;                                                                \
            for (uint i = 0; i < 4; ++i) {                                                                     \
                const uint r = row0 + rb + 16 * i;                                                             \
                if (m < n && r < rows) y[(size_t)m * rows + r] = acc[j][i];                                    \
            }                                                                                                  \
        }                                                                                                      \
    }

// --- embedding rows -------------------------------------------------------------------------
// out[t] = row tokens[t] widened to fp32: work-item (chunk, t).
#define DEFINE_EMBED(NAME, KIND, ELEMS)                                                                     \
    __kernel void embed_##NAME(KIND##_ARGS, uint cols, __global const uint* tokens, __global float* out) {          \
        const uint chunk = get_global_id(0), t = get_global_id(1);                                          \
        if (chunk >= (cols + ELEMS - 1) / ELEMS) return;                                                    \
        float v[ELEMS];                                                                                     \
        dequant_##NAME(WEIGHT_PASS, cols, tokens[t], chunk, v);                                             \
        for (uint e = 0; e < ELEMS && chunk * ELEMS + e < cols; ++e) out[(size_t)t * cols + chunk * ELEMS + e] = v[e]; \
    }

// KIND is FLOAT or QUANT (weights.cl's FLOAT_ARGS / QUANT_ARGS, pasted so it stays one macro
// argument).
#define DEFINE_MATMUL(NAME, KIND, ELEMS) \
    DEFINE_GEMV(NAME, KIND, ELEMS)       \
    DEFINE_GEMM(NAME, KIND, ELEMS)       \
    DEFINE_EMBED(NAME, KIND, ELEMS)

DEFINE_MATMUL(f32, FLOAT, 4)
DEFINE_MATMUL(f16, FLOAT, 8)
DEFINE_MATMUL(bf16, FLOAT, 8)
DEFINE_MATMUL(q8_0, QUANT, 16)
DEFINE_MATMUL(q4_0, QUANT, 32)
DEFINE_MATMUL(q4_k, QUANT, 32)
DEFINE_MATMUL(q5_k, QUANT, 32)
DEFINE_MATMUL(q6_k, QUANT, 32)
