// charrnn export: a checkpoint as TorchScript (the default) or ONNX.
#include "cli.h"

#include <iostream>

#include "charrnn/export.h"
#include "charrnn/export_onnx.h"

namespace charrnn::cli {

int cmd_export(int argc, char** argv) {
  cxxopts::Options options("charrnn export", "Export a checkpoint as a self-contained TorchScript module or an ONNX model.");
  options.add_options()
      ("checkpoint", "checkpoint file (or an export)", cxxopts::value<std::string>())
      ("out", "file to write", cxxopts::value<std::string>())
      ("format", "torchscript or onnx", cxxopts::value<std::string>()->default_value("torchscript"));
  const auto args = parse(options, argc, argv);
  const std::string path = require(args, "checkpoint");
  const std::string out = require(args, "out");
  const std::string format = args["format"].as<std::string>();
  if (format != "torchscript" && format != "onnx")
    throw UsageError("--format must be one of torchscript, onnx; got \"" + format + "\"");
  const charrnn::Checkpoint checkpoint = charrnn::load_model_file(path);
  if (format == "onnx")
    charrnn::export_onnx(checkpoint, out);
  else
    charrnn::export_torchscript(checkpoint, out);
  std::cerr << "exported " << charrnn::to_string(checkpoint.config.model.cell) << " model (vocabulary "
            << checkpoint.vocab.size() << ", step " << checkpoint.progress.step << ") as " << format << " to "
            << out << "\n";
  return 0;
}

}  // namespace charrnn::cli
