// A CPU training step's batch split in parts, one thread each. Measured on
// 2 cores: two threads that each run half the batch with single-threaded
// matrix products beat one pass with two-threaded ones, because small
// products hand work between OpenBLAS threads at every time step and the
// idle one spins through the element-wise work (docs/performance.md, "What
// was tried").
// Each part's gradients come from autograd::grad, not .grad, and are summed
// in part order, so a step is deterministic and resumes exactly.
//
// Shape legend: B batch, T seq_length, V vocabulary.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "charrnn/model.h"
#include "charrnn/part_threads.h"

namespace charrnn {

// Mean cross-entropy of the model's predictions of `targets` (B, T) from
// `inputs` (B, T), starting from `initial` (zeros when undefined), and the
// state after the last input. With `dropout_masks` (this part of the
// batch's slices of masks drawn for the whole batch), the fused layers use
// them instead of drawing their own.
std::pair<torch::Tensor, State> mean_loss(CharRNN& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                          const State& initial,
                                          const std::vector<torch::Tensor>* dropout_masks = nullptr);

class BatchSplit {
 public:
  /// Forward and backward of `parts` slices of the batch on as many threads
  /// (started at the first call, kept for the next ones). Leaves the
  /// batch-mean gradients in .grad and returns the batch-mean loss.
  double forward_backward(CharRNN& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                          const State& initial, int64_t parts, const torch::Device& device);
  /// The state after the last batch, the parts' rows joined.
  const State& final_state() const { return final_state_; }

 private:
  std::unique_ptr<PartThreads> threads_;
  State final_state_;
};

}  // namespace charrnn
