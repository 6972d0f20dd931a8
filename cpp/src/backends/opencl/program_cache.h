// The OpenCL program, built once per device and kept on disk: program binaries keyed by the
// platform, the device, its driver version, the kernels' source and the build options, so a
// second load of a model skips the compiler (seconds on a phone's driver, and on PoCL).
//
// Location: $LFMRT_CACHE_DIR/opencl if set; else the platform's cache folder
// ($XDG_CACHE_HOME or ~/.cache on Linux, ~/Library/Caches on macOS) under lfmrt/opencl.
// LFMRT_OPENCL_CACHE=0 turns it off. An entry that is truncated, corrupt, from another key or
// refused by the driver is ignored and rebuilt from source (and rewritten); a cache that cannot
// be written is simply not used.
//
// File format: magic "LFMRTCLB", u32 version, u64 key length + key text, u64 binary length +
// binary, u64 FNV-1a of everything before it.
#pragma once

#include <string>

#include "backends/opencl/device_context.h"

namespace lfmrt::opencl {

struct BuiltProgram {
    ClHandle<cl_program> program;
    bool from_cache = false;  // loaded from a cached binary, the compiler not run
};

// Builds `source` with `options` for the context's device. Throws std::runtime_error with the
// build log when the source does not compile.
BuiltProgram build_program(DeviceContext& context, const std::string& source, const std::string& options);

// The cache folder, or "" when caching is off (LFMRT_OPENCL_CACHE=0, or no home folder).
std::string program_cache_dir();

}  // namespace lfmrt::opencl
