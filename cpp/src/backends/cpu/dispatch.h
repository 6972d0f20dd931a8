// Chooses the CPU kernel table once, at model load, from the CPU's features.
#pragma once

#include <string>
#include <vector>

#include "backends/cpu/kernels/kernels.h"
#include "backends/cpu/kernels/kv_kernels.h"

namespace lfmrt::cpu {

// Features of this CPU that matter to some kernel table, e.g. "avx2 fma f16c" or
// "neon dotprod fp16".
std::string cpu_features();

// The kernel sets of this build that this CPU runs, lowest first ("scalar" ... the best).
std::vector<std::string> kernel_sets();

// The best table this CPU supports, or the one named by `isa` ("scalar", "avx2", "avx512", "neon",
// "neon_dotprod", "neon_i8mm"; empty means best, and the LFMRT_ISA environment variable is read
// by the caller). Throws InvalidArgument for an unknown name or a table the CPU cannot run.
const KernelTable& select_kernels(const std::string& isa);

// The KV-cache kernels of the same ISA as `table` (a table chosen by select_kernels).
const KvKernels& kv_kernels_for(const KernelTable& table);

}  // namespace lfmrt::cpu
