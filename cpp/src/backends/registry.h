// Makes a backend from a device string; the one place that knows every backend folder.
//
//   "cpu"            the CPU, best kernel set ("cpu:avx2", "cpu:scalar", ... force one)
//   "opencl"         the first OpenCL GPU (else the first OpenCL device); "opencl:N" the Nth
//                    device in lfmrt.devices()' order
//   "cuda", "cuda:N" an NVIDIA GPU (builds with LFMRT_CUDA=ON)
#pragma once

#include <memory>
#include <string>

#include "lfmrt/backend.h"

namespace lfmrt {

struct BackendOptions {
    int n_threads = 1;  // CPU threads (the CPU backend's compute; host work of others)
};

// Throws InvalidArgument for an unknown device string, or one whose device is absent (saying
// what was looked for and what is present).
std::unique_ptr<backend::Backend> make_backend(const std::string& device, const BackendOptions& options);

}  // namespace lfmrt
