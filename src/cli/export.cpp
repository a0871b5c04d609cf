// charrnn export: a checkpoint as TorchScript (the default), as a static web
// folder (charrnn.js, a playground page, ml5.js's weight layout) or as ONNX.
#include "cli.h"

#include <iostream>

#include "charrnn/error.h"
#include "charrnn/export.h"
#include "charrnn/export_onnx.h"
#include "charrnn/export_web.h"

namespace charrnn::cli {

namespace {

std::string kilobytes(int64_t bytes) { return std::to_string((bytes + 512) / 1024) + " KB"; }

}  // namespace

int cmd_export(int argc, char** argv) {
  cxxopts::Options options("charrnn export", "Export a checkpoint for use without charrnn.");
  options.add_options()
      ("checkpoint", "checkpoint or export to read", cxxopts::value<std::string>())
      ("out", "file (torchscript, onnx) or folder (web) to write", cxxopts::value<std::string>())
      ("format", "torchscript: one file for PyTorch and LibTorch; web: a folder with charrnn.js, a playground "
                 "page and ml5.js's weight layout; onnx: a standard ONNX model for any ONNX runtime",
       cxxopts::value<std::string>()->default_value("torchscript"));
  const auto args = parse(options, argc, argv);
  const std::string path = require(args, "checkpoint");
  const std::string out = require(args, "out");
  const std::string format = args["format"].as<std::string>();
  if (format != "torchscript" && format != "web" && format != "onnx")
    throw UsageError("--format must be one of torchscript, web, onnx; got \"" + format + "\"");
  const charrnn::Checkpoint checkpoint = charrnn::load_model_file(path);
  const std::string model = charrnn::to_string(checkpoint.config.model.cell) + " model (vocabulary " +
                            std::to_string(checkpoint.vocab.size()) + ", step " +
                            std::to_string(checkpoint.progress.step) + ")";
  if (format == "web") {
    const charrnn::WebExport written = charrnn::export_web(checkpoint, out);
    std::cerr << "exported " << model << " as web to " << out << " (weights " << kilobytes(written.weight_bytes)
              << ", folder " << kilobytes(written.folder_bytes) << "); serve the folder and open index.html\n";
    if (!written.ml5_compatible)
      std::cerr << "warning: ml5.js cannot load this folder (" << written.ml5_limitation
                << "); charrnn.js and index.html can\n";
    return 0;
  }
  if (format == "onnx")
    charrnn::export_onnx(checkpoint, out);
  else
    charrnn::export_torchscript(checkpoint, out);
  std::cerr << "exported " << model << " as " << format << " to " << out << "\n";
  return 0;
}

}  // namespace charrnn::cli
