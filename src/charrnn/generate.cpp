#include "charrnn/generate.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "charrnn/char_fold.h"
#include "charrnn/corpus.h"
#include "charrnn/error.h"
#include "charrnn/runtime.h"
#include "charrnn/step_decoder.h"
#include "charrnn/utf8.h"

namespace charrnn {

namespace {

// Priming characters per forward() call; export.cpp's generate() uses the same.
constexpr int64_t kPrimeChunk = 2048;

}  // namespace

Primed prime_model(CharRNN& model, const torch::Tensor& inputs) {
  TORCH_CHECK(inputs.dim() == 2 && inputs.size(1) > 0, "prime_model needs (B, T) ids with T >= 1");
  torch::NoGradGuard no_grad;
  Primed primed;
  for (int64_t first = 0; first < inputs.size(1); first += kPrimeChunk) {
    auto [chunk_logits, next_state] =
        model->forward(inputs.narrow(1, first, std::min(kPrimeChunk, inputs.size(1) - first)), primed.state);
    primed.logits = chunk_logits.select(1, -1).contiguous();
    primed.state = next_state;
  }
  return primed;
}

StopFilter::StopFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {}

std::string StopFilter::feed(std::string_view piece) {
  if (stopped_) return "";
  held_ += piece;
  size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // keep the longest end of the text that some stop string starts with
  size_t keep = 0;
  for (const std::string& s : stops_)
    for (size_t k = std::min(s.size() - 1, held_.size()); k > keep; --k)
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopFilter::flush() {
  std::string out;
  out.swap(held_);
  return out;
}

std::vector<std::string> generate(CharRNN& model, const Vocab& vocab, const GenerateOptions& options,
                                  const torch::Device& device, const TextCallback& on_text) {
  if (options.length < 0) throw UsageError("--length must be >= 0, got " + std::to_string(options.length));
  if (options.num_samples < 1)
    throw UsageError("--num-samples must be >= 1, got " + std::to_string(options.num_samples));
  if (options.adapt && options.num_samples != 1)
    throw UsageError("--adapt generates one sample at a time (each would need its own weights); got --num-samples " +
                     std::to_string(options.num_samples));
  if (!std::isfinite(options.sampling.temperature))
    throw UsageError("--temperature must be a finite number, got " + std::to_string(options.sampling.temperature));
  if (!(options.sampling.top_p > 0) || std::isnan(options.sampling.top_p))
    throw UsageError("--top-p must be > 0, got " + std::to_string(options.sampling.top_p));
  const int64_t B = options.num_samples;
  std::u32string prime;
  try {
    prime = decode_utf8(options.prime, options.prime_source);
  } catch (const Error& e) {
    throw UsageError(e.what());  // the user typed it: a usage error, not a runtime failure
  }
  // characters the model never saw become equivalents it knows (char_fold.h)
  FoldedText folded = fold_for_vocab(prime, vocab, options.strict_prime, options.prime_source);
  if (!folded.substitutions.empty() && options.on_fold) options.on_fold(options.prime_source, folded.substitutions);
  prime = std::move(folded.text);
  std::vector<int64_t> prime_ids = vocab.encode(prime, options.prime_source);

  {
    // the decoder's buffers, the priming chunk's activations and the logits
    const ModelOptions& m = model->options();
    const double per_stream = static_cast<double>(m.embedding_dim + 7 * m.num_layers * m.hidden_size +
                                                  3 * model->vocab_size()) +
                              static_cast<double>(std::min<int64_t>(prime_ids.size(), kPrimeChunk)) *
                                  static_cast<double>(m.embedding_dim + 6 * m.num_layers * m.hidden_size + model->vocab_size());
    // collected texts: about two bytes per character of UTF-8
    const double texts = options.collect ? 2.0 * static_cast<double>(options.length + options.prime.size()) : 0.0;
    require_memory((4.0 * per_stream + texts) * static_cast<double>(B),
                   "--num-samples " + std::to_string(B) + " with --length " + std::to_string(options.length),
                   "generate fewer or shorter samples at once");
  }
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  SampleRng rng(static_cast<uint64_t>(options.seed));

  std::vector<std::string> texts(options.collect ? B : 0);
  const auto emit = [&](int64_t sample, const std::string& piece) {
    if (options.collect) texts[sample] += piece;
    if (on_text) on_text(sample, piece);
  };

  // a sample's text includes its stop text: only stopped() is read here
  std::vector<StopFilter> stops(
      B, StopFilter(options.stop.empty() ? std::vector<std::string>{} : std::vector<std::string>{options.stop}));
  std::vector<char> done(B, 0);
  int64_t running = B;
  std::vector<int64_t> ids(static_cast<size_t>(B));
  std::string piece;
  // Emits ids[b] for each running stream; false once every stream has stopped.
  const auto emit_ids = [&]() {
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      piece.clear();
      vocab.append_decoded(piece, ids[b]);
      emit(b, piece);
      if (!stops[b].active()) continue;
      stops[b].feed(piece);
      if (stops[b].stopped()) {
        done[b] = 1;
        --running;
      }
    }
    return running > 0;
  };

  // With adapt, the weights the decoder copied go stale after every
  // update: it is rebuilt from the adapted copy, carrying its state on.
  std::unique_ptr<DynamicAdapter> adapter;
  if (options.adapt) adapter = std::make_unique<DynamicAdapter>(*model, options.adaptation, device);
  const auto decoder_weights = [&]() -> const CharRNNImpl& { return adapter ? *adapter->model() : *model; };
  auto decoder = std::make_unique<StepDecoder>(decoder_weights(), B, options.threads);
  std::vector<RowSampler> scratch(static_cast<size_t>(decoder->parts()));
  const auto sample_ids = [&](const torch::Tensor& logits, const SamplingParams& params) {
    sample_into(logits, params, rng, scratch[0], ids.data());
  };
  // The next character of every stream: each part of the decoder steps its
  // streams and samples them on its own thread. The uniforms are drawn
  // first, one per stream in stream order as sample_into draws them, so the
  // text is the same whatever the number of parts.
  std::vector<float> uniforms(static_cast<size_t>(B));
  const auto step_and_sample = [&]() {
    if (!is_greedy(options.sampling))
      for (float& u : uniforms) u = rng.next_uniform();
    decoder->for_each_part([&](int64_t part, int64_t first, int64_t rows) {
      decoder->step_part(part, ids.data());
      sample_rows_into(decoder->logits().narrow(0, first, rows), options.sampling, uniforms.data() + first,
                       scratch[static_cast<size_t>(part)], ids.data() + first);
    });
  };

  torch::Tensor logits;  // (B, V) for the next character
  std::vector<int64_t> unlearned;  // with adapt: ids the decoder read (all but the last) that the copy has not learned from
  if (prime_ids.empty()) {
    // no prime: each sample starts from a character drawn by corpus frequency
    torch::Tensor counts = torch::tensor(torch::ArrayRef<int64_t>(vocab.counts()), torch::kDouble);
    if (counts.sum().item<double>() <= 0) counts = torch::ones_like(counts);
    sample_ids(counts.log().to(torch::kFloat).unsqueeze(0).expand({B, -1}).contiguous(), SamplingParams{1.0, 0, 1.0});
    emit_ids();
    decoder->set_state({});
    logits = decoder->step(ids.data());
    unlearned.push_back(ids[0]);
  } else if (adapter) {
    emit(0, encode_utf8(prime));
    // the copy learns from the prime a segment at a time; its last
    // character, not yet read, goes through the adapted weights
    const int64_t n = static_cast<int64_t>(prime_ids.size()), segment = options.adaptation.segment;
    for (int64_t first = 0; first + 1 < n; first += segment)
      adapter->learn(prime_ids.data() + first, std::min(segment, n - 1 - first));
    decoder = std::make_unique<StepDecoder>(decoder_weights(), B, options.threads);
    decoder->set_state(adapter->state());
    logits = decoder->step(&prime_ids.back());
    unlearned.push_back(prime_ids.back());
  } else {
    const std::string prime_text = encode_utf8(prime);
    for (int64_t b = 0; b < B; ++b) emit(b, prime_text);
    // The prime goes through forward() in chunks, which keeps memory flat
    // for a long prime; then the decoder carries on from its state.
    const torch::Tensor inputs = to_tensor(prime_ids).to(device).unsqueeze(0).expand({B, -1}).contiguous();
    Primed primed = prime_model(model, inputs);
    logits = primed.logits;
    decoder->set_state(primed.state);
  }
  // With adapt: ids[0] was just emitted, and the decoder has read every
  // character before it. Once a segment of them waits, the copy learns from
  // it (the same update as dynamic evaluation, in the same order) and the
  // decoder takes the new weights.
  const auto learn_from_text = [&]() {
    if (!adapter) return;
    unlearned.push_back(ids[0]);
    const int64_t segment = options.adaptation.segment;
    if (static_cast<int64_t>(unlearned.size()) < segment + 1) return;
    adapter->learn(unlearned.data(), segment);
    unlearned.erase(unlearned.begin(), unlearned.begin() + segment);
    const State state = decoder->state();
    decoder = std::make_unique<StepDecoder>(decoder_weights(), B, options.threads);
    decoder->set_state(state);
  };
  if (options.length > 0) {
    sample_ids(logits, options.sampling);
    bool running_any = emit_ids();
    learn_from_text();
    for (int64_t i = 1; i < options.length && running_any; ++i) {
      step_and_sample();
      running_any = emit_ids();
      learn_from_text();
    }
  }
  if (was_training) model->train();
  return texts;
}

}  // namespace charrnn
