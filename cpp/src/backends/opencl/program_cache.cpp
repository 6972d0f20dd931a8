#include "backends/opencl/program_cache.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "core/hash.h"

namespace lfmrt::opencl {

namespace {

constexpr char kMagic[8] = {'L', 'F', 'M', 'R', 'T', 'C', 'L', 'B'};
constexpr uint32_t kVersion = 1;

std::string hex(uint64_t value) {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
    return text;
}

// Everything a binary depends on, as text (kept whole in the file, so a hash collision cannot
// hand one device another's binary).
std::string cache_key(const DeviceDescription& d, const std::string& source, const std::string& options) {
    return "platform: " + d.platform_name + " / " + d.platform_version + "\ndevice: " + d.name + " / " +
           d.device_version + "\ndriver: " + d.driver_version + "\nsource: " + hex(fnv1a(source.data(), source.size())) +
           "\noptions: " + options + "\n";
}

std::string build_log(DeviceContext& context, cl_program program) {
    size_t size = 0;
    const cl_device_id device = context.description().device;
    context.cl().GetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, nullptr, &size);
    std::string log(size, '\0');
    if (size > 0) context.cl().GetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, size, log.data(), nullptr);
    log.resize(std::strlen(log.c_str()));
    constexpr size_t kShown = 6000;
    return log.size() > kShown ? log.substr(0, kShown) + "\n..." : log;
}

ClHandle<cl_program> build_from_source(DeviceContext& context, const std::string& source, const std::string& options) {
    const char* text = source.c_str();
    const size_t length = source.size();
    cl_int status = CL_SUCCESS;
    ClHandle<cl_program> program(context.cl().CreateProgramWithSource(context.context(), 1, &text, &length, &status));
    context.check(status, "creating the kernels' program");
    const cl_device_id device = context.description().device;
    status = context.cl().BuildProgram(program.get(), 1, &device, options.c_str(), nullptr, nullptr);
    if (status != CL_SUCCESS) {
        throw std::runtime_error(context.label() + ": the OpenCL kernels did not compile (" + cl_error_name(status) +
                                 ", options '" + options + "'):\n" + build_log(context, program.get()));
    }
    return program;
}

// The program's binary for its one device (empty if the driver gives none).
std::string program_binary(DeviceContext& context, cl_program program) {
    size_t size = 0;
    if (context.cl().GetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, nullptr) != CL_SUCCESS ||
        size == 0) {
        return "";
    }
    std::string binary(size, '\0');
    unsigned char* pointer = reinterpret_cast<unsigned char*>(binary.data());
    if (context.cl().GetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof pointer, &pointer, nullptr) != CL_SUCCESS) {
        return "";
    }
    return binary;
}

ClHandle<cl_program> build_from_binary(DeviceContext& context, const std::string& binary, const std::string& options) {
    const cl_device_id device = context.description().device;
    const size_t size = binary.size();
    const auto* bytes = reinterpret_cast<const unsigned char*>(binary.data());
    cl_int binary_status = CL_SUCCESS, status = CL_SUCCESS;
    ClHandle<cl_program> program(
        context.cl().CreateProgramWithBinary(context.context(), 1, &device, &size, &bytes, &binary_status, &status));
    if (status != CL_SUCCESS || binary_status != CL_SUCCESS) return {};
    if (context.cl().BuildProgram(program.get(), 1, &device, options.c_str(), nullptr, nullptr) != CL_SUCCESS) return {};
    return program;
}

// The cached binary for `key`, or "" when there is none or it does not check out.
std::string read_entry(const std::filesystem::path& file, const std::string& key) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return "";
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t at = 0;
    const auto take = [&](void* out, size_t bytes) {
        if (data.size() - at < bytes) return false;
        std::memcpy(out, data.data() + at, bytes);
        at += bytes;
        return true;
    };
    char magic[8];
    uint32_t version = 0;
    uint64_t key_size = 0, binary_size = 0, hash = 0;
    if (!take(magic, 8) || std::memcmp(magic, kMagic, 8) != 0 || !take(&version, 4) || version != kVersion) return "";
    if (!take(&key_size, 8) || key_size != key.size() || data.compare(at, key_size, key) != 0) return "";
    at += key_size;
    if (!take(&binary_size, 8) || binary_size == 0 || data.size() - at < binary_size + 8) return "";
    const size_t binary_at = at;
    at += binary_size;
    if (!take(&hash, 8) || at != data.size() || hash != fnv1a(data.data(), binary_at + binary_size)) return "";
    return data.substr(binary_at, binary_size);
}

// Best effort: written to a temporary file, then renamed over the entry (readers never see
// half a file; concurrent writers of one key write the same bytes).
void write_entry(const std::filesystem::path& file, const std::string& key, const std::string& binary) {
    std::string data(kMagic, 8);
    const auto put = [&](const void* bytes, size_t size) { data.append(static_cast<const char*>(bytes), size); };
    const uint64_t key_size = key.size(), binary_size = binary.size();
    put(&kVersion, 4);
    put(&key_size, 8);
    data += key;
    put(&binary_size, 8);
    data += binary;
    const uint64_t hash = fnv1a(data.data(), data.size());
    put(&hash, 8);
    std::error_code error;
    std::filesystem::create_directories(file.parent_path(), error);
    const std::filesystem::path temporary = file.string() + ".tmp" + std::to_string(::getpid());
    {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        if (!out || !out.write(data.data(), static_cast<std::streamsize>(data.size()))) {
            std::filesystem::remove(temporary, error);
            return;
        }
    }
    std::filesystem::rename(temporary, file, error);
    if (error) std::filesystem::remove(temporary, error);
}

}  // namespace

std::string program_cache_dir() {
    const char* off = std::getenv("LFMRT_OPENCL_CACHE");
    if (off != nullptr && std::strcmp(off, "0") == 0) return "";
    if (const char* dir = std::getenv("LFMRT_CACHE_DIR"); dir != nullptr && *dir != '\0') {
        return (std::filesystem::path(dir) / "opencl").string();
    }
    const char* home = std::getenv("HOME");
#if defined(__APPLE__)
    if (home == nullptr || *home == '\0') return "";
    return (std::filesystem::path(home) / "Library" / "Caches" / "lfmrt" / "opencl").string();
#else
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg == '/') {
        return (std::filesystem::path(xdg) / "lfmrt" / "opencl").string();
    }
    if (home == nullptr || *home == '\0') return "";
    return (std::filesystem::path(home) / ".cache" / "lfmrt" / "opencl").string();
#endif
}

BuiltProgram build_program(DeviceContext& context, const std::string& source, const std::string& options) {
    BuiltProgram built;
    const std::string dir = program_cache_dir();
    if (dir.empty()) {
        built.program = build_from_source(context, source, options);
        return built;
    }
    const std::string key = cache_key(context.description(), source, options);
    const std::filesystem::path file = std::filesystem::path(dir) / (hex(fnv1a(key.data(), key.size())) + ".bin");
    if (const std::string binary = read_entry(file, key); !binary.empty()) {
        built.program = build_from_binary(context, binary, options);
        built.from_cache = static_cast<bool>(built.program);
    }
    if (!built.program) {
        built.program = build_from_source(context, source, options);
        if (const std::string binary = program_binary(context, built.program.get()); !binary.empty()) {
            write_entry(file, key, binary);
        }
    }
    return built;
}

}  // namespace lfmrt::opencl
