// An exponential moving average of the weights (Polyak averaging), kept
// beside the weights training steps. After every optimizer step, once the
// run is far enough along (train.ema_start):
//   average = decay * average + (1 - decay) * weights
// Training keeps stepping the raw weights; what the run serves (validation,
// the samples, every checkpoint's model section) is the average, swapped
// into the model for as long as it is needed (ServedWeights).
//
// It holds only tensors: the trainer decides when to step it, the checkpoint
// stores it as the model's weights and the raw weights in a section of their
// own (checkpoint.h). Ranks of a distributed run hold identical weights after
// every step, so their averages stay identical without any exchange.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "charrnn/model.h"

namespace charrnn {

class WeightAverage {
 public:
  /// `decay` in [0, 1): 0 never averages. `start` in [0, 1]: the schedule
  /// progress (lr_schedule.h) from which the average runs.
  WeightAverage(double decay = 0, double start = 0.5) : decay_(decay), start_(start) {}

  /// Called after each optimizer step with the weights it left and the run's
  /// progress: the average begins as a copy of `weights` at the first step
  /// whose progress reaches the start, and follows them from then on.
  void after_step(const std::vector<torch::Tensor>& weights, double progress);
  /// average = decay * average + (1 - decay) * weights, in place.
  void update(const std::vector<torch::Tensor>& weights);
  /// Begins (or replaces) the average with a copy of `weights`: at the start,
  /// and from a checkpoint's averaged weights on resume.
  void start(const std::vector<torch::Tensor>& weights);

  /// False before the start, and always with decay 0.
  bool started() const { return !average_.empty(); }
  double decay() const { return decay_; }
  /// The averaged tensors, in the model's parameter order; empty before the start.
  const std::vector<torch::Tensor>& tensors() const { return average_; }

 private:
  double decay_;
  double start_;
  std::vector<torch::Tensor> average_;
};

/// While alive, `model`'s parameters hold `average`'s values (nothing
/// changes when it has not started); then their own again, bit for bit.
/// Nothing else is touched: no random stream, no gradient, no mode.
class ServedWeights {
 public:
  ServedWeights(const CharRNN& model, const WeightAverage& average);
  ~ServedWeights();
  ServedWeights(const ServedWeights&) = delete;
  ServedWeights& operator=(const ServedWeights&) = delete;

 private:
  std::vector<torch::Tensor> parameters_;
  std::vector<torch::Tensor> raw_;  // the parameters' own values, put back on destruction
};

}  // namespace charrnn
