// Loss curves as SVG: train and validation loss against steps, in nats per
// character on the left axis and bits per character on the right, for one
// run (written next to the checkpoint at every evaluation) or several
// (`charrnn plot`, to compare runs). SVG is text, so the writer needs no
// library and its output can be checked in tests; any browser renders it.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace charrnn {

struct MetricsPoint {
  int64_t step = 0;
  double train_loss = 0;
  std::optional<double> val_loss;
};

struct LossCurve {
  std::string name;  ///< legend label, e.g. the metrics file's name
  std::vector<MetricsPoint> points;
};

/// Reads a *.metrics.jsonl file; skips lines that are not metrics (a torn
/// last line). Throws Error if the file cannot be read.
LossCurve read_loss_curve(const std::string& metrics_path);

/// The SVG document for `curves` (any number, possibly empty ones).
std::string loss_plot_svg(const std::vector<LossCurve>& curves, const std::string& title);

/// Reads the metrics files and writes their plot to `out_path` atomically.
void write_loss_plot(const std::vector<std::string>& metrics_paths, const std::string& out_path);

/// Where training keeps the plot of a checkpoint's run: NAME.loss.svg.
std::string loss_plot_path(const std::string& checkpoint);

}  // namespace charrnn
