// inspect: the text features on hand-made strings with exact values,
// Pearson's correlation on known vectors, the ranking against the model's
// own trace, and the page's data block read back.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "charrnn/error.h"
#include "charrnn/inspect.h"
#include "charrnn/model.h"
#include "charrnn/utf8.h"
#include "charrnn/vocab.h"

namespace {

using charrnn::CellType;
using charrnn::CharRNN;
using charrnn::Inspection;
using charrnn::InspectOptions;
using charrnn::ModelOptions;
using charrnn::Vocab;

std::vector<float> feature(const std::u32string& text, const std::string& name) {
  for (const charrnn::TextFeature& f : charrnn::text_features(text))
    if (f.name == name) return f.values;
  ADD_FAILURE() << "no feature " << name;
  return {};
}

TEST(TextFeatures, NamesInOrder) {
  std::vector<std::string> names;
  for (const auto& f : charrnn::text_features(U"ab")) {
    names.push_back(f.name);
    EXPECT_EQ(f.values.size(), 2u);
    EXPECT_FALSE(f.description.empty());
  }
  EXPECT_EQ(names, (std::vector<std::string>{"in_quotes", "bracket_depth", "in_brackets", "line_position", "word_start",
                                             "upper_case", "digit", "after_newline"}));
}

TEST(TextFeatures, QuotesCountTheOpeningQuoteAndNotTheClosingOne) {
  //                                               a   "   b   c   "   d   “   e   ”   f
  EXPECT_EQ(feature(U"a\"bc\"d\u201Ce\u201Df", "in_quotes"), (std::vector<float>{0, 1, 1, 1, 0, 0, 1, 1, 0, 0}));
  // an unclosed quote stays open to the end
  EXPECT_EQ(feature(U"x\"y\nz", "in_quotes"), (std::vector<float>{0, 1, 1, 1, 1}));
}

TEST(TextFeatures, BracketDepthNestsAcrossKinds) {
  const std::u32string text = U"a([b]{c})d)(";
  EXPECT_EQ(feature(text, "bracket_depth"), (std::vector<float>{0, 1, 2, 2, 1, 2, 2, 1, 0, 0, 0, 1}));
  EXPECT_EQ(feature(text, "in_brackets"), (std::vector<float>{0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1}));
}

TEST(TextFeatures, LinePositionAndAfterNewline) {
  const std::u32string text = U"ab\ncde\n\nf";
  EXPECT_EQ(feature(text, "line_position"), (std::vector<float>{1, 2, 0, 1, 2, 3, 0, 0, 1}));
  EXPECT_EQ(feature(text, "after_newline"), (std::vector<float>{1, 0, 0, 1, 0, 0, 0, 1, 1}));
}

TEST(TextFeatures, WordStartsUpperCaseAndDigits) {
  //                         T  h  e     2  n  d  ,     É  t  é  —  x  '  s
  const std::u32string text = U"The 2nd, \u00C9t\u00E9\u2014x's";
  EXPECT_EQ(feature(text, "word_start"), (std::vector<float>{1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1}));
  EXPECT_EQ(feature(text, "upper_case"), (std::vector<float>{1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(feature(text, "digit"), (std::vector<float>{0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
}

TEST(PearsonColumns, KnownVectors) {
  const torch::Tensor a = torch::tensor({1.0, 2.0, 3.0, 4.0}).unsqueeze(1);  // (4, 1)
  const torch::Tensor b = torch::stack({torch::tensor({2.0, 4.0, 6.0, 8.0}), torch::tensor({4.0, 3.0, 2.0, 1.0}),
                                        torch::tensor({1.0, 0.0, 1.0, 0.0}), torch::tensor({7.0, 7.0, 7.0, 7.0})},
                                       1);  // (4, 4)
  const torch::Tensor r = charrnn::pearson_columns(a, b);
  ASSERT_EQ(r.sizes(), (std::vector<int64_t>{1, 4}));
  EXPECT_NEAR(r[0][0].item<double>(), 1.0, 1e-12);
  EXPECT_NEAR(r[0][1].item<double>(), -1.0, 1e-12);
  // x - 2.5 = (-1.5, -0.5, 0.5, 1.5), y - 0.5 = (0.5, -0.5, 0.5, -0.5): r = -1 / (sqrt(5) * 1)
  EXPECT_NEAR(r[0][2].item<double>(), -1.0 / std::sqrt(5.0), 1e-12);
  EXPECT_TRUE(std::isnan(r[0][3].item<double>())) << "a constant column has no correlation";
  // a constant float column whose mean does not round exactly is still constant
  const torch::Tensor tenth = torch::full({7, 1}, 0.1f);
  EXPECT_TRUE(std::isnan(charrnn::pearson_columns(tenth, a.narrow(0, 0, 3).repeat({3, 1}).narrow(0, 0, 7)).item<double>()));
  EXPECT_TRUE(std::isnan(charrnn::pearson_columns(a.narrow(0, 0, 1), a.narrow(0, 0, 1)).item<double>()));
}

ModelOptions small(CellType cell, int64_t layers) {
  ModelOptions o;
  o.cell = cell;
  o.embedding_dim = 6;
  o.hidden_size = 8;
  o.num_layers = layers;
  return o;
}

const std::u32string kText = U"Say \"ABC (12)\" and [x{y}z].\nThen \"Q\" 3 times.\nEnd";

class InspectTest : public ::testing::TestWithParam<std::tuple<CellType, int64_t>> {
 protected:
  void SetUp() override { torch::manual_seed(0); }
  CellType cell() const { return std::get<0>(GetParam()); }
  int64_t layers() const { return std::get<1>(GetParam()); }
};

TEST_P(InspectTest, CorrelatesEveryUnitOfTheTraceWithEveryFeature) {
  const Vocab vocab = Vocab::from_text(kText);
  CharRNN model(vocab.size(), small(cell(), layers()));
  model->train();
  InspectOptions options;
  options.top_units = 5;
  const Inspection inspection = charrnn::inspect(model, vocab, kText, options);
  EXPECT_TRUE(model->is_training()) << "the model's mode is left alone";
  ASSERT_EQ(inspection.text, kText);
  const int64_t T = static_cast<int64_t>(kText.size()), H = 8, K = 8, S = cell() == CellType::LSTM ? 2 : 1;
  const auto [trace, state] = model->trace(torch::tensor(vocab.encode_skipping_unknown(kText).ids, torch::kLong));
  EXPECT_TRUE(torch::equal(inspection.states.h, trace.h));
  EXPECT_EQ(inspection.states.c.defined(), S == 2);
  ASSERT_EQ(inspection.correlations.sizes(), (std::vector<int64_t>{S, layers(), H, K}));
  ASSERT_EQ(inspection.ranking.size(), 5u);

  // every entry is a unit's strongest feature, recomputed here from the trace
  const auto values = charrnn::text_features(kText);
  for (size_t i = 0; i < inspection.ranking.size(); ++i) {
    const charrnn::UnitCorrelation& u = inspection.ranking[i];
    const torch::Tensor states = u.state == charrnn::StateKind::Hidden ? trace.h : trace.c;
    const torch::Tensor activation = states[u.layer].select(1, u.unit).unsqueeze(1);  // (T, 1)
    double strongest = 0;
    for (const auto& f : values) {
      const double r = charrnn::pearson_columns(activation, torch::tensor(f.values).unsqueeze(1)).item<double>();
      if (!std::isnan(r)) strongest = std::max(strongest, std::abs(r));
    }
    const double r = charrnn::pearson_columns(activation, torch::tensor(values[u.feature].values).unsqueeze(1)).item<double>();
    EXPECT_NEAR(u.r, r, 1e-9);
    EXPECT_NEAR(std::abs(u.r), strongest, 1e-9);
    EXPECT_NEAR(inspection.correlations[static_cast<int64_t>(u.state)][u.layer][u.unit]
                                       [static_cast<int64_t>(u.feature)].item<double>(), u.r, 1e-12);
    if (i > 0) EXPECT_GE(std::abs(inspection.ranking[i - 1].r), std::abs(u.r));
    for (size_t j = 0; j < i; ++j)
      EXPECT_FALSE(inspection.ranking[j].layer == u.layer && inspection.ranking[j].state == u.state &&
                   inspection.ranking[j].unit == u.unit) << "each unit once";
  }
  // no unit left out of the ranking is stronger than its last entry
  const torch::Tensor magnitude = std::get<0>(inspection.correlations.abs().nan_to_num(0.0).max(-1));  // (S, L, H)
  EXPECT_NEAR(magnitude.max().item<double>(), std::abs(inspection.ranking.front().r), 1e-12);
  EXPECT_EQ((magnitude > std::abs(inspection.ranking.back().r) + 1e-12).sum().item<int64_t>(), 4);
}

std::string param_name(const ::testing::TestParamInfo<std::tuple<CellType, int64_t>>& info) {
  return charrnn::to_string(std::get<0>(info.param)) + "_" + std::to_string(std::get<1>(info.param)) + "layers";
}

INSTANTIATE_TEST_SUITE_P(AllCells, InspectTest,
                         ::testing::Combine(::testing::Values(CellType::RNN, CellType::GRU, CellType::LSTM),
                                            ::testing::Values<int64_t>(1, 2)),
                         param_name);

TEST(Inspect, SkipsUnknownCharactersAndStopsAtMaxChars) {
  torch::manual_seed(0);
  const Vocab vocab = Vocab::from_text(U"abc ");
  CharRNN model(vocab.size(), small(CellType::GRU, 1));
  InspectOptions options;
  options.max_chars = 5;
  // Z and ! are unknown; the sixth known character is never read
  const Inspection inspection = charrnn::inspect(model, vocab, U"aZb!c abc", options);
  EXPECT_EQ(inspection.text, U"abc a");
  EXPECT_EQ(inspection.unknown_chars, 2);
  EXPECT_EQ(inspection.states.h.size(1), 5);
  options.max_chars = 0;
  EXPECT_EQ(charrnn::inspect(model, vocab, U"aZb!c abc", options).text, U"abc abc");

  EXPECT_THROW(charrnn::inspect(model, vocab, U"aZZ", options), charrnn::UsageError);
  options.max_chars = -1;
  EXPECT_THROW(charrnn::inspect(model, vocab, U"abc", options), charrnn::UsageError);
  options.max_chars = 0;
  options.top_units = 0;
  EXPECT_THROW(charrnn::inspect(model, vocab, U"abc", options), charrnn::UsageError);
}

std::vector<uint8_t> from_base64(const std::string& text) {
  const std::string digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::vector<uint8_t> out;
  uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    if (c == '=') break;
    bits = (bits << 6) | static_cast<uint32_t>(digits.find(c));
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<uint8_t>((bits >> count) & 0xFF));
    }
  }
  return out;
}

TEST(InspectPage, HoldsTheDataOfTheInspection) {
  torch::manual_seed(0);
  // a text that would end the script block if the page did not escape it
  const std::u32string text = U"a \"quote\" </script><b> (x) \u00E9\n2nd line";
  const Vocab vocab = Vocab::from_text(text);
  const ModelOptions options = small(CellType::LSTM, 2);
  CharRNN model(vocab.size(), options);
  const Inspection inspection = charrnn::inspect(model, vocab, text, {});
  const std::string page = charrnn::inspect_page(inspection, options, "models/x.pt");
  EXPECT_EQ(page.rfind("<!doctype html>", 0), 0u);
  EXPECT_EQ(page.find("CHARRNN_INSPECT_DATA"), std::string::npos);
  EXPECT_EQ(page.find("</script><b>"), std::string::npos);
  EXPECT_EQ(page.find("http"), std::string::npos) << "nothing is loaded from elsewhere";

  const std::string open = "<script type=\"application/json\" id=\"inspect-data\">";
  const size_t start = page.find(open) + open.size(), end = page.find("</script>", start);
  ASSERT_NE(start, std::string::npos + open.size());
  const nlohmann::json data = nlohmann::json::parse(page.substr(start, end - start));
  EXPECT_EQ(data["title"], "models/x.pt");
  EXPECT_EQ(data["cell"], "lstm");
  EXPECT_EQ(data["layers"], 2);
  EXPECT_EQ(data["hidden"], 8);
  EXPECT_EQ(data["states"], nlohmann::json::array({"h", "c"}));
  EXPECT_EQ(data["text"].get<std::string>(), charrnn::encode_utf8(text));
  ASSERT_EQ(data["features"].size(), 8u);
  EXPECT_EQ(data["features"][0]["name"], "in_quotes");
  ASSERT_EQ(data["units"].size(), 2u * 2u * 8u);
  // unit (c, layer 1, unit 3): 8-bit values within half a step of the trace
  const nlohmann::json& unit = data["units"][(1 * 2 + 1) * 8 + 3];
  const torch::Tensor c = inspection.states.c[1].select(1, 3);
  const std::vector<uint8_t> q = from_base64(unit["q"].get<std::string>());
  ASSERT_EQ(q.size(), text.size());
  const double lo = unit["lo"].get<double>(), hi = unit["hi"].get<double>(), step = (hi - lo) / 255;
  EXPECT_NEAR(lo, c.min().item<double>(), 1e-7);
  EXPECT_NEAR(hi, c.max().item<double>(), 1e-7);
  for (size_t t = 0; t < q.size(); ++t)
    EXPECT_NEAR(lo + q[t] * step, c[static_cast<int64_t>(t)].item<double>(), step / 2 + 1e-7) << "character " << t;
  for (size_t k = 0; k < 8; ++k) {
    const double r = inspection.correlations[1][1][3][static_cast<int64_t>(k)].item<double>();
    if (std::isnan(r)) EXPECT_TRUE(unit["r"][k].is_null());
    else EXPECT_NEAR(unit["r"][k].get<double>(), r, 0.0005 + 1e-12);
  }
  ASSERT_EQ(data["ranking"].size(), inspection.ranking.size());
  const auto& first = inspection.ranking.front();
  EXPECT_EQ(data["ranking"][0]["state"], charrnn::to_string(first.state));
  EXPECT_EQ(data["ranking"][0]["layer"], first.layer);
  EXPECT_EQ(data["ranking"][0]["unit"], first.unit);
  EXPECT_EQ(data["ranking"][0]["feature"], inspection.features[first.feature].name);
  EXPECT_NEAR(data["ranking"][0]["r"].get<double>(), first.r, 0.0005 + 1e-12);
}

}  // namespace
