// charrnn's public entry point for other programs: load a trained model (a
// checkpoint or a TorchScript export) and generate text from it.
//
//   #include <charrnn/charrnn.h>
//   charrnn::TextGenerator model("models/default.best.pt");
//   charrnn::GenerateOptions options;
//   options.prime = "Call me Ishmael. ";
//   std::cout << model.generate(options) << "\n";
//
// Everything else in include/charrnn/ (training, evaluation, export) is
// installed too and may be used directly; this header is the small, stable
// part. Errors are thrown as charrnn::Error (charrnn::UsageError for bad
// options), never reported by exiting.
#pragma once

#include <string>
#include <vector>

#include "charrnn/checkpoint.h"
#include "charrnn/error.h"
#include "charrnn/generate.h"

namespace charrnn {

class TextGenerator {
 public:
  /// `device`: "auto" (CUDA when there is one), "cpu", "cuda" or "cuda:N".
  explicit TextGenerator(const std::string& model_path, const std::string& device = "auto");

  /// One sample: the prime followed by options.length generated characters.
  /// on_text, if given, receives the text as it is produced.
  std::string generate(const GenerateOptions& options, const TextCallback& on_text = {});
  /// options.num_samples samples generated together as one batch; with
  /// options.collect false, on_text alone receives them (memory stays flat
  /// for any length) and nothing is returned.
  std::vector<std::string> generate_samples(const GenerateOptions& options, const TextCallback& on_text = {});

  const Vocab& vocab() const { return checkpoint_.vocab; }
  /// The config the model was trained with (its sample section holds defaults).
  const Config& config() const { return checkpoint_.config; }
  const Checkpoint& checkpoint() const { return checkpoint_; }
  const torch::Device& device() const { return device_; }

 private:
  Checkpoint checkpoint_;
  torch::Device device_;
  CharRNN model_{nullptr};
};

}  // namespace charrnn
