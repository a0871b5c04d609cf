// Held-out loss, honestly measured: every character of the text after the
// first is predicted exactly once, with the recurrent state carried across
// windows (as when the model reads the text from start to end), and the mean
// cross-entropy is taken over all of them.
//
// Shape legend: S parallel streams, W window length, V vocabulary.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string_view>
#include <vector>

#include <torch/torch.h>

#include "charrnn/model.h"
#include "charrnn/vocab.h"

namespace charrnn {

struct EvalResult {
  double loss = 0;        ///< mean cross-entropy, nats per character
  double loss_sum = 0;    ///< the cross-entropies summed: what shares of one evaluation add up
  double bpc = 0;         ///< bits per character: loss / ln 2
  double perplexity = 0;  ///< exp(loss)
  int64_t chars = 0;      ///< characters predicted
  int64_t unknown_chars = 0;  ///< characters skipped because the vocabulary lacks them
  int64_t streams = 0;    ///< pieces the text was cut into, each read from a zero state (evaluate() never makes one shorter than a window)
};

/// One evaluation's mode: no gradient, no dropout, and the model's training
/// mode back afterwards, also when a forward pass throws.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(CharRNN& model);
  ~EvalModeGuard();
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  torch::NoGradGuard no_grad_;
  CharRNN& model_;
  bool was_training_;
};

/// Summed cross-entropy of predicting `targets` from `inputs` ((S, N) each,
/// any integer type), read `window` characters at a time from `state`,
/// which it leaves after the last input. The caller sets the mode.
double summed_loss(CharRNN& model, const torch::Tensor& inputs, const torch::Tensor& targets, int64_t window,
                   State& state);

/// Throws UsageError unless there are at least 2 ids: one predicts the other.
void require_two_ids(int64_t n);

/// The metrics of `chars` predictions whose cross-entropies sum to
/// `loss_sum` (a share of none has loss 0).
EvalResult eval_result_from_sum(double loss_sum, int64_t chars);

/// Evaluates `model` on `ids` (1-D, any integer type, at least 2 ids). The text is cut
/// into at most `streams` contiguous pieces read in parallel, `window`
/// characters at a time. Restores the model's training mode afterwards.
///
/// With parts > 1 it reads only share `part` of those pieces (the last share
/// also takes the tail that does not fill a piece): the loss-weighted sums
/// of all shares then equal one full evaluation, which is how distributed
/// ranks split validation. A share may be empty (chars == 0).
EvalResult evaluate(CharRNN& model, const torch::Tensor& ids, int64_t streams, int64_t window,
                    const torch::Device& device, int64_t part = 0, int64_t parts = 1);

/// The other protocol, for comparison with tools that score this way: the
/// text cut into consecutive windows of `window` characters, each read from
/// a zero state and predicting its next characters (the last window may be
/// shorter), `batch` windows per forward pass. A model trained only on
/// chunks from zero states scores better here than when the state is
/// carried, as it is in long generation.
EvalResult evaluate_chunked(CharRNN& model, const torch::Tensor& ids, int64_t window, int64_t batch,
                            const torch::Device& device);

/// One predicted character, as score_characters() reports it.
struct CharScore {
  int64_t position = 0;             ///< index in `ids` of the predicted character: 1 .. n-1
  int64_t id = 0;                   ///< its id
  double logprob = 0;               ///< its natural-log probability under the model, temperature 1
  std::vector<int64_t> top_ids;     ///< the top_k most likely ids at this position, most likely first, ties by smaller id
  std::vector<double> top_logprobs; ///< their log probabilities, parallel to top_ids
};

/// How score_characters() reads a text.
struct ScoreOptions {
  int64_t window = 256;  ///< characters per forward pass (>= 1); only speed and memory depend on it. Default: 256
  int64_t top_k = 5;     ///< most likely characters reported per position, in 0..V; 0 reports none. Default: 5
};

/// What each character of `ids` (1-D, at least 2 ids) cost the model: reads
/// the text as one stream from a zero state, the state carried across
/// windows (evaluate() with streams 1), and calls `visit` once per predicted
/// character, in text order: every character but the first, which nothing
/// predicts. The CharScore passed is reused between calls. Returns the same
/// metrics as evaluate(model, ids, 1, window): minus the mean of the
/// logprobs is its loss. Throws UsageError for a window < 1 or a top_k
/// outside 0..V. Restores the model's training mode afterwards.
EvalResult score_characters(CharRNN& model, const torch::Tensor& ids, const ScoreOptions& options,
                            const torch::Device& device, const std::function<void(const CharScore&)>& visit);

/// score_characters() for a text given a piece at a time, so that a text of
/// any length is scored in the memory of one window: feed() the ids in
/// order, in pieces of any size, then finish(). Calls `visit` as
/// score_characters() does, for positions counted from the first id fed.
class CharacterScorer {
 public:
  /// Throws UsageError for a window < 1 or a top_k outside 0..V.
  CharacterScorer(CharRNN& model, const ScoreOptions& options, const torch::Device& device,
                  std::function<void(const CharScore&)> visit);
  CharacterScorer(const CharacterScorer&) = delete;
  CharacterScorer& operator=(const CharacterScorer&) = delete;

  void feed(const int64_t* ids, size_t count);
  /// Scores what is left; throws UsageError when fewer than 2 ids were fed.
  EvalResult finish();

 private:
  void score_window(int64_t predictions);
  CharRNN& model_;
  ScoreOptions options_;
  torch::Device device_;
  std::function<void(const CharScore&)> visit_;
  std::vector<int64_t> pending_;  // ids not yet predicted, plus the one before them
  State state_;
  CharScore score_;
  double total_ = 0;
  int64_t fed_ = 0;
};

/// evaluate_chunked() for a text given a piece at a time: the same windows
/// in the same batches, so the same result, in the memory of one batch.
class ChunkedEvaluator {
 public:
  ChunkedEvaluator(CharRNN& model, int64_t window, int64_t batch, const torch::Device& device);
  ChunkedEvaluator(const ChunkedEvaluator&) = delete;
  ChunkedEvaluator& operator=(const ChunkedEvaluator&) = delete;

  void feed(const int64_t* ids, size_t count);
  /// Throws UsageError when fewer than 2 ids were fed.
  EvalResult finish();

 private:
  void score_rows(int64_t rows, int64_t length);
  CharRNN& model_;
  int64_t window_, batch_;
  torch::Device device_;
  std::vector<int64_t> pending_;
  double total_ = 0;
  int64_t fed_ = 0, streams_ = 0;
};

/// One character of a text as TextScorer reports it: every character, the
/// ones the vocabulary lacks included.
struct TextChar {
  int64_t offset = 0;              ///< its index in the text, in code points, unknown characters counted
  char32_t code_point = 0;         ///< the character
  bool known = false;              ///< whether the vocabulary has it (unknown ones are skipped, as evaluate() skips them)
  const CharScore* score = nullptr;  ///< what predicting it cost; nullptr for unknown characters and the first known one, which nothing predicts
};

/// Scores a text given as code points, a piece at a time: the known
/// characters go through a CharacterScorer (and, when given, a
/// ChunkedEvaluator), and `visit` sees every character of the text once, in
/// order, with its score. Memory holds about one window and one piece.
class TextScorer {
 public:
  /// `chunked`, when given, is fed the known ids too; it must outlive this.
  TextScorer(CharRNN& model, const Vocab& vocab, const ScoreOptions& options, const torch::Device& device,
             std::function<void(const TextChar&)> visit, ChunkedEvaluator* chunked = nullptr);
  void feed(std::u32string_view piece);
  /// Scores what is left and reports the rest of the text; the result's
  /// unknown_chars counts the characters skipped. Throws UsageError when
  /// fewer than 2 known characters were fed (known() says how many).
  EvalResult finish();
  int64_t known() const { return known_; }
  int64_t unknown() const { return unknown_; }

 private:
  void on_score(const CharScore& score);
  void emit_unscored_front();
  const Vocab& vocab_;
  std::function<void(const TextChar&)> visit_;
  ChunkedEvaluator* chunked_;
  CharacterScorer scorer_;
  std::deque<char32_t> waiting_;  // characters fed but not yet reported, from offset next_offset_
  std::vector<int64_t> ids_;       // a piece's known ids
  int64_t next_offset_ = 0, known_ = 0, unknown_ = 0, reported_known_ = 0;
};

}  // namespace charrnn
