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
//   [W_in 0]; [0 W_hn]]. cell.h states these layouts (CellFacts::decoder_*).
//
// With one stream the products are matrix-vector (BLAS gemv, which OpenBLAS
// threads). With several on the CPU, the streams are split into parts, one
// per thread (PartThreads), and each part runs its own matrix products with
// PackedWeight's single-threaded kernel on weights packed once here (small
// products on two BLAS threads spent a fifth of the time handing work
// between them, docs/performance.md), and its LSTM or GRU element-wise work
// in one vectorised pass (kernels/decoder_step.h). A batch too small to
// split by rows (fewer than 2 * kMinStreamsPerPart streams) splits each
// product by columns instead, over a SpinTeam (spin_team.h): the weights
// (3.5 MB for the 2x256 LSTM) do not fit one core's L2 cache but each half
// fits its core's, and one thread streaming them all from L3 stepped 2 rows
// at under a third of `charrnn generate`'s single stream. That kernel sums
// each row in the same order whatever rows or columns it is given with, so
// a stream's logits do not depend on the number of threads or streams. The logits equal forward()'s up to
// float rounding (tests: 1e-5), not bit for bit: the sums run in a different
// order. The exported TorchScript generate() (export.cpp), which is for one
// stream, runs that path's ATen ops in the same order on the same rearranged
// weights, which is what keeps its text identical to `charrnn generate`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "charrnn/model.h"
#include "charrnn/kernels/packed_weight.h"
#include "charrnn/part_threads.h"
#include "charrnn/spin_team.h"

namespace charrnn {

/// A model's weights as StepDecoder steps them: rearranged, and packed for
/// several CPU streams, once. Decoders of any batch size can share one, so
/// a server that rebuilds its batch whenever a stream joins or leaves does
/// not repack the weights each time (which costs more than a step).
struct DecoderWeights {
  /// Copies of the model's weights as they are now, on their device.
  /// `several_streams`: also pack them for the CPU's row kernel (a decoder
  /// of one stream does not use it).
  DecoderWeights(const CharRNNImpl& model, bool several_streams);

  /// One matrix product's weights: out = bias + input · weightᵀ.
  struct Affine {
    torch::Tensor weight, weight_t, bias;    // (N, K), its transpose, (N)
    std::unique_ptr<PackedWeight> packed;    // weight_t packed, for several streams on the CPU
  };
  CellType cell;
  int64_t layers, hidden_size, embedding_dim;
  torch::Tensor embedding;                 // (V, E)
  std::vector<Affine> layer;
  Affine head;
  bool packed() const { return head.packed != nullptr; }
};

class StepDecoder {
 public:
  /// Takes copies of the model's weights as they are now, on their device.
  /// `threads` <= 0 means current_threads() (runtime.h); several streams on
  /// the CPU are split over up to that many threads.
  StepDecoder(const CharRNNImpl& model, int64_t streams, int64_t threads = 0);
  /// Shares `weights`; several CPU streams use the row kernel only when
  /// they were packed (DecoderWeights(model, true)).
  StepDecoder(std::shared_ptr<const DecoderWeights> weights, int64_t streams, int64_t threads = 0);
  ~StepDecoder();
  StepDecoder(const StepDecoder&) = delete;
  StepDecoder& operator=(const StepDecoder&) = delete;

  /// Continues from `state` ((L, B, H) tensors, as forward() returns);
  /// an undefined state starts from zeros.
  void set_state(const State& state);
  /// The current state in forward()'s layout (copies).
  State state() const;
  /// One stream's state, (L, 1, H) tensors, copied out or in; the other
  /// streams are untouched, so a server can put a new stream into a free row
  /// instead of building a new decoder. An undefined state sets zeros.
  State row_state(int64_t row) const;
  void set_row_state(int64_t row, const State& state);
  int64_t streams() const { return streams_; }

  /// Feeds one id per stream; returns the logits (B, V). The tensor is a
  /// buffer that the next step overwrites.
  const torch::Tensor& step(const int64_t* ids);

  /// How many parts (threads) the streams are split into.
  int64_t parts() const { return static_cast<int64_t>(parts_.size()); }
  /// How many threads split each product by columns: > 1 only for a batch
  /// of one part on the packed kernel with threads to spare.
  int64_t column_threads() const { return team_ ? team_->size() : 1; }

  /// Runs task(part, first, rows) for every part at once, each on its own
  /// thread (part 0 on the caller's), with BLAS on one thread; returns when
  /// all are done and rethrows the first part's exception. step() is
  /// for_each_part(step_part); a caller can do more per part in the same
  /// round, such as sampling the part's streams.
  void for_each_part(const std::function<void(int64_t part, int64_t first, int64_t rows)>& task);
  /// step() for the streams of one part: reads ids[first, first + rows) and
  /// writes those rows of logits().
  void step_part(int64_t part, const int64_t* ids);
  /// (B, V): the logits of the last step.
  const torch::Tensor& logits() const { return logits_; }

  /// Fewest streams per part: below it, a thread costs more than it saves.
  static constexpr int64_t kMinStreamsPerPart = 4;

 private:
  using Affine = DecoderWeights::Affine;
  /// Views into the buffers, made once: creating a view costs as much as a
  /// small element-wise op. Each part has its own, over its rows.
  struct LayerViews {
    torch::Tensor input, input_row;    // (rows, in + H) view of x_; row 0 of it
    torch::Tensor hidden, hidden_row;  // (rows, H) view of x_; row 0 of it
    torch::Tensor c;                   // (rows, H) view of c_, LSTM only
  };
  struct GateViews {
    torch::Tensor all, row;                    // (rows, G*H); row 0 of it
    torch::Tensor sigmoid_part;                // LSTM: i,f,o; GRU: r,z; RNN: -
    torch::Tensor g0, g1, g2, g3;              // the four H-wide blocks (LSTM, GRU)
  };
  /// A contiguous range of streams, stepped by one thread.
  struct Part {
    int64_t first = 0, rows = 0;
    std::vector<LayerViews> layers;
    GateViews gates;
    torch::Tensor cell_tanh;             // (rows, H)
    torch::Tensor embedded;              // (rows, E) view of x_
    torch::Tensor logits, logits_row;    // (rows, V) view of logits_; row 0 of it
  };
  void check_ids(const Part& part, const int64_t* ids) const;
  void check_row(int64_t row) const;
  /// Rows [first, first + rows) of the state from `state`'s (L, rows, H)
  /// tensors; zeros where it is undefined.
  void copy_into_rows(int64_t first, int64_t rows, const State& state);
  /// step_part() once the part's ids are checked.
  void step_rows(Part& part, const int64_t* ids);
  void affine(const Affine& w, torch::Tensor& out, torch::Tensor& out_row, const torch::Tensor& input,
              const torch::Tensor& input_row) const;
  /// A step of one part with its products split by columns over team_.
  void step_columns(Part& p);
  /// The packed path's element-wise work of a layer, once its gates are in.
  void packed_update(LayerViews& l, Part& p);
  void lstm_layer(const Affine& w, LayerViews& l, Part& p);
  void gru_layer(const Affine& w, LayerViews& l, Part& p);
  void rnn_layer(const Affine& w, LayerViews& l, Part& p);

  std::shared_ptr<const DecoderWeights> weights_;
  const CellType cell_;
  const int64_t streams_, layers_, hidden_size_, embedding_dim_;
  const torch::Tensor& embedding_;         // (V, E), weights_'s
  const std::vector<Affine>& layer_;
  const Affine& head_;
  torch::Tensor x_;                        // (B, E + L*H)
  torch::Tensor c_;                        // (L, B, H), LSTM only
  std::vector<torch::Tensor> hidden_;      // (B, H) views of x_, one per layer
  torch::Tensor gates_, cell_tanh_;        // (B, G*H), (B, H)
  torch::Tensor ids_, looked_up_;          // (B) host ids and (B, E) embeddings, for the general path
  torch::Tensor logits_;                   // (B, V)
  std::vector<Part> parts_;
  std::unique_ptr<PartThreads> threads_;   // when there are several parts
  std::unique_ptr<SpinTeam> team_;         // when one part's products are split by columns
};

}  // namespace charrnn
