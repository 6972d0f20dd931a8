// A/B of two versions of the AVX2 panel kernels (backends/cpu/kernels/avx2/panel_kernels.cpp) in
// one process: run.sh compiles the old one with its namespace renamed to lfmrtold. The two GEMMs
// run alternately on the same panels and activations, and each keeps its best time, so that a
// shared machine's swings (+-20% between runs minutes apart here) fall on both alike.
//
// Usage: ab_panels N ROUNDS [q4_0|q8_0|q4_k|q6_k]   (a 4608 x 1024 matrix, N tokens, N = 1 the
// GEMV; default Q4_0)
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "backends/cpu/panels.h"
#include "backends/cpu/kernels/kernels.h"
#include "backends/cpu/kernels/avx2/panel_kernels.h"
#include "lfmrt/tensor.h"
// The old version's entry points (panel_kernels.h's, under the renamed namespace).
namespace lfmrtold::cpu::avx2 {
void gemm_panels_q4_0(const void*, size_t, const void*, size_t, size_t, float*, size_t, size_t, size_t, void*);
void gemm_panels_q8_0(const void*, size_t, const void*, size_t, size_t, float*, size_t, size_t, size_t, void*);
void gemm_panels_q4_k(const void*, size_t, const void*, size_t, size_t, float*, size_t, size_t, size_t, void*);
void gemm_panels_q6_k(const void*, size_t, const void*, size_t, size_t, float*, size_t, size_t, size_t, void*);
}  // namespace lfmrtold::cpu::avx2
using Gemm = void (*)(const void*, size_t, const void*, size_t, size_t, float*, size_t, size_t, size_t, void*);
struct Kernels {
    const char* name;
    lfmrt::DType dtype;
    Gemm old_gemm, new_gemm;
};
const Kernels kKernels[] = {
    {"q4_0", lfmrt::DType::Q4_0, lfmrtold::cpu::avx2::gemm_panels_q4_0, lfmrt::cpu::avx2::gemm_panels_q4_0},
    {"q8_0", lfmrt::DType::Q8_0, lfmrtold::cpu::avx2::gemm_panels_q8_0, lfmrt::cpu::avx2::gemm_panels_q8_0},
    {"q4_k", lfmrt::DType::Q4_K, lfmrtold::cpu::avx2::gemm_panels_q4_k, lfmrt::cpu::avx2::gemm_panels_q4_k},
    {"q6_k", lfmrt::DType::Q6_K, lfmrtold::cpu::avx2::gemm_panels_q6_k, lfmrt::cpu::avx2::gemm_panels_q6_k},
};
int main(int argc, char** argv) {
    size_t rows = 4608, cols = 1024, n = argc > 1 ? std::stoul(argv[1]) : 512;
    int rounds = argc > 2 ? std::stoi(argv[2]) : 15;
    const std::string type = argc > 3 ? argv[3] : "q4_0";
    const Kernels* kernels = nullptr;
    for (const Kernels& k : kKernels) {
        if (type == k.name) kernels = &k;
    }
    if (kernels == nullptr) {
        std::fprintf(stderr, "unknown type %s (q4_0, q8_0, q4_k, q6_k)\n", type.c_str());
        return 2;
    }
    const lfmrt::DType dtype = kernels->dtype;
    const Gemm gnew = kernels->new_gemm, gold = kernels->old_gemm;
    std::mt19937_64 rng(1);
    std::vector<uint8_t> raw(rows * lfmrt::row_bytes(dtype, cols));
    for (size_t i = 0; i + 8 <= raw.size(); i += 8) { uint64_t w = rng() & 0x3BFF3BFF3BFF3BFFull; std::memcpy(&raw[i], &w, 8); }
    std::vector<uint8_t> panels(lfmrt::cpu::panel_matrix_bytes(dtype, rows, cols));
    lfmrt::cpu::pack_panels(dtype, raw.data(), rows, cols, 0, lfmrt::cpu::panel_rows(rows), panels.data());
    std::vector<float> x(n * cols); std::mt19937 frng(2); std::uniform_real_distribution<float> u(-1, 1);
    for (auto& v : x) v = u(frng);
    size_t stride = lfmrt::cpu::activation_row_bytes(dtype, cols);
    std::vector<uint8_t> xq(n * stride);
    const auto quantize = lfmrt::cpu::activation_quantizer(lfmrt::cpu::avx2_kernels(), lfmrt::cpu::activation_format(dtype));
    for (size_t t = 0; t < n; ++t) quantize(x.data() + t * cols, xq.data() + t * stride, cols);
    std::vector<float> y0(n * rows), y1(n * rows);
    std::vector<uint8_t> scratch(lfmrt::cpu::kGemmScratchBytes);
    double best[2] = {1e9, 1e9};
    for (int r = 0; r < rounds; ++r) {
        for (int v = 0; v < 2; ++v) {
            auto t0 = std::chrono::steady_clock::now();
            (v ? gnew : gold)(panels.data(), cols, xq.data(), stride, n, (v ? y1 : y0).data(), rows, 0, rows, scratch.data());
            double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (dt < best[v]) best[v] = dt;
        }
    }
    double ops = 2.0 * rows * cols * n;
    std::printf("n=%zu old %.1f GOPS, new %.1f GOPS, new/old %.3f, outputs %s\n", n, ops / best[0] * 1e-9, ops / best[1] * 1e-9,
                best[0] / best[1], std::memcmp(y0.data(), y1.data(), y0.size() * 4) == 0 ? "bit-identical" : "DIFFER");
}
