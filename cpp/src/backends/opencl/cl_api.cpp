#include "backends/opencl/cl_api.h"

#include <dlfcn.h>

#include <cstdlib>
#include <iterator>
#include <type_traits>
#include <vector>

namespace lfmrt::opencl {

namespace {

#if defined(__APPLE__)
constexpr const char* kLoaderNames[] = {"/System/Library/Frameworks/OpenCL.framework/OpenCL"};
#else
constexpr const char* kLoaderNames[] = {"libOpenCL.so.1", "libOpenCL.so"};
#endif

struct LoadedApi {
    ClApi api{};
    bool loaded = false;
    std::string why;  // when not loaded
};

// Resolves every entry point; false (naming the first missing one) if any is absent.
bool resolve(void* library, ClApi& api, std::string& missing) {
    const auto get = [&](auto& slot, const char* name) {
        void* symbol = dlsym(library, name);
        if (symbol == nullptr && missing.empty()) missing = name;
        slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(symbol);
    };
    get(api.GetPlatformIDs, "clGetPlatformIDs");
    get(api.GetPlatformInfo, "clGetPlatformInfo");
    get(api.GetDeviceIDs, "clGetDeviceIDs");
    get(api.GetDeviceInfo, "clGetDeviceInfo");
    get(api.CreateContext, "clCreateContext");
    get(api.ReleaseContext, "clReleaseContext");
    get(api.CreateCommandQueue, "clCreateCommandQueue");
    get(api.ReleaseCommandQueue, "clReleaseCommandQueue");
    get(api.CreateBuffer, "clCreateBuffer");
    get(api.CreateImage, "clCreateImage");
    get(api.ReleaseMemObject, "clReleaseMemObject");
    get(api.CreateProgramWithSource, "clCreateProgramWithSource");
    get(api.CreateProgramWithBinary, "clCreateProgramWithBinary");
    get(api.BuildProgram, "clBuildProgram");
    get(api.GetProgramInfo, "clGetProgramInfo");
    get(api.GetProgramBuildInfo, "clGetProgramBuildInfo");
    get(api.ReleaseProgram, "clReleaseProgram");
    get(api.CreateKernel, "clCreateKernel");
    get(api.ReleaseKernel, "clReleaseKernel");
    get(api.SetKernelArg, "clSetKernelArg");
    get(api.GetKernelWorkGroupInfo, "clGetKernelWorkGroupInfo");
    get(api.EnqueueNDRangeKernel, "clEnqueueNDRangeKernel");
    get(api.EnqueueReadBuffer, "clEnqueueReadBuffer");
    get(api.EnqueueWriteBuffer, "clEnqueueWriteBuffer");
    get(api.EnqueueCopyBuffer, "clEnqueueCopyBuffer");
    get(api.EnqueueFillBuffer, "clEnqueueFillBuffer");
    get(api.Flush, "clFlush");
    get(api.Finish, "clFinish");
    get(api.WaitForEvents, "clWaitForEvents");
    get(api.GetEventInfo, "clGetEventInfo");
    get(api.ReleaseEvent, "clReleaseEvent");
    return missing.empty();
}

LoadedApi load() {
    LoadedApi result;
    std::string tried;
    // LFMRT_OPENCL_LIBRARY names the loader instead (e.g. an Android vendor's
    // /vendor/lib64/libOpenCL.so, or a path that does not exist, to run as if none were installed).
    std::vector<std::string> names(std::begin(kLoaderNames), std::end(kLoaderNames));
    if (const char* chosen = std::getenv("LFMRT_OPENCL_LIBRARY"); chosen != nullptr && *chosen != '\0') names = {chosen};
    for (const std::string& path : names) {
        const char* name = path.c_str();
        void* library = dlopen(name, RTLD_NOW | RTLD_LOCAL);
        if (library == nullptr) {
            const char* error = dlerror();
            tried += std::string(tried.empty() ? "" : "; ") + name + ": " + (error ? error : "not found");
            continue;
        }
        std::string missing;
        if (!resolve(library, result.api, missing)) {
            tried += std::string(tried.empty() ? "" : "; ") + name + ": has no " + missing + " (not an OpenCL 1.2 loader)";
            dlclose(library);
            continue;
        }
        result.loaded = true;  // never closed: see cl_api()
        return result;
    }
    result.why = "no OpenCL ICD loader could be loaded (" + tried + ")";
    return result;
}

}  // namespace

const ClApi* cl_api(std::string* why) {
    static const LoadedApi loaded = load();
    if (!loaded.loaded && why != nullptr) *why = loaded.why;
    return loaded.loaded ? &loaded.api : nullptr;
}

std::string cl_error_name(cl_int status) {
    const char* name = nullptr;
    switch (status) {
        case 0: name = "CL_SUCCESS"; break;
        case -1: name = "CL_DEVICE_NOT_FOUND"; break;
        case -2: name = "CL_DEVICE_NOT_AVAILABLE"; break;
        case -3: name = "CL_COMPILER_NOT_AVAILABLE"; break;
        case -4: name = "CL_MEM_OBJECT_ALLOCATION_FAILURE"; break;
        case -5: name = "CL_OUT_OF_RESOURCES"; break;
        case -6: name = "CL_OUT_OF_HOST_MEMORY"; break;
        case -11: name = "CL_BUILD_PROGRAM_FAILURE"; break;
        case -14: name = "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST"; break;
        case -30: name = "CL_INVALID_VALUE"; break;
        case -33: name = "CL_INVALID_DEVICE"; break;
        case -34: name = "CL_INVALID_CONTEXT"; break;
        case -36: name = "CL_INVALID_COMMAND_QUEUE"; break;
        case -38: name = "CL_INVALID_MEM_OBJECT"; break;
        case -39: name = "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR"; break;
        case -40: name = "CL_INVALID_IMAGE_SIZE"; break;
        case -42: name = "CL_INVALID_BINARY"; break;
        case -43: name = "CL_INVALID_BUILD_OPTIONS"; break;
        case -44: name = "CL_INVALID_PROGRAM"; break;
        case -45: name = "CL_INVALID_PROGRAM_EXECUTABLE"; break;
        case -46: name = "CL_INVALID_KERNEL_NAME"; break;
        case -48: name = "CL_INVALID_KERNEL"; break;
        case -49: name = "CL_INVALID_ARG_INDEX"; break;
        case -50: name = "CL_INVALID_ARG_VALUE"; break;
        case -51: name = "CL_INVALID_ARG_SIZE"; break;
        case -52: name = "CL_INVALID_KERNEL_ARGS"; break;
        case -53: name = "CL_INVALID_WORK_DIMENSION"; break;
        case -54: name = "CL_INVALID_WORK_GROUP_SIZE"; break;
        case -55: name = "CL_INVALID_WORK_ITEM_SIZE"; break;
        case -56: name = "CL_INVALID_GLOBAL_OFFSET"; break;
        case -61: name = "CL_INVALID_BUFFER_SIZE"; break;
        case -63: name = "CL_INVALID_GLOBAL_WORK_SIZE"; break;
        case -1001: name = "CL_PLATFORM_NOT_FOUND_KHR"; break;
        default: break;
    }
    return std::string(name ? name : "OpenCL error") + " (" + std::to_string(status) + ")";
}

}  // namespace lfmrt::opencl
