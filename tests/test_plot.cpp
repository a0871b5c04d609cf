// The SVG loss plot: what it draws for one run, several runs, a run with no
// evaluation yet and a torn metrics file. The picture itself was checked in
// a real renderer (headless Chromium, README.md has the command);
// these tests pin the structure a renderer relies on.
#include <gtest/gtest.h>

#include <regex>

#include "charrnn/error.h"
#include "charrnn/plot.h"
#include "test_helpers.h"

namespace {

using charrnn::LossCurve;
using charrnn::MetricsPoint;

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// The (x, y) pairs of the first polyline with the given class.
std::vector<std::pair<double, double>> polyline(const std::string& svg, const std::string& cls) {
  const std::regex re("<polyline class=\"" + cls + "\"[^>]* points=\"([^\"]*)\"");
  std::smatch m;
  std::vector<std::pair<double, double>> points;
  if (!std::regex_search(svg, m, re)) return points;
  std::stringstream in(m[1].str());
  for (std::string pair; in >> pair;) {
    const size_t comma = pair.find(',');
    points.emplace_back(std::stod(pair.substr(0, comma)), std::stod(pair.substr(comma + 1)));
  }
  return points;
}

LossCurve falling(const std::string& name, double scale = 1.0) {
  LossCurve c{name, {}};
  for (int i = 1; i <= 5; ++i) c.points.push_back(MetricsPoint{i * 100, scale * 4.0 / i, scale * 4.2 / i});
  return c;
}

TEST(Plot, OneRunDrawsTrainAndValidationAgainstSteps) {
  const std::string svg = charrnn::loss_plot_svg({falling("run")}, "title <&>");
  EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("title &lt;&amp;&gt;"), std::string::npos);
  EXPECT_NE(svg.find("bits per character"), std::string::npos);
  EXPECT_NE(svg.find("loss (nats per character)"), std::string::npos);
  const auto train = polyline(svg, "train"), val = polyline(svg, "val");
  ASSERT_EQ(train.size(), 5u);
  ASSERT_EQ(val.size(), 5u);
  for (size_t i = 1; i < train.size(); ++i) {
    EXPECT_GT(train[i].first, train[i - 1].first) << "steps go right";
    EXPECT_GT(train[i].second, train[i - 1].second) << "a falling loss goes down the picture";
    EXPECT_EQ(val[i].first, train[i].first);
    EXPECT_LT(val[i].second, train[i].second) << "the higher validation loss sits above";
  }
  for (const auto& [x, y] : train) {
    EXPECT_GE(x, 0);
    EXPECT_LE(x, 800);
    EXPECT_GE(y, 0);
    EXPECT_LE(y, 480);
  }
}

TEST(Plot, SeveralRunsShareTheAxesWithALegendEach) {
  const std::string svg = charrnn::loss_plot_svg({falling("lstm"), falling("gru", 2.0)}, "compare");
  EXPECT_EQ(count(svg, "<polyline class=\"train\""), 2u);
  EXPECT_EQ(count(svg, "<polyline class=\"val\""), 2u);
  EXPECT_NE(svg.find(">lstm: train<"), std::string::npos);
  EXPECT_NE(svg.find(">gru: validation<"), std::string::npos);
  EXPECT_NE(svg.find("#0072B2"), std::string::npos);
  EXPECT_NE(svg.find("#D55E00"), std::string::npos);
}

TEST(Plot, EdgeCasesStillGiveAPicture) {
  EXPECT_NE(charrnn::loss_plot_svg({}, "t").find("no evaluations yet"), std::string::npos);
  EXPECT_NE(charrnn::loss_plot_svg({LossCurve{"empty", {}}}, "t").find("no evaluations yet"), std::string::npos);
  LossCurve one{"one", {MetricsPoint{10, 2.0, std::nullopt}}};
  const std::string single = charrnn::loss_plot_svg({one}, "t");
  EXPECT_NE(single.find("<circle"), std::string::npos);
  EXPECT_EQ(count(single, "class=\"val\""), 0u);
  LossCurve bad{"bad", {MetricsPoint{1, std::nan(""), 1.0}, MetricsPoint{2, 1.0, std::nan("")}, MetricsPoint{3, 1.0, 1.0}}};
  const std::string svg = charrnn::loss_plot_svg({bad}, "t");
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(polyline(svg, "train").size(), 2u);
}

TEST(Plot, ReadsMetricsSkippingTornLinesAndWritesTheFile) {
  charrnn_test::TempDir dir;
  const std::string metrics = dir.file("lstm.metrics.jsonl");
  charrnn_test::write_file(metrics,
                           "{\"step\": 10, \"train_loss\": 3.0, \"val_loss\": 3.1}\n"
                           "{\"step\": 20, \"train_loss\": 2.5}\n"
                           "{\"step\": 30, \"train_lo");
  const LossCurve curve = charrnn::read_loss_curve(metrics);
  EXPECT_EQ(curve.name, "lstm");
  ASSERT_EQ(curve.points.size(), 2u);
  EXPECT_EQ(curve.points[1].step, 20);
  EXPECT_FALSE(curve.points[1].val_loss.has_value());
  const std::string out = dir.file("plot.svg");
  charrnn::write_loss_plot({metrics, metrics}, out);
  EXPECT_EQ(count(charrnn_test::read_file_bytes(out), "<polyline class=\"train\""), 2u);
  EXPECT_THROW(charrnn::read_loss_curve(dir.file("missing.jsonl")), charrnn::Error);
  EXPECT_EQ(charrnn::loss_plot_path("models/default.pt"), "models/default.loss.svg");
}

}  // namespace
