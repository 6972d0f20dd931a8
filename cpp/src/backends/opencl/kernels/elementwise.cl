// Row-wise and elementwise ops: rmsnorm, residual add, bias, SwiGLU's silu_mul, row gather and
// greedy argmax. fp32 throughout; each matches the CPU's scalar kernel up to summation order.

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, one work-group per row (y may be x: every
// read of a row happens before the reduction's barrier or by the work-item that then writes).
REDUCTION_KERNEL void rmsnorm_rows(__global const float* x, __global const float* weight, uint width, float eps,
                                   __global float* y, __local float4* scratch) {
    const size_t base = (size_t)get_group_id(0) * width;
    float sum_squares = 0.0f;
    for (uint i = get_local_id(0); i < width; i += get_local_size(0)) sum_squares += x[base + i] * x[base + i];
    const float total = group_sum4((float4)(sum_squares, 0.0f, 0.0f, 0.0f), scratch).s0;
    const float inv_rms = 1.0f / sqrt(total / (float)width + eps);
    for (uint i = get_local_id(0); i < width; i += get_local_size(0)) y[base + i] = x[base + i] * inv_rms * weight[i];
}

__kernel void add_values(__global float* y, __global const float* x, uint count) {
    const uint i = get_global_id(0);
    if (i < count) y[i] += x[i];
}

__kernel void add_bias_rows(__global float* y, __global const float* bias, uint width, uint count) {
    const uint i = get_global_id(0);
    if (i < count) y[i] += bias[i % width];
}

// out[i] = silu(gate[i]) * up[i] (out may be gate or up).
__kernel void silu_mul_values(__global const float* gate, __global const float* up, __global float* out, uint count) {
    const uint i = get_global_id(0);
    if (i >= count) return;
    const float g = gate[i];
    out[i] = g / (1.0f + exp(-g)) * up[i];
}

__kernel void gather_rows(__global const float* x, uint width, __global const uint* rows, __global float* out,
                          uint count) {
    const uint i = get_global_id(0);
    if (i < count) out[i] = x[(size_t)rows[i / width] * width + i % width];
}

// ids[r] = the lowest index of row r's largest value; NaN never wins (its comparisons are
// false), and a row of NaNs gives 0, as core/argmax.cpp. One work-group per row; local memory
// only (the op runs once per step).
__kernel void argmax_rows(__global const float* x, uint width, __global int* ids, __local float* best_value,
                          __local uint* best_index) {
    const uint lid = get_local_id(0);
    const size_t base = (size_t)get_group_id(0) * width;
    float value = -INFINITY;
    uint index = UINT_MAX;
    for (uint i = lid; i < width; i += get_local_size(0)) {
        const float v = x[base + i];
        if (v > value || (v == value && i < index)) {
            value = v;
            index = i;
        }
    }
    best_value[lid] = value;
    best_index[lid] = index;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint half_size = get_local_size(0) / 2; half_size > 0; half_size /= 2) {
        if (lid < half_size) {
            const float v = best_value[lid + half_size];
            const uint i = best_index[lid + half_size];
            if (v > best_value[lid] || (v == best_value[lid] && i < best_index[lid])) {
                best_value[lid] = v;
                best_index[lid] = i;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) ids[get_group_id(0)] = best_index[0] == UINT_MAX ? 0 : (int)best_index[0];
}
