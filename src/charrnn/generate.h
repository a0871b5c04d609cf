// Text generation: prime the recurrent state with the whole priming string,
// then sample one character at a time, carrying the state. Several samples
// run as one batch. Text streams out through a callback as it is produced.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <torch/torch.h>

#include "charrnn/char_fold.h"
#include "charrnn/dynamic_eval.h"
#include "charrnn/model.h"
#include "charrnn/sampler.h"
#include "charrnn/vocab.h"

namespace charrnn {

/// The sampling settings (config.h's SampleOptions: prime, length,
/// temperature, top-k, top-p, seed) and what one call of generate() adds.
struct GenerateOptions : SampleOptions {
  GenerateOptions() = default;
  /// Generates with these settings, e.g. a checkpoint's sample section.
  explicit GenerateOptions(const SampleOptions& sample) : SampleOptions(sample) {}

  std::string prime_source = "--prime";  ///< names the prime in errors, e.g. "--prime-file p.txt". Default: "--prime"
  int64_t num_samples = 1;   ///< samples generated together as one batch. Default: 1
  std::string stop;          ///< a sample ends once it has produced this text; "" never. Default: ""
  /// false: a prime character the vocabulary lacks is replaced by an
  /// equivalent it has (char_fold.h), where there is one, and the text
  /// starts with the replaced prime; true: it is an error. Default: false
  bool strict_prime = false;
  /// told (with prime_source) what the prime's folding replaced, once,
  /// before any text; unset: nobody is. Default: unset
  std::function<void(const std::string& prime_source, const std::vector<Substitution>&)> on_fold;
  bool collect = true;       ///< also return the texts; false keeps memory flat for huge lengths. Default: true
  int64_t threads = 0;       ///< threads the samples are split over (CPU); 0: current_threads(). The text
                             ///< is the same for any count. Default: 0
  /// Samples from a private copy of the weights that first learns from the
  /// prime, then from the generated text, a segment at a time, with
  /// dynamic evaluation's update (dynamic_eval.h); the model is never
  /// changed. Needs num_samples 1. Default: false
  bool adapt = false;
  DynamicEvalOptions adaptation;  ///< how it learns, with adapt. Default: DynamicEvalOptions's defaults
};

/// Watches a text as it is produced for stop strings: generate() ends a
/// sample once it has produced its stop text, the server ends a choice
/// before the first of its stop strings. Holds back text that may be the
/// start of a stop string (never more than the longest one), so that a
/// stop string is never released and the text before it always is.
class StopFilter {
 public:
  explicit StopFilter(std::vector<std::string> stops = {});
  /// Adds produced text; returns what can be released now. Once a stop
  /// string appears, stopped() is true and the text from it on is dropped.
  std::string feed(std::string_view piece);
  /// The held-back text, at the end of a text that did not stop.
  std::string flush();
  bool stopped() const { return stopped_; }
  /// False when there is no stop string: feed() then releases every piece
  /// as it comes, and a caller that needs no release can skip it.
  bool active() const { return !stops_.empty(); }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

/// Called with (sample index, UTF-8 text) as text is produced; the prime
/// (or the drawn first character) comes first.
using TextCallback = std::function<void(int64_t sample, std::string_view text)>;

/// The logits after the last of `inputs` ((B, T) ids, T >= 1) and the state
/// there, from a zero state: forward() in chunks, so that memory stays flat
/// for a prime of any length. How generate() and the server prime.
struct Primed {
  torch::Tensor logits;  // (B, V)
  State state;
};
Primed prime_model(CharRNN& model, const torch::Tensor& inputs);

/// Generates `num_samples` texts, each starting with the prime (folded,
/// unless options.strict_prime). Throws UsageError when the prime holds
/// characters the vocabulary lacks and has no equivalent for.
std::vector<std::string> generate(CharRNN& model, const Vocab& vocab, const GenerateOptions& options,
                                  const torch::Device& device, const TextCallback& on_text = {});

}  // namespace charrnn
