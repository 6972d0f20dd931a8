#include "cpu/dispatch.h"

#include "lfmrt/error.h"

namespace lfmrt::cpu {

namespace {

bool has_avx2_fma_f16c() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return false;
#endif
}

}  // namespace

std::string cpu_features() {
    std::string features;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    const auto add = [&](bool present, const char* name) {
        if (present) features += std::string(features.empty() ? "" : " ") + name;
    };
    add(__builtin_cpu_supports("sse4.2"), "sse4.2");
    add(__builtin_cpu_supports("avx"), "avx");
    add(__builtin_cpu_supports("avx2"), "avx2");
    add(__builtin_cpu_supports("fma"), "fma");
    add(__builtin_cpu_supports("f16c"), "f16c");
    add(__builtin_cpu_supports("avx512f"), "avx512f");
#elif defined(__aarch64__)
    features = "neon";
#endif
    return features;
}

const KernelTable& select_kernels(const std::string& isa) {
    if (isa == "scalar") return scalar_kernels();
#if defined(__x86_64__) || defined(_M_X64)
    if (isa.empty() || isa == "avx2") {
        if (has_avx2_fma_f16c()) return avx2_kernels();
        if (isa == "avx2") throw InvalidArgument("LFMRT_ISA=avx2, but this CPU lacks AVX2, FMA or F16C");
        return scalar_kernels();
    }
#else
    if (isa.empty()) return scalar_kernels();
#endif
    throw InvalidArgument("unknown kernel set '" + isa + "' (LFMRT_ISA): expected 'scalar' or 'avx2'");
}

const KvKernels& kv_kernels_for(const KernelTable& table) {
    // Every SIMD table of this build runs on a CPU with AVX2, FMA and F16C.
    if (&table == &scalar_kernels()) return scalar_kv_kernels();
#if defined(__x86_64__) || defined(_M_X64)
    return avx2_kv_kernels();
#else
    return scalar_kv_kernels();
#endif
}

}  // namespace lfmrt::cpu
