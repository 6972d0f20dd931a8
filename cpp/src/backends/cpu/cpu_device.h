// The CPU as a device: the registry's entry point into backends/cpu/.
#pragma once

#include <memory>
#include <string>

#include "lfmrt/backend.h"

namespace lfmrt::cpu {

// A CPU backend on the kernel set named `kernel_set` ("" = the best this CPU runs; see
// dispatch.h) with `n_threads` threads. Throws InvalidArgument for a set this CPU cannot run.
std::unique_ptr<backend::Backend> make_cpu_backend(const std::string& kernel_set, int n_threads);

// This machine's CPU: its model name, memory, features and kernel sets.
DeviceInfo cpu_device_info();

}  // namespace lfmrt::cpu
