// model: output and state shapes for every cell and depth, state carrying
// across calls, and PyTorch-compatible parameter names. In the style of
// LibTorch's test/cpp/api/rnn.cpp: a seeding fixture and _CUDA variants.
#include <cmath>
#include <string>
#include <tuple>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/config.h"
#include "charrnn/model.h"

namespace {

using charrnn::CellType;
using charrnn::CharRNN;
using charrnn::ModelOptions;
using charrnn::State;

constexpr int64_t V = 11, E = 8, H = 16, B = 3, T = 10;

ModelOptions options_for(CellType cell, int64_t layers, double dropout = 0.0) {
  ModelOptions o;
  o.cell = cell;
  o.embedding_dim = E;
  o.hidden_size = H;
  o.num_layers = layers;
  o.dropout = dropout;
  return o;
}

class ModelTest : public ::testing::TestWithParam<std::tuple<CellType, int64_t>> {
 protected:
  void SetUp() override { torch::manual_seed(0); }
  CellType cell() const { return std::get<0>(GetParam()); }
  int64_t layers() const { return std::get<1>(GetParam()); }
};

void check_shapes(CellType cell, int64_t layers, const torch::Device& device) {
  CharRNN model(V, options_for(cell, layers));
  model->to(device);
  const torch::Tensor ids = torch::randint(0, V, {B, T}, torch::kLong).to(device);
  auto [logits, state] = model->forward(ids);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{B, T, V}));
  EXPECT_EQ(logits.device().type(), device.type());
  EXPECT_EQ(logits.scalar_type(), torch::kFloat);
  ASSERT_TRUE(state.defined());
  EXPECT_EQ(state.h.sizes(), (std::vector<int64_t>{layers, B, H}));
  EXPECT_EQ(state.h.device().type(), device.type());
  if (cell == CellType::LSTM) {
    ASSERT_TRUE(state.c.defined());
    EXPECT_EQ(state.c.sizes(), (std::vector<int64_t>{layers, B, H}));
  } else {
    EXPECT_FALSE(state.c.defined());
  }
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
  EXPECT_EQ(model->vocab_size(), V);

  // one step at a time with the state works too
  auto [step_logits, step_state] = model->forward(ids.narrow(1, 0, 1), state);
  EXPECT_EQ(step_logits.sizes(), (std::vector<int64_t>{B, 1, V}));
  EXPECT_EQ(step_state.h.sizes(), state.h.sizes());
}

TEST_P(ModelTest, OutputAndStateShapes) { check_shapes(cell(), layers(), torch::kCPU); }

TEST_P(ModelTest, OutputAndStateShapes_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "CUDA is not available";
  check_shapes(cell(), layers(), torch::Device(torch::kCUDA));
}

TEST_P(ModelTest, CarriedStateContinuesTheSequence) {
  CharRNN model(V, options_for(cell(), layers()));
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::randint(0, V, {B, T}, torch::kLong);
  auto [whole, whole_state] = model->forward(ids);
  auto [first, first_state] = model->forward(ids.narrow(1, 0, 4));
  auto [second, second_state] = model->forward(ids.narrow(1, 4, T - 4), first_state);
  EXPECT_TRUE(torch::allclose(torch::cat({first, second}, 1), whole, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(second_state.h, whole_state.h, 1e-5, 1e-5));
  if (cell() == CellType::LSTM) EXPECT_TRUE(torch::allclose(second_state.c, whole_state.c, 1e-5, 1e-5));

  // and the state matters: the second half from zeros is different
  auto [fresh, fresh_state] = model->forward(ids.narrow(1, 4, T - 4));
  EXPECT_FALSE(torch::allclose(fresh, second, 1e-5, 1e-5));
}

// trace() steps the layers itself; every step of every layer must be what
// forward() computes, and its last layer what feeds the head.
TEST_P(ModelTest, TraceHoldsEveryLayersStateAtEveryStep) {
  CharRNN model(V, options_for(cell(), layers()));
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::randint(0, V, {T}, torch::kLong);
  auto [logits, state] = model->forward(ids.unsqueeze(0));  // logits: (1, T, V)
  auto [trace, traced_state] = model->trace(ids);
  ASSERT_EQ(trace.h.sizes(), (std::vector<int64_t>{layers(), T, H}));
  EXPECT_EQ(trace.c.defined(), cell() == CellType::LSTM);
  if (trace.c.defined()) ASSERT_EQ(trace.c.sizes(), trace.h.sizes());
  EXPECT_TRUE(torch::allclose(traced_state.h, state.h, 1e-5, 1e-5));
  if (cell() == CellType::LSTM) EXPECT_TRUE(torch::allclose(traced_state.c, state.c, 1e-5, 1e-5));
  // the last layer's h at every step, through the head, gives forward()'s logits
  const auto params = model->named_parameters();
  const torch::Tensor head = torch::nn::functional::linear(trace.h[layers() - 1], params["head.weight"], params["head.bias"]);
  EXPECT_TRUE(torch::allclose(head, logits[0], 1e-5, 1e-5));
  // every layer after each prefix is the state forward() ends that prefix with
  for (int64_t t = 0; t < T; ++t) {
    auto [ignored, prefix] = model->forward(ids.narrow(0, 0, t + 1).unsqueeze(0));
    EXPECT_TRUE(torch::allclose(trace.h.select(1, t), prefix.h.select(1, 0), 1e-5, 1e-5)) << "step " << t;
    if (cell() == CellType::LSTM)
      EXPECT_TRUE(torch::allclose(trace.c.select(1, t), prefix.c.select(1, 0), 1e-5, 1e-5)) << "step " << t;
  }
  // from a carried state: the second half continues where the first ended
  auto [first, first_state] = model->trace(ids.narrow(0, 0, 4));
  auto [second, second_state] = model->trace(ids.narrow(0, 4, T - 4), first_state);
  EXPECT_TRUE(torch::allclose(torch::cat({first.h, second.h}, 1), trace.h, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(second_state.h, state.h, 1e-5, 1e-5));
}

TEST_P(ModelTest, ExplicitZeroStateEqualsNoState) {
  CharRNN model(V, options_for(cell(), layers()));
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::randint(0, V, {B, T}, torch::kLong);
  State zeros{torch::zeros({layers(), B, H})};
  if (cell() == CellType::LSTM) zeros.c = torch::zeros({layers(), B, H});
  auto [a, sa] = model->forward(ids);
  auto [b, sb] = model->forward(ids, zeros);
  EXPECT_TRUE(torch::allclose(a, b, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(sa.h, sb.h, 1e-6, 1e-6));
}

TEST_P(ModelTest, ParameterNamesMatchPyTorch) {
  CharRNN model(V, options_for(cell(), layers()));
  const auto named = model->named_parameters();
  std::vector<std::string> names;
  for (const auto& p : named) names.push_back(p.key());
  ASSERT_GE(names.size(), 4u);
  EXPECT_EQ(names.front(), "embedding.weight");
  EXPECT_EQ(names[names.size() - 2], "head.weight");
  EXPECT_EQ(names.back(), "head.bias");
  for (const auto& name : names) {
    EXPECT_TRUE(name.rfind("embedding.", 0) == 0 || name.rfind("rnn.", 0) == 0 || name.rfind("head.", 0) == 0)
        << name;
  }
  const int64_t gates = cell() == CellType::LSTM ? 4 : cell() == CellType::GRU ? 3 : 1;
  for (int64_t l = 0; l < layers(); ++l) {
    const std::string suffix = "_l" + std::to_string(l);
    const int64_t input = l == 0 ? E : H;
    ASSERT_TRUE(named.contains("rnn.weight_ih" + suffix)) << suffix;
    ASSERT_TRUE(named.contains("rnn.weight_hh" + suffix)) << suffix;
    ASSERT_TRUE(named.contains("rnn.bias_ih" + suffix)) << suffix;
    ASSERT_TRUE(named.contains("rnn.bias_hh" + suffix)) << suffix;
    EXPECT_EQ(named["rnn.weight_ih" + suffix].sizes(), (std::vector<int64_t>{gates * H, input}));
    EXPECT_EQ(named["rnn.weight_hh" + suffix].sizes(), (std::vector<int64_t>{gates * H, H}));
    EXPECT_EQ(named["rnn.bias_ih" + suffix].sizes(), (std::vector<int64_t>{gates * H}));
  }
  EXPECT_FALSE(named.contains("rnn.weight_ih_l" + std::to_string(layers())));
  EXPECT_EQ(names.size(), 2 + 4 * static_cast<size_t>(layers()) + 1);
  EXPECT_EQ(named["embedding.weight"].sizes(), (std::vector<int64_t>{V, E}));
  EXPECT_EQ(named["head.weight"].sizes(), (std::vector<int64_t>{V, H}));
  EXPECT_EQ(named["head.bias"].sizes(), (std::vector<int64_t>{V}));

  // parameter_count: the sum of the shapes above
  const int64_t L = layers();
  const int64_t expected = V * E + gates * H * (E + H + 2) + (L - 1) * gates * H * (2 * H + 2) + H * V + V;
  EXPECT_EQ(model->parameter_count(), expected);
}

TEST_P(ModelTest, SameSeedSameWeights) {
  torch::manual_seed(123);
  CharRNN a(V, options_for(cell(), layers()));
  torch::manual_seed(123);
  CharRNN b(V, options_for(cell(), layers()));
  const auto pa = a->parameters();
  const auto pb = b->parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
}

TEST_P(ModelTest, ForgetBiasSetsOnlyTheLstmForgetGate) {
  ModelOptions options = options_for(cell(), layers());
  torch::manual_seed(5);
  CharRNN plain(V, options);
  options.forget_bias = 1.5;
  torch::manual_seed(5);
  CharRNN biased(V, options);
  const auto a = plain->named_parameters(), b = biased->named_parameters();
  const int64_t H = options.hidden_size;
  for (const auto& p : a) {
    const torch::Tensor& before = p.value();
    const torch::Tensor& after = b[p.key()];
    const bool ih = p.key().find("bias_ih") != std::string::npos, hh = p.key().find("bias_hh") != std::string::npos;
    if (cell() != CellType::LSTM || (!ih && !hh)) {
      EXPECT_TRUE(torch::equal(before, after)) << p.key() << ": only an LSTM's biases change";
      continue;
    }
    // input, forget, cell, output: the forget slice holds 1.5 in all (ih) and 0 in hh, the rest is untouched
    EXPECT_TRUE(torch::equal(after.narrow(0, H, H), torch::full({H}, ih ? 1.5f : 0.0f))) << p.key();
    EXPECT_TRUE(torch::equal(after.narrow(0, 0, H), before.narrow(0, 0, H))) << p.key();
    EXPECT_TRUE(torch::equal(after.narrow(0, 2 * H, 2 * H), before.narrow(0, 2 * H, 2 * H))) << p.key();
  }
}

std::string param_name(const ::testing::TestParamInfo<std::tuple<CellType, int64_t>>& info) {
  return charrnn::to_string(std::get<0>(info.param)) + "_" + std::to_string(std::get<1>(info.param)) + "layers";
}

INSTANTIATE_TEST_SUITE_P(AllCells, ModelTest,
                         ::testing::Combine(::testing::Values(CellType::RNN, CellType::GRU, CellType::LSTM),
                                            ::testing::Values<int64_t>(1, 2)),
                         param_name);

class ModelStateTest : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(0); }
};

TEST_F(ModelStateTest, SelectBatchAndDetach) {
  State s{torch::arange(2 * 3 * 4, torch::kFloat).view({2, 3, 4}).requires_grad_(),
          torch::arange(2 * 3 * 4, torch::kFloat).view({2, 3, 4}) * -1};
  const State picked = s.select_batch(torch::tensor({2, 0}, torch::kLong));
  EXPECT_EQ(picked.h.sizes(), (std::vector<int64_t>{2, 2, 4}));
  EXPECT_TRUE(torch::equal(picked.h.select(1, 0), s.h.select(1, 2)));
  EXPECT_TRUE(torch::equal(picked.h.select(1, 1), s.h.select(1, 0)));
  EXPECT_TRUE(torch::equal(picked.c.select(1, 0), s.c.select(1, 2)));
  const State detached = s.detach();
  EXPECT_FALSE(detached.h.requires_grad());
  EXPECT_TRUE(torch::equal(detached.h, s.h));

  // a state without c (GRU/RNN) keeps c undefined through every operation
  State h_only{torch::zeros({1, 3, 4})};
  EXPECT_FALSE(h_only.select_batch(torch::tensor({1}, torch::kLong)).c.defined());
  EXPECT_FALSE(h_only.detach().c.defined());
  EXPECT_FALSE(h_only.to(torch::kCPU).c.defined());
  EXPECT_FALSE(State{}.defined());
}

TEST_F(ModelStateTest, DropoutOnlyActsInTrainingMode) {
  CharRNN model(V, options_for(CellType::LSTM, 2, 0.5));
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::randint(0, V, {B, T}, torch::kLong);
  model->eval();
  auto a = model->forward(ids).first;
  auto b = model->forward(ids).first;
  EXPECT_TRUE(torch::equal(a, b));
  model->train();
  auto c = model->forward(ids).first;
  EXPECT_FALSE(torch::allclose(a, c, 1e-5, 1e-5));
}

// The CPU masks come from a hash keyed by one draw of the global generator:
// their drop rate must still be the configured one, element by element
// independent enough that neighbours do not drop together, and the same
// generator state must give the same masks (exact resume depends on it).
TEST_F(ModelStateTest, DropoutMasksKeepTheRateAndFollowTheGenerator) {
  const double p = 0.3;
  CharRNN model(V, options_for(CellType::GRU, 3, p));
  torch::manual_seed(7);
  const std::vector<torch::Tensor> masks = model->draw_dropout_masks(64, 128, torch::kCPU);
  ASSERT_EQ(masks.size(), 2u);  // one between each pair of layers
  for (const torch::Tensor& mask : masks) {
    EXPECT_EQ(mask.sizes(), (std::vector<int64_t>{128, 64, model->options().hidden_size}));
    const torch::Tensor dropped = mask.eq(0).to(torch::kDouble);
    const torch::Tensor kept = mask.ne(0);
    EXPECT_TRUE(torch::all(mask.masked_select(kept).eq(static_cast<float>(1.0 / (1.0 - p)))).item<bool>());
    const int64_t n = mask.numel();
    // the share dropped within 5 standard deviations of p
    EXPECT_NEAR(dropped.mean().item<double>(), p, 5 * std::sqrt(p * (1 - p) / static_cast<double>(n)));
    // neighbouring elements drop independently: both dropped about p² of the time
    const torch::Tensor flat = dropped.flatten();
    const double both = (flat.narrow(0, 0, n - 1) * flat.narrow(0, 1, n - 1)).mean().item<double>();
    EXPECT_NEAR(both, p * p, 5 * std::sqrt(p * p * (1 - p * p) / static_cast<double>(n)));
  }
  EXPECT_FALSE(torch::equal(masks[0], masks[1]));  // each mask has its own key
  torch::manual_seed(7);
  const std::vector<torch::Tensor> again = model->draw_dropout_masks(64, 128, torch::kCPU);
  for (size_t i = 0; i < masks.size(); ++i) EXPECT_TRUE(torch::equal(masks[i], again[i]));
}

// restore_model checks a checkpoint's archive against this count before it
// builds the model, so it must be exact for every cell and depth.
TEST(Model, ParameterCountMatchesTheModel) {
  for (const auto cell : {charrnn::CellType::RNN, charrnn::CellType::GRU, charrnn::CellType::LSTM}) {
    for (const int64_t layers : {1, 3}) {
      charrnn::ModelOptions options;
      options.cell = cell;
      options.embedding_dim = 5;
      options.hidden_size = 7;
      options.num_layers = layers;
      SCOPED_TRACE(charrnn::to_string(cell) + " x" + std::to_string(layers));
      EXPECT_EQ(charrnn::parameter_count(options, 11), charrnn::CharRNN(11, options)->parameter_count());
    }
  }
  charrnn::ModelOptions absurd;
  absurd.hidden_size = absurd.embedding_dim = int64_t{1} << 40;  // no int64 overflow, just a huge number
  EXPECT_GT(charrnn::parameter_count(absurd, 1 << 20), 1e24);
}

}  // namespace
