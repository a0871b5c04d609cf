#include "charrnn/model.h"

namespace charrnn {

State State::detach() const {
  return {h.defined() ? h.detach() : h, c.defined() ? c.detach() : c};
}

State State::to(const torch::Device& device) const {
  return {h.defined() ? h.to(device) : h, c.defined() ? c.to(device) : c};
}

State State::select_batch(const torch::Tensor& rows) const {
  return {h.defined() ? h.index_select(1, rows) : h, c.defined() ? c.index_select(1, rows) : c};
}

CharRNNImpl::CharRNNImpl(int64_t vocab_size, const ModelOptions& options)
    : vocab_size_(vocab_size), options_(options) {
  TORCH_CHECK(vocab_size > 0, "vocabulary must not be empty");
  embedding_ = register_module("embedding", torch::nn::Embedding(vocab_size, options.embedding_dim));
  const double dropout = options.num_layers > 1 ? options.dropout : 0.0;  // LibTorch warns otherwise
  switch (options.cell) {
    case CellType::LSTM:
      lstm_ = register_module("rnn", torch::nn::LSTM(torch::nn::LSTMOptions(options.embedding_dim, options.hidden_size)
                                                         .num_layers(options.num_layers)
                                                         .dropout(dropout)
                                                         .batch_first(true)));
      break;
    case CellType::GRU:
      gru_ = register_module("rnn", torch::nn::GRU(torch::nn::GRUOptions(options.embedding_dim, options.hidden_size)
                                                       .num_layers(options.num_layers)
                                                       .dropout(dropout)
                                                       .batch_first(true)));
      break;
    case CellType::RNN:
      rnn_ = register_module("rnn", torch::nn::RNN(torch::nn::RNNOptions(options.embedding_dim, options.hidden_size)
                                                       .num_layers(options.num_layers)
                                                       .dropout(dropout)
                                                       .nonlinearity(torch::kTanh)
                                                       .batch_first(true)));
      break;
  }
  head_ = register_module("head", torch::nn::Linear(options.hidden_size, vocab_size));
}

std::pair<torch::Tensor, State> CharRNNImpl::forward(const torch::Tensor& input_ids, const State& state) {
  const torch::Tensor embedded = embedding_(input_ids);  // (B, T, E)
  torch::Tensor hidden;                                   // (B, T, H)
  State next;
  if (lstm_) {
    c10::optional<std::tuple<torch::Tensor, torch::Tensor>> hx;
    if (state.defined()) hx = std::make_tuple(state.h, state.c);
    auto [out, hc] = lstm_(embedded, hx);
    hidden = out;
    next = {std::get<0>(hc), std::get<1>(hc)};
  } else if (gru_) {
    auto [out, h] = gru_(embedded, state.h);
    hidden = out;
    next = {h, {}};
  } else {
    auto [out, h] = rnn_(embedded, state.h);
    hidden = out;
    next = {h, {}};
  }
  return {head_(hidden), next};  // logits: (B, T, V)
}

int64_t CharRNNImpl::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

}  // namespace charrnn
