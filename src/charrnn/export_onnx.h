// Export to a standard ONNX model (opset kOnnxOpset), for onnxruntime and any
// other ONNX runtime, in Python, JavaScript (onnxruntime-node, -web) or C++.
//
// Shape legend: B batch, T time, L layers, H hidden, E embedding, V vocabulary.
// Both B and T are dynamic dims, named "batch" and "time".
//   inputs:  ids    int64 (B, T)     character ids (the vocabulary below)
//            h0     float (L, B, H)  the state; zeros to start
//            c0     float (L, B, H)  lstm only: the cell state
//   outputs: logits float (B, T, V)  the same as charrnn's forward (no softmax)
//            hn     float (L, B, H)  the state after the last step; feed it back
//            cn     float (L, B, H)  lstm only
// so a caller runs a prime at once, then steps one character at a time
// feeding hn (and cn) back as h0 (and c0).
//
// The graph: Gather (embedding), Transpose to time-major, one ONNX LSTM / GRU
// (linear_before_reset=1) / RNN (tanh) node per layer with its slice of h0
// (and c0), Transpose back, MatMul + Add (the head). Time-major because
// onnxruntime's CPU recurrent kernels reject layout=1. The weights are
// reordered into ONNX's gate order (cell.h, onnx_gate_order) and the biases
// stored as ONNX's [Wb, Rb] pair.
//
// metadata_props (all strings): charrnn.format ("charrnn-onnx-1"),
// charrnn.vocab (a JSON array of the characters in id order), charrnn.cell,
// charrnn.vocab_size, charrnn.embedding_dim, charrnn.hidden_size,
// charrnn.num_layers, charrnn.sample (the checkpoint's sample section as
// JSON: prime, length, temperature, top_k, top_p, seed), charrnn.config (the
// whole stored config as JSON), charrnn.version, charrnn.trained_steps.
// Sampling itself is left to the caller (docs/onnx.md has examples).
//
// Built with the ONNX protobuf classes of libonnx-dev; onnx's checker and
// shape inference run before anything is written. A charrnn built without
// ONNX (no libonnx-dev found by CMake) throws Error saying so.
#pragma once

#include <cstdint>
#include <string>

#include "charrnn/checkpoint.h"

namespace charrnn {

/// The ONNX operator set the export uses: onnxruntime 1.x has LSTM, GRU and
/// RNN kernels for it.
constexpr int64_t kOnnxOpset = 14;

/// Writes the ONNX model of `checkpoint` to `path` atomically (nothing
/// appears at `path` when anything fails). Throws Error.
void export_onnx(const Checkpoint& checkpoint, const std::string& path);

/// Whether this charrnn was built with ONNX support (libonnx-dev).
bool onnx_export_available();

}  // namespace charrnn
