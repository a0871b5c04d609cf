// charrnn export: a checkpoint as TorchScript.
#include "cli.h"

#include <iostream>

#include "charrnn/export.h"

namespace charrnn::cli {

int cmd_export(int argc, char** argv) {
  cxxopts::Options options("charrnn export", "Export a checkpoint as a self-contained TorchScript module.");
  options.add_options()
      ("checkpoint", "checkpoint file", cxxopts::value<std::string>())
      ("out", "TorchScript file to write", cxxopts::value<std::string>());
  const auto args = parse(options, argc, argv);
  const std::string path = require(args, "checkpoint");
  const std::string out = require(args, "out");
  const charrnn::Checkpoint checkpoint = charrnn::load_model_file(path);
  charrnn::export_torchscript(checkpoint, out);
  std::cerr << "exported " << charrnn::to_string(checkpoint.config.model.cell) << " model (vocabulary "
            << checkpoint.vocab.size() << ", step " << checkpoint.progress.step << ") to " << out << "\n";
  return 0;
}

}  // namespace charrnn::cli
