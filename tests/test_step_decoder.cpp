// StepDecoder against the module it rearranges: fed one character at a time,
// it gives forward()'s logits and state (to float rounding) for every cell,
// one or several streams, from zeros or from a given state.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/error.h"
#include "charrnn/step_decoder.h"
#include "test_helpers.h"

namespace {

using charrnn::CellType;
using charrnn_test::thrown_message;

struct Case {
  CellType cell;
  int64_t layers;
  int64_t streams;
};

class StepDecoderTest : public ::testing::TestWithParam<Case> {
 protected:
  static constexpr int64_t kVocab = 11, kSteps = 9;

  charrnn::CharRNN make_model(const torch::Device& device) {
    torch::manual_seed(21);
    charrnn::ModelOptions o;
    o.cell = GetParam().cell;
    o.embedding_dim = 5;
    o.hidden_size = 7;
    o.num_layers = GetParam().layers;
    o.dropout = 0.3;  // must not matter: the decoder is for inference
    charrnn::CharRNN model(kVocab, o);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) p.mul_(2.0);  // sharper than the default init
    }
    model->eval();
    model->to(device);
    return model;
  }

  void check(const torch::Device& device) {
    // the same kernels on the CPU; on CUDA forward() runs cuDNN, whose tanh
    // and sigmoid differ from the element-wise kernels in the last bits
    const double tol = device.is_cuda() ? 1e-4 : 1e-5;
    const int64_t B = GetParam().streams;
    charrnn::CharRNN model = make_model(device);
    torch::NoGradGuard no_grad;
    const torch::Tensor ids = torch::randint(kVocab, {B, kSteps}, torch::kLong);
    // a random starting state, as priming would leave
    const int64_t L = GetParam().layers, H = 7;
    charrnn::State start{torch::randn({L, B, H}).to(device),
                         GetParam().cell == CellType::LSTM ? torch::randn({L, B, H}).to(device) : torch::Tensor()};
    for (const charrnn::State& initial : {charrnn::State{}, start}) {
      auto [expected, expected_state] = model->forward(ids.to(device), initial);
      charrnn::StepDecoder decoder(*model, B);
      decoder.set_state(initial);
      for (int64_t t = 0; t < kSteps; ++t) {
        const torch::Tensor column = ids.select(1, t).contiguous();
        const torch::Tensor& logits = decoder.step(column.data_ptr<int64_t>());
        ASSERT_EQ(logits.sizes(), torch::IntArrayRef({B, kVocab}));
        EXPECT_TRUE(torch::allclose(logits.cpu(), expected.select(1, t).cpu(), tol, tol)) << "step " << t;
      }
      const charrnn::State state = decoder.state();
      EXPECT_TRUE(torch::allclose(state.h.cpu(), expected_state.h.cpu(), tol, tol));
      if (GetParam().cell == CellType::LSTM)
        EXPECT_TRUE(torch::allclose(state.c.cpu(), expected_state.c.cpu(), tol, tol));
      else
        EXPECT_FALSE(state.c.defined());
    }
  }
};

TEST_P(StepDecoderTest, MatchesForwardOneStepAtATime) { check(torch::kCPU); }

TEST_P(StepDecoderTest, MatchesForwardOneStepAtATime_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "CUDA is not available";
  const charrnn_test::FullFloatCudnn full_float;  // forward() runs cuDNN, the decoder cuBLAS
  check(torch::Device(torch::kCUDA));
}

TEST_P(StepDecoderTest, RejectsIdsOutsideTheVocabulary) {
  charrnn::CharRNN model = make_model(torch::kCPU);
  charrnn::StepDecoder decoder(*model, GetParam().streams);
  std::vector<int64_t> ids(static_cast<size_t>(GetParam().streams), 0);
  ids.back() = kVocab;
  EXPECT_CONTAINS(thrown_message<charrnn::Error>([&] { decoder.step(ids.data()); }), "outside the vocabulary");
  ids.back() = -1;
  EXPECT_CONTAINS(thrown_message<charrnn::Error>([&] { decoder.step(ids.data()); }), "outside the vocabulary");
}

TEST_P(StepDecoderTest, TakesTheWeightsAsTheyAreWhenBuilt) {
  // the decoder copies (rearranges) the weights; training afterwards does not reach it
  charrnn::CharRNN model = make_model(torch::kCPU);
  charrnn::StepDecoder decoder(*model, GetParam().streams);
  std::vector<int64_t> ids(static_cast<size_t>(GetParam().streams), 3);
  const torch::Tensor before = decoder.step(ids.data()).clone();
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.add_(1.0);
  }
  decoder.set_state({});
  EXPECT_TRUE(torch::equal(decoder.step(ids.data()), before));
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return charrnn::to_string(info.param.cell) + "_" + std::to_string(info.param.layers) + "layers_" +
         std::to_string(info.param.streams) + "streams";
}

INSTANTIATE_TEST_SUITE_P(Cells, StepDecoderTest,
                         ::testing::Values(Case{CellType::LSTM, 1, 1}, Case{CellType::LSTM, 3, 1},
                                           Case{CellType::LSTM, 2, 4}, Case{CellType::GRU, 1, 1},
                                           Case{CellType::GRU, 3, 1}, Case{CellType::GRU, 2, 4},
                                           Case{CellType::RNN, 1, 1}, Case{CellType::RNN, 3, 1},
                                           Case{CellType::RNN, 2, 4}),
                         case_name);

}  // namespace
