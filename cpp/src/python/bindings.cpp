// pybind11 bindings: translation between Python objects and the C++ runtime, nothing more.
// Compute releases the GIL; C++ exceptions become lfmrt.LoadError / ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backends/cpu/dispatch.h"
#include "lfmrt/backend.h"
#include "lfmrt/config.h"
#include "lfmrt/error.h"
#include "lfmrt/model.h"
#include "lfmrt/sampler.h"
#include "lfmrt/session.h"
#include "formats/quantize.h"

namespace py = pybind11;
using namespace lfmrt;

namespace {

// Holds a Python object (the memory maps behind the weights) for as long as C++ needs it.
struct PythonKeepAlive {
    py::object object;
    ~PythonKeepAlive() {
        py::gil_scoped_acquire gil;
        object = py::object();
    }
};

// tensors: {name: (uint8 buffer, dtype name, shape[, file_mapped])} as the Python loaders produce
// them; file_mapped (default False) says the buffer lies in a read-only memory map of a file.
std::map<std::string, TensorView> tensor_views(const py::dict& tensors) {
    std::map<std::string, TensorView> views;
    for (const auto& [key, value] : tensors) {
        const auto name = key.cast<std::string>();
        const auto entry = value.cast<py::tuple>();
        if (entry.size() != 3 && entry.size() != 4) {
            throw LoadError("tensor '" + name + "': expected (buffer, dtype, shape[, file_mapped])");
        }
        const py::buffer_info buffer = entry[0].cast<py::buffer>().request();
        TensorView view;
        view.data = buffer.ptr;
        view.dtype = dtype_from_name(entry[1].cast<std::string>());
        view.shape = entry[2].cast<std::vector<int64_t>>();
        view.file_mapped = entry.size() == 4 && entry[3].cast<bool>();
        for (int64_t dim : view.shape) {
            if (dim < 0) throw LoadError("tensor '" + name + "' has a negative dimension");
        }
        check_block_shape(name, view);
        const auto available = static_cast<size_t>(buffer.size * buffer.itemsize);
        if (view.nbytes() != available) {
            throw LoadError("tensor '" + name + "' needs " + std::to_string(view.nbytes()) + " bytes for its shape and " +
                            dtype_name(view.dtype) + ", but its data holds " + std::to_string(available));
        }
        views.emplace(name, std::move(view));
    }
    return views;
}

// A dtype name given to quantize/dequantize: ValueError (not LoadError) when unknown.
DType parse_dtype(const std::string& name) {
    try {
        return dtype_from_name(name);
    } catch (const LoadError& e) {
        throw InvalidArgument(e.what());
    }
}

void check_row_length(DType dtype, size_t cols) {
    if (cols == 0 || cols % block_elems(dtype) != 0) {
        throw InvalidArgument(std::string(dtype_name(dtype)) + " rows must be a non-zero multiple of " +
                              std::to_string(block_elems(dtype)) + " elements, got " + std::to_string(cols));
    }
}

// Quantizes each row of a 2-D float32 array to `dtype`: a [rows, row_bytes] uint8 array.
py::array_t<uint8_t> quantize_rows(const py::array_t<float, py::array::c_style | py::array::forcecast>& values,
                                   const std::string& dtype_text) {
    const DType dtype = parse_dtype(dtype_text);
    if (values.ndim() != 2) throw InvalidArgument("quantize takes a 2-D float32 array");
    const auto rows = static_cast<size_t>(values.shape(0));
    const auto cols = static_cast<size_t>(values.shape(1));
    check_row_length(dtype, cols);
    const size_t bytes = row_bytes(dtype, cols);
    py::array_t<uint8_t> out({rows, bytes});
    const float* src = values.data();
    uint8_t* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        for (size_t r = 0; r < rows; ++r) quant::quantize_row(dtype, src + r * cols, dst + r * bytes, cols);
    }
    return out;
}

// Each row of a 2-D float32 array as the integer kernels of the `isa` kernel set take it for
// matrices of `weight_dtype` (a block type): [rows, activation_row_bytes] uint8, BlockQ8A blocks.
py::array_t<uint8_t> quantize_activations(const py::array_t<float, py::array::c_style | py::array::forcecast>& values,
                                          const std::string& weight_dtype, const std::string& isa) {
    const DType dtype = parse_dtype(weight_dtype);
    const cpu::ActivationFormat format = cpu::activation_format(dtype);
    if (format == cpu::ActivationFormat::F32) {
        throw InvalidArgument(std::string(dtype_name(dtype)) + " matrices take float activations, not quantized ones");
    }
    if (values.ndim() != 2) throw InvalidArgument("quantize_activations takes a 2-D float32 array");
    const auto rows = static_cast<size_t>(values.shape(0));
    const auto cols = static_cast<size_t>(values.shape(1));
    check_row_length(dtype, cols);
    const cpu::QuantizeRowFn quantize = cpu::activation_quantizer(cpu::select_kernels(isa), format);
    const size_t bytes = cpu::activation_row_bytes(dtype, cols);
    py::array_t<uint8_t> out({rows, bytes});
    const float* src = values.data();
    uint8_t* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        for (size_t r = 0; r < rows; ++r) quantize(src + r * cols, dst + r * bytes, cols);
    }
    return out;
}

// The float32 values of `data` (row-major `dtype` blocks) with the given shape.
py::array_t<float> dequantize_rows(const py::array_t<uint8_t, py::array::c_style | py::array::forcecast>& data,
                                   const std::string& dtype_text, const std::vector<int64_t>& shape) {
    const DType dtype = parse_dtype(dtype_text);
    if (shape.empty()) throw InvalidArgument("dequantize needs a shape with at least one dimension");
    size_t count = 1;
    for (int64_t dim : shape) {
        if (dim < 0) throw InvalidArgument("dequantize: negative dimension in shape");
        count *= static_cast<size_t>(dim);
    }
    const auto cols = static_cast<size_t>(shape.back());
    if (count > 0) check_row_length(dtype, cols);
    const size_t rows = count == 0 ? 0 : count / cols;
    const size_t bytes = rows * row_bytes(dtype, cols);
    if (static_cast<size_t>(data.size()) != bytes) {
        throw InvalidArgument("dequantize: " + std::to_string(bytes) + " bytes of " + dtype_name(dtype) +
                              " expected for that shape, got " + std::to_string(data.size()));
    }
    py::array_t<float> out(std::vector<py::ssize_t>(shape.begin(), shape.end()));
    const uint8_t* src = data.data();
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        quant::dequantize_row(dtype, src, dst, count);
    }
    return out;
}

// A token id from a Python int. An id beyond int32 is outside every vocabulary: it gets the same
// ValueError as any other id outside this one, not a failed conversion.
int32_t token_id(int64_t id, size_t index, const Session& session) {
    session.check_token_id(id, index);
    return static_cast<int32_t>(id);
}

std::vector<int32_t> token_ids(const std::vector<int64_t>& ids, const Session& session) {
    std::vector<int32_t> tokens(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) tokens[i] = token_id(ids[i], i, session);
    return tokens;
}

// A batch's sessions, checked against None (which pybind11 passes as a null pointer).
void check_batch(const std::vector<Session*>& sessions, size_t n_inputs, const char* what) {
    if (sessions.size() != n_inputs) throw InvalidArgument(std::string(what) + " per session is needed");
    for (const Session* session : sessions) {
        if (session == nullptr) throw InvalidArgument("a batch holds None instead of a session");
    }
}

// A property getter that may wait for a session's lock (held through a whole append): it waits
// without the GIL, so other Python threads keep running meanwhile.
template <typename Getter>
py::cpp_function getter_without_gil(Getter getter) {
    return py::cpp_function(getter, py::call_guard<py::gil_scoped_release>());
}

py::array_t<float> to_numpy(const std::vector<float>& values, size_t rows, size_t cols, bool matrix) {
    py::array_t<float> array = matrix ? py::array_t<float>({rows, cols}) : py::array_t<float>(cols);
    std::memcpy(array.mutable_data(), values.data(), values.size() * sizeof(float));
    return array;
}

// A token mask from Python (a 1-D C-contiguous array of 4-byte integers, as a grammar engine
// writes it), viewed in place; the caller keeps the array alive while the view is used.
std::optional<TokenMask> mask_view(const std::optional<py::array>& mask) {
    if (!mask || mask->is_none()) return std::nullopt;
    const py::array& array = *mask;
    const char kind = array.dtype().kind();
    if (array.ndim() != 1 || array.itemsize() != 4 || (kind != 'i' && kind != 'u') ||
        !(array.flags() & py::array::c_style)) {
        throw InvalidArgument("a token mask is a 1-D C-contiguous array of 32-bit integers");
    }
    return TokenMask{static_cast<const uint32_t*>(array.data()), static_cast<size_t>(array.size())};
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "lfmrt's C++ runtime (internal; use the lfmrt package)";

    py::register_exception_translator([](std::exception_ptr error) {
        try {
            if (error) std::rethrow_exception(error);
        } catch (const LoadError& e) {
            py::object cls = py::module_::import("lfmrt.errors").attr("LoadError");
            PyErr_SetString(cls.ptr(), e.what());
        } catch (const InvalidArgument& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        } catch (const ConstraintError& e) {
            py::object cls = py::module_::import("lfmrt.errors").attr("ConstraintError");
            PyErr_SetString(cls.ptr(), e.what());
        } catch (const OutOfDeviceMemory& e) {
            PyErr_SetString(PyExc_MemoryError, e.what());
        }
    });

    py::enum_<LayerKind>(m, "LayerKind")
        .value("SHORT_CONV", LayerKind::ShortConv)
        .value("ATTENTION", LayerKind::Attention);

    py::class_<ModelConfig>(m, "ModelConfig")
        .def(py::init<>())
        .def_readwrite("vocab_size", &ModelConfig::vocab_size)
        .def_readwrite("hidden_size", &ModelConfig::hidden_size)
        .def_readwrite("ff_dim", &ModelConfig::ff_dim)
        .def_readwrite("layers", &ModelConfig::layers)
        .def_readwrite("n_heads", &ModelConfig::n_heads)
        .def_readwrite("n_kv_heads", &ModelConfig::n_kv_heads)
        .def_readwrite("head_dim", &ModelConfig::head_dim)
        .def_readwrite("conv_kernel", &ModelConfig::conv_kernel)
        .def_readwrite("conv_bias", &ModelConfig::conv_bias)
        .def_readwrite("norm_eps", &ModelConfig::norm_eps)
        .def_readwrite("rope_theta", &ModelConfig::rope_theta)
        .def_readwrite("max_context", &ModelConfig::max_context)
        .def_readwrite("tie_embeddings", &ModelConfig::tie_embeddings);

    py::class_<Model, std::shared_ptr<Model>>(m, "Model")
        .def(py::init([](ModelConfig config, const py::dict& tensors, py::object storage, int n_threads,
                         std::string device, const std::string& kv_dtype) {
                 auto keep_alive = std::make_shared<PythonKeepAlive>();
                 keep_alive->object = std::move(storage);
                 ModelOptions options;
                 options.n_threads = n_threads;
                 options.device = std::move(device);
                 options.kv_dtype = dtype_from_name(kv_dtype);
                 return std::make_shared<Model>(std::move(config), tensor_views(tensors), std::move(keep_alive),
                                                options);
             }),
             py::arg("config"), py::arg("tensors"), py::arg("storage"), py::arg("n_threads"), py::arg("device") = "",
             py::arg("kv_dtype") = "F16")
        .def_property_readonly("n_threads", &Model::n_threads)
        .def_property_readonly("device", &Model::device)
        .def_property_readonly("weight_bytes", &Model::weight_bytes)
        .def_property_readonly("workspace_bytes", getter_without_gil(&Model::workspace_bytes))
        .def_property_readonly("kv_dtype", [](const Model& model) { return std::string(dtype_name(model.kv_dtype())); })
        .def_property_readonly("kernel_set", &Model::kernel_set)
        .def_property_readonly("fingerprint", &Model::fingerprint);

    py::class_<SessionOptions>(m, "SessionOptions")
        .def(py::init<>())
        .def_readwrite("checkpoint_interval", &SessionOptions::checkpoint_interval)
        .def_readwrite("max_checkpoints", &SessionOptions::max_checkpoints);

    py::class_<Session>(m, "Session")
        .def(py::init([](const std::shared_ptr<Model>& model, SessionOptions options) {
                 return std::make_unique<Session>(model, options);
             }),
             py::arg("model"), py::arg("options") = SessionOptions())
        .def(
            "append",
            [](Session& session, const std::vector<int64_t>& ids, size_t chunk_size, bool all_logits) {
                const std::vector<int32_t> tokens = token_ids(ids, session);
                std::vector<float> logits;
                {
                    py::gil_scoped_release release;
                    logits = session.append(tokens, chunk_size, all_logits);
                }
                const auto vocab = static_cast<size_t>(session.model().config().vocab_size);
                return to_numpy(logits, all_logits ? tokens.size() : 1, vocab, all_logits);
            },
            py::arg("tokens"), py::arg("chunk_size"), py::arg("all_logits") = false)
        // Methods that take the session's lock wait for it without the GIL.
        .def("rewind", &Session::rewind, py::arg("n_tokens"), py::arg("chunk_size"),
             py::call_guard<py::gil_scoped_release>())
        .def("checkpoint", &Session::checkpoint, py::call_guard<py::gil_scoped_release>())
        .def("fork", &Session::fork, py::call_guard<py::gil_scoped_release>())
        .def("reset", &Session::reset, py::call_guard<py::gil_scoped_release>())
        .def("save", [](const Session& session) {
            std::string snapshot;
            {
                py::gil_scoped_release release;
                snapshot = session.save();
            }
            return py::bytes(snapshot);
        })
        .def_static(
            "restore",
            [](const std::shared_ptr<Model>& model, const py::bytes& snapshot, SessionOptions options) {
                std::string bytes = snapshot;
                py::gil_scoped_release release;
                return Session::restore(model, bytes, options);
            },
            py::arg("model"), py::arg("snapshot"), py::arg("options") = SessionOptions())
        .def_static(
            "append_batch",
            [](const std::vector<Session*>& sessions, const std::vector<std::vector<int64_t>>& ids, size_t chunk_size) {
                check_batch(sessions, ids.size(), "one token list");
                std::vector<std::vector<int32_t>> tokens;
                for (size_t i = 0; i < sessions.size(); ++i) tokens.push_back(token_ids(ids[i], *sessions[i]));
                py::gil_scoped_release release;
                Session::append_batch(sessions, tokens, chunk_size);
            },
            py::arg("sessions"), py::arg("tokens"), py::arg("chunk_size"),
            "Appends tokens[i] to sessions[i] for every i, the sessions sharing each forward step (the\n"
            "weights are read once per step for all of them); each session's logits go to its\n"
            "last_logits. A step runs at most chunk_size tokens in all, in session order. Sessions\n"
            "must be distinct and share one model; ValueError (every session unchanged) for a bad\n"
            "token id or a context overflow in any of them.")
        .def_static(
            "decode_batch",
            [](const std::vector<Session*>& sessions, const std::vector<int64_t>& ids) {
                check_batch(sessions, ids.size(), "one token");
                std::vector<int32_t> tokens;
                for (size_t i = 0; i < sessions.size(); ++i) tokens.push_back(token_id(ids[i], i, *sessions[i]));
                py::gil_scoped_release release;
                Session::decode_batch(sessions, tokens);
            },
            py::arg("sessions"), py::arg("tokens"),
            "One decode step for several sessions: append_batch with one token each.")
        .def_property_readonly("tokens", getter_without_gil(&Session::tokens))
        .def_property_readonly("n_tokens", getter_without_gil(&Session::n_tokens))
        .def_property_readonly("memory_bytes", getter_without_gil(&Session::memory_bytes))
        .def_property_readonly("n_forwarded", getter_without_gil(&Session::n_forwarded))
        .def_property_readonly("n_checkpoints", getter_without_gil(&Session::n_checkpoints))
        .def_property_readonly("last_logits", [](const Session& session) {
            std::vector<float> logits;
            {
                py::gil_scoped_release release;
                logits = session.last_logits();
            }
            return to_numpy(logits, 1, logits.size(), false);
        });

    py::class_<SamplingParams>(m, "SamplingParams")
        .def(py::init<>())
        .def_readwrite("temperature", &SamplingParams::temperature)
        .def_readwrite("top_k", &SamplingParams::top_k)
        .def_readwrite("top_p", &SamplingParams::top_p)
        .def_readwrite("min_p", &SamplingParams::min_p)
        .def_readwrite("repetition_penalty", &SamplingParams::repetition_penalty)
        .def_readwrite("presence_penalty", &SamplingParams::presence_penalty)
        .def_readwrite("frequency_penalty", &SamplingParams::frequency_penalty)
        .def_readwrite("seed", &SamplingParams::seed)
        .def_readwrite("logit_bias", &SamplingParams::logit_bias)
        .def_readwrite("logprobs", &SamplingParams::logprobs)
        .def("validate", &SamplingParams::validate, py::arg("vocab_size"));

    py::class_<Sampler>(m, "Sampler")
        .def(py::init<SamplingParams>(), py::arg("params"))
        .def(
            "sample",
            [](Sampler& sampler, const Session& session, const std::optional<py::array>& mask) {
                const std::optional<TokenMask> token_mask = mask_view(mask);
                py::gil_scoped_release release;
                return session.read_state([&](const std::vector<float>& logits, const std::vector<int32_t>& tokens) {
                    if (logits.empty()) throw InvalidArgument("the session has no logits yet: append tokens first");
                    return sampler.sample(logits.data(), logits.size(), tokens, token_mask ? &*token_mask : nullptr);
                });
            },
            py::arg("session"), py::arg("mask") = py::none(),
            "Samples the next token from the session's last logits; `mask` (32-bit words, bit t % 32 of\n"
            "word t / 32 set = token t allowed) restricts it before every other step.")
        .def(
            "sample_logits",
            [](Sampler& sampler, py::array_t<float, py::array::c_style | py::array::forcecast> logits,
               const std::vector<int32_t>& history, const std::optional<py::array>& mask) {
                if (logits.ndim() != 1 || logits.size() == 0) throw InvalidArgument("logits must be a non-empty 1-D array");
                const std::optional<TokenMask> token_mask = mask_view(mask);
                py::gil_scoped_release release;
                return sampler.sample(logits.data(), static_cast<size_t>(logits.size()), history,
                                      token_mask ? &*token_mask : nullptr);
            },
            py::arg("logits"), py::arg("history") = std::vector<int32_t>(), py::arg("mask") = py::none(),
            "Samples a token from the given logits; `history` is the context, for penalties; `mask` as\n"
            "for sample().")
        .def_property_readonly(
            "last_logprobs",
            [](const Sampler& sampler) -> py::object {
                if (sampler.params().logprobs < 0) return py::none();
                const TokenLogprobs& recorded = sampler.last_logprobs();
                return py::make_tuple(recorded.logprob, recorded.top);
            },
            "(logprob of the last sampled token, [(token, logprob), ...] most likely first), or None\n"
            "when the sampler records no log-probabilities (params.logprobs = -1).");

    m.def("quantize", &quantize_rows, py::arg("array"), py::arg("dtype"),
          "Quantizes each row of a 2-D float32 array to a GGUF block type (or F32/F16/BF16): a\n"
          "[rows, row_bytes] uint8 array in GGUF's layout.");
    m.def("dequantize", &dequantize_rows, py::arg("data"), py::arg("dtype"), py::arg("shape"),
          "The float32 array of the given shape that `data` (uint8, GGUF layout) encodes.");
    m.def("quantize_activations", &quantize_activations, py::arg("array"), py::arg("weight_dtype"),
          py::arg("isa") = "",
          "Each row of a 2-D float32 array as the `isa` kernel set's integer kernels take it for\n"
          "matrices of `weight_dtype`: [rows, bytes] uint8 of 40-byte blocks (fp32 scale, fp32\n"
          "scale * sum of levels, 32 int8 levels). For tests against llama.cpp's activations.");
    py::class_<DeviceInfo>(m, "DeviceInfo")
        .def_readonly("id", &DeviceInfo::id)
        .def_readonly("name", &DeviceInfo::name)
        .def_readonly("kind", &DeviceInfo::kind)
        .def_readonly("memory_bytes", &DeviceInfo::memory_bytes)
        .def_readonly("fp16", &DeviceInfo::fp16)
        .def_readonly("subgroups", &DeviceInfo::subgroups)
        .def_readonly("details", &DeviceInfo::details);
    m.def("list_devices", &list_devices, py::call_guard<py::gil_scoped_release>(),
          "The devices this build and machine offer, the CPU first.");
    m.def("cpu_features", &cpu::cpu_features, "CPU features that matter to lfmrt's kernels.");
    m.def("kernel_sets", &cpu::kernel_sets, "The kernel sets of this build that this CPU runs, lowest first.");
    m.def(
        "kernel_set", [](const std::string& isa) { return std::string(cpu::select_kernels(isa).name); },
        py::arg("isa") = "",
        "The kernel set a model asking for `isa` gets (\"\" = the best this CPU runs); ValueError for\n"
        "an unknown name or a set this CPU cannot run.");
}
