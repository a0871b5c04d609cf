// model against PyTorch: tests/golden/make_golden.py builds the same model in
// Python with formula-set weights and records logits and final state for a
// fixed input; here the same weights go into charrnn::CharRNN by name and the
// outputs must agree. The JSON files are committed; no Python runs here.
#include <fstream>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "charrnn/config.h"
#include "charrnn/model.h"

namespace {

using nlohmann::json;

constexpr double kAtol = 1e-5;  // float32 through a few layers
constexpr double kRtol = 0.0;

json load_golden(const std::string& cell) {
  const std::string path = std::string(CHARRNN_GOLDEN_DIR) + "/golden_" + cell + ".json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path + "; regenerate with tests/golden/make_golden.py");
  return json::parse(in);
}

torch::Tensor tensor_from(const json& record) {
  const auto shape = record.at("shape").get<std::vector<int64_t>>();
  const auto values = record.at("values").get<std::vector<float>>();
  torch::Tensor t = torch::tensor(values, torch::kFloat);
  EXPECT_EQ(t.numel(), torch::zeros(shape).numel());
  return t.view(shape).clone();
}

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, const char* what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double max_diff = (actual - expected).abs().max().item<double>();
  EXPECT_TRUE(torch::allclose(actual, expected, kRtol, kAtol)) << what << ": max |diff| = " << max_diff;
}

class GoldenTest : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenTest, MatchesPyTorch) {
  const std::string cell_name = GetParam();
  const json golden = load_golden(cell_name);
  ASSERT_EQ(golden.at("cell").get<std::string>(), cell_name);

  charrnn::ModelOptions options;
  options.cell = charrnn::parse_cell(cell_name, "golden");
  options.embedding_dim = golden.at("embedding_dim").get<int64_t>();
  options.hidden_size = golden.at("hidden_size").get<int64_t>();
  options.num_layers = golden.at("num_layers").get<int64_t>();
  options.dropout = 0;
  const int64_t V = golden.at("vocab_size").get<int64_t>();
  charrnn::CharRNN model(V, options);
  model->eval();

  // copy every parameter by name; the two sets of names must be identical
  const json& params = golden.at("parameters");
  std::set<std::string> copied;
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters()) {
      ASSERT_TRUE(params.contains(p.key())) << "golden file lacks " << p.key();
      const torch::Tensor value = tensor_from(params.at(p.key()));
      ASSERT_EQ(p.value().sizes(), value.sizes()) << p.key();
      p.value().copy_(value);
      copied.insert(p.key());
    }
  }
  EXPECT_EQ(copied.size(), params.size()) << "golden file has parameters the model lacks";

  const auto ids_2d = golden.at("input_ids").get<std::vector<std::vector<int64_t>>>();
  const int64_t B = static_cast<int64_t>(ids_2d.size()), T = static_cast<int64_t>(ids_2d.front().size());
  std::vector<int64_t> flat;
  for (const auto& row : ids_2d) flat.insert(flat.end(), row.begin(), row.end());
  const torch::Tensor ids = torch::tensor(flat, torch::kLong).view({B, T});

  torch::NoGradGuard no_grad;
  auto [logits, state] = model->forward(ids);  // logits: (B, T, V)
  expect_close(logits, tensor_from(golden.at("logits")), "logits");
  expect_close(state.h, tensor_from(golden.at("h")), "h");
  if (golden.contains("c")) {
    ASSERT_TRUE(state.c.defined());
    expect_close(state.c, tensor_from(golden.at("c")), "c");
  } else {
    EXPECT_FALSE(state.c.defined());
  }

  // the same from the state: step by step with carried state gives the same logits
  charrnn::State carried;
  std::vector<torch::Tensor> steps;
  for (int64_t t = 0; t < T; ++t) {
    auto [step_logits, next] = model->forward(ids.narrow(1, t, 1), carried);
    steps.push_back(step_logits);
    carried = next;
  }
  expect_close(torch::cat(steps, 1), tensor_from(golden.at("logits")), "logits, one step at a time");
}

INSTANTIATE_TEST_SUITE_P(AllCells, GoldenTest, ::testing::Values("rnn", "gru", "lstm"),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

}  // namespace
