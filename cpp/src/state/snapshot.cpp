#include "state/snapshot.h"

#include <cstring>

#include "lfmrt/error.h"

namespace lfmrt {

namespace {

constexpr char kMagic[8] = {'L', 'F', 'M', 'R', 'T', 'S', 'E', 'S'};
constexpr uint32_t kVersion = 1;

uint64_t fnv1a(const char* data, size_t size) {
    uint64_t hash = 1469598103934665603ull;
    for (size_t i = 0; i < size; ++i) {
        hash ^= static_cast<unsigned char>(data[i]);
        hash *= 1099511628211ull;
    }
    return hash;
}

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
    // Reads a length-prefixed array that must hold exactly `expected` elements.
    template <typename T>
    void get_array(T* out, size_t expected, const char* what) {
        const auto count = get<uint64_t>(what);
        if (count != expected) {
            throw LoadError(std::string("session snapshot: ") + what + " has " + std::to_string(count) +
                            " values where this model needs " + std::to_string(expected));
        }
        need(count * sizeof(T), what);
        std::memcpy(out, data_ + offset_, count * sizeof(T));
        offset_ += count * sizeof(T);
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

void write_conv(Writer& out, const std::vector<ConvState>& conv) {
    for (const ConvState& layer : conv) out.put_array(layer.history.data(), layer.history.size());
}

void read_conv(Reader& in, std::vector<ConvState>& conv) {
    for (ConvState& layer : conv) in.get_array(layer.history.data(), layer.history.size(), "a conv state");
}

}  // namespace

std::string write_snapshot(const Model& model, const std::vector<int32_t>& tokens, SequenceState& state,
                           const ConvCheckpoints& checkpoints) {
    Writer payload;
    payload.put_array(tokens.data(), tokens.size());
    write_conv(payload, state.conv);
    for (KvCache& cache : state.kv) {
        payload.put<uint32_t>(static_cast<uint32_t>(cache.dtype()));
        payload.put<uint64_t>(cache.row_width());
        std::vector<uint8_t> rows(2 * cache.n_positions() * cache.row_bytes());
        for (size_t p = 0; p < cache.n_positions(); ++p) {
            uint8_t* keys = rows.data() + 2 * p * cache.row_bytes();
            cache.read_raw(p, keys, keys + cache.row_bytes());
        }
        payload.put_array(rows.data(), rows.size());
    }
    payload.put<uint64_t>(checkpoints.all().size());
    for (const auto& checkpoint : checkpoints.all()) {
        payload.put<uint64_t>(checkpoint.position);
        write_conv(payload, checkpoint.conv);
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
    if (in.get<uint64_t>("the header") != model.fingerprint()) {
        throw LoadError("session snapshot was made with a different model (fingerprint mismatch)");
    }
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
    const auto n_tokens = body.get<uint64_t>("the token count");
    const auto& config = model.config();
    if (n_tokens > static_cast<uint64_t>(config.max_context)) {
        throw LoadError("session snapshot holds " + std::to_string(n_tokens) + " tokens, more than the context length");
    }
    body.need(n_tokens * sizeof(int32_t), "the tokens");
    tokens.resize(n_tokens);
    std::memcpy(tokens.data(), payload + sizeof(uint64_t), n_tokens * sizeof(int32_t));
    Reader rest(payload + sizeof(uint64_t) + n_tokens * sizeof(int32_t),
                payload_size - sizeof(uint64_t) - n_tokens * sizeof(int32_t));
    for (int32_t token : tokens) {
        if (token < 0 || token >= config.vocab_size) throw LoadError("session snapshot holds an out-of-vocabulary token");
    }
    read_conv(rest, state.conv);
    for (KvCache& cache : state.kv) {
        if (rest.get<uint32_t>("a KV cache") != static_cast<uint32_t>(cache.dtype())) {
            throw LoadError(std::string("session snapshot's KV cache type differs from this model's (") +
                            dtype_name(cache.dtype()) + ")");
        }
        if (rest.get<uint64_t>("a KV cache") != cache.row_width()) {
            throw LoadError("session snapshot's KV cache rows do not match this model");
        }
        std::vector<uint8_t> rows(2 * n_tokens * cache.row_bytes());
        rest.get_array(rows.data(), rows.size(), "a KV cache");
        for (size_t p = 0; p < n_tokens; ++p) {
            const uint8_t* keys = rows.data() + 2 * p * cache.row_bytes();
            cache.store_raw(p, keys, keys + cache.row_bytes());
        }
    }
    state.n_past = n_tokens;
    const auto n_checkpoints = rest.get<uint64_t>("the checkpoint count");
    if (n_checkpoints > checkpoints.max_count()) throw LoadError("session snapshot holds too many checkpoints");
    std::vector<ConvCheckpoints::Checkpoint> restored;
    for (uint64_t i = 0; i < n_checkpoints; ++i) {
        ConvCheckpoints::Checkpoint checkpoint{rest.get<uint64_t>("a checkpoint"), state.conv};
        if (checkpoint.position > n_tokens || (!restored.empty() && checkpoint.position <= restored.back().position)) {
            throw LoadError("session snapshot's checkpoints are out of order");
        }
        read_conv(rest, checkpoint.conv);
        restored.push_back(std::move(checkpoint));
    }
    if (!rest.done()) throw LoadError("session snapshot has trailing bytes");
    checkpoints.restore_all(std::move(restored));
}

}  // namespace lfmrt
