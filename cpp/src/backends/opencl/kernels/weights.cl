// Weight formats in the layout of weight_layout.h: for each, a row's chunk of 16 bytes of quants
// (plus its side data) either dotted with 32 / 16 / 8 / 4 activations (dot_*, the GEMV's inner
// step) or widened to fp32 (dequant_*, for the GEMM's tiles and embedding rows). Widening is
// exact and bit-equal to cpp/src/formats/quantize.cpp's dequantize_row: the K-quants' sub-block
// scale d * sc and minimum dmin * m are products of an fp16 value and a 6-bit integer, exact in
// fp32, then level * scale - minimum as there.
//
// Every function takes the matrix as (quants, a, b, c) and (cols, row, chunk).

#ifdef LFMRT_IMAGES
#define QUANTS __read_only image1d_buffer_t
#define load_quants(q, i) read_imageui((q), (int)(i))
#else
#define QUANTS __global const uint4*
#define load_quants(q, i) ((q)[i])
#endif

#define QUANT_ARGS QUANTS wq, __global const uchar* wa, __global const uchar* wb, __global const uchar* wc
#define FLOAT_ARGS __global const uchar* wq, __global const uchar* wa, __global const uchar* wb, __global const uchar* wc
#define WEIGHT_PASS wq, wa, wb, wc

// --- the 4-bit nibble chunk shared by Q4_0 and the K-quants ------------------------------------

inline float16 low_levels(uint4 q) { return convert_float16(as_uchar16(q) & (uchar16)0xF); }
inline float16 high_levels(uint4 q) { return convert_float16(as_uchar16(q) >> (uchar16)4); }

// Bits 0..15 (or 16..31) of `word`, one per level, as 0 or 16.
inline float16 fifth_bits(uint word, uint first) {
    const uint16 shifts = (uint16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) + first;
    return convert_float16((((uint16)word >> shifts) & 1u) << 4);
}

// 2-bit fields 0..15 of `word`, as multiples of 16.
inline float16 top_bits(uint word) {
    const uint16 shifts = (uint16)(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return convert_float16((((uint16)word >> shifts) & 3u) << 4);
}

inline float16 x16(__global const float* x, uint k) { return vload16(0, x + k); }

// --- F32, F16, BF16: 4 / 8 / 8 values per chunk, rows zero-padded to whole chunks -------------

// Activations k .. k + n of a row of `cols`, zero past its end (a padded chunk's weights are zero
// but the activations past the row are another row's, or past the buffer).
inline float4 x4_tail(__global const float* x, uint k, uint cols) {
    if (k + 4 <= cols) return vload4(0, x + k);
    float4 v = 0.0f;
    if (k < cols) v.s0 = x[k];
    if (k + 1 < cols) v.s1 = x[k + 1];
    if (k + 2 < cols) v.s2 = x[k + 2];
    return v;
}
inline float8 x8_tail(__global const float* x, uint k, uint cols) {
    return (float8)(x4_tail(x, k, cols), x4_tail(x, k + 4, cols));
}

inline float4 chunk_f32(FLOAT_ARGS, uint cols, uint row, uint chunk) {
    return vload4((size_t)row * ((cols + 3) / 4) + chunk, (__global const float*)wq);
}
inline float8 chunk_f16(FLOAT_ARGS, uint cols, uint row, uint chunk) {
    return load_half8(wq, (size_t)row * ((cols + 7) / 8) + chunk);
}
inline float8 chunk_bf16(FLOAT_ARGS, uint cols, uint row, uint chunk) {
    const ushort8 bits = vload8((size_t)row * ((cols + 7) / 8) + chunk, (__global const ushort*)wq);
    return as_float8(convert_uint8(bits) << 16);
}

inline float dot_f32(FLOAT_ARGS, uint cols, uint row, uint chunk, __global const float* x) {
    return sum4(chunk_f32(WEIGHT_PASS, cols, row, chunk) * x4_tail(x, chunk * 4, cols));
}
inline float dot_f16(FLOAT_ARGS, uint cols, uint row, uint chunk, __global const float* x) {
    const float8 p = chunk_f16(WEIGHT_PASS, cols, row, chunk) * x8_tail(x, chunk * 8, cols);
    return sum4(p.lo + p.hi);
}
inline float dot_bf16(FLOAT_ARGS, uint cols, uint row, uint chunk, __global const float* x) {
    const float8 p = chunk_bf16(WEIGHT_PASS, cols, row, chunk) * x8_tail(x, chunk * 8, cols);
    return sum4(p.lo + p.hi);
}

inline void dequant_f32(FLOAT_ARGS, uint cols, uint row, uint chunk, float* out) {
    vstore4(chunk_f32(WEIGHT_PASS, cols, row, chunk), 0, out);
}
inline void dequant_f16(FLOAT_ARGS, uint cols, uint row, uint chunk, float* out) {
    vstore8(chunk_f16(WEIGHT_PASS, cols, row, chunk), 0, out);
}
inline void dequant_bf16(FLOAT_ARGS, uint cols, uint row, uint chunk, float* out) {
    vstore8(chunk_bf16(WEIGHT_PASS, cols, row, chunk), 0, out);
}

// --- Q8_0: 16 levels per chunk, two chunks per block -----------------------------------------

inline float dot_q8_0(QUANT_ARGS, uint cols, uint row, uint chunk, __global const float* x) {
    const size_t c = (size_t)row * (cols / 16) + chunk;
    const float d = load_half(wa, c / 2);
    const float16 w = convert_float16(as_char16(load_quants(wq, c)));
    return d * sum16(w * x16(x, chunk * 16));
}

inline void dequant_q8_0(QUANT_ARGS, uint cols, uint row, uint chunk, float* out) {
    const size_t c = (size_t)row * (cols / 16) + chunk;
    const float d = load_half(wa, c / 2);
    vstore16(convert_float16(as_char16(load_quants(wq, c))) * d, 0, out);
}

// --- Q4_0: one block of 32 per chunk: d * (q - 8) ----------------------------------------------

inline float dot_q4_0(QUANT_ARGS, uint cols, uint row, uint chunk, __global const float* x) {
    const size_t c = (size_t)row * (cols / 32) + chunk;
    const uint4 q = load_quants(wq, c);
    const float16 lo = low_levels(q) - 8.0f, hi = high_levels(q) - 8.0f;
    return load_half(wa, c) * (sum16(lo * x16(x, chunk * 32)) + sum16(hi * x16(x, chunk * 32 + 16)));
}

inline void dequant_q4_0(QUANT_ARGS, uint cols, uint row, uint chunk, float* out) {
    const size_t c = (size_t)row * (cols / 32) + chunk;
    const uint4 q = load_quants(wq, c);
    const float d = load_half(wa, c);
    vstore16(d * (low_levels(q) - 8.0f), 0, out);
    vstore16(d * (high_levels(q) - 8.0f), 0, out + 16);
}

// --- Q4_K / Q5_K: one sub-block of 32 per chunk: (d sc) q - dmin m ---------------------------

// The chunk's sub-block scale and minimum, exact in fp32.
inline float2 k45_scale_min(__global const uchar* wa, __global const uchar* wb, uint cols, uint row, uint chunk) {
    const size_t super_block = (size_t)row * (cols / 256) + chunk / 8;
    const float d = load_half(wa, 2 * super_block), dmin = load_half(wa, 2 * super_block + 1);
    const uint j = chunk % 8;
    return (float2)(d * (float)wb[super_block * 16 + j], dmin * (float)wb[super_block * 16 + 8 + j]);
}

inline float dot_k45(float2 sm, float16 lo, float16 hi, __global const float* x, uint chunk) {
    const float16 x0 = x16(x, chunk * 32), x1 = x16(x, chunk * 32 + 16);
    return sm.s0 * (sum16(lo * x0) + sum16(hi * x1)) - sm.s1 * (sum16(x0) + sum16(x1));
}

inline float dot_q4_k(QUANT_ARGS, uint cols, uint row, uint chunk, __global const float* x) {
    const uint4 q = load_quants(wq, (size_t)row * (cols / 32) + chunk);
    return dot_k45(k45_scale_min(wa, wb, cols, row, chunk), low_levels(q), high_levels(q), x, chunk);
}

inline void dequant_q4_k(QUANT_ARGS, uint cols, uint row, uint chunk, float* out) {
    const uint4 q = load_quants(wq, (size_t)row * (cols / 32) + chunk);
    const float2 sm = k45_scale_min(wa, wb, cols, row, chunk);
    vstore16(sm.s0 * low_levels(q) - sm.s1, 0, out);
    vstore16(sm.s0 * high_levels(q) - sm.s1, 0, out + 16);
}

inline float dot_q5_k(QUANT_ARGS, uint cols, uint row, uint chunk, __global const float* x) {
    const size_t c = (size_t)row * (cols / 32) + chunk;
    const uint4 q = load_quants(wq, c);
    const uint fifth = ((__global const uint*)wc)[c];
    return dot_k45(k45_scale_min(wa, wb, cols, row, chunk), low_levels(q) + fifth_bits(fifth, 0),
                   high_levels(q) + fifth_bits(fifth, 16), x, chunk);
}

inline void dequant_q5_k(QUANT_ARGS, uint cols, uint row, uint chunk, float* out) {
    const size_t c = (size_t)row * (cols / 32) + chunk;
    const uint4 q = load_quants(wq, c);
    const uint fifth = ((__global const uint*)wc)[c];
    const float2 sm = k45_scale_min(wa, wb, cols, row, chunk);
    vstore16(sm.s0 * (low_levels(q) + fifth_bits(fifth, 0)) - sm.s1, 0, out);
    vstore16(sm.s0 * (high_levels(q) + fifth_bits(fifth, 16)) - sm.s1, 0, out + 16);
}

// --- Q6_K: 32 elements per chunk, two sub-blocks of 16: (d sc) (q - 32) -----------------------

// The chunk's two sub-block scales d * sc (fp32, as dequantize_row_q6_k forms them).
inline float2 q6_k_scales(__global const uchar* wa, __global const uchar* wb, uint cols, uint row, uint chunk) {
    const float d = load_half(wa, (size_t)row * (cols / 256) + chunk / 8);
    __global const char* scales = (__global const char*)wb + (size_t)row * (cols / 16) + 2 * chunk;
    return (float2)(d * (float)scales[0], d * (float)scales[1]);
}

inline void q6_k_levels(QUANT_ARGS, uint cols, uint row, uint chunk, float16* lo, float16* hi) {
    const size_t c = (size_t)row * (cols / 32) + chunk;
    const uint4 q = load_quants(wq, c);
    const uint2 top = ((__global const uint2*)wc)[c];
    *lo = low_levels(q) + top_bits(top.s0) - 32.0f;
    *hi = high_levels(q) + top_bits(top.s1) - 32.0f;
}

inline float dot_q6_k(QUANT_ARGS, uint cols, uint row, uint chunk, __global const float* x) {
    float16 lo, hi;
    q6_k_levels(WEIGHT_PASS, cols, row, chunk, &lo, &hi);
    const float2 s = q6_k_scales(wa, wb, cols, row, chunk);
    return s.s0 * sum16(lo * x16(x, chunk * 32)) + s.s1 * sum16(hi * x16(x, chunk * 32 + 16));
}

inline void dequant_q6_k(QUANT_ARGS, uint cols, uint row, uint chunk, float* out) {
    float16 lo, hi;
    q6_k_levels(WEIGHT_PASS, cols, row, chunk, &lo, &hi);
    const float2 s = q6_k_scales(wa, wb, cols, row, chunk);
    vstore16(s.s0 * lo, 0, out);
    vstore16(s.s1 * hi, 0, out + 16);
}
