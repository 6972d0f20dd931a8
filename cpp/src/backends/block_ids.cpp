#include "backends/block_ids.h"

#include <stdexcept>

namespace lfmrt::backend {

uint32_t BlockIds::take_free() {
    uint32_t id;
    if (!free_ids_.empty()) {
        id = free_ids_.back();
        free_ids_.pop_back();
    } else {
        id = static_cast<uint32_t>(in_use_.size());
        in_use_.push_back(false);
    }
    in_use_[id] = true;
    ++n_in_use_;
    return id;
}

void BlockIds::give_back(uint32_t id) {
    check(id);
    in_use_[id] = false;
    free_ids_.push_back(id);
    --n_in_use_;
}

void BlockIds::check(uint32_t id, size_t offset, size_t bytes) const {
    if (id >= in_use_.size() || !in_use_[id]) throw std::logic_error("a state block was used after its release");
    if (offset + bytes > block_bytes_) throw std::out_of_range("past the end of a state block");
}

}  // namespace lfmrt::backend
