#include "charrnn/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>

#include "charrnn/error.h"

namespace charrnn {

constexpr double kNoLimit = std::numeric_limits<double>::infinity();
const SamplingRange kTemperatureRange{"temperature", 0, false, 2, false,
                                      "0 picks the most likely character (greedy); 1 samples the model's own "
                                      "distribution; above 1 flattens it"};
const SamplingRange kTopKRange{"top_k", 0, false, kNoLimit, true, "0 keeps every character"};
const SamplingRange kTopPRange{"top_p", 0, true, 1, false, "1 keeps every character"};
const SamplingRange kLengthRange{"length", 0, false, kNoLimit, true, "characters generated after the prime"};

const std::vector<const SamplingRange*>& sampling_ranges() {
  static const std::vector<const SamplingRange*> all = {&kTemperatureRange, &kTopKRange, &kTopPRange, &kLengthRange};
  return all;
}

namespace {
std::string bound(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}
}  // namespace

std::string describe_range(const SamplingRange& r) {
  if (std::isinf(r.max)) return (r.min_excluded ? "> " : ">= ") + bound(r.min);
  return std::string("in ") + (r.min_excluded ? "(" : "[") + bound(r.min) + ", " + bound(r.max) + "]";
}

std::string range_requirement(const SamplingRange& r) {
  return std::string(r.integer ? "an integer " : "a number ") + describe_range(r) + " (" + r.meaning + ")";
}

bool in_range(const SamplingRange& r, double v) {
  if (!std::isfinite(v)) return false;
  if (r.integer && v != std::floor(v)) return false;
  return (r.min_excluded ? v > r.min : v >= r.min) && v <= r.max;
}

void check_in_range(const SamplingRange& r, double value, const std::string& what) {
  if (in_range(r, value)) return;
  throw UsageError(what + " must be " + range_requirement(r) + ", got " + bound(value));
}

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

bool is_greedy(const SamplingParams& p) { return p.temperature <= 0 || p.top_k == 1; }

torch::Tensor tempered_probabilities(const torch::Tensor& logits, double temperature) {
  return torch::softmax(logits.to(torch::kFloat) / temperature, -1);
}

int64_t RowSampler::prepare(const float* probs, int64_t V, const SamplingParams& p) {
  TORCH_CHECK(V <= int64_t{1} << 32, "sampling: a vocabulary above 2^32 characters");
  order_.resize(static_cast<size_t>(V));
  cdf_.resize(static_cast<size_t>(V));
  keys_.resize(static_cast<size_t>(V));
  // Descending, ties by id: the order a stable descending sort gives. Each
  // position is one integer key, sorted ascending: the probability's bits
  // mapped so that integer order is float order, inverted, above the id.
  // Sorting plain integers instead of ids by a comparison that looks up both
  // probabilities cut the sampler's share of a 64-stream generation profile
  // from 9.7% to 6.2%.
  for (int64_t i = 0; i < V; ++i) {
    // NaN has no place in the order
    if (std::isnan(probs[i])) throw Error("sampling: the model produced non-finite logits");
    const float p = probs[i] == 0.0f ? 0.0f : probs[i];  // -0 ties with +0
    uint32_t bits;
    std::memcpy(&bits, &p, sizeof bits);
    const uint32_t ascending = (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
    keys_[static_cast<size_t>(i)] = (static_cast<uint64_t>(~ascending) << 32) | static_cast<uint64_t>(i);
  }
  std::sort(keys_.begin(), keys_.end());
  for (int64_t i = 0; i < V; ++i) order_[static_cast<size_t>(i)] = static_cast<int64_t>(keys_[static_cast<size_t>(i)] & 0xFFFFFFFFu);
  const int64_t k = p.top_k > 0 && p.top_k < V ? p.top_k : V;
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) {
    sum += static_cast<double>(probs[order_[static_cast<size_t>(i)]]);
    cdf_[static_cast<size_t>(i)] = sum;
  }
  int64_t kept = k;
  if (p.top_p < 1.0) {
    const double limit = p.top_p * cdf_[static_cast<size_t>(k - 1)];
    kept = 1;  // the most likely character always stays
    while (kept < k && cdf_[static_cast<size_t>(kept - 1)] < limit) ++kept;
  }
  return kept;
}

int64_t RowSampler::pick(const float* probs, int64_t V, const SamplingParams& p, double u) {
  const int64_t kept = prepare(probs, V, p);
  const double target = u * cdf_[static_cast<size_t>(kept - 1)];
  int64_t position = 0;
  while (position < kept && cdf_[static_cast<size_t>(position)] <= target) ++position;
  // u = 1 or rounding could put the target on the very top of the cdf
  return order_[static_cast<size_t>(std::min(position, kept - 1))];
}

void RowSampler::filtered(const float* probs, int64_t V, const SamplingParams& p, float* out) {
  const int64_t kept = prepare(probs, V, p);
  const double total = cdf_[static_cast<size_t>(kept - 1)];
  std::fill(out, out + V, 0.0f);
  for (int64_t i = 0; i < kept; ++i) {
    const int64_t id = order_[static_cast<size_t>(i)];
    out[id] = static_cast<float>(static_cast<double>(probs[id]) / total);
  }
}

namespace {

// (B, V) host probabilities, contiguous float.
torch::Tensor host_probabilities(const torch::Tensor& logits, const SamplingParams& p) {
  TORCH_CHECK(logits.dim() == 2, "sampling expects (B, V) logits");
  return tempered_probabilities(logits, p.temperature).to(torch::kCPU).contiguous();
}

// ids[b] = the id row b of `probs` (host, (B, V)) gives for uniform(b).
template <typename UniformOfRow>
void pick_rows(const torch::Tensor& probs, const SamplingParams& params, RowSampler& scratch, int64_t* ids,
               UniformOfRow uniform) {
  const int64_t B = probs.size(0), V = probs.size(1);
  const float* rows = probs.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b) ids[b] = scratch.pick(rows + b * V, V, params, uniform(b));
}

void argmax_into(const torch::Tensor& logits, int64_t* ids) {
  const torch::Tensor best = logits.argmax(-1).to(torch::kCPU).contiguous();
  std::copy_n(best.data_ptr<int64_t>(), best.numel(), ids);
}

}  // namespace

torch::Tensor filtered_probabilities(const torch::Tensor& logits, const SamplingParams& params) {
  if (is_greedy(params)) {
    return torch::one_hot(logits.argmax(-1), logits.size(-1)).to(torch::kFloat);
  }
  const torch::Tensor probs = host_probabilities(logits, params);
  torch::Tensor out = torch::empty_like(probs);
  RowSampler sampler;
  const int64_t B = probs.size(0), V = probs.size(1);
  for (int64_t b = 0; b < B; ++b)
    sampler.filtered(probs.data_ptr<float>() + b * V, V, params, out.data_ptr<float>() + b * V);
  return out.to(logits.device());
}

torch::Tensor sample_with_uniforms(const torch::Tensor& logits, const SamplingParams& params,
                                   const torch::Tensor& u) {
  if (is_greedy(params)) return logits.argmax(-1);
  const torch::Tensor probs = host_probabilities(logits, params);
  const torch::Tensor u_host = u.to(torch::kCPU, torch::kFloat).contiguous();
  TORCH_CHECK(u_host.numel() == probs.size(0), "one uniform per row");
  torch::Tensor ids = torch::empty({probs.size(0)}, torch::kLong);
  RowSampler scratch;
  const float* us = u_host.data_ptr<float>();
  pick_rows(probs, params, scratch, ids.data_ptr<int64_t>(), [us](int64_t b) { return us[b]; });
  return ids.to(logits.device());
}

torch::Tensor sample(const torch::Tensor& logits, const SamplingParams& params, SampleRng& rng) {
  if (is_greedy(params)) return logits.argmax(-1);
  torch::Tensor ids = torch::empty({logits.size(0)}, torch::kLong);
  RowSampler scratch;
  sample_into(logits, params, rng, scratch, ids.data_ptr<int64_t>());
  return ids.to(logits.device());
}

void sample_into(const torch::Tensor& logits, const SamplingParams& params, SampleRng& rng, RowSampler& scratch,
                 int64_t* ids) {
  if (is_greedy(params)) {
    argmax_into(logits, ids);
    return;
  }
  pick_rows(host_probabilities(logits, params), params, scratch, ids, [&rng](int64_t) { return rng.next_uniform(); });
}

void sample_rows_into(const torch::Tensor& logits, const SamplingParams& params, const float* u,
                      RowSampler& scratch, int64_t* ids) {
  if (is_greedy(params)) {
    argmax_into(logits, ids);
    return;
  }
  pick_rows(host_probabilities(logits, params), params, scratch, ids, [u](int64_t b) { return u[b]; });
}

}  // namespace charrnn
