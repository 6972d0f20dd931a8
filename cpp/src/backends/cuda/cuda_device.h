// The CUDA devices present, and the CUDA backend made from a device string's part after "cuda".
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "lfmrt/backend.h"

namespace lfmrt::cuda {

// Every CUDA device the driver reports, as "cuda:N"; empty where no driver or device is present.
std::vector<DeviceInfo> cuda_device_infos();

// `index` is "" (device 0) or "N". Throws InvalidArgument when no driver loads, no device is
// present, the index is out of range, or the device is older than the build's architectures.
std::unique_ptr<backend::Backend> make_cuda_backend(const std::string& index);

}  // namespace lfmrt::cuda
