#include "backends/cpu/cpu_device.h"

#include <fstream>
#include <thread>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/dispatch.h"

#if defined(__APPLE__)
#include <sys/sysctl.h>
#else
#include <unistd.h>
#endif

namespace lfmrt::cpu {

namespace {

std::string cpu_model_name() {
#if defined(__APPLE__)
    char name[256] = {};
    size_t size = sizeof name;
    if (sysctlbyname("machdep.cpu.brand_string", name, &size, nullptr, 0) == 0) return name;
#else
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line)) {
        // x86 says "model name", some aarch64 kernels only "Hardware" or nothing.
        if (line.rfind("model name", 0) == 0 || line.rfind("Hardware", 0) == 0) {
            const size_t colon = line.find(':');
            if (colon != std::string::npos && colon + 2 <= line.size()) return line.substr(colon + 2);
        }
    }
#endif
    return "CPU";
}

uint64_t system_memory_bytes() {
#if defined(__APPLE__)
    uint64_t bytes = 0;
    size_t size = sizeof bytes;
    return sysctlbyname("hw.memsize", &bytes, &size, nullptr, 0) == 0 ? bytes : 0;
#else
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
#endif
}

}  // namespace

std::unique_ptr<backend::Backend> make_cpu_backend(const std::string& kernel_set, int n_threads) {
    return std::make_unique<CpuBackend>(select_kernels(kernel_set), std::max(1, n_threads));
}

DeviceInfo cpu_device_info() {
    DeviceInfo info;
    info.id = "cpu";
    info.name = cpu_model_name();
    info.kind = "cpu";
    info.memory_bytes = system_memory_bytes();
    const std::string features = cpu_features();
    info.fp16 = features.find("f16c") != std::string::npos || features.find("fp16") != std::string::npos;
    std::string sets;
    for (const std::string& set : kernel_sets()) sets += (sets.empty() ? "" : " ") + set;
    info.details = "kernel sets: " + sets + "; best: " + select_kernels("").name + "; features: " + features;
    return info;
}

}  // namespace lfmrt::cpu
