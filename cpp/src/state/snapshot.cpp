#include "state/snapshot.h"

#include <cstring>
#include <map>
#include <sstream>

#include "core/hash.h"
#include "formats/quantize.h"
#include "lfmrt/error.h"

namespace lfmrt {

namespace {

constexpr char kMagic[8] = {'L', 'F', 'M', 'R', 'T', 'S', 'E', 'S'};
constexpr uint32_t kVersion = 2;

class Writer {
public:
    template <typename T>
    void put(const T& value) {
        bytes_.append(reinterpret_cast<const char*>(&value), sizeof(T));
    }
    template <typename T>
    void put_array(const T* values, size_t count) {
        put<uint64_t>(count);
        bytes_.append(reinterpret_cast<const char*>(values), count * sizeof(T));
    }
    std::string& bytes() { return bytes_; }

private:
    std::string bytes_;
};

class Reader {
public:
    Reader(const char* data, size_t size) : data_(data), size_(size) {}

    template <typename T>
    T get(const char* what) {
        need(sizeof(T), what);
        T value;
        std::memcpy(&value, data_ + offset_, sizeof(T));
        offset_ += sizeof(T);
        return value;
    }
    // A length-prefixed array that must hold exactly `expected` elements.
    template <typename T>
    void get_array(T* out, size_t expected, const char* what) {
        const auto count = get<uint64_t>(what);
        if (count != expected) {
            throw LoadError(std::string("session snapshot: ") + what + " has " + std::to_string(count) +
                            " values where this model needs " + std::to_string(expected));
        }
        need(count * sizeof(T), what);
        get_raw(out, count * sizeof(T));
    }
    // A length-prefixed array of at most `limit` elements.
    template <typename T>
    std::vector<T> get_vector(size_t limit, const char* what) {
        const auto count = get<uint64_t>(what);
        if (count > limit) throw LoadError(std::string("session snapshot: ") + what + " is too long");
        std::vector<T> values(count);
        need(count * sizeof(T), what);
        get_raw(values.data(), count * sizeof(T));
        return values;
    }
    // An empty vector's data() may be null, and memcpy's pointers must not be, even for 0 bytes:
    // each copy here skips empty arrays.
    void get_raw(void* out, size_t bytes) {
        if (bytes != 0) std::memcpy(out, data_ + offset_, bytes);
        offset_ += bytes;
    }
    bool done() const { return offset_ == size_; }

    void need(size_t bytes, const char* what) const {
        if (bytes > size_ - offset_) throw LoadError(std::string("session snapshot is truncated in ") + what);
    }

private:
    const char* data_;
    size_t size_;
    size_t offset_ = 0;
};

// `text` from a snapshot as a message may quote it: printable ASCII kept, any other byte as \xNN
// (the message becomes a Python str, which bytes that are not UTF-8 would fail), at most 64 bytes.
std::string quoted(const std::string& text) {
    static const char* const kHex = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < text.size() && i < 64; ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x20 && c < 0x7f) {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 0xF];
        }
    }
    return text.size() > 64 ? out + "..." : out;
}

// Why a snapshot with another fingerprint does not fit: the architecture fields whose values
// differ ("hidden_size 64 in the snapshot, 128 in this model"), else the weights.
std::string fingerprint_mismatch(const std::string& saved, const std::string& current) {
    const auto fields = [](const std::string& summary) {
        std::map<std::string, std::string> values;
        std::istringstream words(summary);
        for (std::string word; words >> word;) {
            const auto equals = word.find('=');
            if (equals != std::string::npos) values[word.substr(0, equals)] = word.substr(equals + 1);
        }
        return values;
    };
    const auto before = fields(saved), now = fields(current);
    std::string differences;
    for (const auto& [name, value] : now) {
        const auto it = before.find(name);
        const std::string old = it == before.end() ? "absent" : quoted(it->second);
        if (old == value) continue;
        differences += (differences.empty() ? "" : "; ") + name + " " + old + " in the snapshot, " + value + " in this model";
    }
    if (!differences.empty()) return "session snapshot was made with a model of another architecture: " + differences;
    return "session snapshot was made with a model of the same architecture but different weights "
           "(another checkpoint, or the same one with other weight types)";
}

void write_conv(Writer& out, const Block* conv, const StateLayout& layout) {
    std::vector<float> values(layout.conv_state_bytes() / sizeof(float));
    if (conv != nullptr) conv->pool().read(conv->id(), 0, layout.conv_state_bytes(), values.data());
    out.put_array(values.data(), values.size());
}

void read_conv(Reader& in, Block* conv, const StateLayout& layout) {
    std::vector<float> values(layout.conv_state_bytes() / sizeof(float));
    in.get_array(values.data(), values.size(), "a conv state");
    if (conv != nullptr) conv->pool().write(conv->id(), 0, layout.conv_state_bytes(), values.data());
}

// Rows of n_heads slices of head_dim values from one KV storage type to another, through fp32.
std::vector<uint8_t> convert_rows(const std::vector<uint8_t>& rows, DType from, DType to, size_t n_slices,
                                  size_t head_dim) {
    const size_t from_bytes = row_bytes(from, head_dim), to_bytes = row_bytes(to, head_dim);
    std::vector<uint8_t> converted(n_slices * to_bytes);
    std::vector<float> values(head_dim);
    for (size_t i = 0; i < n_slices; ++i) {
        quant::dequantize_row(from, rows.data() + i * from_bytes, values.data(), head_dim);
        quant::quantize_row(to, values.data(), converted.data() + i * to_bytes, head_dim);
    }
    return converted;
}

}  // namespace

std::string write_snapshot(const Model& model, const std::vector<int32_t>& tokens, const SequenceState& state,
                           const ConvCheckpoints& checkpoints) {
    const StateLayout& layout = model.state_layout();
    const std::string summary = model.architecture();
    Writer payload;
    payload.put_array(summary.data(), summary.size());
    payload.put_array(tokens.data(), tokens.size());
    payload.put<uint32_t>(static_cast<uint32_t>(layout.kv_dtype));
    payload.put<uint64_t>(layout.n_attention_layers);
    payload.put<uint64_t>(layout.n_kv_heads * layout.head_dim);
    std::vector<uint8_t> rows(state.kv.n_positions() * layout.n_kv_heads * layout.slice_bytes());
    for (size_t layer = 0; layer < layout.n_attention_layers; ++layer) {
        for (bool values : {false, true}) {
            state.kv.read_rows(layer, values, rows.data());
            payload.put_array(rows.data(), rows.size());
        }
    }
    write_conv(payload, state.conv.get(), layout);
    payload.put<uint64_t>(checkpoints.all().size());
    for (const auto& checkpoint : checkpoints.all()) {
        payload.put<uint64_t>(checkpoint.position);
        write_conv(payload, checkpoint.conv.get(), layout);
    }

    Writer out;
    out.bytes().append(kMagic, sizeof kMagic);
    out.put(kVersion);
    out.put(model.fingerprint());
    out.put<uint64_t>(payload.bytes().size());
    out.put(fnv1a(payload.bytes().data(), payload.bytes().size()));
    out.bytes() += payload.bytes();
    return std::move(out.bytes());
}

void read_snapshot(const Model& model, const std::string& snapshot, std::vector<int32_t>& tokens,
                   SequenceState& state, ConvCheckpoints& checkpoints) {
    Reader header(snapshot.data(), snapshot.size());
    header.need(sizeof kMagic, "the header");
    if (std::memcmp(snapshot.data(), kMagic, sizeof kMagic) != 0) {
        throw LoadError("not an lfmrt session snapshot (bad magic)");
    }
    Reader in(snapshot.data() + sizeof kMagic, snapshot.size() - sizeof kMagic);
    const auto version = in.get<uint32_t>("the header");
    if (version != kVersion) {
        throw LoadError("session snapshot version " + std::to_string(version) + " is not supported (expected " +
                        std::to_string(kVersion) + ")");
    }
    const auto fingerprint = in.get<uint64_t>("the header");
    const auto payload_size = in.get<uint64_t>("the header");
    const auto payload_hash = in.get<uint64_t>("the header");
    const size_t header_size = sizeof kMagic + sizeof(uint32_t) + 3 * sizeof(uint64_t);
    if (payload_size != snapshot.size() - header_size) {
        throw LoadError("session snapshot is truncated or padded: the header promises " +
                        std::to_string(payload_size) + " bytes of payload, the snapshot has " +
                        std::to_string(snapshot.size() - header_size));
    }
    const char* payload = snapshot.data() + header_size;
    if (fnv1a(payload, payload_size) != payload_hash) throw LoadError("session snapshot is corrupt (checksum mismatch)");

    Reader body(payload, payload_size);
    const std::vector<char> summary = body.get_vector<char>(payload_size, "the model summary");
    if (fingerprint != model.fingerprint()) {
        throw LoadError(fingerprint_mismatch(std::string(summary.begin(), summary.end()), model.architecture()));
    }
    const ModelConfig& config = model.config();
    const StateLayout& layout = model.state_layout();
    const auto n_tokens = body.get<uint64_t>("the tokens");
    if (n_tokens > static_cast<uint64_t>(config.max_context)) {
        throw LoadError("session snapshot holds " + std::to_string(n_tokens) + " tokens, more than this model's max_context (" +
                        std::to_string(config.max_context) + ")");
    }
    tokens.resize(n_tokens);
    body.need(n_tokens * sizeof(int32_t), "the tokens");
    body.get_raw(tokens.data(), n_tokens * sizeof(int32_t));
    for (int32_t token : tokens) {
        if (token < 0 || token >= config.vocab_size) throw LoadError("session snapshot holds an out-of-vocabulary token");
    }
    const size_t n = tokens.size();

    const auto kv_type = body.get<uint32_t>("the KV cache");
    if (kv_type >= static_cast<uint32_t>(kNumDTypes) || !is_kv_dtype(static_cast<DType>(kv_type))) {
        throw LoadError("session snapshot's KV cache has an unknown storage type");
    }
    const auto saved_dtype = static_cast<DType>(kv_type);
    if (body.get<uint64_t>("the KV cache") != layout.n_attention_layers ||
        body.get<uint64_t>("the KV cache") != layout.n_kv_heads * layout.head_dim) {
        throw LoadError("session snapshot's KV cache does not match this model's attention layers");
    }
    const size_t n_slices = n * layout.n_kv_heads;
    std::vector<uint8_t> rows(n_slices * row_bytes(saved_dtype, layout.head_dim));
    state.kv.prepare_write(0, n);
    for (size_t layer = 0; layer < layout.n_attention_layers; ++layer) {
        for (bool values : {false, true}) {
            body.get_array(rows.data(), rows.size(), "a KV cache");
            if (saved_dtype == layout.kv_dtype) {
                state.kv.write_rows(layer, values, n, rows.data());
            } else {
                state.kv.write_rows(layer, values, n,
                                    convert_rows(rows, saved_dtype, layout.kv_dtype, n_slices, layout.head_dim).data());
            }
        }
    }
    state.kv.written(n);
    read_conv(body, state.conv.get(), layout);
    state.n_past = n;

    const auto n_checkpoints = body.get<uint64_t>("the checkpoint count");
    if (n_checkpoints > checkpoints.max_count()) throw LoadError("session snapshot holds too many checkpoints");
    std::vector<ConvCheckpoints::Checkpoint> restored;
    for (uint64_t i = 0; i < n_checkpoints; ++i) {
        const auto position = body.get<uint64_t>("a checkpoint");
        if (position > n || (!restored.empty() && position <= restored.back().position)) {
            throw LoadError("session snapshot's checkpoints are out of order");
        }
        std::shared_ptr<Block> conv;
        if (state.conv) conv = std::make_shared<Block>(state.conv->pool());
        read_conv(body, conv.get(), layout);
        restored.push_back(ConvCheckpoints::Checkpoint{position, std::move(conv)});
    }
    if (!body.done()) throw LoadError("session snapshot has trailing bytes");
    checkpoints.restore_all(std::move(restored));
}

}  // namespace lfmrt
