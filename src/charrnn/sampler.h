// Picks the next character from logits: temperature, then top-k, then top-p,
// then one uniform draw per stream turned into an id by inverse CDF over the
// probabilities sorted in descending order (ties keep id order, as a stable
// sort). Inverse CDF on an explicit uniform (rather than torch::multinomial)
// makes the choice a pure function of (logits, u), which any other
// implementation with the same generator can reproduce.
//
// The exact recipe, which export.cpp's TorchScript repeats op for op:
//   probs = softmax(float32 logits / T)            (ATen, on the logits' device)
//   sort descending, ties by id; keep the first k  (top-k, k = V when off)
//   cdf   = running sum of the kept probs in double, in order
//   top-p keeps position 0 and each i >= 1 with cdf[i-1] < top_p * cdf[k-1]
//   id    = order[first i with cdf[i] > u * cdf[last kept]], at most the last kept
// The sort, sums and search are plain host loops (RowSampler), so a
// generation step costs no allocation and no extra tensor ops.
//
// Shape legend: B streams, V vocabulary.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "charrnn/config.h"

namespace charrnn {

// SamplingParams (temperature, top-k, top-p) is declared with the rest of
// the sampling settings, SampleOptions, in config.h.

/// What a user may ask of a sampling setting. The sampler itself takes any
/// value (above); this is the one table that the CLI flags, chat's
/// commands, the config's sample section, the server's requests and
/// docs/config.md agree on, so that a typo (--top-p 7 for 0.7) is an error
/// everywhere rather than a silent "keep all" somewhere.
struct SamplingRange {
  const char* setting;  ///< the config key in section "sample"
  double min;
  bool min_excluded;    ///< (min, ...] rather than [min, ...]
  double max;           ///< infinity: no upper bound
  bool integer;
  const char* meaning;  ///< what the ends of the range do
};
extern const SamplingRange kTemperatureRange;  // [0, 2]: 0 picks the most likely character
extern const SamplingRange kTopKRange;         // integers >= 0: 0 keeps every character
extern const SamplingRange kTopPRange;         // (0, 1]: 1 keeps every character
extern const SamplingRange kLengthRange;       // integers >= 0
/// Every range above, in that order (for docs and tests).
const std::vector<const SamplingRange*>& sampling_ranges();

/// "in [0, 2]", "in (0, 1]", ">= 0" (docs/config.md's type column holds it).
std::string describe_range(const SamplingRange& range);
/// "a number in [0, 2] (0 picks ...)": what messages say a value must be.
std::string range_requirement(const SamplingRange& range);
bool in_range(const SamplingRange& range, double value);
/// Throws UsageError "`what` must be in (0, 1], got 7" when it is not.
void check_in_range(const SamplingRange& range, double value, const std::string& what);

/// A CPU generator seeded with `seed` (LibTorch's mt19937, as torch.Generator).
at::Generator make_generator(uint64_t seed);

/// The uniform draws of sampling: Marsaglia's xorshift128 on 32-bit words.
/// Every step is a shift, xor or mask of values below 2^45, so the exported
/// TorchScript generate() (int64 arithmetic, export.cpp) reproduces it bit for
/// bit; that is what makes its text equal to `charrnn generate` for a seed.
class SampleRng {
 public:
  explicit SampleRng(uint64_t seed);
  uint32_t next_u32();
  /// 24 random bits as a float in [0, 1): exact in float32 and in double.
  float next_uniform() { return static_cast<float>(next_u32() >> 8) * (1.0f / 16777216.0f); }
  /// (n) float uniforms.
  torch::Tensor uniforms(int64_t n);

 private:
  uint32_t x_, y_, z_, w_;
};

/// The host half of sampling, for one row of probabilities, with scratch
/// space kept between calls so a generation loop allocates nothing.
class RowSampler {
 public:
  /// probs: V probabilities (softmax output); u in [0, 1). Throws Error if
  /// a probability is NaN (the model produced non-finite logits).
  int64_t pick(const float* probs, int64_t V, const SamplingParams& params, double u);
  /// out: V floats, the renormalised probabilities that pick() draws from.
  void filtered(const float* probs, int64_t V, const SamplingParams& params, float* out);

 private:
  /// Sorts, sums and applies top-k / top-p; returns how many positions stay.
  int64_t prepare(const float* probs, int64_t V, const SamplingParams& params);
  std::vector<int64_t> order_;
  std::vector<double> cdf_;
  std::vector<uint64_t> keys_;
};

/// True when params pick the argmax and draw no uniform.
bool is_greedy(const SamplingParams& params);

/// softmax(float32 logits / temperature) over the last dimension, on the
/// logits' device: the tensor half of sampling.
torch::Tensor tempered_probabilities(const torch::Tensor& logits, double temperature);

/// Probabilities after temperature, top-k and top-p, renormalised.
/// logits: (B, V) -> (B, V) float. Greedy parameters give a one-hot row.
torch::Tensor filtered_probabilities(const torch::Tensor& logits, const SamplingParams& params);

/// Maps uniforms u in [0, 1) to ids. logits: (B, V), u: (B) -> ids (B) int64.
torch::Tensor sample_with_uniforms(const torch::Tensor& logits, const SamplingParams& params,
                                   const torch::Tensor& u);

/// Draws u from `rng` (one per row) and samples. Greedy draws nothing.
torch::Tensor sample(const torch::Tensor& logits, const SamplingParams& params, SampleRng& rng);

/// sample() for a generation loop: writes the (B) ids to `ids` on the host
/// and reuses `scratch`, so nothing is allocated but the host copy of the
/// probabilities. The same ids and the same draws from `rng` as sample().
void sample_into(const torch::Tensor& logits, const SamplingParams& params, SampleRng& rng, RowSampler& scratch,
                 int64_t* ids);

/// sample_into() with the uniforms drawn beforehand, u[b] for row b (as
/// sample_into draws them: one per row, in row order; greedy reads none).
/// Rows are sampled independently, so several threads can each take a
/// block of rows, with scratch of their own.
void sample_rows_into(const torch::Tensor& logits, const SamplingParams& params, const float* u,
                      RowSampler& scratch, int64_t* ids);

}  // namespace charrnn
