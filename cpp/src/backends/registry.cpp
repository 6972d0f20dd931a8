#include "backends/registry.h"

#include "backends/cpu/cpu_device.h"
#include "lfmrt/error.h"

namespace lfmrt {

namespace {

// "kind" and what follows its colon ("" when there is none).
std::pair<std::string, std::string> split_device(const std::string& device) {
    const size_t colon = device.find(':');
    if (colon == std::string::npos) return {device, ""};
    return {device.substr(0, colon), device.substr(colon + 1)};
}

}  // namespace

std::unique_ptr<backend::Backend> make_backend(const std::string& device, const BackendOptions& options) {
    const auto [kind, rest] = split_device(device.empty() ? "cpu" : device);
    if (kind == "cpu") return cpu::make_cpu_backend(rest, options.n_threads);
    throw InvalidArgument("unknown device '" + device + "' (expected cpu, cpu:<kernel set>, opencl[:N] or cuda[:N])");
}

std::vector<DeviceInfo> list_devices() { return {cpu::cpu_device_info()}; }

}  // namespace lfmrt
