#include "charrnn/step_decoder.h"

#include <algorithm>
#include <cstring>

#include "charrnn/cell.h"
#include "charrnn/error.h"
#include "charrnn/kernels/decoder_step.h"
#include "charrnn/runtime.h"

namespace charrnn {

namespace {

torch::Tensor param(const CharRNNImpl& model, const std::string& name) {
  const torch::Tensor* p = model.named_parameters().find(name);
  TORCH_CHECK(p != nullptr, "model has no parameter ", name);
  return p->detach();
}

torch::Tensor rows(const torch::Tensor& t, int64_t first, int64_t count) { return t.narrow(0, first, count); }

}  // namespace

// The export's _decoder_weights() (export_module.py) builds the same
// matrices from the same layout, so its steps equal these bit for bit.
DecoderWeights::DecoderWeights(const CharRNNImpl& model, bool several_streams)
    : cell(model.options().cell),
      layers(model.options().num_layers),
      hidden_size(model.options().hidden_size),
      embedding_dim(model.options().embedding_dim) {
  torch::NoGradGuard no_grad;
  const int64_t H = hidden_size;
  embedding = param(model, "embedding.weight").clone().contiguous();
  const bool pack = several_streams && embedding.is_cpu() && embedding.scalar_type() == torch::kFloat;
  const auto make_affine = [&](const torch::Tensor& w, const torch::Tensor& b) {
    Affine a;
    a.weight = w.contiguous();
    a.weight_t = a.weight.t();
    a.bias = b.contiguous();
    // the widest kernel rather than Best, which picks LibTorch's product while
    // BLAS has several threads: the parts run with BLAS on one thread
    if (pack) a.packed = std::make_unique<PackedWeight>(a.weight_t, PackedWeight::widest_kernel());
    return a;
  };
  for (int64_t l = 0; l < layers; ++l) {
    const std::string s = "_l" + std::to_string(l);
    const torch::Tensor w_ih = param(model, "rnn.weight_ih" + s), w_hh = param(model, "rnn.weight_hh" + s);
    const torch::Tensor b_ih = param(model, "rnn.bias_ih" + s), b_hh = param(model, "rnn.bias_hh" + s);
    // the decoder's layout (cell.h): block k is [block ih of w_ih | block hh
    // of w_hh], zeros where there is none, and the sum of those biases
    const CellFacts& facts = cell_facts(cell);
    std::vector<torch::Tensor> w_blocks, b_blocks;
    for (size_t k = 0; k < static_cast<size_t>(facts.decoder_blocks); ++k) {
      const int64_t ih = facts.decoder_ih[k], hh = facts.decoder_hh[k];
      w_blocks.push_back(torch::cat({ih >= 0 ? rows(w_ih, ih * H, H) : torch::zeros({H, w_ih.size(1)}, w_ih.options()),
                                     hh >= 0 ? rows(w_hh, hh * H, H) : torch::zeros({H, H}, w_hh.options())},
                                    1));
      b_blocks.push_back(ih < 0 ? rows(b_hh, hh * H, H)
                                : hh < 0 ? rows(b_ih, ih * H, H) : rows(b_ih, ih * H, H) + rows(b_hh, hh * H, H));
    }
    const torch::Tensor w = torch::cat(w_blocks, 0), b = torch::cat(b_blocks, 0);
    layer.push_back(make_affine(w, b));
  }
  head = make_affine(param(model, "head.weight").clone(), param(model, "head.bias").clone());
}

StepDecoder::StepDecoder(const CharRNNImpl& model, int64_t streams, int64_t threads)
    : StepDecoder(std::make_shared<const DecoderWeights>(model, streams > 1), streams, threads) {}

StepDecoder::StepDecoder(std::shared_ptr<const DecoderWeights> weights, int64_t streams, int64_t threads)
    : weights_(std::move(weights)),
      cell_(weights_->cell),
      streams_(streams),
      layers_(weights_->layers),
      hidden_size_(weights_->hidden_size),
      embedding_dim_(weights_->embedding_dim),
      embedding_(weights_->embedding),
      layer_(weights_->layer),
      head_(weights_->head) {
  TORCH_CHECK(streams >= 1, "StepDecoder needs at least one stream");
  torch::NoGradGuard no_grad;
  const int64_t H = hidden_size_, B = streams_;
  const bool cpu_rows = B > 1 && weights_->packed();
  const torch::TensorOptions options = embedding_.options();
  const int64_t E = embedding_dim_, gate_width = layer_[0].bias.size(0);
  x_ = torch::zeros({B, E + layers_ * H}, options);
  if (cell_facts(cell_).has_cell_state()) c_ = torch::zeros({layers_, B, H}, options);
  for (int64_t l = 0; l < layers_; ++l) hidden_.push_back(x_.narrow(1, E + l * H, H));
  gates_ = torch::empty({B, gate_width}, options);
  cell_tanh_ = torch::empty({B, H}, options);
  logits_ = torch::empty({B, head_.bias.size(0)}, options);
  ids_ = torch::empty({B}, torch::kLong);
  looked_up_ = torch::empty({B, E}, options);

  const int64_t wanted = threads > 0 ? threads : current_threads();
  const int64_t part_count = cpu_rows ? std::max<int64_t>(1, std::min(wanted, B / kMinStreamsPerPart)) : 1;
  for (int64_t index = 0; index < part_count; ++index) {
    Part p;
    p.first = B * index / part_count;
    p.rows = B * (index + 1) / part_count - p.first;
    const auto mine = [&p](const torch::Tensor& t) { return t.narrow(0, p.first, p.rows); };
    for (int64_t l = 0; l < layers_; ++l) {
      // layer 0 reads [embedding; h_0], layer l reads [h_{l-1}; h_l]
      LayerViews v;
      const int64_t first = l == 0 ? 0 : E + (l - 1) * H;
      v.input = mine(x_.narrow(1, first, layer_[static_cast<size_t>(l)].weight.size(1)));
      v.input_row = v.input.select(0, 0);
      v.hidden = mine(hidden_[static_cast<size_t>(l)]);
      v.hidden_row = v.hidden.select(0, 0);
      if (c_.defined()) v.c = mine(c_[l]);
      p.layers.push_back(v);
    }
    GateViews& g = p.gates;
    g.all = mine(gates_);
    g.row = g.all.select(0, 0);
    if (gate_width == 4 * H) {
      g.g0 = g.all.narrow(1, 0, H);
      g.g1 = g.all.narrow(1, H, H);
      g.g2 = g.all.narrow(1, 2 * H, H);
      g.g3 = g.all.narrow(1, 3 * H, H);
    }
    const int64_t sigmoid_blocks = cell_facts(cell_).decoder_sigmoid_blocks;
    if (sigmoid_blocks > 0) g.sigmoid_part = g.all.narrow(1, 0, sigmoid_blocks * H);
    p.cell_tanh = mine(cell_tanh_);
    p.embedded = mine(x_.narrow(1, 0, E));
    p.logits = mine(logits_);
    p.logits_row = p.logits.select(0, 0);
    parts_.push_back(p);
  }
  if (part_count > 1) threads_ = std::make_unique<PartThreads>(part_count);
  bool splits = part_count == 1 && cpu_rows && wanted > 1 && B <= PackedWeight::kMaxRows;
  for (const Affine& a : layer_) splits = splits && a.packed->splits_columns();
  if (splits && head_.packed->splits_columns()) team_ = std::make_unique<SpinTeam>(wanted);
}

StepDecoder::~StepDecoder() = default;

void StepDecoder::set_state(const State& state) { copy_into_rows(0, streams_, state); }

State StepDecoder::state() const {
  return {torch::stack(hidden_), c_.defined() ? c_.clone() : torch::Tensor()};
}

State StepDecoder::row_state(int64_t row) const {
  check_row(row);
  std::vector<torch::Tensor> h;
  for (const torch::Tensor& layer : hidden_) h.push_back(layer.narrow(0, row, 1));
  return {torch::stack(h), c_.defined() ? c_.narrow(1, row, 1).clone() : torch::Tensor()};
}

void StepDecoder::set_row_state(int64_t row, const State& state) {
  check_row(row);
  const auto fits = [&](const torch::Tensor& t) {
    return t.dim() == 3 && t.size(0) == layers_ && t.size(1) == 1 && t.size(2) == hidden_size_;
  };
  if (state.defined() && (!fits(state.h) || (c_.defined() && state.c.defined() && !fits(state.c))))
    throw UsageError("a stream's state must be (" + std::to_string(layers_) + ", 1, " + std::to_string(hidden_size_) + ")");
  copy_into_rows(row, 1, state);
}

void StepDecoder::copy_into_rows(int64_t first, int64_t rows, const State& state) {
  torch::NoGradGuard no_grad;
  for (int64_t l = 0; l < layers_; ++l) {
    torch::Tensor h = hidden_[static_cast<size_t>(l)].narrow(0, first, rows);
    if (state.defined())
      h.copy_(state.h[l]);
    else
      h.zero_();
  }
  if (c_.defined()) {
    torch::Tensor c = c_.narrow(1, first, rows);
    if (state.c.defined())
      c.copy_(state.c);
    else
      c.zero_();
  }
}

void StepDecoder::check_row(int64_t row) const {
  if (row < 0 || row >= streams_)
    throw UsageError("stream row " + std::to_string(row) + " is outside the decoder's " + std::to_string(streams_));
}

// out = bias + input · Wᵀ: gemv for one stream (what the export runs), the
// packed kernel for a part of several CPU streams, gemm otherwise (CUDA).
// out_row and input_row are row 0 of out and input.
void StepDecoder::affine(const Affine& w, torch::Tensor& out, torch::Tensor& out_row, const torch::Tensor& input,
                         const torch::Tensor& input_row) const {
  if (streams_ == 1) {
    at::addmv_out(out_row, w.bias, w.weight, input_row);
  } else if (w.packed) {
    out.copy_(w.bias);  // broadcast over the rows
    if (out.size(0) <= PackedWeight::kMaxRows) {
      w.packed->multiply(input, out, /*accumulate=*/true);
      return;
    }
    // PackedWeight hands more rows than this to LibTorch, whose sums run in
    // another order: chunks keep every row on the packed kernel
    for (int64_t first = 0; first < out.size(0); first += PackedWeight::kMaxRows) {
      const int64_t rows = std::min(PackedWeight::kMaxRows, out.size(0) - first);
      torch::Tensor out_rows = out.narrow(0, first, rows);
      w.packed->multiply(input.narrow(0, first, rows), out_rows, /*accumulate=*/true);
    }
  } else {
    at::addmm_out(out, w.bias, input, w.weight_t);
  }
}

// The per-cell steps below and kernels/decoder_step.h's steps are written for
// these layouts: LSTM blocks (i, f, o, g), GRU blocks (r, z, W_in x, W_hn h).
static_assert(kLstmFacts.decoder_blocks == 4 && kLstmFacts.decoder_sigmoid_blocks == 3 &&
              kLstmFacts.decoder_ih[0] == kLstmFacts.gate('i') && kLstmFacts.decoder_ih[1] == kLstmFacts.gate('f') &&
              kLstmFacts.decoder_ih[2] == kLstmFacts.gate('o') && kLstmFacts.decoder_ih[3] == kLstmFacts.gate('g'));
static_assert(kGruFacts.decoder_blocks == 4 && kGruFacts.decoder_sigmoid_blocks == 2 &&
              kGruFacts.decoder_ih[0] == kGruFacts.gate('r') && kGruFacts.decoder_ih[1] == kGruFacts.gate('z') &&
              kGruFacts.decoder_ih[2] == kGruFacts.gate('n') && kGruFacts.decoder_hh[2] < 0 &&
              kGruFacts.decoder_ih[3] < 0 && kGruFacts.decoder_hh[3] == kGruFacts.gate('n'));
static_assert(kRnnFacts.decoder_blocks == 1 && kRnnFacts.decoder_sigmoid_blocks == 0);

void StepDecoder::lstm_layer(const Affine& w, LayerViews& l, Part& p) {
  GateViews& g = p.gates;
  affine(w, g.all, g.row, l.input, l.input_row);
  if (w.packed) return packed_update(l, p);  // several CPU streams: one pass instead of six ATen calls
  g.sigmoid_part.sigmoid_();        // i, f, o
  g.g3.tanh_();                     // g
  l.c.mul_(g.g1);                   // f * c
  l.c.addcmul_(g.g0, g.g3);         // + i * g
  at::tanh_out(p.cell_tanh, l.c);
  at::mul_out(l.hidden, g.g2, p.cell_tanh);  // o * tanh(c)
}

void StepDecoder::gru_layer(const Affine& w, LayerViews& l, Part& p) {
  GateViews& g = p.gates;
  affine(w, g.all, g.row, l.input, l.input_row);
  if (w.packed) return packed_update(l, p);
  g.sigmoid_part.sigmoid_();                   // r, z
  g.g2.addcmul_(g.g0, g.g3).tanh_();           // n = tanh(W_in x + r * W_hn h)
  l.hidden.sub_(g.g2).mul_(g.g1).add_(g.g2);   // n + z * (h - n)
}

void StepDecoder::packed_update(LayerViews& l, Part& p) {
  GateViews& g = p.gates;
  switch (cell_) {
    case CellType::LSTM:
      lstm_decoder_step(p.rows, hidden_size_, g.all.data_ptr<float>(), g.all.stride(0), l.c.data_ptr<float>(),
                        l.c.stride(0), l.hidden.data_ptr<float>(), l.hidden.stride(0));
      break;
    case CellType::GRU:
      gru_decoder_step(p.rows, hidden_size_, g.all.data_ptr<float>(), g.all.stride(0), l.hidden.data_ptr<float>(),
                       l.hidden.stride(0));
      break;
    case CellType::RNN: at::tanh_out(l.hidden, g.all); break;
  }
}

// Each member multiplies the same share of every product's columns, step
// after step, so its share of the weights stays in its core's cache. A
// layer's update writes h, which every member's next product reads whole
// and this layer's product read too: it runs on member 0 between two
// barriers (for a few rows it costs about a microsecond). Each output is
// summed as in a whole product, so the logits are those of one thread.
void StepDecoder::step_columns(Part& p) {
  const int64_t members = team_->size();
  const auto product = [&](const Affine& w, torch::Tensor& out, const torch::Tensor& input, int64_t member) {
    constexpr int64_t panel = PackedWeight::kPanelColumns;
    const int64_t panels = (w.packed->columns() + panel - 1) / panel;
    const int64_t first = panels * member / members * panel, count = panels * (member + 1) / members * panel - first;
    const int64_t n = std::min(count, w.packed->columns() - first);
    if (n <= 0) return;
    float* o = out.data_ptr<float>();
    const float* bias = w.bias.data_ptr<float>();
    for (int64_t r = 0; r < p.rows; ++r)
      std::memcpy(o + r * out.stride(0) + first, bias + first, static_cast<size_t>(n) * sizeof(float));
    w.packed->multiply_columns(input.data_ptr<float>(), input.stride(0), p.rows, o, out.stride(0),
                               /*accumulate=*/true, first, count);
  };
  team_->run([&](int64_t member) {
    for (int64_t l = 0; l < layers_; ++l) {
      LayerViews& v = p.layers[static_cast<size_t>(l)];
      product(layer_[static_cast<size_t>(l)], p.gates.all, v.input, member);
      team_->barrier();
      if (member == 0) packed_update(v, p);
      team_->barrier();
    }
    product(head_, p.logits, p.layers.back().hidden, member);
  });
}

void StepDecoder::rnn_layer(const Affine& w, LayerViews& l, Part& p) {
  affine(w, p.gates.all, p.gates.row, l.input, l.input_row);
  at::tanh_out(l.hidden, p.gates.all);
}

void StepDecoder::check_ids(const Part& p, const int64_t* ids) const {
  const int64_t V = embedding_.size(0);
  for (int64_t b = p.first; b < p.first + p.rows; ++b)
    if (ids[b] < 0 || ids[b] >= V) throw Error("StepDecoder: id " + std::to_string(ids[b]) + " is outside the vocabulary");
}

void StepDecoder::step_part(int64_t part, const int64_t* ids) {
  TORCH_CHECK(part >= 0 && part < parts(), "StepDecoder: no part ", part);
  Part& p = parts_[static_cast<size_t>(part)];
  check_ids(p, ids);
  step_rows(p, ids);
}

void StepDecoder::step_rows(Part& p, const int64_t* ids) {
  torch::NoGradGuard no_grad;
  if (embedding_.is_cpu() && embedding_.scalar_type() == torch::kFloat) {
    const float* table = embedding_.data_ptr<float>();
    float* x = x_.data_ptr<float>();
    const int64_t E = embedding_dim_, row_stride = x_.stride(0);
    for (int64_t b = p.first; b < p.first + p.rows; ++b)
      std::memcpy(x + b * row_stride, table + ids[b] * E, static_cast<size_t>(E) * sizeof(float));
  } else {  // one part: every stream
    std::memcpy(ids_.data_ptr<int64_t>(), ids, static_cast<size_t>(streams_) * sizeof(int64_t));
    const torch::Tensor device_ids = ids_.to(embedding_.device());
    at::index_select_out(looked_up_, embedding_, 0, device_ids);
    p.embedded.copy_(looked_up_);
  }
  if (team_) return step_columns(p);
  for (int64_t l = 0; l < layers_; ++l) {
    const Affine& w = layer_[static_cast<size_t>(l)];
    LayerViews& v = p.layers[static_cast<size_t>(l)];
    switch (cell_) {
      case CellType::LSTM: lstm_layer(w, v, p); break;
      case CellType::GRU: gru_layer(w, v, p); break;
      case CellType::RNN: rnn_layer(w, v, p); break;
    }
  }
  affine(head_, p.logits, p.logits_row, p.layers.back().hidden, p.layers.back().hidden_row);
}

const torch::Tensor& StepDecoder::step(const int64_t* ids) {
  // every id is checked before any part starts, so a bad one changes no state
  for (const Part& p : parts_) check_ids(p, ids);
  for_each_part([&](int64_t part, int64_t, int64_t) { step_rows(parts_[static_cast<size_t>(part)], ids); });
  return logits_;
}

void StepDecoder::for_each_part(const std::function<void(int64_t, int64_t, int64_t)>& task) {
  const auto run = [&](int64_t index) {
    const Part& p = parts_[static_cast<size_t>(index)];
    task(index, p.first, p.rows);
  };
  if (!threads_) {
    run(0);
    return;
  }
  // only PackedWeight's LibTorch fallback (no AVX2) multiplies through BLAS
  const SingleThreadedBlas one_blas_thread_per_part;
  threads_->run(run);
}

}  // namespace charrnn
