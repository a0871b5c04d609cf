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
#include "charrnn/model.h"
#include "charrnn/sampler.h"
#include "charrnn/vocab.h"

namespace charrnn {

struct GenerateOptions {
  std::string prime;         ///< "" starts from a character drawn by corpus frequency. Default: ""
  std::string prime_source = "--prime";  ///< names the prime in errors, e.g. "--prime-file p.txt". Default: "--prime"
  int64_t length = 500;      ///< characters generated after the prime. Default: 500
  SamplingParams sampling;   ///< temperature, top-k, top-p
  uint64_t seed = 0;         ///< same seed, same text. Default: 0
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
