// The aarch64 table for CPUs with the int8 matrix-multiply instructions (SMMLA, FEAT_I8MM: ARMv8.6,
// Graviton 3, Apple M2, Cortex-A510 / A710 / X2 and later) besides the dot product
// (-march=armv8.2-a+dotprod+i8mm): the panel GEMMs (prefill, batched decode) are SMMLA; everything
// else is the dotprod table's own kernels (GEMVs are one token: nothing for SMMLA's token pairs).
#include "backends/cpu/kernels/neon/panel_kernels.h"

#if !defined(__ARM_FEATURE_DOTPROD) || !defined(__ARM_FEATURE_MATMUL_INT8)
#error "neon_i8mm_kernels.cpp must be compiled with the dot-product and int8 matrix-multiply extensions"
#endif

namespace lfmrt::cpu {

const KernelTable& neon_i8mm_kernels() {
    // Made on first use, which dispatch allows only on a CPU with the instructions (copying the
    // dotprod table's pointers runs none of them anyway).
    static const KernelTable table = [] {
        KernelTable t = neon_dotprod_kernels();
        t.name = "neon_i8mm";
        t.gemm_panels[static_cast<int>(DType::Q8_0)] = neon_panels::gemm<DType::Q8_0>;
        t.gemm_panels[static_cast<int>(DType::Q4_0)] = neon_panels::gemm<DType::Q4_0>;
        t.gemm_panels[static_cast<int>(DType::Q4_K)] = neon_panels::gemm<DType::Q4_K>;
        t.gemm_panels[static_cast<int>(DType::Q6_K)] = neon_panels::gemm<DType::Q6_K>;
        return t;
    }();
    return table;
}

}  // namespace lfmrt::cpu
