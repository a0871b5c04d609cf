#include "charrnn/optimizer.h"

#include "charrnn/checkpoint.h"

namespace charrnn {

AdamW::AdamW(std::vector<torch::Tensor> parameters, double learning_rate, double weight_decay)
    : parameters_(std::move(parameters)),
      learning_rate_(learning_rate),
      weight_decay_(weight_decay),
      adam_(parameters_, torch::optim::AdamOptions(learning_rate)) {}

void AdamW::restore(const std::string& bytes, const torch::Device& device) {
  restore_optimizer(adam_, bytes, device);
  // the archive holds the rate it was saved with; this run's wins
  for (auto& group : adam_.param_groups())
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(learning_rate_);
}

std::string AdamW::archive() const { return archive_optimizer(adam_); }

void AdamW::step(double learning_rate) {
  for (auto& group : adam_.param_groups())
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(learning_rate);
  if (weight_decay_ > 0) {
    // decoupled decay, applied before the Adam update as AdamW applies it;
    // on matrices only: biases are not pulled towards zero
    torch::NoGradGuard no_grad;
    for (const torch::Tensor& p : parameters_)
      if (p.dim() >= 2) p.mul_(1.0 - learning_rate * weight_decay_);
  }
  adam_.step();
}

}  // namespace charrnn
