// The optimizer step: Adam, with AdamW's decoupled weight decay on the
// weight matrices. Its state is torch::optim::Adam's, archived as Adam
// archives it, so checkpoints of any version resume exactly.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

namespace charrnn {

class AdamW {
 public:
  /// `weight_decay` 0 is plain Adam.
  AdamW(std::vector<torch::Tensor> parameters, double learning_rate, double weight_decay);

  /// Adam's moments and step counts from a checkpoint (archive()'s bytes);
  /// the rates stay the ones this run sets.
  void restore(const std::string& bytes, const torch::Device& device);
  std::string archive() const;

  void zero_grad() { adam_.zero_grad(); }
  /// One update from the gradients in .grad at `learning_rate`.
  void step(double learning_rate);

 private:
  std::vector<torch::Tensor> parameters_;
  double learning_rate_;
  double weight_decay_;
  torch::optim::Adam adam_;
};

}  // namespace charrnn
