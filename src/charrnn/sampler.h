// Picks the next character from logits: temperature, then top-k, then top-p,
// then one uniform draw per stream turned into an id by inverse CDF over the
// probabilities sorted in descending order (stable sort, so ties keep id
// order). Inverse CDF on an explicit uniform (rather than torch::multinomial)
// makes the choice a pure function of (logits, u), which any other
// implementation with the same generator can reproduce.
//
// Shape legend: B streams, V vocabulary.
#pragma once

#include <cstdint>

#include <torch/torch.h>

namespace charrnn {

struct SamplingParams {
  double temperature = 0.8;  // <= 0 samples greedily (argmax)
  int64_t top_k = 0;         // <= 0 keeps every character
  double top_p = 1.0;        // >= 1 keeps every character
};

/// A CPU generator seeded with `seed` (LibTorch's mt19937, as torch.Generator).
at::Generator make_generator(uint64_t seed);

/// Probabilities after temperature, top-k and top-p, renormalised.
/// logits: (B, V) -> (B, V) float. Greedy parameters give a one-hot row.
torch::Tensor filtered_probabilities(const torch::Tensor& logits, const SamplingParams& params);

/// Maps uniforms u in [0, 1) to ids. logits: (B, V), u: (B) -> ids (B) int64.
torch::Tensor sample_with_uniforms(const torch::Tensor& logits, const SamplingParams& params,
                                   const torch::Tensor& u);

/// Draws u from `generator` (one per row) and samples. Greedy draws nothing.
torch::Tensor sample(const torch::Tensor& logits, const SamplingParams& params, at::Generator& generator);

}  // namespace charrnn
