// One block of a backend's state pool (a KV page, a conv state), owned: released to its pool
// when destroyed. Shared ownership (std::shared_ptr<Block>) is how forks share KV pages
// copy-on-write and conv checkpoints.
#pragma once

#include <cstdint>

#include "lfmrt/backend.h"

namespace lfmrt {

class Block {
public:
    explicit Block(backend::BlockPool& pool) : pool_(pool), id_(pool.allocate()) {}
    ~Block() { pool_.release(id_); }
    Block(const Block&) = delete;
    Block& operator=(const Block&) = delete;

    uint32_t id() const { return id_; }
    backend::BlockPool& pool() const { return pool_; }

private:
    backend::BlockPool& pool_;
    uint32_t id_;
};

}  // namespace lfmrt
