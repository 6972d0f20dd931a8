// The baseline aarch64 table (-march=armv8-a): every aarch64 CPU runs it.
#include "backends/cpu/kernels/neon/quant_table.h"

namespace lfmrt::cpu {

namespace {
constexpr KernelTable kNeonTable = quant_table::make_table("neon");
}  // namespace

const KernelTable& neon_kernels() { return kNeonTable; }

}  // namespace lfmrt::cpu
