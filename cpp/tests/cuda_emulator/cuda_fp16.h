// The emulator's stand-in for <cuda_fp16.h> (see cuda_runtime.h): the half type as bits and the
// conversions the backend uses, exact as the hardware's (IEEE binary16, round to nearest even).
#pragma once

#include <cstdint>
#include <cstring>

struct __half {
    uint16_t bits;
};

inline __half __ushort_as_half(unsigned short bits) { return __half{bits}; }
inline unsigned short __half_as_ushort(__half h) { return h.bits; }

inline float __half2float(__half h) {
    _Float16 value;
    std::memcpy(&value, &h.bits, sizeof value);
    return static_cast<float>(value);
}

inline __half __float2half_rn(float x) {
    const _Float16 value = static_cast<_Float16>(x);
    __half h;
    std::memcpy(&h.bits, &value, sizeof h.bits);
    return h;
}
