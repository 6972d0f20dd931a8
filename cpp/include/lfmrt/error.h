// Exceptions the runtime throws; the Python bindings translate each into its Python class.
#pragma once

#include <stdexcept>
#include <string>

namespace lfmrt {

// A model file, tensor or config field is missing, malformed or inconsistent.
// Becomes `lfmrt.LoadError` in Python.
class LoadError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A caller passed a bad value (token id out of range, context overflow, bad sampling value).
// Becomes `ValueError` in Python.
class InvalidArgument : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// Constrained decoding cannot go on: the grammar's token mask allows no token (or logit_bias
// took every allowed one away), so any token the sampler picked would break the constraint.
// Becomes `lfmrt.ConstraintError` in Python.
class ConstraintError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A device (a GPU's memory, an OpenCL or CUDA allocation) is out of memory; the message names
// the device, what was being allocated and how much was in use. Becomes `MemoryError` in Python.
// The process and other devices stay usable.
class OutOfDeviceMemory : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace lfmrt
