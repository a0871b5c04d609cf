// CUDA: on a GPU the recurrent layers run in cuDNN (nn::LSTM/GRU/RNN), on
// the CPU in charrnn's fused layers (kernels/fused_rnn.cpp). The same weights must
// give the same outputs and gradients on both; training must learn on CUDA
// in float and under bf16 autocast; a checkpoint trained on the GPU must
// generate the same text on a machine without one. Every test that needs a
// GPU skips without one (CI has none); scripts/cuda-check.sh runs them.
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/charrnn.h"
#include "charrnn/config.h"
#include "charrnn/error.h"
#include "charrnn/generate.h"
#include "charrnn/model.h"
#include "charrnn/runtime.h"
#include "charrnn/trainer.h"
#include "test_helpers.h"

namespace {

using charrnn::CellType;
using charrnn::CharRNN;
using charrnn::Config;
using charrnn::Trainer;

#define SKIP_WITHOUT_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "CUDA is not available"

class CudaVsCpuTest : public ::testing::TestWithParam<std::tuple<CellType, int64_t>> {};

TEST_P(CudaVsCpuTest, SameWeightsGiveTheSameOutputsAndGradients) {
  SKIP_WITHOUT_CUDA();
  const auto [cell, layers] = GetParam();
  const charrnn_test::FullFloatCudnn full_float;
  constexpr int64_t V = 13, B = 4, T = 24;
  charrnn::ModelOptions options;
  options.cell = cell;
  options.embedding_dim = 8;
  options.hidden_size = 32;
  options.num_layers = layers;
  torch::manual_seed(3);
  CharRNN on_cpu(V, options);
  torch::manual_seed(3);
  CharRNN on_gpu(V, options);
  on_gpu->to(torch::kCUDA);
  ASSERT_TRUE(on_cpu->uses_fused_layers(torch::kCPU));  // what is compared against cuDNN
  ASSERT_FALSE(on_gpu->uses_fused_layers(torch::kCUDA));

  const torch::Tensor ids = torch::randint(0, V, {B, T}, torch::kLong);
  const torch::Tensor targets = torch::randint(0, V, {B, T}, torch::kLong);
  // a loss that reaches the final state as well as the logits
  const auto loss_of = [&](CharRNN& model, const torch::Device& device) {
    auto [logits, state] = model->forward(ids.to(device));
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits.reshape({-1, V}), targets.to(device).reshape(-1));
    loss = loss + state.h.pow(2).sum() * 0.1;
    if (state.c.defined()) loss = loss + state.c.pow(2).sum() * 0.1;
    return std::make_tuple(logits, state, loss);
  };
  auto [cpu_logits, cpu_state, cpu_loss] = loss_of(on_cpu, torch::kCPU);
  auto [gpu_logits, gpu_state, gpu_loss] = loss_of(on_gpu, torch::kCUDA);
  EXPECT_TRUE(torch::allclose(cpu_logits, gpu_logits.cpu(), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(cpu_state.h, gpu_state.h.cpu(), 1e-4, 1e-5));
  if (cell == CellType::LSTM) EXPECT_TRUE(torch::allclose(cpu_state.c, gpu_state.c.cpu(), 1e-4, 1e-5));

  cpu_loss.backward();
  gpu_loss.backward();
  const auto cpu_params = on_cpu->named_parameters(), gpu_params = on_gpu->named_parameters();
  ASSERT_EQ(cpu_params.size(), gpu_params.size());
  for (const auto& item : cpu_params) {
    const torch::Tensor& expected = item.value().grad();
    const torch::Tensor actual = gpu_params[item.key()].grad().cpu();
    ASSERT_TRUE(expected.defined() && actual.defined()) << item.key();
    EXPECT_TRUE(torch::allclose(expected, actual, 1e-3, 1e-5))
        << item.key() << ": largest difference " << (expected - actual).abs().max().item<double>();
  }
}

INSTANTIATE_TEST_SUITE_P(AllCells, CudaVsCpuTest,
                         ::testing::Combine(::testing::Values(CellType::RNN, CellType::GRU, CellType::LSTM),
                                            ::testing::Values(1, 2)));

// the CPU tests' small config (it learns "hello world, abc " by heart), on CUDA
Config cuda_config(const charrnn_test::TempDir& dir, CellType cell, const std::string& precision) {
  Config c = charrnn_test::small_config(dir, "run", cell, /*layers=*/2, /*dropout=*/0.0, /*steps=*/200,
                                        /*eval_every=*/100);
  c.train.device = "cuda";
  c.train.precision = charrnn::parse_precision(precision, "test");
  return c;
}

class CudaTrainingTest : public ::testing::TestWithParam<std::tuple<CellType, std::string>> {};

TEST_P(CudaTrainingTest, LearnsAPatternAndItsCheckpointGeneratesTheSameTextOnTheCpu) {
  SKIP_WITHOUT_CUDA();
  const auto [cell, precision] = GetParam();
  charrnn_test::TempDir dir;
  Trainer trainer(cuda_config(dir, cell, precision));
  ASSERT_TRUE(trainer.device().is_cuda());
  trainer.run();
  EXPECT_LT(trainer.progress().last_train_loss, 0.3) << precision;
  EXPECT_LT(trainer.progress().best_val_loss, 0.5) << precision;
  // weights and Adam's state stay float under autocast
  for (const torch::Tensor& p : trainer.model()->parameters()) {
    EXPECT_EQ(p.scalar_type(), torch::kFloat);
    EXPECT_TRUE(p.is_cuda());
  }

  charrnn::GenerateOptions greedy;
  greedy.prime = "hello world, ";
  greedy.length = 2 * static_cast<int64_t>(charrnn_test::kPattern.size());
  greedy.sampling.temperature = 0;
  const std::string checkpoint = dir.file("run/model.pt");
  const std::string on_gpu = charrnn::TextGenerator(checkpoint, "cuda").generate(greedy);
  const std::string on_cpu = charrnn::TextGenerator(checkpoint, "cpu").generate(greedy);
  EXPECT_EQ(on_gpu, on_cpu);
  EXPECT_EQ(on_cpu.substr(0, 13 + charrnn_test::kPattern.size()), "hello world, abc hello world, ");
}

INSTANTIATE_TEST_SUITE_P(CellsAndPrecisions, CudaTrainingTest,
                         ::testing::Combine(::testing::Values(CellType::RNN, CellType::GRU, CellType::LSTM),
                                            ::testing::Values("fp32", "bf16")));

TEST(CudaBf16Autocast, LowersMatrixProductsOnlyWhileAlive) {
  SKIP_WITHOUT_CUDA();
  const torch::Tensor a = torch::randn({8, 8}, torch::kCUDA);
  EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kFloat);
  {
    const charrnn::CudaBf16Autocast autocast(true);
    EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kBFloat16);
    {
      const charrnn::CudaBf16Autocast off(false);  // an inactive guard changes nothing
      EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kBFloat16);
    }
    // losses stay float
    const torch::Tensor logits = torch::mm(a, a);
    const torch::Tensor loss = torch::nn::functional::cross_entropy(logits, torch::zeros({8}, torch::kLong).cuda());
    EXPECT_EQ(loss.scalar_type(), torch::kFloat);
  }
  EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kFloat);
}

TEST(CudaBf16Autocast, InactiveGuardLeavesCpuWorkAlone) {
  const torch::Tensor a = torch::randn({4, 4});
  const charrnn::CudaBf16Autocast autocast(true);
  EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kFloat);  // CUDA autocast does not touch CPU ops
}

TEST(Bf16Precision, IsRefusedOnTheCpuWithTheReason) {
  charrnn_test::TempDir dir;
  Config config = cuda_config(dir, CellType::LSTM, "bf16");
  config.train.device = "cpu";
  const std::string message = charrnn_test::thrown_message<charrnn::UsageError>([&] { Trainer trainer(config); });
  EXPECT_NE(message.find("train.precision=bf16"), std::string::npos) << message;
  EXPECT_NE(message.find("cpu"), std::string::npos) << message;
}

}  // namespace
