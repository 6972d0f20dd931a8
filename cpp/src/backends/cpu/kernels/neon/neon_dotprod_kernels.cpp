// The aarch64 table for CPUs with the dot-product instructions (-march=armv8.2-a+dotprod):
// the quantized matmuls' integer dots are SDOT; everything else is the baseline's.
#include "backends/cpu/kernels/neon/quant_table.h"

#if !defined(__ARM_FEATURE_DOTPROD)
#error "neon_dotprod_kernels.cpp must be compiled with the dot-product extension (+dotprod)"
#endif

namespace lfmrt::cpu {

namespace {
constexpr KernelTable kNeonDotprodTable = quant_table::make_table("neon_dotprod");
}  // namespace

const KernelTable& neon_dotprod_kernels() { return kNeonDotprodTable; }

}  // namespace lfmrt::cpu
