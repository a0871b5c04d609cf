// charrnn info: what a checkpoint holds.
#include "cli.h"

#include <cmath>
#include <iomanip>
#include <iostream>

#include <nlohmann/json.hpp>

#include "charrnn/export.h"
#include "charrnn/utf8.h"

namespace charrnn::cli {

int cmd_info(int argc, char** argv) {
  cxxopts::Options options("charrnn info", "Show what a checkpoint holds.");
  options.add_options()
      ("checkpoint", "checkpoint file", cxxopts::value<std::string>())
      ("json", "print one JSON object");
  const auto args = parse(options, argc, argv);
  const std::string path = require(args, "checkpoint");
  const charrnn::Checkpoint checkpoint = charrnn::load_model_file(path);
  const charrnn::CharRNN model(checkpoint.vocab.size(), checkpoint.config.model);
  const auto& p = checkpoint.progress;
  std::string chars;
  for (char32_t c : checkpoint.vocab.chars()) {
    if (c == '\n') chars += "\\n";
    else if (c == '\t') chars += "\\t";
    else if (c < 0x20) chars += charrnn::describe_char(c);
    else charrnn::append_utf8(chars, c);
  }
  const nlohmann::json best = p.best_step >= 0 ? nlohmann::json(p.best_val_loss) : nlohmann::json(nullptr);
  nlohmann::json lineage = nlohmann::json::array();
  for (const charrnn::ModelOrigin& origin : checkpoint.lineage) lineage.push_back(charrnn::to_json(origin));
  // the model section holds a weight average, the raw weights kept beside it for --resume
  const bool averaged = !checkpoint.training_model_bytes.empty();
  if (args.count("json")) {
    std::cout << nlohmann::json{{"checkpoint", path},
                                {"charrnn_version", checkpoint.charrnn_version},
                                {"format_version", charrnn::kCheckpointFormatVersion},
                                {"config", charrnn::to_json(checkpoint.config)},
                                {"vocab_size", checkpoint.vocab.size()},
                                {"vocab", chars},
                                {"parameters", model->parameter_count()},
                                {"step", p.step},
                                {"chars_trained", p.chars_trained},
                                {"elapsed_seconds", p.elapsed_seconds},
                                {"best_val_loss", best},
                                {"best_val_bpc", p.best_step >= 0 ? nlohmann::json(p.best_val_loss / std::log(2.0)) : nlohmann::json(nullptr)},
                                {"best_step", p.best_step},
                                {"averaged_weights", averaged},
                                {"init_from", lineage}}
                     .dump()
              << "\n";
    return 0;
  }
  std::cout << "checkpoint     " << path << " (charrnn " << checkpoint.charrnn_version << ")\n"
            << "model          " << charrnn::to_string(checkpoint.config.model.cell) << ", "
            << checkpoint.config.model.num_layers << " layer(s) x " << checkpoint.config.model.hidden_size
            << " hidden, embedding " << checkpoint.config.model.embedding_dim << "\n"
            << "parameters     " << model->parameter_count() << "\n"
            << "vocabulary     " << checkpoint.vocab.size() << " characters: " << chars << "\n"
            << "step           " << p.step << " (" << p.chars_trained << " characters, " << std::fixed
            << std::setprecision(1) << p.elapsed_seconds << " s)\n";
  if (p.best_step >= 0)
    std::cout << std::setprecision(4) << "best val loss  " << p.best_val_loss << " nats/char, "
              << p.best_val_loss / std::log(2.0) << " bpc, at step " << p.best_step << "\n";
  else
    std::cout << "best val loss  (not validated yet)\n";
  if (averaged)
    std::cout << std::defaultfloat << "weights        the average of the training weights (train.ema_decay "
              << checkpoint.config.train.ema_decay << "); the raw ones are kept for --resume\n";
  if (checkpoint.lineage.empty()) std::cout << "initialised    from scratch\n";
  for (size_t i = 0; i < checkpoint.lineage.size(); ++i) {
    const charrnn::ModelOrigin& origin = checkpoint.lineage[i];
    std::cout << (i == 0 ? "initialised    from " : "               which started from ") << origin.checkpoint
              << " (step " << origin.step << ", " << origin.chars_trained << " characters of " << origin.data;
    if (std::isfinite(origin.best_val_loss))
      std::cout << std::setprecision(4) << ", best val loss " << origin.best_val_loss << " nats/char";
    std::cout << "); " << describe_added_chars(origin.added_chars) << "\n";
  }
  std::cout << "config\n" << charrnn::to_json(checkpoint.config).dump(2) << "\n";
  return 0;
}

}  // namespace charrnn::cli
