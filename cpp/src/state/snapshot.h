// Session snapshots: a versioned binary format tied to a model fingerprint.
//
// Layout (little-endian): magic "LFMRTSES", u32 version, u64 model fingerprint, u64 payload
// size, u64 FNV-1a hash of the payload, then the payload: the tokens, each layer's conv state or
// KV rows, and the conv checkpoints. Reading checks every length against the model before it
// copies anything, so a corrupt or truncated snapshot is refused with a LoadError.
#pragma once

#include <string>
#include <vector>

#include "lfmrt/model.h"
#include "state/conv_checkpoints.h"
#include "state/sequence_state.h"

namespace lfmrt {

std::string write_snapshot(const Model& model, const std::vector<int32_t>& tokens, SequenceState& state,
                           const ConvCheckpoints& checkpoints);

void read_snapshot(const Model& model, const std::string& snapshot, std::vector<int32_t>& tokens,
                   SequenceState& state, ConvCheckpoints& checkpoints);

}  // namespace lfmrt
