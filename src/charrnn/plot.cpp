#include "charrnn/plot.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "charrnn/error.h"
#include "charrnn/file_io.h"

namespace charrnn {

namespace {

constexpr double kWidth = 800, kHeight = 480;
constexpr double kLeft = 70, kRight = 70, kTop = 50, kBottom = 55;
// distinguishable colours (Okabe-Ito), one per run
const char* const kColours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"};

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string number(double v) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << v;
  return out.str();
}

// Tick spacing of 1, 2 or 5 times a power of ten giving about `count` ticks.
double nice_step(double span, int count) {
  const double raw = span / count;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * power) return m * power;
  return 10 * power;
}

std::string tick_label(double v, double step) {
  std::ostringstream out;
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step)));
  out << std::fixed << std::setprecision(decimals) << v;
  return out.str();
}

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  bool empty() const { return lo > hi; }
};

}  // namespace

LossCurve read_loss_curve(const std::string& metrics_path) {
  std::ifstream in(metrics_path);
  if (!in) throw Error("cannot read " + metrics_path);
  LossCurve curve;
  curve.name = std::filesystem::path(metrics_path).filename().string();
  const std::string suffix = ".metrics.jsonl";
  if (curve.name.size() > suffix.size() && curve.name.compare(curve.name.size() - suffix.size(), suffix.size(), suffix) == 0)
    curve.name.resize(curve.name.size() - suffix.size());
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer() || !j.contains("train_loss") ||
        !j["train_loss"].is_number())
      continue;
    MetricsPoint p;
    p.step = j["step"].get<int64_t>();
    p.train_loss = j["train_loss"].get<double>();
    if (j.contains("val_loss") && j["val_loss"].is_number()) p.val_loss = j["val_loss"].get<double>();
    curve.points.push_back(p);
  }
  return curve;
}

std::string loss_plot_svg(const std::vector<LossCurve>& curves, const std::string& title) {
  Range x, y;
  x.add(0);
  for (const LossCurve& c : curves)
    for (const MetricsPoint& p : c.points) {
      x.add(static_cast<double>(p.step));
      y.add(p.train_loss);
      if (p.val_loss) y.add(*p.val_loss);
    }
  if (x.hi <= x.lo) x.hi = x.lo + 1;
  if (y.empty()) y = Range{0, 1};
  if (y.hi - y.lo < 1e-6) {
    y.lo -= 0.5;
    y.hi += 0.5;
  }
  const double pad = 0.05 * (y.hi - y.lo);
  y.lo = std::max(0.0, y.lo - pad);
  y.hi += pad;
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  const auto px = [&](double v) { return kLeft + (v - x.lo) / (x.hi - x.lo) * plot_w; };
  const auto py = [&](double v) { return kTop + (1 - (v - y.lo) / (y.hi - y.lo)) * plot_h; };

  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << kHeight
      << "\" viewBox=\"0 0 " << kWidth << " " << kHeight << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << kWidth / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" << escape(title)
      << "</text>\n";
  // grid and ticks: steps below, nats on the left, bits on the right
  const double xs = nice_step(x.hi - x.lo, 8);
  for (double v = std::ceil(x.lo / xs) * xs; v <= x.hi + 1e-9; v += xs)
    svg << "<line x1=\"" << number(px(v)) << "\" y1=\"" << kTop << "\" x2=\"" << number(px(v)) << "\" y2=\""
        << kTop + plot_h << "\" stroke=\"#e5e5e5\"/>\n<text x=\"" << number(px(v)) << "\" y=\"" << kTop + plot_h + 16
        << "\" text-anchor=\"middle\">" << tick_label(v, xs) << "</text>\n";
  const double ys = nice_step(y.hi - y.lo, 6);
  for (double v = std::ceil(y.lo / ys) * ys; v <= y.hi + 1e-9; v += ys)
    svg << "<line x1=\"" << kLeft << "\" y1=\"" << number(py(v)) << "\" x2=\"" << kLeft + plot_w << "\" y2=\""
        << number(py(v)) << "\" stroke=\"#e5e5e5\"/>\n<text x=\"" << kLeft - 6 << "\" y=\"" << number(py(v) + 4)
        << "\" text-anchor=\"end\">" << tick_label(v, ys) << "</text>\n";
  const double ln2 = std::log(2.0);
  const double bs = nice_step((y.hi - y.lo) / ln2, 6);
  for (double b = std::ceil(y.lo / ln2 / bs) * bs; b * ln2 <= y.hi + 1e-9; b += bs)
    svg << "<text x=\"" << kLeft + plot_w + 6 << "\" y=\"" << number(py(b * ln2) + 4) << "\">" << tick_label(b, bs)
        << "</text>\n";
  svg << "<rect x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << plot_w << "\" height=\"" << plot_h
      << "\" fill=\"none\" stroke=\"#444\"/>\n"
      << "<text x=\"" << kLeft + plot_w / 2 << "\" y=\"" << kHeight - 12 << "\" text-anchor=\"middle\">step</text>\n"
      << "<text transform=\"translate(18," << kTop + plot_h / 2
      << ") rotate(-90)\" text-anchor=\"middle\">loss (nats per character)</text>\n"
      << "<text transform=\"translate(" << kWidth - 14 << "," << kTop + plot_h / 2
      << ") rotate(90)\" text-anchor=\"middle\">bits per character</text>\n";

  // curves: train solid and thin, validation dashed and thick
  double legend_y = kTop + 16;
  for (size_t i = 0; i < curves.size(); ++i) {
    const LossCurve& c = curves[i];
    const std::string colour = kColours[i % (sizeof kColours / sizeof kColours[0])];
    const auto draw = [&](bool val) {
      std::ostringstream points;
      size_t n = 0;
      for (const MetricsPoint& p : c.points) {
        const double v = val ? p.val_loss.value_or(std::nan("")) : p.train_loss;
        if (!std::isfinite(v)) continue;
        points << (n++ ? " " : "") << number(px(static_cast<double>(p.step))) << "," << number(py(v));
      }
      if (n == 0) return false;
      const std::string style = val ? "\" stroke-width=\"2.5\" stroke-dasharray=\"7 4\"" : "\" stroke-width=\"1.5\"";
      svg << "<polyline class=\"" << (val ? "val" : "train") << "\" fill=\"none\" stroke=\"" << colour << style
          << " points=\"" << points.str() << "\"/>\n";
      if (n == 1) {  // one evaluation so far: a line needs two points, so mark it
        const std::string only = points.str();
        const size_t comma = only.find(',');
        svg << "<circle cx=\"" << only.substr(0, comma) << "\" cy=\"" << only.substr(comma + 1) << "\" r=\"3\" fill=\""
            << colour << "\"/>\n";
      }
      return true;
    };
    const bool has_train = draw(false), has_val = draw(true);
    const std::string prefix = curves.size() > 1 ? c.name + ": " : "";
    const auto legend = [&](const std::string& label, bool val) {
      svg << "<line x1=\"" << kLeft + plot_w - 190 << "\" y1=\"" << legend_y - 4 << "\" x2=\"" << kLeft + plot_w - 160
          << "\" y2=\"" << legend_y - 4 << "\" stroke=\"" << colour << "\" stroke-width=\"" << (val ? 2.5 : 1.5) << "\""
          << (val ? " stroke-dasharray=\"7 4\"" : "") << "/>\n<text x=\"" << kLeft + plot_w - 154 << "\" y=\""
          << legend_y << "\">" << escape(prefix + label) << "</text>\n";
      legend_y += 16;
    };
    if (has_train) legend("train", false);
    if (has_val) legend("validation", true);
  }
  if (legend_y == kTop + 16)
    svg << "<text x=\"" << kLeft + plot_w / 2 << "\" y=\"" << kTop + plot_h / 2
        << "\" text-anchor=\"middle\" fill=\"#888\">no evaluations yet</text>\n";
  svg << "</svg>\n";
  return svg.str();
}

void write_loss_plot(const std::vector<std::string>& metrics_paths, const std::string& out_path) {
  std::vector<LossCurve> curves;
  for (const std::string& path : metrics_paths) curves.push_back(read_loss_curve(path));
  const std::string title = curves.size() == 1 ? "charrnn: " + curves[0].name : "charrnn: loss by run";
  write_file_atomically(out_path, loss_plot_svg(curves, title));
}

std::string loss_plot_path(const std::string& checkpoint) {
  const std::filesystem::path p(checkpoint);
  return (p.parent_path() / (p.stem().string() + ".loss.svg")).string();
}

}  // namespace charrnn
