#include "charrnn/step_decoder.h"

#include <cstring>

#include "charrnn/error.h"

namespace charrnn {

namespace {

torch::Tensor param(const CharRNNImpl& model, const std::string& name) {
  const torch::Tensor* p = model.named_parameters().find(name);
  TORCH_CHECK(p != nullptr, "model has no parameter ", name);
  return p->detach();
}

torch::Tensor rows(const torch::Tensor& t, int64_t first, int64_t count) { return t.narrow(0, first, count); }

}  // namespace

// Everything here is repeated op for op by _decoder_weights() in export.cpp.
StepDecoder::StepDecoder(const CharRNNImpl& model, int64_t streams)
    : cell_(model.options().cell),
      streams_(streams),
      layers_(model.options().num_layers),
      hidden_size_(model.options().hidden_size),
      embedding_dim_(model.options().embedding_dim) {
  TORCH_CHECK(streams >= 1, "StepDecoder needs at least one stream");
  torch::NoGradGuard no_grad;
  const int64_t H = hidden_size_, B = streams_;
  embedding_ = param(model, "embedding.weight").clone().contiguous();
  for (int64_t l = 0; l < layers_; ++l) {
    const std::string s = "_l" + std::to_string(l);
    const torch::Tensor w_ih = param(model, "rnn.weight_ih" + s), w_hh = param(model, "rnn.weight_hh" + s);
    const torch::Tensor b_ih = param(model, "rnn.bias_ih" + s), b_hh = param(model, "rnn.bias_hh" + s);
    torch::Tensor w, b;
    switch (cell_) {
      case CellType::LSTM: {
        // (i, f, g, o) -> (i, f, o, g)
        const auto reorder = [H](const torch::Tensor& t) {
          return torch::cat({rows(t, 0, 2 * H), rows(t, 3 * H, H), rows(t, 2 * H, H)}, 0);
        };
        w = torch::cat({reorder(w_ih), reorder(w_hh)}, 1);
        b = reorder(b_ih + b_hh);
        break;
      }
      case CellType::GRU: {
        const int64_t in = w_ih.size(1);
        w = torch::cat({torch::cat({rows(w_ih, 0, 2 * H), rows(w_hh, 0, 2 * H)}, 1),
                        torch::cat({rows(w_ih, 2 * H, H), torch::zeros({H, H}, w_hh.options())}, 1),
                        torch::cat({torch::zeros({H, in}, w_ih.options()), rows(w_hh, 2 * H, H)}, 1)},
                       0);
        b = torch::cat({rows(b_ih, 0, 2 * H) + rows(b_hh, 0, 2 * H), rows(b_ih, 2 * H, H), rows(b_hh, 2 * H, H)}, 0);
        break;
      }
      case CellType::RNN:
        w = torch::cat({w_ih, w_hh}, 1);
        b = b_ih + b_hh;
        break;
    }
    Layer layer;
    layer.weight = w.contiguous();
    layer.weight_t = layer.weight.t();
    layer.bias = b.contiguous();
    layer_.push_back(layer);
  }
  head_weight_ = param(model, "head.weight").clone().contiguous();
  head_weight_t_ = head_weight_.t();
  head_bias_ = param(model, "head.bias").clone();

  const torch::TensorOptions options = embedding_.options();
  const int64_t E = embedding_dim_;
  x_ = torch::zeros({B, E + layers_ * H}, options);
  embedded_ = x_.narrow(1, 0, E);
  if (cell_ == CellType::LSTM) c_ = torch::zeros({layers_, B, H}, options);
  for (int64_t l = 0; l < layers_; ++l) {
    // layer 0 reads [embedding; h_0], layer l reads [h_{l-1}; h_l]
    Layer& layer = layer_[static_cast<size_t>(l)];
    const int64_t first = l == 0 ? 0 : E + (l - 1) * H;
    layer.input = x_.narrow(1, first, layer.weight.size(1));
    layer.input_row = layer.input.select(0, 0);
    layer.hidden = x_.narrow(1, E + l * H, H);
    layer.hidden_row = layer.hidden.select(0, 0);
    if (c_.defined()) layer.c = c_[l];
  }
  const int64_t gate_width = layer_[0].bias.size(0);
  gates_.all = torch::empty({B, gate_width}, options);
  gates_.row = gates_.all.select(0, 0);
  if (gate_width == 4 * H) {
    gates_.g0 = gates_.all.narrow(1, 0, H);
    gates_.g1 = gates_.all.narrow(1, H, H);
    gates_.g2 = gates_.all.narrow(1, 2 * H, H);
    gates_.g3 = gates_.all.narrow(1, 3 * H, H);
  }
  if (cell_ == CellType::LSTM) {
    gates_.sigmoid_part = gates_.all.narrow(1, 0, 3 * H);
    gates_.tanh_part = gates_.g3;
  } else if (cell_ == CellType::GRU) {
    gates_.sigmoid_part = gates_.all.narrow(1, 0, 2 * H);
  }
  cell_tanh_ = torch::empty({B, H}, options);
  logits_ = torch::empty({B, head_bias_.size(0)}, options);
  logits_row_ = logits_.select(0, 0);
  ids_ = torch::empty({B}, torch::kLong);
  looked_up_ = torch::empty({B, E}, options);
}

void StepDecoder::set_state(const State& state) {
  torch::NoGradGuard no_grad;
  for (int64_t l = 0; l < layers_; ++l) {
    torch::Tensor& h = layer_[static_cast<size_t>(l)].hidden;
    if (state.defined())
      h.copy_(state.h[l]);
    else
      h.zero_();
  }
  if (c_.defined()) {
    if (state.c.defined())
      c_.copy_(state.c);
    else
      c_.zero_();
  }
}

State StepDecoder::state() const {
  std::vector<torch::Tensor> hs;
  for (const Layer& layer : layer_) hs.push_back(layer.hidden);
  return {torch::stack(hs), c_.defined() ? c_.clone() : torch::Tensor()};
}

namespace {

// out = bias + input · Wᵀ: gemv for one stream (what the export runs), gemm
// for several. out_row and input_row are row 0 of out and input.
void affine(torch::Tensor& out, torch::Tensor& out_row, const torch::Tensor& bias, const torch::Tensor& w,
            const torch::Tensor& w_t, const torch::Tensor& input, const torch::Tensor& input_row) {
  if (out.size(0) == 1)
    at::addmv_out(out_row, bias, w, input_row);
  else
    at::addmm_out(out, bias, input, w_t);
}

}  // namespace

void StepDecoder::lstm_layer(Layer& l) {
  affine(gates_.all, gates_.row, l.bias, l.weight, l.weight_t, l.input, l.input_row);
  gates_.sigmoid_part.sigmoid_();        // i, f, o
  gates_.tanh_part.tanh_();              // g
  l.c.mul_(gates_.g1);                   // f * c
  l.c.addcmul_(gates_.g0, gates_.g3);    // + i * g
  at::tanh_out(cell_tanh_, l.c);
  at::mul_out(l.hidden, gates_.g2, cell_tanh_);  // o * tanh(c)
}

void StepDecoder::gru_layer(Layer& l) {
  affine(gates_.all, gates_.row, l.bias, l.weight, l.weight_t, l.input, l.input_row);
  gates_.sigmoid_part.sigmoid_();                 // r, z
  gates_.g2.addcmul_(gates_.g0, gates_.g3).tanh_();  // n = tanh(W_in x + r * W_hn h)
  l.hidden.sub_(gates_.g2).mul_(gates_.g1).add_(gates_.g2);  // n + z * (h - n)
}

void StepDecoder::rnn_layer(Layer& l) {
  affine(gates_.all, gates_.row, l.bias, l.weight, l.weight_t, l.input, l.input_row);
  at::tanh_out(l.hidden, gates_.all);
}

const torch::Tensor& StepDecoder::step(const int64_t* ids) {
  torch::NoGradGuard no_grad;
  const int64_t V = embedding_.size(0);
  for (int64_t b = 0; b < streams_; ++b)
    if (ids[b] < 0 || ids[b] >= V) throw Error("StepDecoder: id " + std::to_string(ids[b]) + " is outside the vocabulary");
  if (streams_ == 1 && embedding_.is_cpu() && embedding_.scalar_type() == torch::kFloat) {
    std::memcpy(x_.data_ptr<float>(), embedding_.data_ptr<float>() + ids[0] * embedding_dim_,
                static_cast<size_t>(embedding_dim_) * sizeof(float));
  } else {
    std::memcpy(ids_.data_ptr<int64_t>(), ids, static_cast<size_t>(streams_) * sizeof(int64_t));
    const torch::Tensor device_ids = ids_.to(embedding_.device());
    at::index_select_out(looked_up_, embedding_, 0, device_ids);
    embedded_.copy_(looked_up_);
  }
  for (Layer& layer : layer_) {
    switch (cell_) {
      case CellType::LSTM: lstm_layer(layer); break;
      case CellType::GRU: gru_layer(layer); break;
      case CellType::RNN: rnn_layer(layer); break;
    }
  }
  const Layer& top = layer_.back();
  affine(logits_, logits_row_, head_bias_, head_weight_, head_weight_t_, top.hidden, top.hidden_row);
  return logits_;
}

}  // namespace charrnn
