// Export to a folder that is a complete, static, client-side app: the
// weights as raw float32 files in ml5.js 0.12.2's checkpoint layout, the
// runtime charrnn.js (src/web/charrnn.js: every cell at every depth, with
// charrnn's own sampler, so a seed gives the text `charrnn generate` gives)
// and the playground page index.html (src/web/index.html). No server, CDN or
// build step: any static host, or `python3 -m http.server`, serves it.
//
// The folder (format_version 1; docs/web.md is the reference):
//   manifest.json  ml5's manifest: {variable name: {filename, shape}}
//   <weights>      raw little-endian float32, row-major, one file per variable
//   vocab.json     ml5's vocabulary: {character: id}
//   charrnn.json   what ml5's format cannot say: cell, sizes, the vocabulary
//                  as code points with each character's count in the
//                  training text, the sampling defaults, the version, the
//                  training summary, the manifest keys of each weight, and
//                  a load check (probabilities for a fixed input)
//   charrnn.js, index.html, probabilities.js (the page's "show probabilities")
//   charrnn.wasm   charrnn.js's matrix-vector kernel in WebAssembly SIMD
//                  (src/web/charrnn.wat), when the build had wat2wasm
//                  (CHARRNN_WEB_KERNEL); charrnn.js runs plain JS without it
// Variables, for V characters, E embedding, H hidden, layer input I:
//   embedding [V, E]; rnnlm/softmax_w [H, V] (logits = h @ w + b); rnnlm/softmax_b [V]
//   LSTM: rnnlm/multi_rnn_cell/cell_<l>/basic_lstm_cell/kernel [I + H, 4H] and
//     bias [4H] in TensorFlow's BasicLSTMCell layout, which ml5 runs: gates
//     i, j (candidate), f, o as columns of concat(x, h) @ kernel, biases
//     summed, and the forget gate's 1.0 taken out because TF adds it back
//   GRU, RNN: .../cell_<l>/gru_cell/ or rnn_cell/ + weight_ih [G*H, I],
//     weight_hh [G*H, H], bias_ih, bias_hh [G*H], PyTorch's layout (TF's GRU
//     resets h before its product, PyTorch's after, so no TF layout fits)
#pragma once

#include <cstdint>
#include <string>

#include "charrnn/checkpoint.h"

namespace charrnn {

constexpr int kWebFormatVersion = 1;

/// What an export wrote.
struct WebExport {
  /// True for a 2-layer LSTM, the only model ml5.js 0.12.2's charRNN reads.
  bool ml5_compatible = false;
  /// Why ml5 cannot read it ("" when it can).
  std::string ml5_limitation;
  int64_t weight_bytes = 0;  ///< the float32 weight files together
  int64_t folder_bytes = 0;  ///< every file of the folder together
};

/// Writes the web folder of `checkpoint` to `dir` atomically: it is built
/// under a temporary name beside `dir` and renamed into place, so no
/// half-written folder is ever left under the final name. An existing `dir`
/// is replaced only when it is empty or an earlier web export (it holds
/// charrnn.json); anything else is an Error, never overwritten.
WebExport export_web(const Checkpoint& checkpoint, const std::string& dir);

}  // namespace charrnn
