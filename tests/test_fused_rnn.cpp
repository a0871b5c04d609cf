// The fused training layers against LibTorch's nn::LSTM/GRU/RNN: same
// outputs, same final states and the same gradients for every parameter,
// the input and the initial state. Each case runs with one BLAS thread (the
// recurrent products go through PackedWeight's SIMD kernel where the CPU has
// one) and with two (they go to LibTorch).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/kernels/fused_rnn.h"
#include "charrnn/kernels/isa.h"
#include "charrnn/model.h"
#include "charrnn/runtime.h"
#include "test_helpers.h"

namespace {

using charrnn::CellType;

class FusedRnn : public ::testing::TestWithParam<std::tuple<CellType, int64_t, int64_t>> {
 protected:
  void SetUp() override {
    torch::manual_seed(11);
    charrnn::set_blas_threads(std::get<2>(GetParam()));
  }
};

// A model on the fused path and an identical one on LibTorch's nn:: modules.
std::pair<charrnn::CharRNN, charrnn::CharRNN> twin_models(CellType cell, int64_t layers, int64_t vocab,
                                                          int64_t embedding, int64_t hidden) {
  charrnn::ModelOptions options;
  options.cell = cell;
  options.embedding_dim = embedding;
  options.hidden_size = hidden;
  options.num_layers = layers;
  // the twins compare arithmetic: without dropout, whose masks the fused
  // path draws its own way (model.cpp) and LibTorch's modules theirs
  options.dropout = 0;
  charrnn::CharRNN fused(vocab, options), reference(vocab, options);
  torch::NoGradGuard no_grad;
  auto dst = reference->parameters();
  auto src = fused->parameters();
  for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  reference->set_use_fused(false);
  return {fused, reference};
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
  ASSERT_TRUE(a.defined() && b.defined()) << what;
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double scale = std::max(1.0, b.abs().max().item<double>());
  EXPECT_LT((a - b).abs().max().item<double>(), 2e-5 * scale) << what;
}

TEST_P(FusedRnn, ModelOutputsAndGradientsMatchNnModules) {
  const auto [cell, layers, blas_threads] = GetParam();
  auto [fused, reference] = twin_models(cell, layers, /*vocab=*/17, /*embedding=*/12, /*hidden=*/20);
  fused->train();
  reference->train();

  const int64_t B = 5, T = 9;
  const torch::Tensor ids = torch::randint(0, 17, {B, T}, torch::kLong);
  charrnn::State start{torch::randn({layers, B, 20}), cell == CellType::LSTM ? torch::randn({layers, B, 20}) : torch::Tensor()};
  const torch::Tensor w_logits = torch::randn({B, T, 17});
  const torch::Tensor w_h = torch::randn({layers, B, 20}), w_c = torch::randn({layers, B, 20});

  auto run = [&](charrnn::CharRNN& model, charrnn::State s) {
    s.h = s.h.clone().requires_grad_(true);
    if (s.c.defined()) s.c = s.c.clone().requires_grad_(true);
    auto [logits, next] = model->forward(ids, s);
    // every output feeds the loss, so every gradient path is exercised
    torch::Tensor loss = (logits * w_logits).sum() + (next.h * w_h).sum();
    if (next.c.defined()) loss = loss + (next.c * w_c).sum();
    model->zero_grad();
    loss.backward();
    return std::make_tuple(logits.detach(), next.detach(), s);
  };
  const auto [fused_logits, fused_state, fused_start] = run(fused, start);
  const auto [ref_logits, ref_state, ref_start] = run(reference, start);

  expect_close(fused_logits, ref_logits, "logits");
  expect_close(fused_state.h, ref_state.h, "final h");
  if (cell == CellType::LSTM) expect_close(fused_state.c, ref_state.c, "final c");
  expect_close(fused_start.h.grad(), ref_start.h.grad(), "gradient of h0");
  if (cell == CellType::LSTM) expect_close(fused_start.c.grad(), ref_start.c.grad(), "gradient of c0");
  const auto fused_params = fused->named_parameters();
  const auto ref_params = reference->named_parameters();
  for (const auto& p : ref_params) expect_close(fused_params[p.key()].grad(), p.value().grad(), "gradient of " + p.key());
}

TEST_P(FusedRnn, WithoutInitialStateOrFinalStateGradient) {
  const auto [cell, layers, blas_threads] = GetParam();
  auto [fused, reference] = twin_models(cell, layers, /*vocab=*/11, /*embedding=*/6, /*hidden=*/8);
  const torch::Tensor ids = torch::randint(0, 11, {3, 1}, torch::kLong);  // a single time step
  const torch::Tensor targets = torch::randint(0, 11, {3}, torch::kLong);
  for (charrnn::CharRNN* model : {&fused, &reference}) {
    auto [logits, state] = (*model)->forward(ids);
    torch::nn::functional::cross_entropy(logits.reshape({-1, 11}), targets).backward();
  }
  for (const auto& p : reference->named_parameters())
    expect_close(fused->named_parameters()[p.key()].grad(), p.value().grad(), "gradient of " + p.key());
}

// The LSTM's and GRU's fused time steps compute their own exp
// (kernels/fused_rnn.cpp): large input weights drive the gates into saturation and
// past exp's clamps, and 40 hidden units take both the 16-wide vector loop
// and the scalar tail. Every instruction set's copy of the loops (and of
// the recurrent product's kernel) is checked, as far as the CPU runs it.
class FusedCellStep : public ::testing::TestWithParam<std::tuple<CellType, charrnn::Isa>> {};

TEST_P(FusedCellStep, SaturatedGatesMatchNnModules) {
  const auto [cell, isa] = GetParam();
  if (charrnn::cpu_isa() < isa) GTEST_SKIP() << "this CPU does not run " << charrnn::to_string(isa);
  const charrnn_test::ScopedKernelIsa cap(isa);
  ASSERT_EQ(charrnn::kernel_isa(), isa);
  charrnn::set_blas_threads(1);  // the recurrent products on the packed kernel, as in the batch split
  torch::manual_seed(5);
  auto [fused, reference] = twin_models(cell, 2, /*vocab=*/13, /*embedding=*/10, /*hidden=*/40);
  {
    torch::NoGradGuard no_grad;
    // large input weights and biases push the pre-activations to +-100 and
    // beyond; the recurrent weights stay small, so the runs' last-bit
    // differences are not amplified from step to step
    for (auto* model : {&fused, &reference})
      for (const auto& p : (*model)->named_parameters())
        if (p.key().find("weight_ih") != std::string::npos || p.key().find("bias") != std::string::npos)
          p.value().mul_(120.0);
  }
  const torch::Tensor ids = torch::randint(0, 13, {4, 30}, torch::kLong);
  const torch::Tensor targets = torch::randint(0, 13, {4, 30}, torch::kLong);
  std::vector<torch::Tensor> logits;
  for (charrnn::CharRNN* model : {&fused, &reference}) {
    auto [out, state] = (*model)->forward(ids);
    torch::nn::functional::cross_entropy(out.reshape({-1, 13}), targets.reshape(-1)).backward();
    logits.push_back(out.detach());
  }
  EXPECT_TRUE(torch::isfinite(logits[0]).all().item<bool>());
  expect_close(logits[0], logits[1], "logits");
  for (const auto& p : reference->named_parameters())
    expect_close(fused->named_parameters()[p.key()].grad(), p.value().grad(), "gradient of " + p.key());
}

INSTANTIATE_TEST_SUITE_P(GatedCells, FusedCellStep,
                         ::testing::Combine(::testing::Values(CellType::GRU, CellType::LSTM),
                                            ::testing::ValuesIn(charrnn_test::all_isas())),
                         [](const auto& info) {
                           return charrnn::to_string(std::get<0>(info.param)) + std::string("_") +
                                  charrnn::to_string(std::get<1>(info.param));
                         });

// One layer fed by a plain input (the model's first layer is fed by its
// embedding's table instead): the output, the final state and the gradients
// of the input, h0 and every weight against nn::LSTM/GRU/RNN.
TEST_P(FusedRnn, LayerOnAnInputMatchesNnModule) {
  const auto [cell, layers, blas_threads] = GetParam();
  if (layers != 1) GTEST_SKIP() << "one layer is enough";
  const int64_t T = 7, B = 6, I = 9, H = 33;  // 6 rows: a full AVX2 tile; 33 columns: a partial panel
  torch::nn::LSTM lstm(torch::nn::LSTMOptions(I, H));
  torch::nn::GRU gru(torch::nn::GRUOptions(I, H));
  torch::nn::RNN rnn(torch::nn::RNNOptions(I, H));
  const std::vector<torch::Tensor> w = cell == CellType::LSTM  ? lstm->all_weights()
                                       : cell == CellType::GRU ? gru->all_weights()
                                                               : rnn->all_weights();
  const torch::Tensor x0 = torch::randn({T, B, I}), h00 = torch::randn({B, H}), c00 = torch::randn({B, H});
  const torch::Tensor w_out = torch::randn({T, B, H}), w_h = torch::randn({B, H});

  auto grads = [&](bool fused) {
    const torch::Tensor x = x0.clone().requires_grad_(true), h0 = h00.clone().requires_grad_(true);
    torch::Tensor out, h;
    if (fused) {
      charrnn::FusedLayerOutput r = charrnn::fused_rnn_layer(cell, x, h0, c00, w[0], w[1], w[2], w[3]);
      out = r.out, h = r.h;
    } else if (cell == CellType::LSTM) {
      auto [o, hc] = lstm(x, std::make_tuple(h0.unsqueeze(0), c00.unsqueeze(0)));
      out = o, h = std::get<0>(hc)[0];
    } else {
      auto [o, hn] = cell == CellType::GRU ? gru(x, h0.unsqueeze(0)) : rnn(x, h0.unsqueeze(0));
      out = o, h = hn[0];
    }
    for (const auto& p : w) p.mutable_grad() = torch::Tensor();
    ((out * w_out).sum() + (h * w_h).sum()).backward();
    std::vector<torch::Tensor> result{out.detach(), h.detach(), x.grad(), h0.grad()};
    for (const auto& p : w) result.push_back(p.grad().clone());
    return result;
  };
  const auto fused = grads(true), reference = grads(false);
  const char* names[] = {"output", "final h", "gradient of x", "gradient of h0",
                         "gradient of w_ih", "gradient of w_hh", "gradient of b_ih", "gradient of b_hh"};
  for (size_t i = 0; i < reference.size(); ++i) expect_close(fused[i], reference[i], names[i]);
}

TEST(FusedRnnGuards, OnlyFloatCpuInputIsSupported) {
  EXPECT_TRUE(charrnn::fused_rnn_supported(torch::zeros({2, 3, 4})));
  EXPECT_FALSE(charrnn::fused_rnn_supported(torch::zeros({2, 3, 4}, torch::kDouble)));
  EXPECT_FALSE(charrnn::fused_rnn_supported(torch::zeros({3, 4})));
}

TEST(FusedRnnGuards, EmbeddedLayerNeedsTimeByBatchIds) {
  const torch::Tensor emb = torch::randn({5, 3}), w_ih = torch::randn({4, 3}), w_hh = torch::randn({4, 4}),
                      b = torch::zeros({4}), h0 = torch::zeros({2, 4});
  const auto layer = [&](const torch::Tensor& ids) {
    return charrnn::fused_rnn_embedded_layer(CellType::RNN, ids, emb, h0, h0, w_ih, w_hh, b, b);
  };
  EXPECT_EQ(layer(torch::randint(0, 5, {3, 2}, torch::kLong)).out.sizes(), (std::vector<int64_t>{3, 2, 4}));
  EXPECT_THROW(layer(torch::randint(0, 5, {6}, torch::kLong)), c10::Error);
  EXPECT_THROW(layer(torch::randint(0, 5, {3, 2}, torch::kInt)), c10::Error);
  EXPECT_THROW(layer(torch::zeros({0, 2}, torch::kLong)), c10::Error);
  EXPECT_THROW(layer(torch::full({3, 2}, 5, torch::kLong)), c10::Error);  // an id past the table
}

TEST(FusedRnnGuards, InferenceUsesLibTorchKernels) {
  // eval mode and no-grad take the nn:: path, whose logits the export reproduces bit for bit
  charrnn::ModelOptions options;
  charrnn::CharRNN model(9, options);
  model->eval();
  const torch::Tensor ids = torch::randint(0, 9, {2, 4}, torch::kLong);
  const torch::Tensor a = model->forward(ids).first;
  model->set_use_fused(false);
  EXPECT_TRUE(torch::equal(a, model->forward(ids).first));
}

INSTANTIATE_TEST_SUITE_P(AllCells, FusedRnn,
                         ::testing::Combine(::testing::Values(CellType::RNN, CellType::GRU, CellType::LSTM),
                                            ::testing::Values(1, 2), ::testing::Values(1, 2)));

}  // namespace
