// The character model: embedding -> multi-layer RNN/GRU/LSTM -> linear.
//
// Shape legend: B batch, T time steps, V vocabulary, E embedding, H hidden,
// L layers. All tensors are batch-first.
//
// The recurrent module is registered as "rnn" whatever the cell, so parameter
// names match PyTorch's (rnn.weight_ih_l0, ...) and golden values from Python
// line up. forward() returns logits: temperature belongs to the sampler and
// cross-entropy to the trainer. Callers see one State whatever the cell.
// What differs between cells (gate count and order, state count, weight
// layouts) is stated in cell.h; besides model.cpp, which picks LibTorch's
// module for the cell, only the numeric kernels branch on it.
#pragma once

#include <cstdint>
#include <utility>

#include <torch/torch.h>

#include "charrnn/config.h"

namespace charrnn {

/// The recurrent state, whatever the cell: h for all cells, c only for LSTM.
/// An undefined State means "start from zeros".
struct State {
  torch::Tensor h;  // (L, B, H)
  torch::Tensor c;  // (L, B, H), LSTM only

  bool defined() const { return h.defined(); }
  /// Cuts the autograd history (truncated backprop between windows).
  State detach() const;
  State to(const torch::Device& device) const;
  /// Keeps the given batch rows, e.g. to carry one stream on alone.
  State select_batch(const torch::Tensor& rows) const;
  /// Rows [first, first + rows), as views: a thread's share of a batch.
  State narrow_batch(int64_t first, int64_t rows) const;
  /// States of consecutive batch shares side by side again, in order.
  static State cat_batches(const std::vector<State>& shares);
};

/// Every layer's state after every character of one stream, as the model
/// reads it without dropout: what `charrnn inspect` shows.
struct StateTrace {
  torch::Tensor h;  // (L, T, H): h[l][t] is layer l's h after reading character t
  torch::Tensor c;  // (L, T, H), LSTM only
};

class CharRNNImpl : public torch::nn::Module {
 public:
  CharRNNImpl(int64_t vocab_size, const ModelOptions& options);

  /// input_ids: (B, T) int64. Returns logits (B, T, V) and the new state.
  std::pair<torch::Tensor, State> forward(const torch::Tensor& input_ids, const State& state = {});

  /// input_ids: (T) int64, one stream, read from `state` ((L, 1, H), or
  /// zeros) one step at a time, layer by layer, without gradient or
  /// dropout. Returns every layer's states at every step and the state
  /// after the last step: the last layer's h trace is what forward() (in
  /// eval mode) feeds the head, and the state is the one it returns.
  std::pair<StateTrace, State> trace(const torch::Tensor& input_ids, const State& state = {});

  /// Training through the fused layers with dropout masks drawn beforehand
  /// by draw_dropout_masks() (or a batch slice of them, narrowed on dim 1):
  /// threads that each run part of one batch then use the masks one pass
  /// over the whole batch would have drawn, and never race for the global
  /// generator. Needs uses_fused_layers().
  std::pair<torch::Tensor, State> forward(const torch::Tensor& input_ids, const State& state,
                                          const std::vector<torch::Tensor>& dropout_masks);

  /// The dropout between layers for one (B, T) training batch, drawn from
  /// the global generator exactly as forward() draws them: L-1 masks
  /// (T, B, H), time-major, scaled by 1/(1-p). Empty without such dropout.
  std::vector<torch::Tensor> draw_dropout_masks(int64_t batch, int64_t time, const torch::Device& device) const;

  /// Whether training on `device`, now, runs through the fused layers.
  bool uses_fused_layers(const torch::Device& device) const;

  int64_t vocab_size() const { return vocab_size_; }
  const ModelOptions& options() const { return options_; }
  int64_t parameter_count() const;

  /// Trains through the fused CPU layers (kernels/fused_rnn.h); on by default.
  /// Off, training uses LibTorch's nn:: modules throughout (for comparisons).
  void set_use_fused(bool on) { use_fused_ = on; }

 private:
  std::vector<torch::Tensor> recurrent_weights() const;
  /// input_ids: (B, T); the embedding is folded into the first layer (fused_rnn_embedded_layer)
  std::pair<torch::Tensor, State> forward_fused(const torch::Tensor& input_ids, const State& state,
                                                const std::vector<torch::Tensor>* dropout_masks);
  torch::Tensor dropout_mask(int64_t time, int64_t batch, const torch::TensorOptions& options) const;

  bool use_fused_ = true;
  int64_t vocab_size_;
  ModelOptions options_;
  torch::nn::Embedding embedding_{nullptr};
  // Exactly one of these is non-null; all are registered under "rnn".
  torch::nn::LSTM lstm_{nullptr};
  torch::nn::GRU gru_{nullptr};
  torch::nn::RNN rnn_{nullptr};
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(CharRNN);

/// The number of weights a model of these sizes has, computed without
/// building it. A double: sizes read from an untrusted checkpoint can
/// overflow int64.
double parameter_count(const ModelOptions& model, int64_t vocab_size);
/// Rough bytes a training step needs (weights, gradients, Adam moments and
/// activations), used to refuse sizes that would exhaust memory before allocating.
double estimate_training_bytes(const Config& config, int64_t vocab_size);


}  // namespace charrnn
