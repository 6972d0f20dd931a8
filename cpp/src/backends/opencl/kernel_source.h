// The OpenCL kernels' source: kernels/*.cl, embedded at build time (CMake writes the definition
// into a generated file from cmake/embed_opencl_kernels.cmake), common.cl first.
#pragma once

#include <string>

namespace lfmrt::opencl {

const std::string& kernel_source();

}  // namespace lfmrt::opencl
