// The part of the OpenCL 1.2 C API the OpenCL backend uses, declared here and loaded at run
// time from the ICD loader (libOpenCL), so that lfmrt builds without an OpenCL SDK and a machine
// without any OpenCL driver still imports lfmrt and runs on the CPU.
//
// Why dlopen rather than linking the ICD loader and shipping it in the wheel: a wheel's private
// copy of libOpenCL would have to find the system's ICD files (/etc/OpenCL/vendors) anyway, and
// Android / Adreno devices and macOS provide their own loader (libOpenCL.so in the vendor
// partition, the OpenCL framework); loading whatever the system has is what works everywhere.
//
// Only what the backend calls is declared: the types, constants and entry points below have the
// values and signatures of the Khronos headers (CL/cl.h, OpenCL 1.2), which are not vendored.
// Entry points of later versions are not used (clCreateCommandQueue is 1.2's, deprecated but
// exported by every 2.x / 3.0 loader).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace lfmrt::opencl {

// --- types --------------------------------------------------------------------------------

using cl_int = int32_t;
using cl_uint = uint32_t;
using cl_ulong = uint64_t;
using cl_bool = cl_uint;
using cl_bitfield = cl_ulong;
using cl_device_type = cl_bitfield;
using cl_platform_info = cl_uint;
using cl_device_info = cl_uint;
using cl_device_fp_config = cl_bitfield;
using cl_mem_flags = cl_bitfield;
using cl_mem_object_type = cl_uint;
using cl_command_queue_properties = cl_bitfield;
using cl_context_properties = intptr_t;
using cl_program_info = cl_uint;
using cl_program_build_info = cl_uint;
using cl_kernel_work_group_info = cl_uint;
using cl_event_info = cl_uint;
using cl_channel_order = cl_uint;
using cl_channel_type = cl_uint;

using cl_platform_id = struct _cl_platform_id*;
using cl_device_id = struct _cl_device_id*;
using cl_context = struct _cl_context*;
using cl_command_queue = struct _cl_command_queue*;
using cl_mem = struct _cl_mem*;
using cl_program = struct _cl_program*;
using cl_kernel = struct _cl_kernel*;
using cl_event = struct _cl_event*;

struct cl_image_format {
    cl_channel_order image_channel_order;
    cl_channel_type image_channel_data_type;
};

struct cl_image_desc {
    cl_mem_object_type image_type;
    size_t image_width;
    size_t image_height;
    size_t image_depth;
    size_t image_array_size;
    size_t image_row_pitch;
    size_t image_slice_pitch;
    cl_uint num_mip_levels;
    cl_uint num_samples;
    cl_mem buffer;
};

// OpenCL 3.0's (name, version) pairs, for CL_DEVICE_OPENCL_C_FEATURES.
struct cl_name_version {
    cl_uint version;
    char name[64];
};

// --- constants ----------------------------------------------------------------------------

inline constexpr cl_int CL_SUCCESS = 0;
inline constexpr cl_int CL_MEM_OBJECT_ALLOCATION_FAILURE = -4;
inline constexpr cl_int CL_OUT_OF_RESOURCES = -5;
inline constexpr cl_int CL_OUT_OF_HOST_MEMORY = -6;
inline constexpr cl_int CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST = -14;
inline constexpr cl_int CL_INVALID_BUFFER_SIZE = -61;

inline constexpr cl_bool CL_FALSE = 0;

inline constexpr cl_platform_info CL_PLATFORM_VERSION = 0x0901;
inline constexpr cl_platform_info CL_PLATFORM_NAME = 0x0902;

inline constexpr cl_device_type CL_DEVICE_TYPE_CPU = 1 << 1;
inline constexpr cl_device_type CL_DEVICE_TYPE_GPU = 1 << 2;
inline constexpr cl_device_type CL_DEVICE_TYPE_ACCELERATOR = 1 << 3;
inline constexpr cl_device_type CL_DEVICE_TYPE_ALL = 0xFFFFFFFF;

inline constexpr cl_device_info CL_DEVICE_TYPE = 0x1000;
inline constexpr cl_device_info CL_DEVICE_MAX_MEM_ALLOC_SIZE = 0x1010;
inline constexpr cl_device_info CL_DEVICE_IMAGE_SUPPORT = 0x1016;
inline constexpr cl_device_info CL_DEVICE_SINGLE_FP_CONFIG = 0x101B;
inline constexpr cl_device_info CL_DEVICE_GLOBAL_MEM_SIZE = 0x101F;
inline constexpr cl_device_info CL_DEVICE_LOCAL_MEM_SIZE = 0x1023;
inline constexpr cl_device_info CL_DEVICE_ENDIAN_LITTLE = 0x1026;
inline constexpr cl_device_info CL_DEVICE_NAME = 0x102B;
inline constexpr cl_device_info CL_DRIVER_VERSION = 0x102D;
inline constexpr cl_device_info CL_DEVICE_VERSION = 0x102F;
inline constexpr cl_device_info CL_DEVICE_EXTENSIONS = 0x1030;
inline constexpr cl_device_info CL_DEVICE_OPENCL_C_VERSION = 0x103D;
inline constexpr cl_device_info CL_DEVICE_IMAGE_MAX_BUFFER_SIZE = 0x1040;
inline constexpr cl_device_info CL_DEVICE_OPENCL_C_FEATURES = 0x106F;  // OpenCL 3.0 devices only

inline constexpr cl_device_fp_config CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT = 1 << 7;

inline constexpr cl_context_properties CL_CONTEXT_PLATFORM = 0x1084;

inline constexpr cl_mem_flags CL_MEM_READ_WRITE = 1 << 0;
inline constexpr cl_mem_flags CL_MEM_READ_ONLY = 1 << 2;

inline constexpr cl_channel_order CL_RGBA = 0x10B5;
inline constexpr cl_channel_type CL_UNSIGNED_INT32 = 0x10DC;
inline constexpr cl_mem_object_type CL_MEM_OBJECT_IMAGE1D_BUFFER = 0x10F6;

inline constexpr cl_program_info CL_PROGRAM_BINARY_SIZES = 0x1165;
inline constexpr cl_program_info CL_PROGRAM_BINARIES = 0x1166;
inline constexpr cl_program_build_info CL_PROGRAM_BUILD_LOG = 0x1183;

inline constexpr cl_kernel_work_group_info CL_KERNEL_WORK_GROUP_SIZE = 0x11B0;
inline constexpr cl_kernel_work_group_info CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE = 0x11B3;

inline constexpr cl_event_info CL_EVENT_COMMAND_EXECUTION_STATUS = 0x11D3;

// --- entry points -------------------------------------------------------------------------

// The loaded ICD loader's entry points (null until loaded). Filled once per process and never
// changed afterwards (see cl_api()).
struct ClApi {
    cl_int (*GetPlatformIDs)(cl_uint, cl_platform_id*, cl_uint*);
    cl_int (*GetPlatformInfo)(cl_platform_id, cl_platform_info, size_t, void*, size_t*);
    cl_int (*GetDeviceIDs)(cl_platform_id, cl_device_type, cl_uint, cl_device_id*, cl_uint*);
    cl_int (*GetDeviceInfo)(cl_device_id, cl_device_info, size_t, void*, size_t*);
    cl_context (*CreateContext)(const cl_context_properties*, cl_uint, const cl_device_id*,
                                void (*)(const char*, const void*, size_t, void*), void*, cl_int*);
    cl_int (*ReleaseContext)(cl_context);
    cl_command_queue (*CreateCommandQueue)(cl_context, cl_device_id, cl_command_queue_properties, cl_int*);
    cl_int (*ReleaseCommandQueue)(cl_command_queue);
    cl_mem (*CreateBuffer)(cl_context, cl_mem_flags, size_t, void*, cl_int*);
    cl_mem (*CreateImage)(cl_context, cl_mem_flags, const cl_image_format*, const cl_image_desc*, void*, cl_int*);
    cl_int (*ReleaseMemObject)(cl_mem);
    cl_program (*CreateProgramWithSource)(cl_context, cl_uint, const char**, const size_t*, cl_int*);
    cl_program (*CreateProgramWithBinary)(cl_context, cl_uint, const cl_device_id*, const size_t*,
                                          const unsigned char**, cl_int*, cl_int*);
    cl_int (*BuildProgram)(cl_program, cl_uint, const cl_device_id*, const char*, void (*)(cl_program, void*),
                           void*);
    cl_int (*GetProgramInfo)(cl_program, cl_program_info, size_t, void*, size_t*);
    cl_int (*GetProgramBuildInfo)(cl_program, cl_device_id, cl_program_build_info, size_t, void*, size_t*);
    cl_int (*ReleaseProgram)(cl_program);
    cl_kernel (*CreateKernel)(cl_program, const char*, cl_int*);
    cl_int (*ReleaseKernel)(cl_kernel);
    cl_int (*SetKernelArg)(cl_kernel, cl_uint, size_t, const void*);
    cl_int (*GetKernelWorkGroupInfo)(cl_kernel, cl_device_id, cl_kernel_work_group_info, size_t, void*, size_t*);
    cl_int (*EnqueueNDRangeKernel)(cl_command_queue, cl_kernel, cl_uint, const size_t*, const size_t*,
                                   const size_t*, cl_uint, const cl_event*, cl_event*);
    cl_int (*EnqueueReadBuffer)(cl_command_queue, cl_mem, cl_bool, size_t, size_t, void*, cl_uint,
                                const cl_event*, cl_event*);
    cl_int (*EnqueueWriteBuffer)(cl_command_queue, cl_mem, cl_bool, size_t, size_t, const void*, cl_uint,
                                 const cl_event*, cl_event*);
    cl_int (*EnqueueCopyBuffer)(cl_command_queue, cl_mem, cl_mem, size_t, size_t, size_t, cl_uint, const cl_event*,
                                cl_event*);
    cl_int (*EnqueueFillBuffer)(cl_command_queue, cl_mem, const void*, size_t, size_t, size_t, cl_uint,
                                const cl_event*, cl_event*);
    cl_int (*Flush)(cl_command_queue);
    cl_int (*Finish)(cl_command_queue);
    cl_int (*WaitForEvents)(cl_uint, const cl_event*);
    cl_int (*GetEventInfo)(cl_event, cl_event_info, size_t, void*, size_t*);
    cl_int (*ReleaseEvent)(cl_event);
};

// The ICD loader, loaded on first use: libOpenCL.so.1, then libOpenCL.so (macOS: the OpenCL
// framework), or only the library $LFMRT_OPENCL_LIBRARY names. Returns null when none loads; `why` then says what was looked for and what the
// dynamic loader answered. The loader stays loaded for the life of the process (drivers do not
// all survive being unloaded), so this is loaded once, behind a function-local static, and only
// read afterwards.
const ClApi* cl_api(std::string* why = nullptr);

// "CL_OUT_OF_RESOURCES (-5)" and so on, for messages.
std::string cl_error_name(cl_int status);

}  // namespace lfmrt::opencl
