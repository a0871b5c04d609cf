#include "charrnn/dynamic_eval.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "charrnn/error.h"

namespace charrnn {

void validate(const DynamicEvalOptions& options) {
  if (!std::isfinite(options.learning_rate) || options.learning_rate < 0)
    throw UsageError("the dynamic learning rate (--dynamic-lr) must be a finite number >= 0, got " + std::to_string(options.learning_rate));
  if (!std::isfinite(options.decay) || options.decay < 0 || options.decay > 1)
    throw UsageError("the dynamic decay (--dynamic-decay) must be in [0, 1], got " + std::to_string(options.decay));
  if (options.segment < 1)
    throw UsageError("the dynamic segment (--dynamic-segment) must be >= 1 characters, got " + std::to_string(options.segment));
  if (!std::isfinite(options.epsilon) || options.epsilon <= 0)
    throw UsageError("the dynamic epsilon must be a finite number > 0, got " + std::to_string(options.epsilon));
  if (!(options.rms_decay >= 0 && options.rms_decay < 1))
    throw UsageError("the dynamic rms decay must be in [0, 1), got " + std::to_string(options.rms_decay));
}

DynamicAdapter::DynamicAdapter(const CharRNNImpl& model, const DynamicEvalOptions& options,
                               const torch::Device& device)
    : options_(options), device_(device) {
  validate(options);
  // A model of the same sizes without dropout, in training mode: on the CPU
  // that runs forward and backward through the fused layers (much faster
  // than LibTorch's modules for one stream), and without dropout training
  // mode computes exactly what evaluation mode does.
  ModelOptions sizes = model.options();
  sizes.dropout = 0;
  model_ = CharRNN(model.vocab_size(), sizes);
  model_->to(device);
  model_->train();
  {
    torch::NoGradGuard no_grad;
    const auto source = model.named_parameters();
    for (auto& p : model_->named_parameters()) {
      const torch::Tensor* from = source.find(p.key());
      TORCH_CHECK(from != nullptr, "DynamicAdapter: the copy has a parameter the model lacks: ", p.key());
      p.value().copy_(*from);
    }
  }
  for (const torch::Tensor& p : model_->parameters()) {
    params_.push_back(p);
    initial_.push_back(p.detach().clone());
    mean_square_.push_back(torch::zeros_like(p.detach()));
  }
}

double DynamicAdapter::learn(const int64_t* ids, int64_t n) {
  TORCH_CHECK(n >= 1, "DynamicAdapter::learn needs at least one prediction");
  torch::AutoGradMode with_gradient(true);  // also when called under a NoGradGuard, as generation is
  // from_blob does not own the ids; the tensor lives only in this call
  const torch::Tensor x =
      torch::from_blob(const_cast<int64_t*>(ids), {n + 1}, torch::kLong).to(device_);  // (W + 1)
  for (torch::Tensor& p : params_)
    if (p.mutable_grad().defined()) p.mutable_grad().zero_();
  auto [logits, next] = model_->forward(x.narrow(0, 0, n).unsqueeze(0), state_);  // logits: (1, W, V)
  const torch::Tensor summed = torch::nn::functional::cross_entropy(
      logits.reshape({n, logits.size(-1)}), x.narrow(0, 1, n),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  // the mean, as Krause's criterion takes it: the step's size then does not
  // depend on the segment's length (the last one may be shorter)
  (summed / static_cast<double>(n)).backward();
  state_ = next.detach();
  const double loss = summed.item<double>();
  update();
  return loss;
}

void DynamicAdapter::update() {
  torch::NoGradGuard no_grad;
  const double beta = options_.rms_decay;
  ++updates_;
  rms_decay_power_ *= beta;
  const double correction = 1.0 - rms_decay_power_;  // > 0: beta < 1
  const size_t count = params_.size();
  std::vector<torch::Tensor> grads(count), rms(count);
  double rms_sum = 0;
  for (size_t i = 0; i < count; ++i) {
    const torch::Tensor& g = params_[i].grad();
    grads[i] = g.defined() ? g : torch::zeros_like(params_[i]);
    mean_square_[i].mul_(beta).addcmul_(grads[i], grads[i], 1.0 - beta);
    rms[i] = (mean_square_[i] / correction).sqrt_();
    rms_sum += rms[i].mean().item<double>();
  }
  const double mean_rms = rms_sum / static_cast<double>(count);
  for (size_t i = 0; i < count; ++i) {
    torch::Tensor& p = params_[i];
    if (options_.decay > 0 && mean_rms > 0) {
      // rate * decay <= 1: an element is never pulled past θ0
      const torch::Tensor rate = (rms[i] * (1.0 / mean_rms)).clamp_max_(1.0 / options_.decay);
      p.add_(rate * (initial_[i] - p), options_.decay);
    }
    if (options_.learning_rate > 0) p.addcdiv_(grads[i], rms[i].add_(options_.epsilon), -options_.learning_rate);
  }
}

DynamicEvaluator::DynamicEvaluator(CharRNN& model, const DynamicEvalOptions& options, const torch::Device& device)
    : model_(model), adapter_(*model, options, device), device_(device) {
  pending_.reserve(static_cast<size_t>(options.segment) + 1);
}

void DynamicEvaluator::feed(const int64_t* ids, size_t count) {
  const size_t full = static_cast<size_t>(adapter_.options().segment) + 1;
  while (count > 0) {
    const size_t take = std::min(count, full - pending_.size());
    pending_.insert(pending_.end(), ids, ids + take);
    ids += take, count -= take;
    fed_ += static_cast<int64_t>(take);
    if (pending_.size() == full) score_segment(adapter_.options().segment);
  }
}

DynamicEvalResult DynamicEvaluator::finish() {
  require_two_ids(fed_);
  if (pending_.size() > 1) score_segment(static_cast<int64_t>(pending_.size()) - 1);
  DynamicEvalResult result{eval_result_from_sum(dynamic_total_, fed_ - 1), eval_result_from_sum(static_total_, fed_ - 1)};
  result.dynamic.streams = result.static_loss.streams = 1;
  return result;
}

// Predicts pending_[1..w] from pending_[0..w-1] twice: with the unchanged
// model (as evaluate() reads one stream, window w), then with the adapting
// copy, which learns from them afterwards.
void DynamicEvaluator::score_segment(int64_t w) {
  {
    const EvalModeGuard eval_mode(model_);
    const torch::Tensor x = torch::from_blob(pending_.data(), {1, w + 1}, torch::kLong).to(device_);
    static_total_ += summed_loss(model_, x.narrow(1, 0, w), x.narrow(1, 1, w), w, static_state_);
  }
  dynamic_total_ += adapter_.learn(pending_.data(), w);
  pending_.erase(pending_.begin(), pending_.begin() + w);
}

DynamicEvalResult evaluate_dynamic(CharRNN& model, const torch::Tensor& ids, const DynamicEvalOptions& options,
                                   const torch::Device& device) {
  require_two_ids(ids.size(0));
  DynamicEvaluator evaluator(model, options, device);
  const torch::Tensor all = ids.to(torch::kCPU, torch::kLong).contiguous();
  evaluator.feed(all.data_ptr<int64_t>(), static_cast<size_t>(all.numel()));
  return evaluator.finish();
}

}  // namespace charrnn
