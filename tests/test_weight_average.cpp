// weight_average: the average's update against values worked out by hand,
// when it starts, and the swap that serves it from the model and puts the
// model's own weights back bit for bit.
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/model.h"
#include "charrnn/weight_average.h"

namespace {

using charrnn::CharRNN;
using charrnn::ServedWeights;
using charrnn::WeightAverage;

std::vector<torch::Tensor> clones(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  for (const torch::Tensor& t : tensors) out.push_back(t.detach().clone());
  return out;
}

// a GRU small enough to follow by hand: 3 characters, 2 hidden units
CharRNN tiny_model() {
  torch::manual_seed(3);
  charrnn::ModelOptions options;
  options.cell = charrnn::CellType::GRU;
  options.embedding_dim = 2;
  options.hidden_size = 2;
  options.num_layers = 1;
  return CharRNN(3, options);
}

TEST(WeightAverage, UpdateIsDecayTimesAveragePlusTheRestTimesWeights) {
  // values whose average is exact in binary: 0.75 * 1 + 0.25 * 3 = 1.5 and 0.75 * 2 + 0.25 * -2 = 1
  WeightAverage average(0.75, 0.0);
  average.start({torch::tensor({1.0f, 2.0f})});
  average.update({torch::tensor({3.0f, -2.0f})});
  EXPECT_TRUE(torch::equal(average.tensors()[0], torch::tensor({1.5f, 1.0f}))) << average.tensors()[0];
  average.update({torch::tensor({1.5f, 5.0f})});  // 0.75 * 1.5 + 0.25 * 1.5; 0.75 * 1 + 0.25 * 5
  EXPECT_TRUE(torch::equal(average.tensors()[0], torch::tensor({1.5f, 2.0f}))) << average.tensors()[0];
}

TEST(WeightAverage, FollowsEveryTensorOfATinyModelAsWorkedOutByHand) {
  CharRNN model = tiny_model();
  const std::vector<torch::Tensor> parameters = model->parameters();
  const double decay = 0.9;
  WeightAverage average(decay, 0.0);
  average.after_step(parameters, 0.1);  // starts: a copy of the weights
  // the expected average in double, one element at a time
  std::vector<std::vector<double>> expected;
  for (const torch::Tensor& p : parameters) {
    const torch::Tensor flat = p.detach().to(torch::kDouble).flatten();
    expected.emplace_back(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
  }
  // three "steps", each moving the weights somewhere else
  for (int step = 1; step <= 3; ++step) {
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < parameters.size(); ++i) parameters[i].mul_(-0.5).add_(0.25 * step + 0.01 * static_cast<double>(i));
    }
    average.after_step(parameters, 0.1 + 0.2 * step);
    for (size_t i = 0; i < parameters.size(); ++i) {
      const torch::Tensor w = parameters[i].detach().to(torch::kDouble).flatten();
      for (int64_t k = 0; k < w.numel(); ++k) {
        double& a = expected[i][static_cast<size_t>(k)];
        a = decay * a + (1 - decay) * w[k].item<double>();
      }
    }
  }
  ASSERT_EQ(average.tensors().size(), parameters.size());
  for (size_t i = 0; i < parameters.size(); ++i) {
    const torch::Tensor got = average.tensors()[i].to(torch::kDouble).flatten();
    ASSERT_EQ(got.numel(), static_cast<int64_t>(expected[i].size()));
    for (int64_t k = 0; k < got.numel(); ++k)
      EXPECT_NEAR(got[k].item<double>(), expected[i][static_cast<size_t>(k)], 1e-6) << "tensor " << i << " element " << k;
    // an average, not the weights themselves
    EXPECT_FALSE(torch::equal(average.tensors()[i], parameters[i].detach())) << "tensor " << i;
  }
}

TEST(WeightAverage, StartsAsACopyOfTheWeightsWhenTheProgressReachesTheStart) {
  torch::Tensor weights = torch::tensor({4.0f, 8.0f});
  WeightAverage average(0.5, 0.5);
  average.after_step({weights}, 0.25);
  average.after_step({weights}, 0.49);
  EXPECT_FALSE(average.started());
  weights.fill_(2.0f);
  average.after_step({weights}, 0.5);
  ASSERT_TRUE(average.started());
  EXPECT_TRUE(torch::equal(average.tensors()[0], torch::tensor({2.0f, 2.0f})));
  weights.fill_(6.0f);  // a copy: the weights moving do not move the average
  EXPECT_TRUE(torch::equal(average.tensors()[0], torch::tensor({2.0f, 2.0f})));
  average.after_step({weights}, 0.6);
  EXPECT_TRUE(torch::equal(average.tensors()[0], torch::tensor({4.0f, 4.0f})));
}

TEST(WeightAverage, DecayZeroNeverAverages) {
  WeightAverage average(0.0, 0.0);
  for (double progress : {0.0, 0.5, 1.0}) average.after_step({torch::ones({2})}, progress);
  EXPECT_FALSE(average.started());
  EXPECT_TRUE(average.tensors().empty());
}

TEST(ServedWeights, ServeTheAverageThenPutTheWeightsBackBitForBit) {
  CharRNN model = tiny_model();
  const std::vector<torch::Tensor> raw = clones(model->parameters());
  WeightAverage average(0.9, 0.0);
  average.start(model->parameters());
  {
    torch::NoGradGuard no_grad;
    for (const torch::Tensor& p : model->parameters()) p.add_(torch::randn_like(p));
  }
  average.update(model->parameters());
  const std::vector<torch::Tensor> moved = clones(model->parameters());
  // gradients and requires_grad are the training's: the swap leaves them be
  const torch::Tensor ids = torch::tensor({{0, 1, 2}}, torch::kLong);
  model->forward(ids).first.sum().backward();
  const std::vector<torch::Tensor> grads = [&] {
    std::vector<torch::Tensor> g;
    for (const torch::Tensor& p : model->parameters()) g.push_back(p.grad().clone());
    return g;
  }();
  {
    const ServedWeights served(model, average);
    const auto parameters = model->parameters();
    for (size_t i = 0; i < parameters.size(); ++i) {
      EXPECT_TRUE(torch::equal(parameters[i], average.tensors()[i])) << i;
      EXPECT_FALSE(torch::equal(parameters[i], moved[i])) << i;
    }
  }
  const auto parameters = model->parameters();
  for (size_t i = 0; i < parameters.size(); ++i) {
    EXPECT_TRUE(torch::equal(parameters[i], moved[i])) << i;
    EXPECT_TRUE(parameters[i].requires_grad()) << i;
    EXPECT_TRUE(torch::equal(parameters[i].grad(), grads[i])) << i;
    EXPECT_FALSE(torch::equal(parameters[i], raw[i])) << i;
  }
}

TEST(ServedWeights, ChangeNothingBeforeTheAverageStarts) {
  CharRNN model = tiny_model();
  const std::vector<torch::Tensor> before = clones(model->parameters());
  const WeightAverage average(0.9, 0.5);
  {
    const ServedWeights served(model, average);
    const auto parameters = model->parameters();
    for (size_t i = 0; i < parameters.size(); ++i) EXPECT_TRUE(torch::equal(parameters[i], before[i])) << i;
  }
}

}  // namespace
