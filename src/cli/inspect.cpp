// charrnn inspect: a model's units over a text, as one HTML page.
#include "cli.h"

#include <cstdio>
#include <iomanip>
#include <iostream>

#include "charrnn/corpus.h"
#include "charrnn/file_io.h"
#include "charrnn/inspect.h"
#include "charrnn/runtime.h"
#include "charrnn/utf8.h"

namespace charrnn::cli {

int cmd_inspect(int argc, char** argv) {
  cxxopts::Options options("charrnn inspect",
                           "Write an HTML page of a model's activations over a text, its units ranked by how "
                           "strongly they follow simple features of the text (inside quotes, bracket depth, ...).");
  options.add_options()
      ("checkpoint", "checkpoint or exported TorchScript file", cxxopts::value<std::string>())
      ("data", "UTF-8 text file or folder to read; repeat it for several (files are joined by the model's "
               "data.separator, as in training)", cxxopts::value<std::vector<std::string>>())
      ("glob", "folders: only files whose name matches, e.g. '*.txt'", cxxopts::value<std::string>()->default_value(""))
      ("out", "HTML file to write", cxxopts::value<std::string>())
      ("max-chars", "characters read from the start of the text (those the model knows); 0 reads all of it "
                    "(default: 10000)", cxxopts::value<std::string>())
      ("top", "units in the ranked list (default: 20)", cxxopts::value<std::string>());
  const auto args = parse(options, argc, argv);
  const std::string path = require(args, "checkpoint");
  const std::string out = require(args, "out");
  const std::vector<std::string> data_paths = repeated_flag(args, "data");
  if (data_paths.empty()) throw UsageError("--data is required");
  charrnn::InspectOptions inspect_options;
  inspect_options.max_chars = int_flag(args, "max-chars", inspect_options.max_chars);
  inspect_options.top_units = int_flag(args, "top", inspect_options.top_units);
  if (inspect_options.max_chars < 0)
    throw UsageError("--max-chars must be >= 0 (0 reads all of the text), got " + std::to_string(inspect_options.max_chars));
  if (inspect_options.top_units < 1) throw UsageError("--top must be >= 1, got " + std::to_string(inspect_options.top_units));
  charrnn::configure_threads(0);
  const charrnn::Checkpoint checkpoint = charrnn::load_model_file(path);
  const std::u32string text =
      charrnn::read_documents(charrnn::list_corpus_files(data_paths, args["glob"].as<std::string>()),
                              charrnn::decode_utf8(checkpoint.config.data.separator, "data.separator"));
  charrnn::CharRNN model = charrnn::restore_model(checkpoint, torch::kCPU);
  const charrnn::Inspection inspection = [&] {
    try {
      return charrnn::inspect(model, checkpoint.vocab, text, inspect_options);
    } catch (const UsageError& e) {
      throw UsageError(charrnn::describe_paths(data_paths) + ": " + e.what());
    }
  }();
  const std::string page = charrnn::inspect_page(inspection, checkpoint.config.model, path);
  charrnn::ensure_parent_directory(out);
  charrnn::write_file_atomically(out, page);

  std::cout << inspection.text.size() << " characters read; the units that follow a feature most closely:\n";
  std::cout << "  layer state unit  feature          r\n";
  for (size_t i = 0; i < inspection.ranking.size() && i < 10; ++i) {
    const charrnn::UnitCorrelation& u = inspection.ranking[i];
    std::cout << "  " << std::setw(5) << u.layer << " " << std::setw(5) << charrnn::to_string(u.state) << " "
              << std::setw(4) << u.unit << "  " << std::left << std::setw(14) << inspection.features[u.feature].name
              << std::right << std::fixed << std::setprecision(3) << std::setw(7) << u.r << "\n";
  }
  std::cout << "wrote " << out << " (" << (page.size() + 1023) / 1024 << " KiB)\n";
  return 0;
}

}  // namespace charrnn::cli
