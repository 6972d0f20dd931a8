// Session snapshots: a versioned binary format tied to a model fingerprint, independent of the
// backend (a snapshot saved on one device restores on another) and of the KV storage type (rows
// are converted when the restoring model stores its KV cache in another type).
//
// Layout (little-endian): magic "LFMRTSES", u32 version, u64 model fingerprint, u64 payload
// size, u64 FNV-1a hash of the payload, then the payload:
//   the saving model's architecture_summary (u64 length + text),
//   the tokens (u64 count + int32 each),
//   u32 KV dtype, u64 attention layers, u64 KV row width (kv heads * head_dim), and per attention
//   layer its keys' then its values' rows (u64 byte count + rows, a position after another, each
//   row the kv heads' slices in the KV dtype),
//   the conv state (u64 count + fp32: [conv layer][kernel - 1][hidden]),
//   u64 checkpoints, each a u64 position and a conv state as above.
// Reading checks every length against the model before it copies anything, so a corrupt or
// truncated snapshot is refused with a LoadError, as is another model's (saying what differs).
#pragma once

#include <string>
#include <vector>

#include "lfmrt/model.h"
#include "state/conv_checkpoints.h"
#include "state/sequence_state.h"

namespace lfmrt {

std::string write_snapshot(const Model& model, const std::vector<int32_t>& tokens, const SequenceState& state,
                           const ConvCheckpoints& checkpoints);

// Fills an empty session's tokens, state and checkpoints.
void read_snapshot(const Model& model, const std::string& snapshot, std::vector<int32_t>& tokens,
                   SequenceState& state, ConvCheckpoints& checkpoints);

}  // namespace lfmrt
