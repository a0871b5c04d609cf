// Held-out loss, honestly measured: every character of the text after the
// first is predicted exactly once, with the recurrent state carried across
// windows (as when the model reads the text from start to end), and the mean
// cross-entropy is taken over all of them.
//
// Shape legend: S parallel streams, W window length, V vocabulary.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <torch/torch.h>

#include "charrnn/model.h"

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

}  // namespace charrnn
