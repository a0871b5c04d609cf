#include "charrnn/generate.h"

#include "charrnn/corpus.h"
#include "charrnn/error.h"
#include "charrnn/utf8.h"

namespace charrnn {

namespace {

// Tracks whether a sample's output has just ended with the stop text,
// keeping only as many bytes as the stop text has.
class StopMatcher {
 public:
  explicit StopMatcher(std::string stop) : stop_(std::move(stop)) {}
  bool feed(std::string_view piece) {
    if (stop_.empty()) return false;
    tail_.append(piece);
    if (tail_.size() > stop_.size()) tail_.erase(0, tail_.size() - stop_.size());
    return tail_ == stop_;
  }

 private:
  std::string stop_;
  std::string tail_;
};

}  // namespace

std::vector<std::string> generate(CharRNN& model, const Vocab& vocab, const GenerateOptions& options,
                                  const torch::Device& device, const TextCallback& on_text) {
  if (options.length < 0) throw UsageError("--length must be >= 0, got " + std::to_string(options.length));
  if (options.num_samples < 1)
    throw UsageError("--num-samples must be >= 1, got " + std::to_string(options.num_samples));
  const int64_t B = options.num_samples;
  std::u32string prime;
  try {
    prime = decode_utf8(options.prime, "--prime");
  } catch (const Error& e) {
    throw UsageError(e.what());  // the user typed it: a usage error, not a runtime failure
  }
  std::vector<int64_t> prime_ids = vocab.encode(prime, "--prime");

  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  SampleRng rng(options.seed);

  std::vector<std::string> texts(options.collect ? B : 0);
  const auto emit = [&](int64_t sample, const std::string& piece) {
    if (options.collect) texts[sample] += piece;
    if (on_text) on_text(sample, piece);
  };

  torch::Tensor inputs;  // (B, P) on device
  if (prime_ids.empty()) {
    // no prime: each sample starts from a character drawn by corpus frequency
    torch::Tensor counts = torch::tensor(torch::ArrayRef<int64_t>(vocab.counts()), torch::kDouble);
    if (counts.sum().item<double>() <= 0) counts = torch::ones_like(counts);
    const torch::Tensor logits = counts.log().to(torch::kFloat).unsqueeze(0).expand({B, -1});
    const torch::Tensor first = sample(logits, SamplingParams{1.0, 0, 1.0}, rng);  // (B)
    auto first_ids = first.accessor<int64_t, 1>();
    for (int64_t b = 0; b < B; ++b) {
      std::string piece;
      vocab.append_decoded(piece, first_ids[b]);
      emit(b, piece);
    }
    inputs = first.unsqueeze(1).to(device);
  } else {
    const std::string prime_text = encode_utf8(prime);
    for (int64_t b = 0; b < B; ++b) emit(b, prime_text);
    inputs = to_tensor(prime_ids).to(device).unsqueeze(0).expand({B, -1}).contiguous();
  }

  std::vector<StopMatcher> stops(B, StopMatcher(options.stop));
  std::vector<char> done(B, 0);
  int64_t running = B;
  State state;
  std::string piece;
  for (int64_t i = 0; i < options.length && running > 0; ++i) {
    auto [logits, next_state] = model->forward(inputs, state);  // logits: (B, P or 1, V)
    state = next_state;
    const torch::Tensor last = logits.select(1, -1);             // (B, V)
    const torch::Tensor next = sample(last, options.sampling, rng);  // (B)
    const torch::Tensor next_cpu = next.to(torch::kCPU);
    auto ids = next_cpu.accessor<int64_t, 1>();
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      piece.clear();
      vocab.append_decoded(piece, ids[b]);
      emit(b, piece);
      if (stops[b].feed(piece)) {
        done[b] = 1;
        --running;
      }
    }
    inputs = next.unsqueeze(1);  // (B, 1)
  }
  if (was_training) model->train();
  return texts;
}

}  // namespace charrnn
