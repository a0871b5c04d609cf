// What charrnn knows about each recurrent cell, stated once: how many gates a
// layer has and in which order PyTorch lays them out, how many state tensors
// the cell carries, and how the step decoder rearranges its weights. The
// model, the trainer, the decoder, the export and the benchmark read these
// facts instead of asking which cell they have. Only the numeric kernels
// switch on the cell, where the arithmetic itself differs: kernels/fused_rnn.cpp, the
// step decoder's per-cell step, the exported module's step, and model.cpp,
// which picks LibTorch's module for the cell.
//
// Shape legend: I input size, H hidden, G gates. Each of a layer's weights,
// w_ih (G*H, I), w_hh (G*H, H), b_ih and b_hh (G*H), is G blocks of H rows,
// one per gate, in gate_order.
//
// Everything here is constexpr: a kernel can static_assert the layout it is
// written for, and reading a fact costs nothing in a hot loop.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "charrnn/config.h"

namespace charrnn {

struct CellFacts {
  /// G: gates per layer, each an H-row block of w_ih, w_hh, b_ih and b_hh.
  int64_t gates;
  /// The blocks' order in PyTorch's weights (so in checkpoints, golden files
  /// and exports), one letter per gate: LSTM input, forget, cell (g),
  /// output; GRU reset, update, new (n); the plain RNN's one block is its
  /// pre-activation (h).
  std::string_view gate_order;
  /// Tensors in a State (model.h): h, and c for a cell with a cell state.
  int64_t state_tensors;

  /// StepDecoder's layout (step_decoder.h). Its one matrix per layer
  /// multiplies [input; h] at once, so each H-row block k of it is block
  /// decoder_ih[k] of w_ih beside block decoder_hh[k] of w_hh (-1: zeros
  /// there), and its bias is the sum of the same blocks of b_ih and b_hh.
  /// The LSTM's blocks are reordered to (i, f, o, g) so that one sigmoid
  /// covers three; the GRU's n gate needs W_in x and W_hn h apart (r scales
  /// only the second), so it takes two blocks.
  int64_t decoder_blocks;
  std::array<int64_t, 4> decoder_ih, decoder_hh;
  /// How many of the decoder's leading blocks take a sigmoid as they are.
  int64_t decoder_sigmoid_blocks;

  constexpr bool has_cell_state() const { return state_tensors == 2; }
  /// The block of the gate named `letter` in gate_order.
  constexpr int64_t gate(char letter) const { return static_cast<int64_t>(gate_order.find(letter)); }
};

inline constexpr CellFacts kRnnFacts{1, "h", 1, 1, {0, -1, -1, -1}, {0, -1, -1, -1}, 0};
inline constexpr CellFacts kGruFacts{3, "rzn", 1, 4, {0, 1, 2, -1}, {0, 1, -1, 2}, 2};
inline constexpr CellFacts kLstmFacts{4, "ifgo", 2, 4, {0, 1, 3, 2}, {0, 1, 3, 2}, 3};

/// The gate blocks in the order ONNX's LSTM, GRU and RNN operators lay them
/// out, named by gate_order's letters: ONNX's LSTM is (i, o, f, c), c being
/// PyTorch's g; its GRU is (z, r, h), h being n (with linear_before_reset=1,
/// which is PyTorch's GRU). export_onnx.cpp reorders the weights by it.
constexpr std::string_view onnx_gate_order(CellType cell) {
  switch (cell) {
    case CellType::RNN: return "h";
    case CellType::GRU: return "zrn";
    case CellType::LSTM: break;
  }
  return "iofg";
}

constexpr const CellFacts& cell_facts(CellType cell) {
  switch (cell) {
    case CellType::RNN: return kRnnFacts;
    case CellType::GRU: return kGruFacts;
    case CellType::LSTM: break;
  }
  return kLstmFacts;
}

}  // namespace charrnn
