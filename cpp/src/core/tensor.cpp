#include "lfmrt/tensor.h"

#include <cstring>

#include "lfmrt/error.h"
#include "formats/blocks.h"
#include "formats/quantize.h"

namespace lfmrt {

const char* dtype_name(DType dtype) {
    switch (dtype) {
        case DType::F32: return "F32";
        case DType::F16: return "F16";
        case DType::BF16: return "BF16";
        case DType::Q8_0: return "Q8_0";
        case DType::Q4_0: return "Q4_0";
        case DType::Q4_K: return "Q4_K";
        case DType::Q5_K: return "Q5_K";
        case DType::Q6_K: return "Q6_K";
    }
    return "?";
}

DType dtype_from_name(const std::string& name) {
    for (int i = 0; i < kNumDTypes; ++i) {
        const auto dtype = static_cast<DType>(i);
        if (name == dtype_name(dtype)) return dtype;
    }
    throw LoadError("unsupported dtype '" + name + "' (expected F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K or Q6_K)");
}

bool is_quantized(DType dtype) { return block_elems(dtype) > 1; }

size_t block_elems(DType dtype) {
    switch (dtype) {
        case DType::F32:
        case DType::F16:
        case DType::BF16: return 1;
        case DType::Q8_0:
        case DType::Q4_0: return quant::kQ32;
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K: return quant::kQK;
    }
    return 1;
}

size_t block_bytes(DType dtype) {
    switch (dtype) {
        case DType::F32: return 4;
        case DType::F16:
        case DType::BF16: return 2;
        case DType::Q8_0: return sizeof(quant::BlockQ8_0);
        case DType::Q4_0: return sizeof(quant::BlockQ4_0);
        case DType::Q4_K: return sizeof(quant::BlockQ4_K);
        case DType::Q5_K: return sizeof(quant::BlockQ5_K);
        case DType::Q6_K: return sizeof(quant::BlockQ6_K);
    }
    return 0;
}

size_t row_bytes(DType dtype, size_t cols) { return cols / block_elems(dtype) * block_bytes(dtype); }

int64_t TensorView::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

size_t TensorView::nbytes() const {
    return static_cast<size_t>(numel()) / block_elems(dtype) * block_bytes(dtype);
}

void check_block_shape(const std::string& name, const TensorView& view) {
    const size_t block = block_elems(view.dtype);
    const int64_t row = view.shape.empty() ? 1 : view.shape.back();
    if (row % static_cast<int64_t>(block) != 0) {
        throw LoadError("tensor '" + name + "' is " + dtype_name(view.dtype) + ", whose blocks hold " +
                        std::to_string(block) + " elements, but its rows have " + std::to_string(row));
    }
}

float bf16_to_f32(uint16_t b) {
    uint32_t bits = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t f32_to_bf16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>(bits >> 16);
}

float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {  // subnormal: normalise
        exponent = 113;
        while ((mantissa & 0x400u) == 0) {
            mantissa <<= 1;
            --exponent;
        }
        bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
    const uint32_t abs = bits & 0x7fffffffu;
    if (abs > 0x7f800000u) return sign | 0x7e00u;           // NaN
    if (abs >= 0x477ff000u) return sign | 0x7c00u;         // overflow rounds to inf
    if (abs < 0x38800000u) {                                // subnormal or zero in f16
        if (abs < 0x33000000u) return sign;                 // rounds to zero
        const uint32_t exponent = abs >> 23;
        const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126 - exponent;              // 14..24
        uint32_t half = mantissa >> shift;
        const uint32_t rest = mantissa & ((1u << shift) - 1);
        const uint32_t halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
        return sign | static_cast<uint16_t>(half);
    }
    uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);  // round to nearest even
    return sign | static_cast<uint16_t>((rounded - 0x38000000u) >> 13);
}

void convert_to_f32(const void* src, DType dtype, float* dst, size_t n) { quant::dequantize_row(dtype, src, dst, n); }

}  // namespace lfmrt
