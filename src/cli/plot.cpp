// charrnn plot: loss curves of runs as SVG.
#include "cli.h"

#include <iostream>

#include "charrnn/plot.h"

namespace charrnn::cli {

int cmd_plot(int argc, char** argv) {
  cxxopts::Options options("charrnn plot", "Draw the loss curves of one or more runs (their *.metrics.jsonl) as SVG.");
  options.add_options()
      ("out", "SVG file to write", cxxopts::value<std::string>())
      ("metrics", "metrics files", cxxopts::value<std::vector<std::string>>());
  options.parse_positional({"metrics"});
  options.positional_help("METRICS_FILE...");
  const auto args = parse(options, argc, argv);
  const std::string out = require(args, "out");
  if (!args.count("metrics")) throw UsageError("name at least one metrics file, e.g. models/default.metrics.jsonl");
  charrnn::write_loss_plot(args["metrics"].as<std::vector<std::string>>(), out);
  std::cerr << "wrote " << out << "\n";
  return 0;
}

}  // namespace charrnn::cli
