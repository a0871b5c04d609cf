#include "charrnn/weight_average.h"

namespace charrnn {

void WeightAverage::after_step(const std::vector<torch::Tensor>& weights, double progress) {
  if (decay_ <= 0) return;
  if (started()) update(weights);
  else if (progress >= start_) start(weights);
}

void WeightAverage::update(const std::vector<torch::Tensor>& weights) {
  TORCH_CHECK(weights.size() == average_.size(), "the weight average holds ", average_.size(), " tensors, not ",
              weights.size());
  torch::NoGradGuard no_grad;
  // lerp_ is the update in one pass over each tensor, where mul_ then add_
  // would read and write the average twice. (LibTorch 1.13 has no
  // _foreach_lerp_; the model has about a dozen tensors, so a call per
  // tensor costs little even on CUDA.)
  const double weight = 1.0 - decay_;
  for (size_t i = 0; i < average_.size(); ++i) average_[i].lerp_(weights[i].detach(), weight);
}

void WeightAverage::start(const std::vector<torch::Tensor>& weights) {
  std::vector<torch::Tensor> copies;
  copies.reserve(weights.size());
  for (const torch::Tensor& w : weights) copies.push_back(w.detach().clone());
  average_ = std::move(copies);
}

ServedWeights::ServedWeights(const CharRNN& model, const WeightAverage& average) {
  if (!average.started()) return;
  torch::NoGradGuard no_grad;
  parameters_ = model->parameters();
  TORCH_CHECK(parameters_.size() == average.tensors().size(), "the weight average does not fit the model");
  raw_.reserve(parameters_.size());
  for (size_t i = 0; i < parameters_.size(); ++i) {
    raw_.push_back(parameters_[i].detach().clone());
    // copy_, not a swap of storages: cuDNN's flattened weights and Adam's
    // state refer to the parameters' memory, which must stay where it is
    parameters_[i].detach().copy_(average.tensors()[i]);
  }
}

ServedWeights::~ServedWeights() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < parameters_.size(); ++i) parameters_[i].detach().copy_(raw_[i]);
}

}  // namespace charrnn
