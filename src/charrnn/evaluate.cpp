#include "charrnn/evaluate.h"

#include <algorithm>
#include <cmath>

#include "charrnn/error.h"

namespace charrnn {

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

EvalModeGuard::EvalModeGuard(CharRNN& model) : model_(model), was_training_(model->is_training()) { model_->eval(); }

EvalModeGuard::~EvalModeGuard() {
  if (was_training_) model_->train();
}

void require_two_ids(int64_t n) {
  if (n < 2) throw UsageError("evaluation needs at least 2 known characters, got " + std::to_string(n));
}

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
  require_two_ids(ids.size(0));
  CharacterScorer scorer(model, options, device, visit);
  const torch::Tensor all = ids.to(torch::kCPU, torch::kLong).contiguous();
  scorer.feed(all.data_ptr<int64_t>(), static_cast<size_t>(all.numel()));
  return scorer.finish();
}

CharacterScorer::CharacterScorer(CharRNN& model, const ScoreOptions& options, const torch::Device& device,
                                 std::function<void(const CharScore&)> visit)
    : model_(model), options_(options), device_(device), visit_(std::move(visit)) {
  const int64_t vocab = model->vocab_size();
  if (options.window < 1) throw UsageError("the window must be >= 1, got " + std::to_string(options.window));
  if (options.top_k < 0 || options.top_k > vocab)
    throw UsageError("top-k must be in 0.." + std::to_string(vocab) + " (the vocabulary's size), got " +
                     std::to_string(options.top_k));
  score_.top_ids.resize(static_cast<size_t>(options.top_k));
  score_.top_logprobs.resize(static_cast<size_t>(options.top_k));
  pending_.reserve(static_cast<size_t>(options.window) + 1);
}

void CharacterScorer::feed(const int64_t* ids, size_t count) {
  const size_t full = static_cast<size_t>(options_.window) + 1;
  while (count > 0) {
    const size_t take = std::min(count, full - pending_.size());
    pending_.insert(pending_.end(), ids, ids + take);
    ids += take, count -= take;
    fed_ += static_cast<int64_t>(take);
    if (pending_.size() == full) score_window(options_.window);
  }
}

EvalResult CharacterScorer::finish() {
  require_two_ids(fed_);
  if (pending_.size() > 1) score_window(static_cast<int64_t>(pending_.size()) - 1);
  EvalResult result = eval_result_from_sum(total_, fed_ - 1);
  result.streams = 1;
  return result;
}

// Predicts pending_[1..w] from pending_[0..w-1], the state carried, and keeps
// the last id as the next window's first input.
void CharacterScorer::score_window(int64_t w) {
  const EvalModeGuard eval_mode(model_);
  const int64_t k = options_.top_k;
  const torch::Tensor window = torch::from_blob(pending_.data(), {w + 1}, torch::kLong).to(device_);
  auto [logits, next] = model_->forward(window.narrow(0, 0, w).unsqueeze(0), state_);  // (1, W, V)
  state_ = next;
  const torch::Tensor logp = torch::log_softmax(logits[0].to(torch::kFloat), -1);  // (W, V)
  const torch::Tensor targets = window.narrow(0, 1, w);                              // (W)
  const torch::Tensor chosen =
      logp.gather(1, targets.unsqueeze(1)).squeeze(1).to(torch::kCPU, torch::kDouble).contiguous();  // (W)
  torch::Tensor top_values, top_indices;
  if (k > 0) {
    // a stable descending sort keeps equal probabilities in id order, which topk does not promise
    auto [values, indices] = torch::sort(logp, /*stable=*/true, /*dim=*/-1, /*descending=*/true);  // (W, V)
    top_values = values.narrow(1, 0, k).to(torch::kCPU, torch::kDouble).contiguous();           // (W, K)
    top_indices = indices.narrow(1, 0, k).to(torch::kCPU, torch::kLong).contiguous();           // (W, K)
  }
  const double* chosen_p = chosen.data_ptr<double>();
  const int64_t first_position = fed_ - static_cast<int64_t>(pending_.size()) + 1;
  for (int64_t i = 0; i < w; ++i) {
    score_.position = first_position + i;
    score_.id = pending_[static_cast<size_t>(i + 1)];
    score_.logprob = chosen_p[i];
    if (k > 0) {
      const double* v = top_values.data_ptr<double>() + i * k;
      const int64_t* d = top_indices.data_ptr<int64_t>() + i * k;
      std::copy(v, v + k, score_.top_logprobs.begin());
      std::copy(d, d + k, score_.top_ids.begin());
    }
    total_ -= score_.logprob;
    visit_(score_);
  }
  pending_.erase(pending_.begin(), pending_.begin() + w);
}

ChunkedEvaluator::ChunkedEvaluator(CharRNN& model, int64_t window, int64_t batch, const torch::Device& device)
    : model_(model), window_(window), batch_(batch), device_(device) {
  TORCH_CHECK(window >= 1 && batch >= 1, "ChunkedEvaluator needs window and batch >= 1");
}

void ChunkedEvaluator::feed(const int64_t* ids, size_t count) {
  const size_t full = static_cast<size_t>(window_ * batch_) + 1;
  while (count > 0) {
    const size_t take = std::min(count, full - pending_.size());
    pending_.insert(pending_.end(), ids, ids + take);
    ids += take, count -= take;
    fed_ += static_cast<int64_t>(take);
    if (pending_.size() == full) score_rows(batch_, window_);
  }
}

EvalResult ChunkedEvaluator::finish() {
  require_two_ids(fed_);
  // what is left in evaluate_chunked's order: the full windows as one batch, then the short rest
  const int64_t left = static_cast<int64_t>(pending_.size()) - 1, rows = left / window_;
  if (rows > 0) score_rows(rows, window_);
  if (left - rows * window_ > 0) score_rows(1, left - rows * window_);
  EvalResult result = eval_result_from_sum(total_, fed_ - 1);
  result.streams = streams_;
  return result;
}

// `rows` windows of `length` predictions from pending_'s start, each from a zero state.
void ChunkedEvaluator::score_rows(int64_t rows, int64_t length) {
  const EvalModeGuard eval_mode(model_);
  const int64_t n = rows * length;
  const torch::Tensor x = torch::from_blob(pending_.data(), {n + 1}, torch::kLong).to(device_);
  State zeros;
  total_ += summed_loss(model_, x.narrow(0, 0, n).view({rows, length}), x.narrow(0, 1, n).view({rows, length}),
                        length, zeros);
  streams_ += rows;
  pending_.erase(pending_.begin(), pending_.begin() + n);
}

TextScorer::TextScorer(CharRNN& model, const Vocab& vocab, const ScoreOptions& options, const torch::Device& device,
                       std::function<void(const TextChar&)> visit, ChunkedEvaluator* chunked)
    : vocab_(vocab),
      visit_(std::move(visit)),
      chunked_(chunked),
      scorer_(model, options, device, [this](const CharScore& score) { on_score(score); }) {}

void TextScorer::feed(std::u32string_view piece) {
  ids_.clear();
  for (const char32_t c : piece) {
    const int64_t id = vocab_.id_or_negative(c);
    if (id >= 0) {
      ids_.push_back(id);
      ++known_;
    } else {
      ++unknown_;
    }
  }
  waiting_.insert(waiting_.end(), piece.begin(), piece.end());
  // the scorer reports as it goes: the characters must wait before it sees them
  scorer_.feed(ids_.data(), ids_.size());
  if (chunked_) chunked_->feed(ids_.data(), ids_.size());
}

void TextScorer::emit_unscored_front() {
  TextChar c;
  c.offset = next_offset_++;
  c.code_point = waiting_.front();
  c.known = vocab_.contains(c.code_point);
  if (c.known) ++reported_known_;
  waiting_.pop_front();
  visit_(c);
}

void TextScorer::on_score(const CharScore& score) {
  // the unknown characters before it, and the first known one, are unscored
  while (!vocab_.contains(waiting_.front()) || reported_known_ < score.position) emit_unscored_front();
  TextChar c;
  c.offset = next_offset_++;
  c.code_point = waiting_.front();
  c.known = true;
  c.score = &score;
  ++reported_known_;
  waiting_.pop_front();
  visit_(c);
}

EvalResult TextScorer::finish() {
  EvalResult result = scorer_.finish();
  while (!waiting_.empty()) emit_unscored_front();
  result.unknown_chars = unknown_;
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
