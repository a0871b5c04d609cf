// Dynamic evaluation (Krause et al. 2018, "Dynamic Evaluation of Neural
// Sequence Models"): the model reads a text in segments; each segment is
// first scored with the current weights, the state carried, and then the
// weights take one gradient step on that segment's loss, pulled back toward
// the trained weights θ0. A text that repeats itself (names, phrases, a
// style) is then predicted better the further the model reads.
//
// The update is Krause's "RMS with global prior", per parameter element:
//
//   g      gradient of the segment's mean cross-entropy
//   ms     running mean of g² over the segments read so far (an exponential
//          average with factor rms_decay, bias-corrected as Adam does, so
//          that after k segments it is a proper average of k squares)
//   rms    sqrt(ms)
//   rate   min(rms / mean_rms, 1 / decay): the decay is scaled per element
//          by how much its gradient moves, relative to mean_rms (the mean
//          over parameter tensors of each tensor's mean rms); the clamp
//          keeps decay · rate <= 1, so the pull never overshoots θ0
//   θ     += decay · rate · (θ0 − θ) − learning_rate · g / (rms + epsilon)
//
// Krause takes ms from the training set; the training text is not at hand
// here, so ms comes from the text read so far. A segment is always scored
// before the weights learn from it, so nothing it holds leaks into its own
// score. ms includes the current segment's g (as RMSprop does), which bounds
// the first steps to about learning_rate per element.
//
// Everything works on a private copy of the model's weights: the caller's
// model is never changed. Deliberately left out: several streams (the
// weights of one stream's copy follow that stream's text alone), and
// dropout (the copy has none; it is read as in evaluation).
//
// Shape legend: W segment length, V vocabulary.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "charrnn/evaluate.h"
#include "charrnn/model.h"

namespace charrnn {

/// How dynamic evaluation adapts the weights (see the update rule above).
struct DynamicEvalOptions {
  /// Step size of the RMS-normalised gradient step; 0 never changes the
  /// weights (the dynamic loss is then the static one). Default: 0.0003
  double learning_rate = 0.0003;
  /// λ: the share of the way back to θ0 an element of average rms is pulled
  /// per segment; 0 lets the weights drift freely. Default: 0.01
  double decay = 0.01;
  /// Characters predicted per segment: one forward, one backward and one
  /// update each. Default: 50
  int64_t segment = 50;
  /// Added to rms in the step's denominator: keeps elements whose gradient
  /// is almost always zero from taking large steps. Default: 1e-5
  double epsilon = 1e-5;
  /// Factor of the running average of squared gradients, in [0, 1); 0 uses
  /// the current segment's alone. Default: 0.999 (about the last 1000 segments)
  double rms_decay = 0.999;
};

/// Throws UsageError naming the offending option (learning rate or decay
/// negative or not finite, decay > 1, segment < 1, epsilon <= 0, rms_decay
/// outside [0, 1)).
void validate(const DynamicEvalOptions& options);

/// A private copy of a model that learns from the text it reads, segment by
/// segment, with the update above; the state is carried across segments
/// (and detached between them). Used by DynamicEvaluator, and by generation
/// that adapts to its prime and to its own text.
class DynamicAdapter {
 public:
  /// Copies `model`'s weights (they are θ0) onto `device`. Throws
  /// UsageError for invalid options.
  DynamicAdapter(const CharRNNImpl& model, const DynamicEvalOptions& options, const torch::Device& device);
  DynamicAdapter(const DynamicAdapter&) = delete;
  DynamicAdapter& operator=(const DynamicAdapter&) = delete;

  /// Reads ids[0 .. n-1] from the carried state, predicting ids[1 .. n]
  /// (n >= 1: the ids of one segment plus the next one), scores those
  /// predictions with the current weights, then updates the weights on
  /// their mean loss. Returns the summed cross-entropy (nats) of the n
  /// predictions, as scored before the update. The state afterwards is the
  /// one after reading ids[n-1]; ids[n] is the next call's ids[0].
  double learn(const int64_t* ids, int64_t n);

  /// The adapted model (dropout 0). Its weights change with every learn();
  /// what reads them (a StepDecoder) must copy them again afterwards.
  CharRNN& model() { return model_; }
  /// The carried state, after the inputs read so far; undefined before any.
  const State& state() const { return state_; }
  /// Segments learned from.
  int64_t updates() const { return updates_; }
  const DynamicEvalOptions& options() const { return options_; }

 private:
  void update();
  DynamicEvalOptions options_;
  torch::Device device_;
  CharRNN model_{nullptr};
  std::vector<torch::Tensor> params_, initial_, mean_square_;  // θ, θ0, ms: one per parameter tensor
  State state_;
  int64_t updates_ = 0;
  double rms_decay_power_ = 1;  // rms_decay ^ updates_, for the bias correction
};

/// What DynamicEvaluator measured in one pass over a text.
struct DynamicEvalResult {
  EvalResult dynamic;      ///< each segment scored before the weights learned from it
  EvalResult static_loss;  ///< the same text read by the unchanged model as one stream, the state carried
                           ///< (equals evaluate(model, ids, 1, segment))
};

/// Dynamic evaluation of a text given a piece at a time, as CharacterScorer
/// takes it: feed() the ids in order, in pieces of any size, then finish().
/// Scores each character twice in the same pass: with the adapting copy and
/// with the unchanged model (a forward without gradient per segment, which
/// costs about a third of the adapting copy's forward and backward). Memory
/// holds one segment.
class DynamicEvaluator {
 public:
  /// `model` is read (never changed) for the static score; its training
  /// mode is restored after each segment. Throws UsageError for invalid options.
  DynamicEvaluator(CharRNN& model, const DynamicEvalOptions& options, const torch::Device& device);
  DynamicEvaluator(const DynamicEvaluator&) = delete;
  DynamicEvaluator& operator=(const DynamicEvaluator&) = delete;

  void feed(const int64_t* ids, size_t count);
  /// Scores what is left (a last, shorter segment); throws UsageError when
  /// fewer than 2 ids were fed.
  DynamicEvalResult finish();

 private:
  void score_segment(int64_t predictions);
  CharRNN& model_;
  DynamicAdapter adapter_;
  torch::Device device_;
  std::vector<int64_t> pending_;  // ids not yet predicted, plus the one before them
  State static_state_;
  double dynamic_total_ = 0, static_total_ = 0;
  int64_t fed_ = 0;
};

/// DynamicEvaluator over a whole text (1-D ids, any integer type, at least 2).
DynamicEvalResult evaluate_dynamic(CharRNN& model, const torch::Tensor& ids, const DynamicEvalOptions& options,
                                   const torch::Device& device);

}  // namespace charrnn
