// optimizer: AdamW as charrnn trains with it (Adam's update, decoupled
// decay on matrices only), with Adam's own archive so checkpoints resume.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/optimizer.h"

namespace {

std::vector<torch::Tensor> make_parameters() {
  torch::manual_seed(3);
  return {torch::randn({4, 3}).requires_grad_(), torch::randn({4}).requires_grad_()};  // a matrix and a bias
}

void set_gradients(const std::vector<torch::Tensor>& params, int64_t step) {
  for (size_t i = 0; i < params.size(); ++i)
    params[i].mutable_grad() = torch::full_like(params[i], 0.1 * static_cast<double>(step + 1 + i));
}

std::vector<torch::Tensor> copies(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.detach().clone().requires_grad_());
  return out;
}

TEST(Optimizer, WithoutDecayItIsAdamAtTheRateOfEachStep) {
  const auto ours = make_parameters(), adams = copies(ours);
  charrnn::AdamW optimizer(ours, 0.5, 0.0);
  torch::optim::Adam adam(adams, torch::optim::AdamOptions(0.5));
  for (int64_t step = 0; step < 3; ++step) {
    const double rate = 0.01 * static_cast<double>(step + 1);
    set_gradients(ours, step);
    set_gradients(adams, step);
    optimizer.step(rate);
    for (auto& group : adam.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(rate);
    adam.step();
  }
  for (size_t i = 0; i < ours.size(); ++i) EXPECT_TRUE(torch::equal(ours[i], adams[i])) << i;
}

TEST(Optimizer, DecayShrinksMatricesBeforeTheUpdateAndLeavesBiases) {
  const auto ours = make_parameters(), adams = copies(ours);
  charrnn::AdamW optimizer(ours, 0.01, 0.3);
  torch::optim::Adam adam(adams, torch::optim::AdamOptions(0.01));
  set_gradients(ours, 0);
  set_gradients(adams, 0);
  {
    torch::NoGradGuard no_grad;
    adams[0].mul_(1.0 - 0.01 * 0.3);  // AdamW's decoupled decay, on the matrix only
  }
  optimizer.step(0.01);
  adam.step();
  for (size_t i = 0; i < ours.size(); ++i) EXPECT_TRUE(torch::equal(ours[i], adams[i])) << i;
}

// A run resumed from the archive continues exactly as the run that went on.
TEST(Optimizer, ResumesExactlyFromItsArchive) {
  const auto going_on = make_parameters();
  charrnn::AdamW optimizer(going_on, 0.01, 0.1);
  set_gradients(going_on, 0);
  optimizer.step(0.01);
  const std::string archive = optimizer.archive();
  const auto resumed = copies(going_on);
  charrnn::AdamW restored(resumed, 0.01, 0.1);
  restored.restore(archive, torch::kCPU);
  for (int64_t step = 1; step < 3; ++step) {
    set_gradients(going_on, step);
    set_gradients(resumed, step);
    optimizer.step(0.005);
    restored.step(0.005);
  }
  for (size_t i = 0; i < going_on.size(); ++i) EXPECT_TRUE(torch::equal(going_on[i], resumed[i])) << i;
}

}  // namespace
