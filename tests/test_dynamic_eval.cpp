// dynamic_eval: the update against a PyTorch implementation of the same rule
// (tests/golden/make_dynamic_eval_golden.py), the caller's model left alone,
// learning rate 0 scoring as the static carried evaluation, and a
// repetitive text learned while it is read.
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "charrnn/dynamic_eval.h"
#include "charrnn/error.h"
#include "charrnn/evaluate.h"
#include "charrnn/model.h"

namespace {

using charrnn::CharRNN;
using charrnn::DynamicEvalOptions;
using charrnn::DynamicEvalResult;
using nlohmann::json;

CharRNN small_model(int64_t vocab, charrnn::CellType cell, double dropout) {
  torch::manual_seed(0);
  charrnn::ModelOptions o;
  o.cell = cell;
  o.embedding_dim = 8;
  o.hidden_size = 24;
  o.num_layers = 2;
  o.dropout = dropout;
  return CharRNN(vocab, o);
}

std::map<std::string, torch::Tensor> copy_parameters(const CharRNN& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : model->named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

torch::Tensor random_ids(int64_t vocab, int64_t n) {
  torch::manual_seed(1);
  return torch::randint(0, vocab, {n}, torch::kLong);
}

TEST(DynamicEvalTest, LeavesTheCallersModelAsItWas) {
  CharRNN model = small_model(12, charrnn::CellType::LSTM, 0.3);
  model->train();
  const auto before = copy_parameters(model);
  DynamicEvalOptions options;
  options.learning_rate = 0.05;
  options.segment = 16;
  const DynamicEvalResult r = charrnn::evaluate_dynamic(model, random_ids(12, 300), options, torch::kCPU);
  EXPECT_EQ(r.dynamic.chars, 299);
  EXPECT_NE(r.dynamic.loss, r.static_loss.loss);  // the copy did learn
  EXPECT_TRUE(model->is_training());
  for (const auto& p : model->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), before.at(p.key()))) << p.key() << " changed";
}

TEST(DynamicEvalTest, LearningRateZeroScoresAsTheStaticCarriedEvaluation) {
  for (const charrnn::CellType cell : {charrnn::CellType::GRU, charrnn::CellType::LSTM, charrnn::CellType::RNN}) {
    CharRNN model = small_model(15, cell, 0.5);  // dropout must act in neither score
    const torch::Tensor ids = random_ids(15, 257);
    DynamicEvalOptions options;
    options.learning_rate = 0;
    options.decay = 0.5;
    options.segment = 40;  // 256 predictions: six segments and a shorter seventh
    const DynamicEvalResult r = charrnn::evaluate_dynamic(model, ids, options, torch::kCPU);
    const charrnn::EvalResult carried = charrnn::evaluate(model, ids, 1, options.segment, torch::kCPU);
    // the static score runs the very ops evaluate() runs
    EXPECT_EQ(r.static_loss.loss_sum, carried.loss_sum);
    EXPECT_EQ(r.static_loss.chars, carried.chars);
    // the adapting copy runs through the fused training layers: the same
    // sums in another order
    EXPECT_NEAR(r.dynamic.loss, carried.loss, 1e-5);
    EXPECT_EQ(r.dynamic.chars, carried.chars);
  }
}

TEST(DynamicEvalTest, PiecesOfAnySizeGiveTheSameResult) {
  CharRNN model = small_model(10, charrnn::CellType::GRU, 0);
  const torch::Tensor ids = random_ids(10, 203);
  DynamicEvalOptions options;
  options.learning_rate = 0.02;
  options.segment = 17;
  const DynamicEvalResult whole = charrnn::evaluate_dynamic(model, ids, options, torch::kCPU);
  charrnn::DynamicEvaluator evaluator(model, options, torch::kCPU);
  const int64_t* p = ids.data_ptr<int64_t>();
  for (size_t first = 0, size = 1; first < 203; first += size, size = size * 3 % 29 + 1)
    evaluator.feed(p + first, std::min<size_t>(size, 203 - first));
  const DynamicEvalResult pieces = evaluator.finish();
  EXPECT_EQ(pieces.dynamic.loss_sum, whole.dynamic.loss_sum);
  EXPECT_EQ(pieces.static_loss.loss_sum, whole.static_loss.loss_sum);
}

TEST(DynamicEvalTest, LearnsARepetitiveText) {
  CharRNN model = small_model(9, charrnn::CellType::GRU, 0);
  // a phrase the untrained model cannot know, repeated: reading it again
  // and again should make it predictable
  const std::vector<int64_t> phrase = {3, 1, 4, 1, 5, 0, 2, 6, 5, 3, 5, 8, 7, 0};
  std::vector<int64_t> text;
  for (int repeat = 0; repeat < 40; ++repeat) text.insert(text.end(), phrase.begin(), phrase.end());
  DynamicEvalOptions options;
  options.learning_rate = 0.01;
  options.segment = 20;
  const DynamicEvalResult r =
      charrnn::evaluate_dynamic(model, torch::tensor(text, torch::kLong), options, torch::kCPU);
  EXPECT_LT(r.dynamic.loss, r.static_loss.loss - 0.5) << "static " << r.static_loss.loss;
}

TEST(DynamicEvalTest, RejectsInvalidOptionsAndShortTexts) {
  CharRNN model = small_model(5, charrnn::CellType::GRU, 0);
  const auto rejects = [&](DynamicEvalOptions o) {
    EXPECT_THROW({ charrnn::DynamicEvaluator evaluator(model, o, torch::kCPU); }, charrnn::UsageError);
  };
  DynamicEvalOptions o;
  o.learning_rate = -1;
  rejects(o);
  o = {};
  o.decay = 1.5;
  rejects(o);
  o = {};
  o.segment = 0;
  rejects(o);
  o = {};
  o.epsilon = 0;
  rejects(o);
  o = {};
  o.rms_decay = 1;
  rejects(o);
  charrnn::DynamicEvaluator evaluator(model, DynamicEvalOptions{}, torch::kCPU);
  const int64_t one = 2;
  evaluator.feed(&one, 1);
  EXPECT_THROW(evaluator.finish(), charrnn::UsageError);
}

json load_golden() {
  const std::string path = std::string(CHARRNN_GOLDEN_DIR) + "/golden_dynamic_eval.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path + "; regenerate with tests/golden/make_dynamic_eval_golden.py");
  return json::parse(in);
}

torch::Tensor tensor_from(const json& record) {
  const auto shape = record.at("shape").get<std::vector<int64_t>>();
  return torch::tensor(record.at("values").get<std::vector<float>>(), torch::kFloat).view(shape).clone();
}

TEST(DynamicEvalGoldenTest, MatchesPyTorch) {
  const json golden = load_golden();
  charrnn::ModelOptions m;
  m.cell = charrnn::parse_cell(golden.at("cell").get<std::string>(), "golden");
  m.embedding_dim = golden.at("embedding_dim").get<int64_t>();
  m.hidden_size = golden.at("hidden_size").get<int64_t>();
  m.num_layers = golden.at("num_layers").get<int64_t>();
  m.dropout = 0;
  CharRNN model(golden.at("vocab_size").get<int64_t>(), m);
  // make_golden.py's formula-set weights: the adapter copies them as θ0
  {
    torch::NoGradGuard no_grad;
    int64_t i = 0;
    for (auto& p : model->named_parameters()) {
      const torch::Tensor k = torch::arange(p.value().numel(), torch::kDouble);
      p.value().copy_((0.3 * torch::sin(0.7 * k + 1.3 * static_cast<double>(i++))).view(p.value().sizes()));
    }
  }
  const auto before = copy_parameters(model);
  const json& o = golden.at("options");
  DynamicEvalOptions options;
  options.learning_rate = o.at("learning_rate").get<double>();
  options.decay = o.at("decay").get<double>();
  options.segment = o.at("segment").get<int64_t>();
  options.epsilon = o.at("epsilon").get<double>();
  options.rms_decay = o.at("rms_decay").get<double>();
  const std::vector<int64_t> ids = golden.at("ids").get<std::vector<int64_t>>();
  const std::vector<double> expected = golden.at("segment_loss_sums").get<std::vector<double>>();

  charrnn::DynamicAdapter adapter(*model, options, torch::kCPU);
  size_t segment = 0;
  for (int64_t first = 0; first + 1 < static_cast<int64_t>(ids.size()); first += options.segment, ++segment) {
    const int64_t w = std::min<int64_t>(options.segment, static_cast<int64_t>(ids.size()) - 1 - first);
    ASSERT_LT(segment, expected.size());
    EXPECT_NEAR(adapter.learn(ids.data() + first, w), expected[segment], 1e-5) << "segment " << segment;
  }
  EXPECT_EQ(segment, expected.size());
  EXPECT_EQ(adapter.updates(), static_cast<int64_t>(expected.size()));
  for (const auto& p : adapter.model()->named_parameters()) {
    const torch::Tensor want = tensor_from(golden.at("parameters").at(p.key()));
    const double diff = (p.value() - want).abs().max().item<double>();
    EXPECT_LT(diff, 1e-5) << p.key();
    EXPECT_GT((p.value() - before.at(p.key())).abs().max().item<double>(), 1e-3) << p.key() << " hardly moved";
  }

  // the evaluator: the same sums, and the static one beside them
  const DynamicEvalResult r =
      charrnn::evaluate_dynamic(model, torch::tensor(ids, torch::kLong), options, torch::kCPU);
  double dynamic_sum = 0;
  for (const double v : expected) dynamic_sum += v;
  EXPECT_NEAR(r.dynamic.loss_sum, dynamic_sum, 1e-4);
  EXPECT_NEAR(r.static_loss.loss_sum, golden.at("static_loss_sum").get<double>(), 1e-4);
}

}  // namespace
