#include "charrnn/evaluate.h"

#include <algorithm>
#include <cmath>

#include "charrnn/error.h"

namespace charrnn {

namespace {

// Summed cross-entropy of predicting targets from inputs, state carried.
// inputs, targets: (S, N) -> sum over all S*N predictions.
double summed_loss(CharRNN& model, const torch::Tensor& inputs, const torch::Tensor& targets, int64_t window,
                   State& state) {
  double total = 0;
  const int64_t n = inputs.size(1);
  for (int64_t start = 0; start < n; start += window) {
    const int64_t w = std::min(window, n - start);
    // ids may be a compact memory-mapped type; widen one window at a time
    auto [logits, next] = model->forward(inputs.narrow(1, start, w).to(torch::kLong), state);  // logits: (S, W, V)
    state = next;
    total += torch::nn::functional::cross_entropy(
                 logits.reshape({-1, logits.size(-1)}), targets.narrow(1, start, w).reshape(-1).to(torch::kLong),
                 torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                 .item<double>();
  }
  return total;
}

// One evaluation's mode: no gradient, no dropout, and the model's training
// mode back afterwards, also when a forward pass throws.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(CharRNN& model) : model_(model), was_training_(model->is_training()) { model_->eval(); }
  ~EvalModeGuard() {
    if (was_training_) model_->train();
  }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  torch::NoGradGuard no_grad_;
  CharRNN& model_;
  bool was_training_;
};

void require_two_ids(int64_t n) {
  if (n < 2) throw UsageError("evaluation needs at least 2 known characters, got " + std::to_string(n));
}

}  // namespace

EvalResult evaluate(CharRNN& model, const torch::Tensor& ids, int64_t streams, int64_t window,
                    const torch::Device& device, int64_t part, int64_t parts) {
  const int64_t n = ids.size(0);
  require_two_ids(n);
  TORCH_CHECK(parts >= 1 && part >= 0 && part < parts, "evaluate needs 0 <= part < parts");
  const EvalModeGuard eval_mode(model);

  const torch::Tensor x = ids.to(device);
  const int64_t predictions = n - 1;
  // fewer, longer streams keep more context; never let a stream be shorter
  // than one window unless the text is.
  const int64_t s = std::max<int64_t>(1, std::min(streams, predictions / window));
  const int64_t per_stream = predictions / s;
  const int64_t main_part = s * per_stream;
  // this share's streams
  const int64_t first = s * part / parts, end = s * (part + 1) / parts;
  const bool has_tail = part == parts - 1 && main_part < predictions;

  double total = 0;
  int64_t chars = 0;
  State state;
  if (end > first) {
    const torch::Tensor inputs = x.narrow(0, 0, main_part).view({s, per_stream}).narrow(0, first, end - first);
    const torch::Tensor targets = x.narrow(0, 1, main_part).view({s, per_stream}).narrow(0, first, end - first);
    total += summed_loss(model, inputs, targets, window, state);
    chars += (end - first) * per_stream;
  }
  if (has_tail) {
    // the remainder continues the last stream, whose state ends right before it
    const int64_t rest = predictions - main_part;
    State last = state.select_batch(
        torch::tensor({end - first - 1}, torch::TensorOptions(torch::kLong).device(device)));
    total += summed_loss(model, x.narrow(0, main_part, rest).view({1, rest}),
                         x.narrow(0, main_part + 1, rest).view({1, rest}), window, last);
    chars += rest;
  }

  EvalResult result = eval_result_from_sum(total, chars);
  result.streams = s;
  return result;
}

EvalResult evaluate_chunked(CharRNN& model, const torch::Tensor& ids, int64_t window, int64_t batch,
                            const torch::Device& device) {
  const int64_t n = ids.size(0);
  require_two_ids(n);
  TORCH_CHECK(window >= 1 && batch >= 1, "evaluate_chunked needs window and batch >= 1");
  const EvalModeGuard eval_mode(model);
  const torch::Tensor x = ids.to(device);
  const int64_t predictions = n - 1, windows = predictions / window, rest = predictions - windows * window;
  double total = 0;
  for (int64_t first = 0; first < windows; first += batch) {
    const int64_t rows = std::min(batch, windows - first);
    const int64_t start = first * window, length = rows * window;
    State zeros;  // every window afresh
    total += summed_loss(model, x.narrow(0, start, length).view({rows, window}),
                         x.narrow(0, start + 1, length).view({rows, window}), window, zeros);
  }
  if (rest > 0) {
    State zeros;
    total += summed_loss(model, x.narrow(0, windows * window, rest).view({1, rest}),
                         x.narrow(0, windows * window + 1, rest).view({1, rest}), window, zeros);
  }
  EvalResult result = eval_result_from_sum(total, predictions);
  result.streams = windows + (rest > 0);
  return result;
}

EvalResult score_characters(CharRNN& model, const torch::Tensor& ids, const ScoreOptions& options,
                            const torch::Device& device, const std::function<void(const CharScore&)>& visit) {
  const int64_t n = ids.size(0);
  require_two_ids(n);
  const int64_t vocab = model->vocab_size();
  if (options.window < 1) throw UsageError("the window must be >= 1, got " + std::to_string(options.window));
  if (options.top_k < 0 || options.top_k > vocab)
    throw UsageError("top-k must be in 0.." + std::to_string(vocab) + " (the vocabulary's size), got " +
                     std::to_string(options.top_k));
  const EvalModeGuard eval_mode(model);

  const torch::Tensor x = ids.to(device);
  const int64_t predictions = n - 1, k = options.top_k;
  CharScore score;
  score.top_ids.resize(static_cast<size_t>(k));
  score.top_logprobs.resize(static_cast<size_t>(k));
  double total = 0;
  State state;
  for (int64_t start = 0; start < predictions; start += options.window) {
    const int64_t w = std::min(options.window, predictions - start);
    // ids may be a compact memory-mapped type; widen one window at a time
    auto [logits, next] = model->forward(x.narrow(0, start, w).to(torch::kLong).unsqueeze(0), state);  // (1, W, V)
    state = next;
    const torch::Tensor logp = torch::log_softmax(logits[0].to(torch::kFloat), -1);  // (W, V)
    const torch::Tensor targets = x.narrow(0, start + 1, w).to(torch::kLong);       // (W)
    const torch::Tensor chosen =
        logp.gather(1, targets.unsqueeze(1)).squeeze(1).to(torch::kCPU, torch::kDouble).contiguous();  // (W)
    const torch::Tensor target_ids = targets.to(torch::kCPU).contiguous();
    torch::Tensor top_values, top_indices;
    if (k > 0) {
      // a stable descending sort keeps equal probabilities in id order, which topk does not promise
      auto [values, indices] = torch::sort(logp, /*stable=*/true, /*dim=*/-1, /*descending=*/true);  // (W, V)
      top_values = values.narrow(1, 0, k).to(torch::kCPU, torch::kDouble).contiguous();           // (W, K)
      top_indices = indices.narrow(1, 0, k).to(torch::kCPU, torch::kLong).contiguous();           // (W, K)
    }
    const double* chosen_p = chosen.data_ptr<double>();
    const int64_t* target_p = target_ids.data_ptr<int64_t>();
    for (int64_t i = 0; i < w; ++i) {
      score.position = start + i + 1;
      score.id = target_p[i];
      score.logprob = chosen_p[i];
      if (k > 0) {
        const double* v = top_values.data_ptr<double>() + i * k;
        const int64_t* d = top_indices.data_ptr<int64_t>() + i * k;
        std::copy(v, v + k, score.top_logprobs.begin());
        std::copy(d, d + k, score.top_ids.begin());
      }
      total -= score.logprob;
      visit(score);
    }
  }
  EvalResult result = eval_result_from_sum(total, predictions);
  result.streams = 1;
  return result;
}

EvalResult eval_result_from_sum(double loss_sum, int64_t chars) {
  EvalResult result;
  result.chars = chars;
  result.loss_sum = loss_sum;
  result.loss = chars > 0 ? loss_sum / static_cast<double>(chars) : 0.0;
  result.bpc = result.loss / std::log(2.0);
  result.perplexity = std::exp(result.loss);
  return result;
}

}  // namespace charrnn
