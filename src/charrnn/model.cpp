#include "charrnn/model.h"

#include <cmath>
#include <limits>

#include "charrnn/cell.h"
#include "charrnn/kernels/fused_rnn.h"

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

State State::narrow_batch(int64_t first, int64_t rows) const {
  return {h.defined() ? h.narrow(1, first, rows) : h, c.defined() ? c.narrow(1, first, rows) : c};
}

State State::cat_batches(const std::vector<State>& shares) {
  std::vector<torch::Tensor> hs, cs;
  for (const State& share : shares) {
    hs.push_back(share.h);
    if (share.c.defined()) cs.push_back(share.c);
  }
  return {torch::cat(hs, 1), cs.empty() ? torch::Tensor() : torch::cat(cs, 1)};
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
  if (lstm_ && options.forget_bias != 0) {
    // the two biases are summed, so the forget slice of one carries the whole value
    torch::NoGradGuard no_grad;
    const int64_t H = options.hidden_size, forget = kLstmFacts.gate('f') * H;
    for (const auto& item : lstm_->named_parameters()) {
      if (item.key().rfind("bias_ih_l", 0) == 0) item.value().narrow(0, forget, H).fill_(options.forget_bias);
      if (item.key().rfind("bias_hh_l", 0) == 0) item.value().narrow(0, forget, H).zero_();
    }
  }
}

std::vector<torch::Tensor> CharRNNImpl::recurrent_weights() const {
  if (lstm_) return lstm_->all_weights();
  if (gru_) return gru_->all_weights();
  return rnn_->all_weights();
}

// Training on the CPU goes through the fused layers (kernels/fused_rnn.h), which
// share the nn:: module's parameters. Inference keeps LibTorch's kernels, so
// logits are bit-identical to the TorchScript export's (export.cpp).
// A dropout mask of keep / (1 - dropout) and zeros. On the CPU each element
// comes from a counter-based hash (splitmix64's finaliser) of its index and
// one 64-bit key drawn from the global generator: a whole (T, B, H) mask in
// one pass, where bernoulli_ draws element by element from the Mersenne
// Twister. The key is the only draw, so masks still follow the generator's
// state (a resumed run draws the same ones) and masks drawn ahead of time
// for a whole batch equal those one pass draws layer by layer.
torch::Tensor CharRNNImpl::dropout_mask(int64_t time, int64_t batch, const torch::TensorOptions& options) const {
  const double keep = 1.0 - options_.dropout;
  if (options.device().type() != torch::kCPU || options.dtype() != torch::kFloat)
    return torch::empty({time, batch, options_.hidden_size}, options).bernoulli_(keep).div_(keep);
  const auto key = static_cast<uint64_t>(
      torch::randint(std::numeric_limits<int64_t>::max(), {1}, torch::TensorOptions(torch::kLong)).item<int64_t>());
  torch::Tensor mask = torch::empty({time, batch, options_.hidden_size}, options);
  float* out = mask.data_ptr<float>();
  const int64_t n = mask.numel();
  // an element is kept when its hash's top 32 bits fall below keep * 2^32
  const auto threshold = static_cast<uint64_t>(std::ldexp(keep, 32));
  const auto kept = static_cast<float>(1.0 / keep);
  for (int64_t i = 0; i < n; ++i) {
    uint64_t z = key + static_cast<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    out[i] = (z >> 32) < threshold ? kept : 0.0f;
  }
  return mask;
}

std::vector<torch::Tensor> CharRNNImpl::draw_dropout_masks(int64_t batch, int64_t time,
                                                           const torch::Device& device) const {
  std::vector<torch::Tensor> masks;
  if (options_.dropout <= 0) return masks;
  const torch::TensorOptions options = embedding_->weight.options().device(device);
  for (int64_t l = 0; l + 1 < options_.num_layers; ++l) masks.push_back(dropout_mask(time, batch, options));
  return masks;
}

bool CharRNNImpl::uses_fused_layers(const torch::Device& device) const {
  return use_fused_ && is_training() && torch::GradMode::is_enabled() && device.is_cpu() &&
         embedding_->weight.scalar_type() == torch::kFloat;
}

namespace {

// what the fused layers take: (B, T) ids with both sizes at least 1
bool is_batch_of_sequences(const torch::Tensor& input_ids) { return input_ids.dim() == 2 && input_ids.numel() > 0; }

}  // namespace

std::pair<torch::Tensor, State> CharRNNImpl::forward_fused(const torch::Tensor& input_ids, const State& state,
                                                           const std::vector<torch::Tensor>* dropout_masks) {
  const int64_t L = options_.num_layers, B = input_ids.size(0), H = options_.hidden_size;
  const std::vector<torch::Tensor> weights = recurrent_weights();  // per layer: w_ih, w_hh, b_ih, b_hh
  const torch::Tensor ids = input_ids.t().to(torch::kLong);          // (T, B), time-major
  const torch::Tensor zeros = torch::zeros({B, H}, embedding_->weight.options());
  torch::Tensor x;  // (T, B, H): the layer below's output
  std::vector<torch::Tensor> hs, cs;
  for (int64_t l = 0; l < L; ++l) {
    const torch::Tensor h0 = state.defined() ? state.h[l] : zeros;
    const torch::Tensor c0 = state.c.defined() ? state.c[l] : zeros;
    const torch::Tensor &w_ih = weights[4 * l], &w_hh = weights[4 * l + 1], &b_ih = weights[4 * l + 2],
                        &b_hh = weights[4 * l + 3];
    FusedLayerOutput layer =
        l == 0 ? fused_rnn_embedded_layer(options_.cell, ids, embedding_->weight, h0, c0, w_ih, w_hh, b_ih, b_hh)
               : fused_rnn_layer(options_.cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh);
    x = layer.out;  // (T, B, H)
    if (options_.dropout > 0 && l + 1 < L)
      x = x * (dropout_masks ? (*dropout_masks)[static_cast<size_t>(l)] : dropout_mask(x.size(0), B, x.options()));
    hs.push_back(layer.h);
    if (layer.c.defined()) cs.push_back(layer.c);
  }
  State next{torch::stack(hs), cs.empty() ? torch::Tensor() : torch::stack(cs)};
  return {head_(x).transpose(0, 1), next};  // logits: (B, T, V), a view of (T, B, V)
}

std::pair<torch::Tensor, State> CharRNNImpl::forward(const torch::Tensor& input_ids, const State& state) {
  if (uses_fused_layers(input_ids.device()) && is_batch_of_sequences(input_ids))
    return forward_fused(input_ids, state, nullptr);
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

std::pair<torch::Tensor, State> CharRNNImpl::forward(const torch::Tensor& input_ids, const State& state,
                                                     const std::vector<torch::Tensor>& dropout_masks) {
  TORCH_CHECK(uses_fused_layers(input_ids.device()), "dropout masks are for training through the fused CPU layers");
  const size_t expected = options_.dropout > 0 ? static_cast<size_t>(options_.num_layers - 1) : 0;
  TORCH_CHECK(dropout_masks.size() == expected, "expected ", expected, " dropout masks, got ", dropout_masks.size());
  TORCH_CHECK(is_batch_of_sequences(input_ids), "expected (batch, time) ids with both sizes >= 1");
  return forward_fused(input_ids, state, &dropout_masks);
}

std::pair<StateTrace, State> CharRNNImpl::trace(const torch::Tensor& input_ids, const State& state) {
  TORCH_CHECK(input_ids.dim() == 1, "trace reads one stream: (T) ids");
  TORCH_CHECK(!state.defined() || state.h.size(1) == 1, "trace reads one stream: a state of batch 1");
  torch::NoGradGuard no_grad;
  const int64_t L = options_.num_layers, T = input_ids.size(0), H = options_.hidden_size;
  const std::vector<torch::Tensor> weights = recurrent_weights();  // per layer: w_ih, w_hh, b_ih, b_hh
  torch::Tensor x = embedding_(input_ids.to(torch::kLong));        // (T, E): the layer below's output
  const torch::Tensor zeros = torch::zeros({1, H}, x.options());
  std::vector<torch::Tensor> h_trace, c_trace, h_last, c_last;
  // LibTorch's modules return only the final c, so the cells are stepped
  // here with ATen's own cell functions, the maths nn::LSTM/GRU/RNN run.
  for (int64_t l = 0; l < L; ++l) {
    const torch::Tensor &w_ih = weights[4 * l], &w_hh = weights[4 * l + 1], &b_ih = weights[4 * l + 2],
                        &b_hh = weights[4 * l + 3];
    torch::Tensor h = state.defined() ? state.h[l] : zeros;                       // (1, H)
    torch::Tensor c = lstm_ ? (state.defined() ? state.c[l] : zeros) : torch::Tensor();  // (1, H)
    torch::Tensor hs = torch::empty({T, H}, x.options());
    torch::Tensor cs = lstm_ ? torch::empty({T, H}, x.options()) : torch::Tensor();
    for (int64_t t = 0; t < T; ++t) {
      const torch::Tensor input = x.narrow(0, t, 1);  // (1, I)
      if (lstm_) {
        std::tie(h, c) = torch::lstm_cell(input, {h, c}, w_ih, w_hh, b_ih, b_hh);
        cs[t].copy_(c[0]);
      } else if (gru_) {
        h = torch::gru_cell(input, h, w_ih, w_hh, b_ih, b_hh);
      } else {
        h = torch::rnn_tanh_cell(input, h, w_ih, w_hh, b_ih, b_hh);
      }
      hs[t].copy_(h[0]);
    }
    x = hs;
    h_trace.push_back(hs);
    h_last.push_back(h);
    if (lstm_) {
      c_trace.push_back(cs);
      c_last.push_back(c);
    }
  }
  StateTrace trace{torch::stack(h_trace), lstm_ ? torch::stack(c_trace) : torch::Tensor()};
  State next{torch::stack(h_last), lstm_ ? torch::stack(c_last) : torch::Tensor()};  // (L, 1, H)
  return {trace, next};
}

int64_t CharRNNImpl::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

double parameter_count(const ModelOptions& m, int64_t vocab_size) {
  const double V = static_cast<double>(vocab_size), E = static_cast<double>(m.embedding_dim),
               H = static_cast<double>(m.hidden_size), L = static_cast<double>(m.num_layers);
  const double gates = static_cast<double>(cell_facts(m.cell).gates);
  // embedding; first layer (w_ih, w_hh, two biases); the other layers; head
  return V * E + gates * H * (E + H + 2) + (L - 1) * gates * H * (2 * H + 2) + H * V + V;
}

double estimate_training_bytes(const Config& c, int64_t vocab_size) {
  const double V = static_cast<double>(vocab_size), E = c.model.embedding_dim, H = c.model.hidden_size,
               L = c.model.num_layers, B = c.train.batch_size, T = c.train.seq_length;
  const double gates = static_cast<double>(cell_facts(c.model.cell).gates);
  const double params = parameter_count(c.model, vocab_size);
  // weights, gradients and two Adam moments; activations keep every gate of every
  // step for backward, plus logits, probabilities and their gradients.
  const double activations = B * T * (L * H * (gates + 2) + E + 3 * V);
  return 4.0 * (4 * params + 2 * activations);
}

}  // namespace charrnn
