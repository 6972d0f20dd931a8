#include "backends/cpu/dispatch.h"

#include "lfmrt/error.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace lfmrt::cpu {

namespace {

#if defined(__x86_64__) || defined(_M_X64)
#if defined(__GNUC__) || defined(__clang__)
// From CPUID leaf 1 (ECX bit 29): __builtin_cpu_supports knows "f16c" in GCC but not before Clang 16.
bool has_f16c() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}
#endif

bool has_avx2_fma_f16c() {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
#else
    return false;
#endif
}

// What avx512_kernels() needs: AVX-512 F/BW/VL for the 512-bit integer ops and masks, VNNI for
// vpdpbusd, and the AVX2 table's features for the functions it shares with it.
bool has_avx512_vnni() {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_cpu_init();
    return has_avx2_fma_f16c() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
}
#endif

#if defined(__aarch64__)
// Optional aarch64 features, read from the OS (user space cannot read the ID registers
// portably). dotprod and i8mm select kernel tables: fp16 arithmetic (FEAT_FP16) would round
// products and sums to half precision, and lfmrt accumulates in fp32; the f16 -> f32 widening
// the kernels need is baseline NEON. fp16 is reported for information.
struct ArmFeatures {
    bool dotprod = false;  // SDOT / UDOT (FEAT_DotProd)
    bool fp16 = false;     // half-precision arithmetic, scalar and vector (FEAT_FP16)
    bool i8mm = false;     // SMMLA / UMMLA (FEAT_I8MM)
};

#if defined(__linux__)
// Bits of the kernel's uapi <asm/hwcap.h>, spelled out because old headers (the manylinux2014
// toolchain's) lack some of them.
constexpr unsigned long kHwcapFphp = 1UL << 9;
constexpr unsigned long kHwcapAsimdhp = 1UL << 10;
constexpr unsigned long kHwcapAsimddp = 1UL << 20;
constexpr unsigned long kAtHwcap2 = 26;  // AT_HWCAP2
constexpr unsigned long kHwcap2I8mm = 1UL << 13;

ArmFeatures arm_features() {
    const unsigned long hwcap = getauxval(AT_HWCAP);
    const unsigned long hwcap2 = getauxval(kAtHwcap2);
    ArmFeatures features;
    features.dotprod = (hwcap & kHwcapAsimddp) != 0;
    features.fp16 = (hwcap & kHwcapFphp) != 0 && (hwcap & kHwcapAsimdhp) != 0;
    features.i8mm = (hwcap2 & kHwcap2I8mm) != 0;
    return features;
}
#elif defined(__APPLE__)
// hw.optional.arm.FEAT_* exist from macOS 12; on older systems the lookup fails and the
// feature counts as absent (the baseline table still runs).
bool sysctl_flag(const char* name) {
    int value = 0;
    size_t size = sizeof value;
    return sysctlbyname(name, &value, &size, nullptr, 0) == 0 && value != 0;
}

ArmFeatures arm_features() {
    ArmFeatures features;
    features.dotprod = sysctl_flag("hw.optional.arm.FEAT_DotProd");
    features.fp16 = sysctl_flag("hw.optional.arm.FEAT_FP16");
    features.i8mm = sysctl_flag("hw.optional.arm.FEAT_I8MM");
    return features;
}
#else
ArmFeatures arm_features() { return {}; }  // no known way to ask this OS: baseline only
#endif
#endif  // __aarch64__

// The kernel sets this build has, lowest first, for error messages.
#if defined(__x86_64__) || defined(_M_X64)
constexpr const char* kBuiltKernelSets = "'scalar', 'avx2' or 'avx512'";
#elif defined(__aarch64__)
constexpr const char* kBuiltKernelSets = "'scalar', 'neon', 'neon_dotprod' or 'neon_i8mm'";
#else
constexpr const char* kBuiltKernelSets = "'scalar'";
#endif

}  // namespace

std::string cpu_features() {
    std::string features;
    const auto add = [&](bool present, const char* name) {
        if (present) features += std::string(features.empty() ? "" : " ") + name;
    };
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    add(__builtin_cpu_supports("sse4.2"), "sse4.2");
    add(__builtin_cpu_supports("avx"), "avx");
    add(__builtin_cpu_supports("avx2"), "avx2");
    add(__builtin_cpu_supports("fma"), "fma");
    add(has_f16c(), "f16c");
    add(__builtin_cpu_supports("avx512f"), "avx512f");
    add(__builtin_cpu_supports("avx512bw"), "avx512bw");
    add(__builtin_cpu_supports("avx512vl"), "avx512vl");
    add(__builtin_cpu_supports("avx512vnni"), "avx512vnni");
#elif defined(__aarch64__)
    const ArmFeatures arm = arm_features();
    add(true, "neon");  // Advanced SIMD is part of the aarch64 baseline
    add(arm.dotprod, "dotprod");
    add(arm.fp16, "fp16");
    add(arm.i8mm, "i8mm");
#endif
    return features;
}

std::vector<std::string> kernel_sets() {
    std::vector<std::string> sets = {"scalar"};
#if defined(__x86_64__) || defined(_M_X64)
    if (has_avx2_fma_f16c()) sets.emplace_back("avx2");
    if (has_avx512_vnni()) sets.emplace_back("avx512");
#elif defined(__aarch64__)
    sets.emplace_back("neon");
    const ArmFeatures arm = arm_features();
    if (arm.dotprod) sets.emplace_back("neon_dotprod");
    if (arm.dotprod && arm.i8mm) sets.emplace_back("neon_i8mm");
#endif
    return sets;
}

const KernelTable& select_kernels(const std::string& isa) {
    if (isa == "scalar") return scalar_kernels();
#if defined(__x86_64__) || defined(_M_X64)
    if (isa.empty() || isa == "avx512") {
        if (has_avx512_vnni()) return avx512_kernels();
        if (isa == "avx512") {
            throw InvalidArgument("the avx512 kernel set (device cpu:avx512 or LFMRT_ISA=avx512) needs AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C, which this CPU lacks");
        }
    }
    if (isa.empty() || isa == "avx2") {
        if (has_avx2_fma_f16c()) return avx2_kernels();
        if (isa == "avx2") throw InvalidArgument("the avx2 kernel set (device cpu:avx2 or LFMRT_ISA=avx2) needs AVX2, FMA and F16C, which this CPU lacks");
        return scalar_kernels();
    }
#elif defined(__aarch64__)
    if (isa == "neon") return neon_kernels();
    const ArmFeatures arm = arm_features();
    if (isa.empty() || isa == "neon_i8mm") {
        if (arm.dotprod && arm.i8mm) return neon_i8mm_kernels();
        if (isa == "neon_i8mm") {
            throw InvalidArgument("the neon_i8mm kernel set (device cpu:neon_i8mm or LFMRT_ISA=neon_i8mm) needs the int8 matrix-multiply and dot-product instructions, which this CPU lacks");
        }
    }
    if (isa.empty() || isa == "neon_dotprod") {
        if (arm.dotprod) return neon_dotprod_kernels();
        if (isa == "neon_dotprod") {
            throw InvalidArgument("the neon_dotprod kernel set (device cpu:neon_dotprod or LFMRT_ISA=neon_dotprod) needs the dot-product instructions, which this CPU lacks");
        }
        return neon_kernels();
    }
#else
    if (isa.empty()) return scalar_kernels();
#endif
    throw InvalidArgument("unknown CPU kernel set '" + isa + "' (device cpu:" + isa + " or LFMRT_ISA): this build has " +
                          kBuiltKernelSets);
}

const KvKernels& kv_kernels_for(const KernelTable& table) {
    if (&table == &scalar_kernels()) return scalar_kv_kernels();
#if defined(__x86_64__) || defined(_M_X64)
    // Every SIMD table of an x86 build (avx2, avx512) runs on a CPU with AVX2, FMA and F16C, and
    // attention's fp32 loops gain nothing from 512 bits at head size 64: both take the AVX2 ones.
    return avx2_kv_kernels();
#elif defined(__aarch64__)
    // Attention is fp32 arithmetic: every NEON table shares the baseline KV kernels.
    return neon_kv_kernels();
#else
    return scalar_kv_kernels();
#endif
}

}  // namespace lfmrt::cpu
