// Shared by every OpenCL kernel file (they are compiled as one program, this file first).
//
// OpenCL C 1.2 throughout; what a device adds is switched on by the host's build options
// (opencl_device.cpp, KernelPaths::build_options):
//   LFMRT_FP16               cl_khr_fp16: halves are loaded as half vectors and converted, where
//                            otherwise vload_half (core 1.2, no extension) does it. Arithmetic
//                            stays fp32 everywhere: f16 arithmetic was not shown to be safe.
//   LFMRT_SUBGROUPS_KHR      cl_khr_subgroups: reductions through sub_group_reduce_add
//   LFMRT_SUBGROUPS_INTEL    cl_intel_subgroups: the same built-ins
//   LFMRT_SUBGROUPS_FEATURE  OpenCL C 3.0's __opencl_c_subgroups: the same built-ins
//   LFMRT_SUBGROUP_SIZE_INTEL=N  cl_intel_required_subgroup_size: reduction kernels ask for N lanes
//   LFMRT_SUBGROUP_QCOM_HALF cl_qcom_reqd_sub_group_size: reduction kernels ask for half waves
//   LFMRT_IMAGES             quantized weights are read through image1d_buffer_t (one RGBA32UI
//                            texel per 16-byte chunk) instead of uint4 loads
// Without any subgroup option, reductions go through local memory.
//
// Adreno notes (none of this could be measured here): Adreno has no dedicated shared memory
// apart from its L1/GMEM-backed local memory, so reductions prefer subgroups; llama.cpp's Adreno
// kernels ask for half waves (qcom_reqd_sub_group_size("half")), which keep more waves resident,
// and we follow them. Local memory use stays under 32 KB per work-group (the smallest Adreno
// budget), and no work-group size is fixed here except the GEMM tile's 64 (see matmul.cl).

#ifdef LFMRT_FP16
#pragma OPENCL EXTENSION cl_khr_fp16 : enable
#endif

#if defined(LFMRT_SUBGROUPS_KHR)
#pragma OPENCL EXTENSION cl_khr_subgroups : enable
#define LFMRT_SUBGROUPS 1
#elif defined(LFMRT_SUBGROUPS_INTEL)
#pragma OPENCL EXTENSION cl_intel_subgroups : enable
#define LFMRT_SUBGROUPS 1
#elif defined(LFMRT_SUBGROUPS_FEATURE)
#define LFMRT_SUBGROUPS 1
#endif

// A kernel that reduces across its work-group.
#if defined(LFMRT_SUBGROUPS) && defined(LFMRT_SUBGROUP_SIZE_INTEL)
#define REDUCTION_KERNEL __kernel __attribute__((intel_reqd_sub_group_size(LFMRT_SUBGROUP_SIZE_INTEL)))
#elif defined(LFMRT_SUBGROUPS) && defined(LFMRT_SUBGROUP_QCOM_HALF)
#pragma OPENCL EXTENSION cl_qcom_reqd_sub_group_size : enable
#define REDUCTION_KERNEL __kernel __attribute__((qcom_reqd_sub_group_size("half")))
#else
#define REDUCTION_KERNEL __kernel
#endif

// fp16 values in memory, widened to fp32 exactly.
#ifdef LFMRT_FP16
#define load_half(p, i) convert_float(((__global const half*)(p))[i])
#define load_half8(p, i) convert_float8(vload8((i), (__global const half*)(p)))
#else
#define load_half(p, i) vload_half((i), (__global const half*)(p))
#define load_half8(p, i) vload_half8((i), (__global const half*)(p))
#endif

inline float sum4(float4 v) { return (v.s0 + v.s1) + (v.s2 + v.s3); }
inline float sum16(float16 v) {
    const float8 s8 = v.lo + v.hi;
    return sum4(s8.lo + s8.hi);
}

// The sums of the four components of v over the work-group, for every work-item. `scratch`
// holds get_local_size(0) float4; the local size is a power of two (the host picks it so).
inline float4 group_sum4(float4 v, __local float4* scratch) {
    const uint lid = get_local_id(0);
#ifdef LFMRT_SUBGROUPS
    const float4 s = (float4)(sub_group_reduce_add(v.s0), sub_group_reduce_add(v.s1), sub_group_reduce_add(v.s2),
                              sub_group_reduce_add(v.s3));
    if (get_sub_group_local_id() == 0) scratch[get_sub_group_id()] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    float4 total = 0.0f;
    for (uint i = 0; i < get_num_sub_groups(); ++i) total += scratch[i];
#else
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint half_size = get_local_size(0) / 2; half_size > 0; half_size /= 2) {
        if (lid < half_size) scratch[lid] += scratch[lid + half_size];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float4 total = scratch[0];
#endif
    barrier(CLK_LOCAL_MEM_FENCE);  // scratch may be reused right after
    return total;
}

// One sequence's share of a step, as the host writes it into the step buffer (begin_step):
// SEQ_FIELDS uints per sequence.
#define SEQ_ROW_BEGIN 0
#define SEQ_ROWS 1
#define SEQ_PAST 2
#define SEQ_CONV_STATE 3
#define SEQ_PAGES 4
#define SEQ_FIELDS 5
