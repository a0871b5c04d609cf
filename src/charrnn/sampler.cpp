#include "charrnn/sampler.h"

#include <ATen/CPUGeneratorImpl.h>

namespace charrnn {

at::Generator make_generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

SampleRng::SampleRng(uint64_t seed)
    : x_(static_cast<uint32_t>(seed)), y_(static_cast<uint32_t>(seed >> 32)), z_(0x243F6A88u), w_(0xB7E15162u) {
  // z and w are never both zero, so the state never is; the discarded draws
  // spread nearby seeds apart.
  for (int i = 0; i < 32; ++i) next_u32();
}

uint32_t SampleRng::next_u32() {
  const uint32_t t = x_ ^ (x_ << 11);
  x_ = y_;
  y_ = z_;
  z_ = w_;
  w_ = w_ ^ (w_ >> 19) ^ (t ^ (t >> 8));
  return w_;
}

torch::Tensor SampleRng::uniforms(int64_t n) {
  torch::Tensor u = torch::empty({n}, torch::kFloat);
  float* data = u.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) data[i] = next_uniform();
  return u;
}

namespace {

bool is_greedy(const SamplingParams& p) { return p.temperature <= 0 || p.top_k == 1; }

// Sorted probabilities (descending) with everything top-k / top-p removes
// set to zero. probs, order: (B, V).
std::pair<torch::Tensor, torch::Tensor> sorted_filtered(const torch::Tensor& logits, const SamplingParams& p) {
  // float32 logits / T, softmax in float32: the same ops in TorchScript give the same bits.
  const torch::Tensor probs = torch::softmax(logits.to(torch::kFloat) / p.temperature, -1);
  auto [sorted, order] = torch::sort(probs, /*stable=*/true, /*dim=*/-1, /*descending=*/true);
  const int64_t V = logits.size(-1);
  if (p.top_k > 0 && p.top_k < V) {
    sorted = sorted.clone();
    sorted.narrow(-1, p.top_k, V - p.top_k).zero_();
  }
  if (p.top_p < 1.0) {
    // keep position i while the mass before it is still below top_p; the
    // first character always survives.
    // measured on what top-k left, renormalised, as llama.cpp does
    const torch::Tensor kept = sorted / sorted.sum(-1, /*keepdim=*/true);
    const torch::Tensor mass_before = kept.cumsum(-1) - kept;
    sorted = sorted.masked_fill(mass_before >= p.top_p, 0.0);
  }
  return {sorted, order};
}

}  // namespace

torch::Tensor filtered_probabilities(const torch::Tensor& logits, const SamplingParams& params) {
  if (is_greedy(params)) {
    return torch::one_hot(logits.argmax(-1), logits.size(-1)).to(torch::kFloat);
  }
  auto [sorted, order] = sorted_filtered(logits, params);
  sorted = sorted / sorted.sum(-1, /*keepdim=*/true);
  return torch::zeros_like(sorted).scatter_(-1, order, sorted);
}

torch::Tensor sample_with_uniforms(const torch::Tensor& logits, const SamplingParams& params,
                                   const torch::Tensor& u) {
  if (is_greedy(params)) return logits.argmax(-1);
  auto [sorted, order] = sorted_filtered(logits, params);
  const torch::Tensor cdf = sorted.cumsum(-1);                         // (B, V)
  const torch::Tensor total = cdf.select(-1, -1).unsqueeze(-1);        // (B, 1)
  const torch::Tensor target = u.to(cdf.device()).unsqueeze(-1) * total;
  // first sorted position whose cdf exceeds the target; clamp to the last kept
  // position in case rounding puts the target on the very top of the cdf.
  torch::Tensor position = (cdf <= target).sum(-1, /*keepdim=*/true);
  const torch::Tensor last_kept = (sorted > 0).sum(-1, /*keepdim=*/true) - 1;
  position = torch::min(position, last_kept);
  return order.gather(-1, position).squeeze(-1);
}

torch::Tensor sample(const torch::Tensor& logits, const SamplingParams& params, SampleRng& rng) {
  if (is_greedy(params)) return logits.argmax(-1);
  const torch::Tensor u = rng.uniforms(logits.size(0));
  return sample_with_uniforms(logits, params, u);
}

}  // namespace charrnn
