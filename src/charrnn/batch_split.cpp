#include "charrnn/batch_split.h"

#include "charrnn/runtime.h"

namespace charrnn {

std::pair<torch::Tensor, State> mean_loss(CharRNN& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                          const State& initial, const std::vector<torch::Tensor>* dropout_masks) {
  auto [logits, state] = dropout_masks ? model->forward(inputs, initial, *dropout_masks)
                                       : model->forward(inputs, initial);  // logits: (B, T, V)
  return {torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape(-1)), state};
}

double BatchSplit::forward_backward(CharRNN& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                    const State& initial, int64_t parts, const torch::Device& device) {
  const std::vector<torch::Tensor> params = model->parameters();
  const int64_t batch = inputs.size(0);
  std::vector<std::vector<torch::Tensor>> grads(static_cast<size_t>(parts));
  std::vector<double> losses(static_cast<size_t>(parts), 0.0);
  std::vector<State> final_states(static_cast<size_t>(parts));
  // the masks one pass over the whole batch would draw, in the same order
  const std::vector<torch::Tensor> masks = model->draw_dropout_masks(batch, inputs.size(1), device);
  const auto run_part = [&](int64_t part) {
    const int64_t first = batch * part / parts, rows = batch * (part + 1) / parts - first;
    // this part's mean, weighted by its share of the batch: the parts add up to the batch mean
    std::vector<torch::Tensor> part_masks;
    for (const torch::Tensor& mask : masks) part_masks.push_back(mask.narrow(1, first, rows));  // (T, rows, H)
    auto [part_loss, part_state] = mean_loss(model, inputs.narrow(0, first, rows), targets.narrow(0, first, rows),
                                             initial.narrow_batch(first, rows), &part_masks);
    const torch::Tensor loss = part_loss * (static_cast<double>(rows) / static_cast<double>(batch));
    final_states[static_cast<size_t>(part)] = part_state.detach();
    grads[static_cast<size_t>(part)] = torch::autograd::grad({loss}, params, /*grad_outputs=*/{},
                                                             /*retain_graph=*/c10::nullopt,
                                                             /*create_graph=*/false, /*allow_unused=*/true);
    losses[static_cast<size_t>(part)] = loss.item<double>();
  };
  if (!threads_ || threads_->parts() != parts) threads_ = std::make_unique<PartThreads>(parts);
  {
    const SingleThreadedBlas one_blas_thread_per_part;
    threads_->run(run_part);  // rethrows the first failed part's exception
  }

  // .grad is overwritten, never accumulated into, so no zero_grad(); it is
  // its own tensor, never one of autograd's results, which may be views
  torch::NoGradGuard no_grad;
  double loss = 0;
  for (int64_t part = 0; part < parts; ++part) loss += losses[static_cast<size_t>(part)];
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Tensor p = params[i];
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    torch::Tensor grad = p.grad();
    bool first = true;
    for (int64_t part = 0; part < parts; ++part) {
      const torch::Tensor& g = grads[static_cast<size_t>(part)][i];
      if (!g.defined()) continue;
      if (first) grad.copy_(g);
      else grad.add_(g);
      first = false;
    }
    if (first) grad.zero_();
  }
  final_state_ = State::cat_batches(final_states);
  return loss;
}

}  // namespace charrnn
