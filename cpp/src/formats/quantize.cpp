#include "formats/quantize.h"

#include <cmath>
#include <cstdint>
#include <cstring>

// Built with -ffp-contract=off (CMakeLists.txt): the dequantizers must round each product and
// difference exactly as numpy does, and the Q4_0 quantizer's `x * id + 8.5` likewise.

namespace lfmrt::quant {

namespace {

// Rounds to the nearest integer, ties to even, for |v| < 2^22: adding 1.5 * 2^23 leaves the
// integer in the low mantissa bits.
int nearest_int(float v) {
    const float shifted = v + 12582912.0f;
    int32_t bits;
    std::memcpy(&bits, &shifted, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

int clamp(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// The element of x with the largest magnitude (the first one on ties), keeping its sign.
float signed_absmax(const float* x, size_t n) {
    float amax = 0.0f, max = 0.0f;
    for (size_t i = 0; i < n; ++i) {
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            max = x[i];
        }
    }
    return max;
}

// Below this a group is treated as all zeros (llama.cpp's GROUP_MAX_EPS).
constexpr float kGroupMaxEps = 1e-15f;

// Fits x[i] ~ scale * L[i] - offset with L in [0, nmax] and offset >= 0, minimising
// sum w[i] * err^2: starts from the min/max grid, then tries nstep + 1 stretched grids
// (nmax + rmin + rdelta * k levels over the range), each followed by the closed-form
// least-squares scale and offset for its levels. Returns scale; writes offset.
float fit_scale_offset(const float* x, const float* w, size_t n, int nmax, float rmin, float rdelta, int nstep,
                       uint8_t* L, float* offset) {
    float min = x[0], max = x[0];
    float sum_w = w[0], sum_x = w[0] * x[0];
    for (size_t i = 1; i < n; ++i) {
        min = x[i] < min ? x[i] : min;
        max = x[i] > max ? x[i] : max;
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (size_t i = 0; i < n; ++i) L[i] = 0;
        *offset = -min;
        return 0.0f;
    }
    float iscale = static_cast<float>(nmax) / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (size_t i = 0; i < n; ++i) {
        L[i] = static_cast<uint8_t>(clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
        const float diff = scale * L[i] + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    uint8_t trial[kQK];
    for (int step = 0; step <= nstep; ++step) {
        iscale = (rmin + rdelta * static_cast<float>(step) + static_cast<float>(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (size_t i = 0; i < n; ++i) {
            const int l = clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
            trial[i] = static_cast<uint8_t>(l);
            sum_l += w[i] * static_cast<float>(l);
            sum_l2 += w[i] * static_cast<float>(l) * static_cast<float>(l);
            sum_xl += w[i] * static_cast<float>(l) * x[i];
        }
        const float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det <= 0) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if (this_min > 0) {  // the offset may only lower values: refit the scale alone
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float error = 0;
        for (size_t i = 0; i < n; ++i) {
            const float diff = this_scale * trial[i] + this_min - x[i];
            error += w[i] * (diff * diff);
        }
        if (error < best_error) {
            std::memcpy(L, trial, n);
            best_error = error;
            scale = this_scale;
            min = this_min;
        }
    }
    *offset = -min;
    return scale;
}

// Fits x[i] ~ scale * (L[i] - nmax) with L in [0, 2 nmax - 1], weighting errors by x^2: the
// max-magnitude grid and 18 slightly stretched or shrunk ones, each with its least-squares
// scale, keeping the best. Returns scale (0 for an all-zero group).
float fit_symmetric_scale(const float* x, size_t n, int nmax, int8_t* L) {
    const float max = signed_absmax(x, n);
    if (std::fabs(max) < kGroupMaxEps) {
        for (size_t i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    const auto fit = [&](float iscale, float* sumlx, float* suml2) {
        *sumlx = 0;
        *suml2 = 0;
        for (size_t i = 0; i < n; ++i) {
            const int l = clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            *sumlx += w * x[i] * static_cast<float>(l);
            *suml2 += w * static_cast<float>(l) * static_cast<float>(l);
        }
    };
    const auto assign = [&](float iscale) {
        for (size_t i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
    };
    float sumlx, suml2;
    float iscale = -static_cast<float>(nmax) / max;
    fit(iscale, &sumlx, &suml2);
    assign(iscale);
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int step = -9; step <= 9; ++step) {
        if (step == 0) continue;
        iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(step)) / max;
        fit(iscale, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            assign(iscale);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Packs eight 6-bit scales and minima into a Q4_K / Q5_K `scales` array (see scale_min_k4).
void pack_scales_k4(const uint8_t sc[8], const uint8_t m[8], uint8_t scales[12]) {
    for (size_t j = 0; j < 4; ++j) {
        scales[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
        scales[j + 4] = static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
        scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
    }
}

// Levels L[256] (0..nmax) of a Q4_K / Q5_K super-block: per sub-block of 32, a weighted
// scale/offset fit; then the sub-block scales and offsets quantized to 6 bits against the
// super-block's d and dmin, and the levels recomputed against those quantized values.
void quantize_superblock_k(const float* x, int nmax, float rmin, int nstep, uint16_t* d, uint16_t* dmin,
                           uint8_t scales[12], uint8_t L[kQK]) {
    float sub_scale[8], sub_offset[8];
    float max_scale = 0, max_offset = 0;
    for (size_t j = 0; j < 8; ++j) {
        const float* xs = x + 32 * j;
        float sum_x2 = 0;
        for (size_t l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
        const float rms = std::sqrt(sum_x2 / 32);
        float weights[32];  // emphasise large values, but never ignore small ones
        for (size_t l = 0; l < 32; ++l) weights[l] = rms + std::fabs(xs[l]);
        sub_scale[j] = fit_scale_offset(xs, weights, 32, nmax, rmin, 0.1f, nstep, L + 32 * j, &sub_offset[j]);
        max_scale = sub_scale[j] > max_scale ? sub_scale[j] : max_scale;
        max_offset = sub_offset[j] > max_offset ? sub_offset[j] : max_offset;
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_offset = max_offset > 0 ? 63.f / max_offset : 0.f;
    uint8_t sc[8], m[8];
    for (size_t j = 0; j < 8; ++j) {
        // Both products are >= 0, so the conversions cannot wrap.
        sc[j] = static_cast<uint8_t>(clamp(nearest_int(inv_scale * sub_scale[j]), 0, 63));
        m[j] = static_cast<uint8_t>(clamp(nearest_int(inv_offset * sub_offset[j]), 0, 63));
    }
    pack_scales_k4(sc, m, scales);
    *d = f32_to_f16(max_scale / 63.f);
    *dmin = f32_to_f16(max_offset / 63.f);
    for (size_t j = 0; j < 8; ++j) {
        const float dj = f16_to_f32(*d) * sc[j];
        if (!dj) continue;
        const float mj = f16_to_f32(*dmin) * m[j];
        for (size_t l = 0; l < 32; ++l) {
            L[32 * j + l] = static_cast<uint8_t>(clamp(nearest_int((x[32 * j + l] + mj) / dj), 0, nmax));
        }
    }
}

}  // namespace

void quantize_row_q8_0(const float* x, BlockQ8_0* y, size_t n) {
    for (size_t b = 0; b < n / kQ32; ++b, x += kQ32) {
        float amax = 0.0f;
        for (size_t i = 0; i < kQ32; ++i) amax = std::fmax(amax, std::fabs(x[i]));
        const float d = amax / 127;
        const float id = d != 0 ? 1 / d : 0.0f;
        y[b].d = f32_to_f16(d);
        for (size_t i = 0; i < kQ32; ++i) y[b].qs[i] = static_cast<int8_t>(std::round(x[i] * id));
    }
}

void quantize_row_q4_0(const float* x, BlockQ4_0* y, size_t n) {
    for (size_t b = 0; b < n / kQ32; ++b, x += kQ32) {
        // The extreme value maps to level 0 exactly (-8), so its sign picks the side that gets
        // the extra level.
        const float d = signed_absmax(x, kQ32) / -8;
        const float id = d != 0 ? 1 / d : 0.0f;
        y[b].d = f32_to_f16(d);
        for (size_t i = 0; i < kQ32 / 2; ++i) {
            const float lo = x[i] * id + 8.5f;
            const float hi = x[i + 16] * id + 8.5f;
            const int q_lo = clamp(static_cast<int>(lo), 0, 15);
            const int q_hi = clamp(static_cast<int>(hi), 0, 15);
            y[b].qs[i] = static_cast<uint8_t>(q_lo | (q_hi << 4));
        }
    }
}

void quantize_row_q4_k(const float* x, BlockQ4_K* y, size_t n) {
    for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
        uint8_t L[kQK];
        quantize_superblock_k(x, 15, -1.0f, 20, &y[b].d, &y[b].dmin, y[b].scales, L);
        for (size_t i = 0; i < 4; ++i) {  // 64 elements per 32 bytes: sub-block 2i low, 2i+1 high
            for (size_t l = 0; l < 32; ++l) {
                y[b].qs[32 * i + l] = static_cast<uint8_t>(L[64 * i + l] | (L[64 * i + 32 + l] << 4));
            }
        }
    }
}

void quantize_row_q5_k(const float* x, BlockQ5_K* y, size_t n) {
    for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
        uint8_t L[kQK];
        quantize_superblock_k(x, 31, -0.5f, 15, &y[b].d, &y[b].dmin, y[b].scales, L);
        std::memset(y[b].qh, 0, sizeof y[b].qh);
        for (size_t i = 0; i < 4; ++i) {
            for (size_t l = 0; l < 32; ++l) {
                const uint8_t lo = L[64 * i + l], hi = L[64 * i + 32 + l];
                y[b].qs[32 * i + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
                y[b].qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * i)) | ((hi >> 4) << (2 * i + 1)));
            }
        }
    }
}

void quantize_row_q6_k(const float* x, BlockQ6_K* y, size_t n) {
    for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
        int8_t L[kQK];
        float sub_scale[16];
        float max_scale = 0, max_abs_scale = 0;
        for (size_t j = 0; j < 16; ++j) {
            sub_scale[j] = fit_symmetric_scale(x + 16 * j, 16, 32, L + 16 * j);
            if (std::fabs(sub_scale[j]) > max_abs_scale) {
                max_abs_scale = std::fabs(sub_scale[j]);
                max_scale = sub_scale[j];
            }
        }
        std::memset(&y[b], 0, sizeof y[b]);
        if (max_abs_scale < kGroupMaxEps) continue;  // all zeros: d = 0 and zero levels
        // The largest sub-block scale maps to -128, so the 8-bit scales use their full range.
        const float iscale = -128.f / max_scale;
        y[b].d = f32_to_f16(1 / iscale);
        for (size_t j = 0; j < 16; ++j) {
            y[b].scales[j] = static_cast<int8_t>(clamp(nearest_int(iscale * sub_scale[j]), -128, 127));
        }
        for (size_t j = 0; j < 16; ++j) {
            const float dj = f16_to_f32(y[b].d) * y[b].scales[j];
            if (!dj) continue;
            for (size_t l = 0; l < 16; ++l) {
                L[16 * j + l] = static_cast<int8_t>(clamp(nearest_int(x[16 * j + l] / dj), -32, 31) + 32);
            }
        }
        for (size_t half = 0; half < 2; ++half) {
            const int8_t* Lh = L + 128 * half;
            uint8_t* ql = y[b].ql + 64 * half;
            uint8_t* qh = y[b].qh + 32 * half;
            for (size_t l = 0; l < 32; ++l) {
                const auto q = [&](size_t k) { return static_cast<uint8_t>(Lh[l + 32 * k]); };
                ql[l] = static_cast<uint8_t>((q(0) & 0xF) | ((q(2) & 0xF) << 4));
                ql[l + 32] = static_cast<uint8_t>((q(1) & 0xF) | ((q(3) & 0xF) << 4));
                qh[l] = static_cast<uint8_t>((q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6));
            }
        }
    }
}

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, size_t n) {
    for (size_t b = 0; b < n / kQ32; ++b) {
        const float d = f16_to_f32(x[b].d);
        for (size_t i = 0; i < kQ32; ++i) *y++ = static_cast<float>(x[b].qs[i]) * d;
    }
}

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, size_t n) {
    for (size_t b = 0; b < n / kQ32; ++b, y += kQ32) {
        const float d = f16_to_f32(x[b].d);
        for (size_t i = 0; i < kQ32 / 2; ++i) {
            y[i] = d * static_cast<float>((x[b].qs[i] & 0xF) - 8);
            y[i + 16] = d * static_cast<float>((x[b].qs[i] >> 4) - 8);
        }
    }
}

void dequantize_row_q4_k(const BlockQ4_K* x, float* y, size_t n) {
    for (size_t b = 0; b < n / kQK; ++b) {
        const float d = f16_to_f32(x[b].d), dmin = f16_to_f32(x[b].dmin);
        for (size_t j = 0; j < 8; ++j) {
            uint8_t sc, m;
            scale_min_k4(j, x[b].scales, &sc, &m);
            const float dj = d * sc, mj = dmin * m;
            const uint8_t* qs = x[b].qs + 32 * (j / 2);
            const int shift = j % 2 ? 4 : 0;
            for (size_t l = 0; l < 32; ++l) *y++ = dj * static_cast<float>((qs[l] >> shift) & 0xF) - mj;
        }
    }
}

void dequantize_row_q5_k(const BlockQ5_K* x, float* y, size_t n) {
    for (size_t b = 0; b < n / kQK; ++b) {
        const float d = f16_to_f32(x[b].d), dmin = f16_to_f32(x[b].dmin);
        for (size_t j = 0; j < 8; ++j) {
            uint8_t sc, m;
            scale_min_k4(j, x[b].scales, &sc, &m);
            const float dj = d * sc, mj = dmin * m;
            const uint8_t* qs = x[b].qs + 32 * (j / 2);
            const int shift = j % 2 ? 4 : 0;
            for (size_t l = 0; l < 32; ++l) {
                const int q = ((qs[l] >> shift) & 0xF) | (((x[b].qh[l] >> j) & 1) << 4);
                *y++ = dj * static_cast<float>(q) - mj;
            }
        }
    }
}

void dequantize_row_q6_k(const BlockQ6_K* x, float* y, size_t n) {
    for (size_t b = 0; b < n / kQK; ++b, y += kQK) {
        const float d = f16_to_f32(x[b].d);
        for (size_t i = 0; i < kQK; ++i) {
            const size_t half = i / 128, k = (i % 128) / 32, l = i % 32;
            const uint8_t low = x[b].ql[64 * half + l + 32 * (k % 2)] >> (4 * (k / 2));
            const uint8_t high = x[b].qh[32 * half + l] >> (2 * k);
            const int q = ((low & 0xF) | ((high & 3) << 4)) - 32;
            y[i] = (d * static_cast<float>(x[b].scales[i / 16])) * static_cast<float>(q);
        }
    }
}

namespace {

float max_abs(const float* x, size_t n) {
    float amax = 0.0f;
    for (size_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    return amax;
}

// `blocks` activation blocks with levels round(x * level_factor) and the scale d.
void quantize_q8a_blocks(const float* x, BlockQ8A* y, size_t blocks, float level_factor, float d) {
    for (size_t b = 0; b < blocks; ++b, x += kQ32) {
        int32_t sum = 0;
        for (size_t i = 0; i < kQ32; ++i) {
            const int q = nearest_int(x[i] * level_factor);
            y[b].qs[i] = static_cast<int8_t>(q);
            sum += q;
        }
        y[b].d = d;
        y[b].dsum = d * static_cast<float>(sum);
    }
}

}  // namespace

void quantize_row_q8a(const float* x, BlockQ8A* y, size_t n) {
    for (size_t b = 0; b < n / kQ32; ++b, x += kQ32) {
        const float amax = max_abs(x, kQ32);
        quantize_q8a_blocks(x, y + b, 1, activation_level_factor(amax), activation_scale(amax));
    }
}

void quantize_row_q8a_k(const float* x, BlockQ8A* y, size_t n) {
    for (size_t g = 0; g < n / kQK; ++g, x += kQK) {
        const float factor = activation_level_factor(max_abs(x, kQK));
        quantize_q8a_blocks(x, y + g * kQ8AKBlocks, kQ8AKBlocks, factor, activation_scale_k(factor));
    }
}

void dequantize_row_q8a(const BlockQ8A* x, float* y, size_t n) {
    for (size_t b = 0; b < n / kQ32; ++b) {
        for (size_t i = 0; i < kQ32; ++i) *y++ = x[b].d * static_cast<float>(x[b].qs[i]);
    }
}

void quantize_row(DType dtype, const float* x, void* dst, size_t n) {
    switch (dtype) {
        case DType::F32: std::memcpy(dst, x, n * sizeof(float)); return;
        case DType::F16:
        case DType::BF16: {
            auto* out = static_cast<uint16_t*>(dst);
            for (size_t i = 0; i < n; ++i) out[i] = dtype == DType::F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
            return;
        }
        case DType::Q8_0: return quantize_row_q8_0(x, static_cast<BlockQ8_0*>(dst), n);
        case DType::Q4_0: return quantize_row_q4_0(x, static_cast<BlockQ4_0*>(dst), n);
        case DType::Q4_K: return quantize_row_q4_k(x, static_cast<BlockQ4_K*>(dst), n);
        case DType::Q5_K: return quantize_row_q5_k(x, static_cast<BlockQ5_K*>(dst), n);
        case DType::Q6_K: return quantize_row_q6_k(x, static_cast<BlockQ6_K*>(dst), n);
    }
}

void dequantize_row(DType dtype, const void* src, float* y, size_t n) {
    switch (dtype) {
        case DType::F32: std::memcpy(y, src, n * sizeof(float)); return;
        case DType::F16:
        case DType::BF16: {
            const auto* in = static_cast<const uint16_t*>(src);
            for (size_t i = 0; i < n; ++i) y[i] = dtype == DType::F16 ? f16_to_f32(in[i]) : bf16_to_f32(in[i]);
            return;
        }
        case DType::Q8_0: return dequantize_row_q8_0(static_cast<const BlockQ8_0*>(src), y, n);
        case DType::Q4_0: return dequantize_row_q4_0(static_cast<const BlockQ4_0*>(src), y, n);
        case DType::Q4_K: return dequantize_row_q4_k(static_cast<const BlockQ4_K*>(src), y, n);
        case DType::Q5_K: return dequantize_row_q5_k(static_cast<const BlockQ5_K*>(src), y, n);
        case DType::Q6_K: return dequantize_row_q6_k(static_cast<const BlockQ6_K*>(src), y, n);
    }
}

}  // namespace lfmrt::quant
