// The AVX-512 kernel table (AVX-512 F/BW/VL/VNNI plus AVX2, FMA and F16C), tested against the
// scalar table like every SIMD table.
//
// What it adds over the AVX2 table is integer throughput, from vpdpbusd: the panel kernels that
// Q4_0, Q8_0, Q4_K and Q6_K matrices repacked at load use for GEMV and GEMM (panel_kernels.cpp),
// and the Q5_K GEMV and GEMM in GGUF's rows (quant_kernels.cpp, whose Q4_K twin is the row-layout
// fallback); and a bf16 GEMM whose panels stay bf16 (float_kernels.cpp). Everything else is the
// AVX2 table's: the other float-weight matmuls and the vector ops (bandwidth-bound or small), and
// the row-layout Q4_0, Q8_0 and Q6_K kernels. The row-layout kernels of panel types are left only
// as the fallback for a matrix in GGUF's rows (the model repacks every one).
// Compiled with the AVX-512 flags: no STL, no helpers with external linkage (see avx2_kernels.cpp).
#include "backends/cpu/kernels/avx2/float_kernels.h"
#include "backends/cpu/kernels/avx2/quant_kernels.h"
#include "backends/cpu/kernels/avx512/float_kernels.h"
#include "backends/cpu/kernels/avx512/panel_kernels.h"
#include "backends/cpu/kernels/avx512/quant_kernels.h"
#include "backends/cpu/kernels/kernels.h"

namespace lfmrt::cpu {
namespace {

// The per-dtype arrays below are listed in DType order.
static_assert(static_cast<int>(DType::F32) == 0 && static_cast<int>(DType::F16) == 1 &&
              static_cast<int>(DType::BF16) == 2 && static_cast<int>(DType::Q8_0) == 3 &&
              static_cast<int>(DType::Q4_0) == 4 && static_cast<int>(DType::Q4_K) == 5 &&
              static_cast<int>(DType::Q5_K) == 6 && static_cast<int>(DType::Q6_K) == 7 && kNumDTypes == 8);

constexpr KernelTable kAvx512Table{
    "avx512",
    {avx2::gemv_f32, avx2::gemv_f16, avx2::gemv_bf16, avx2::gemv_q8_0, avx2::gemv_q4_0, avx512::gemv_q4_k,
     avx512::gemv_q5_k, avx2::gemv_q6_k},
    {avx2::gemm_f32, avx2::gemm_f16, avx512::gemm_bf16, avx2::gemm_q8_0, avx2::gemm_q4_0, avx512::gemm_q4_k,
     avx512::gemm_q5_k, avx2::gemm_q6_k},
    {nullptr, nullptr, nullptr, avx512::gemv_panels_q8_0, avx512::gemv_panels_q4_0, avx512::gemv_panels_q4_k,
     nullptr, avx512::gemv_panels_q6_k},
    {nullptr, nullptr, nullptr, avx512::gemm_panels_q8_0, avx512::gemm_panels_q4_0, avx512::gemm_panels_q4_k,
     nullptr, avx512::gemm_panels_q6_k},
    avx2::quantize_q8a,
    avx2::quantize_q8a_k,
    avx2::dot,
    avx2::axpy,
    avx2::rmsnorm,
    avx2::silu_mul,
    avx2::mul,
};

}  // namespace

const KernelTable& avx512_kernels() { return kAvx512Table; }

}  // namespace lfmrt::cpu
