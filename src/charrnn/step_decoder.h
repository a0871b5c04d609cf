// One character at a time through a CharRNN, for generation.
//
// The module's forward() pays for generality on every call: flattening
// weights, allocating outputs, transposing between batch- and time-major and
// stacking states. A generation step needs none of that. StepDecoder
// rearranges the weights once and keeps every buffer, so a step is one
// matrix-vector product per layer (the input and recurrent matrices side by
// side, multiplying [input; h]) plus in-place element-wise ops:
//
//   x      = [embedding(id); h_0; h_1; ...]           one buffer, (B, E + L*H)
//   gates  = bias_l + W_l · x[input of l; h_l]         W_l = [W_ih | W_hh]
//   LSTM gates are reordered to (i, f, o, g) so one sigmoid covers three.
//   GRU's n gate needs W_in·x and W_hn·h apart: W_l = [[W_ih_rz W_hh_rz];
//   [W_in 0]; [0 W_hn]].
//
// With one stream the products are matrix-vector (BLAS gemv, which OpenBLAS
// threads); with several, matrix-matrix. The logits equal forward()'s up to
// float rounding (tests: 1e-5), not bit for bit: the sums run in a different
// order. The exported TorchScript generate() (export.cpp) runs these same
// ATen ops in the same order on the same rearranged weights, which is what
// keeps its text identical to `charrnn generate`.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "charrnn/model.h"

namespace charrnn {

class StepDecoder {
 public:
  /// Takes copies of the model's weights as they are now, on their device.
  StepDecoder(const CharRNNImpl& model, int64_t streams);

  /// Continues from `state` ((L, B, H) tensors, as forward() returns);
  /// an undefined state starts from zeros.
  void set_state(const State& state);
  /// The current state in forward()'s layout (copies).
  State state() const;

  /// Feeds one id per stream; returns the logits (B, V). The tensor is a
  /// buffer that the next step overwrites.
  const torch::Tensor& step(const int64_t* ids);

 private:
  /// Views into the buffers, made once: creating a view costs as much as a
  /// small element-wise op.
  struct Layer {
    torch::Tensor weight, weight_t, bias;  // (G*H, in + H), its transpose, (G*H)
    torch::Tensor input, input_row;        // (B, in + H) view of x_; row 0 of it
    torch::Tensor hidden, hidden_row;      // (B, H) view of x_; row 0 of it
    torch::Tensor c;                       // (B, H) view of c_, LSTM only
  };
  struct GateViews {
    torch::Tensor all, row;                    // (B, G*H); row 0 of it
    torch::Tensor sigmoid_part, tanh_part;     // LSTM: i,f,o | g; GRU: r,z | -; RNN: - | all
    torch::Tensor g0, g1, g2, g3;              // the four H-wide blocks (LSTM, GRU)
  };
  void lstm_layer(Layer& layer);
  void gru_layer(Layer& layer);
  void rnn_layer(Layer& layer);

  CellType cell_;
  int64_t streams_, layers_, hidden_size_, embedding_dim_;
  torch::Tensor embedding_;                // (V, E)
  std::vector<Layer> layer_;
  torch::Tensor head_weight_, head_weight_t_, head_bias_;
  torch::Tensor x_;                        // (B, E + L*H)
  torch::Tensor c_;                        // (L, B, H), LSTM only
  GateViews gates_;
  torch::Tensor cell_tanh_;                // (B, H)
  torch::Tensor ids_, looked_up_;          // (B) host ids and (B, E) embeddings, for the general path
  torch::Tensor embedded_;                 // (B, E) view of x_
  torch::Tensor logits_, logits_row_;      // (B, V); row 0 of it
};

}  // namespace charrnn
