// Fused recurrent layers for training on the CPU, with hand-written backward
// passes, in the manner of torch-rnn's LSTM. LibTorch's nn::LSTM/GRU/RNN run
// autograd through every time step: per step it records a dozen small ops and
// accumulates weight gradients one small product at a time. Here:
//   - the input projections of all time steps are one matrix product;
//   - only the recurrent product h_{t-1} W_hh^T stays in the time loop;
//   - the backward loop computes gate gradients in one pass over saved
//     activations (no transcendental functions), and the weight gradients of
//     all time steps are again single large products.
// Same parameters, same gate order and the same maths as PyTorch's cells;
// tests/test_fused_rnn.cpp checks outputs and gradients against nn::LSTM/GRU/RNN.
//
// Shape legend: T time, B batch, I input size, H hidden, G gates (cell.h: 4 LSTM, 3 GRU, 1 RNN).
// Inputs and outputs are time-major: x (T, B, I) -> out (T, B, H).
#pragma once

#include <torch/torch.h>

#include "charrnn/config.h"

namespace charrnn {

struct FusedLayerOutput {
  torch::Tensor out;  // (T, B, H)
  torch::Tensor h;    // (B, H) final hidden state
  torch::Tensor c;    // (B, H) final cell state, LSTM only
};

/// One layer, differentiable with respect to x, h0, c0 and all four weights.
/// x: (T, B, I) float32 on the CPU; h0, c0: (B, H); w_ih: (G*H, I);
/// w_hh: (G*H, H); b_ih, b_hh: (G*H). c0 is ignored except for LSTM.
FusedLayerOutput fused_rnn_layer(CellType cell, const torch::Tensor& x, const torch::Tensor& h0,
                                 const torch::Tensor& c0, const torch::Tensor& w_ih, const torch::Tensor& w_hh,
                                 const torch::Tensor& b_ih, const torch::Tensor& b_hh);

/// The same for a first layer fed by an embedding: x = embedding_weight[ids],
/// ids (T, B) int64, embedding_weight (V, I). Its input projections are rows
/// of embedding_weight W_ih^T + bias, one (V, I) x (I, G*H) product instead of
/// a (T*B, I) one, and its backward scatters the gates' gradients into V rows
/// instead of two more (T*B)-row products; differentiable with respect to the
/// embedding too.
FusedLayerOutput fused_rnn_embedded_layer(CellType cell, const torch::Tensor& ids,
                                          const torch::Tensor& embedding_weight, const torch::Tensor& h0,
                                          const torch::Tensor& c0, const torch::Tensor& w_ih,
                                          const torch::Tensor& w_hh, const torch::Tensor& b_ih,
                                          const torch::Tensor& b_hh);

/// Whether the fused layers handle this input (float32 on the CPU).
bool fused_rnn_supported(const torch::Tensor& x);

}  // namespace charrnn
