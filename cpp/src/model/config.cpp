#include "lfmrt/config.h"

#include "lfmrt/error.h"

namespace lfmrt {

namespace {
void require(bool ok, const char* field, const std::string& why) {
    if (!ok) throw LoadError(std::string("config field '") + field + "' " + why);
}
}  // namespace

void ModelConfig::validate() const {
    require(vocab_size > 0, "vocab_size", "must be positive");
    require(hidden_size > 0, "hidden_size", "must be positive");
    require(ff_dim > 0, "ff_dim", "must be positive");
    require(!layers.empty(), "layers", "must list at least one layer");
    require(n_heads > 0, "n_heads", "must be positive");
    require(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "n_kv_heads", "must be positive and divide n_heads");
    require(head_dim > 0 && head_dim % 2 == 0, "head_dim", "must be positive and even (RoPE rotates pairs)");
    require(conv_kernel >= 1, "conv_kernel", "must be at least 1");
    require(norm_eps > 0, "norm_eps", "must be positive");
    require(rope_theta > 0, "rope_theta", "must be positive");
    require(max_context > 0, "max_context", "must be positive");
}

}  // namespace lfmrt
