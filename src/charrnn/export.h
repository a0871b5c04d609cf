// Export to a self-contained TorchScript archive that plain PyTorch
// (torch.jit.load), another C++ program (torch::jit::load) or a mobile
// runtime can use with no other file. The archive holds:
//   forward(input_ids: Tensor[B, T] long, state: Optional[List[Tensor]] = None)
//       -> Tuple[Tensor[B, T, V] logits, List[Tensor] new_state]
//     state is None (zeros) or [h] for rnn and gru, [h, c] for lstm, each (L, B, H).
//   generate(prime: str, length: int, temperature: float, top_k: int,
//            top_p: float, seed: int) -> str
//     the same text as `charrnn generate` for the same arguments (the sampler's
//     xorshift128 and every tensor op are reproduced exactly).
//   encode(text: str) -> List[int], decode(ids: List[int]) -> str
//   attributes: vocab (List[str], id -> character), vocab_code_points, counts,
//     cell, vocab_size, embedding_dim, hidden_size, num_layers, config_json,
//     charrnn_version, trained_steps, best_val_loss, check_input_ids and
//     check_logits (charrnn's own logits for a fixed input, to verify a load);
//     state_tensors, decoder_ih_blocks and decoder_hh_blocks (the cell's
//     facts, cell.h, that the methods read).
// The methods are Python, src/charrnn/export_module.py, embedded by the build.
// The recurrence uses the same ATen kernels (torch.lstm / gru / rnn_tanh) as
// the C++ model, so logits agree to the last bit on the same LibTorch.
#pragma once

#include <string>

#include "charrnn/checkpoint.h"

namespace charrnn {

/// Writes the export of `checkpoint` to `path` atomically.
void export_torchscript(const Checkpoint& checkpoint, const std::string& path);

/// True when `path` starts like a TorchScript archive (a zip file).
bool is_torchscript_file(const std::string& path);

/// Reads an export back into a Checkpoint (config, vocabulary, progress and
/// weights; no optimizer state). Throws Error when it is not a charrnn export.
Checkpoint checkpoint_from_torchscript(const std::string& path);

}  // namespace charrnn
