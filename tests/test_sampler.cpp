// sampler, in the style of llama.cpp's test-sampling.cpp: fixed logits in,
// exact probabilities or ids out, for greedy, top-k, top-p and temperature,
// and for the inverse-CDF mapping from a uniform u to an id.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/sampler.h"

namespace {

using charrnn::SamplingParams;

// logits whose softmax is exactly `probs` (up to float rounding): log p.
torch::Tensor logits_for(const std::vector<float>& probs) {
  return torch::tensor(probs, torch::kFloat).log().unsqueeze(0);  // (1, V)
}

SamplingParams params(double temperature, int64_t top_k = 0, double top_p = 1.0) {
  return SamplingParams{temperature, top_k, top_p};
}

void expect_probs(const torch::Tensor& actual, const std::vector<double>& expected, double tol = 1e-6) {
  ASSERT_EQ(actual.dim(), 2);
  ASSERT_EQ(actual.size(1), static_cast<int64_t>(expected.size()));
  const torch::Tensor row = actual[0].to(torch::kDouble).contiguous();
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_NEAR(row[static_cast<int64_t>(i)].item<double>(), expected[i], tol) << "id " << i;
}

int64_t pick(const torch::Tensor& logits, const SamplingParams& p, float u) {
  return charrnn::sample_with_uniforms(logits, p, torch::tensor({u}, torch::kFloat))[0].item<int64_t>();
}

// Ids 0..3 with probabilities chosen so that id order and probability order
// differ: sorted descending the ids are 1 (0.5), 3 (0.3), 0 (0.15), 2 (0.05),
// with cumulative boundaries 0.5, 0.8, 0.95, 1.
const std::vector<float> kProbs = {0.15f, 0.5f, 0.05f, 0.3f};

TEST(Sampler, GreedyReturnsArgmax) {
  const torch::Tensor logits = torch::tensor({{0.1f, 2.0f, -1.0f, 1.9f}, {3.0f, 0.0f, 0.0f, 2.5f}});
  for (const SamplingParams& p : {params(0), params(-1), params(1.0, 1), params(0.5, 1, 0.5), params(0, 3)}) {
    charrnn::SampleRng gen(0);
    const torch::Tensor ids = charrnn::sample(logits, p, gen);
    EXPECT_EQ(ids[0].item<int64_t>(), 1);
    EXPECT_EQ(ids[1].item<int64_t>(), 0);
    const torch::Tensor u = torch::tensor({0.999f, 0.999f});
    EXPECT_TRUE(torch::equal(charrnn::sample_with_uniforms(logits, p, u), ids));
    const torch::Tensor probs = charrnn::filtered_probabilities(logits, p);
    EXPECT_TRUE(torch::equal(probs, torch::tensor({{0.f, 1.f, 0.f, 0.f}, {1.f, 0.f, 0.f, 0.f}})));
  }
}

TEST(Sampler, GreedyDrawsNothingFromTheGenerator) {
  charrnn::SampleRng gen(5);
  charrnn::SampleRng untouched = gen;
  charrnn::sample(logits_for(kProbs), params(0), gen);
  EXPECT_EQ(charrnn::SampleRng(gen).next_u32(), charrnn::SampleRng(untouched).next_u32());
  charrnn::sample(logits_for(kProbs), params(1), gen);
  EXPECT_NE(gen.next_u32(), untouched.next_u32());
}

// The exported TorchScript generate() re-implements SampleRng with int64
// arithmetic; these values pin the sequence both must produce. They were
// computed independently in Python:
//   x, y, z, w = seed & M, seed >> 32 & M, 0x243F6A88, 0xB7E15162
//   t = x ^ (x << 11) & M; x, y, z = y, z, w; w = w ^ (w >> 19) ^ t ^ (t >> 8)
// with 32 draws discarded after seeding.
TEST(Sampler, SampleRngSequenceIsPinned) {
  charrnn::SampleRng a(0), b(123456789012345ull);
  EXPECT_EQ(a.next_u32(), 4116387909u);
  EXPECT_EQ(a.next_u32(), 3824175033u);
  EXPECT_EQ(b.next_u32(), 680793908u);
  charrnn::SampleRng c(7);
  for (int i = 0; i < 1000; ++i) {
    const float u = c.next_uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
  }
}

TEST(Sampler, NoFilterIsSoftmax) {
  expect_probs(charrnn::filtered_probabilities(logits_for(kProbs), params(1)), {0.15, 0.5, 0.05, 0.3});
  // top_k >= V and top_p >= 1 keep everything
  expect_probs(charrnn::filtered_probabilities(logits_for(kProbs), params(1, 4, 1.0)), {0.15, 0.5, 0.05, 0.3});
  expect_probs(charrnn::filtered_probabilities(logits_for(kProbs), params(1, 100, 2.0)), {0.15, 0.5, 0.05, 0.3});
}

TEST(Sampler, TopKKeepsExactlyTheKLargest) {
  const torch::Tensor probs = charrnn::filtered_probabilities(logits_for(kProbs), params(1, 2));
  expect_probs(probs, {0.0, 0.5 / 0.8, 0.0, 0.3 / 0.8});
  EXPECT_EQ((probs > 0).sum().item<int64_t>(), 2);
  expect_probs(charrnn::filtered_probabilities(logits_for(kProbs), params(1, 3)),
               {0.15 / 0.95, 0.5 / 0.95, 0.0, 0.3 / 0.95});
}

TEST(Sampler, TopKTiesKeepLowerIds) {
  // the sort is stable: among equal logits, lower ids come first
  const torch::Tensor logits = torch::tensor({{1.0f, 2.0f, 2.0f, 2.0f}});
  expect_probs(charrnn::filtered_probabilities(logits, params(1, 2)), {0.0, 0.5, 0.5, 0.0});
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
  // sorted 0.5, 0.3, 0.15, 0.05: 0.5 < 0.7 so 0.3 is needed, 0.8 >= 0.7 so the rest goes
  expect_probs(charrnn::filtered_probabilities(logits_for(kProbs), params(1, 0, 0.7)), {0.0, 0.625, 0.0, 0.375});
  // 0.9 needs the third too
  expect_probs(charrnn::filtered_probabilities(logits_for(kProbs), params(1, 0, 0.9)),
               {0.15 / 0.95, 0.5 / 0.95, 0.0, 0.3 / 0.95});
  // a tiny p still keeps the most likely character
  expect_probs(charrnn::filtered_probabilities(logits_for(kProbs), params(1, 0, 0.01)), {0.0, 1.0, 0.0, 0.0});
  // 0.99 keeps all four
  expect_probs(charrnn::filtered_probabilities(logits_for(kProbs), params(1, 0, 0.99)), {0.15, 0.5, 0.05, 0.3});
}

TEST(Sampler, TopKThenTopP) {
  // top-k 3 drops id 2, then top-p 0.7 keeps ids 1 and 3
  expect_probs(charrnn::filtered_probabilities(logits_for(kProbs), params(1, 3, 0.7)), {0.0, 0.625, 0.0, 0.375});
}

TEST(Sampler, TemperatureIsSoftmaxOfScaledLogits) {
  const std::vector<float> raw = {1.0f, 2.0f, 3.0f, 0.5f, -1.0f};
  const torch::Tensor logits = torch::tensor(raw).unsqueeze(0);
  double previous_max = 0;
  for (double T : {2.0, 1.0, 0.5, 0.1}) {
    SCOPED_TRACE(T);
    std::vector<double> expected;
    double sum = 0;
    for (float l : raw) sum += std::exp(l / T);
    for (float l : raw) expected.push_back(std::exp(l / T) / sum);
    const torch::Tensor probs = charrnn::filtered_probabilities(logits, params(T));
    expect_probs(probs, expected, 1e-6);
    // lower temperature sharpens: the top probability grows as T falls
    const double top = probs.max().item<double>();
    EXPECT_GT(top, previous_max);
    previous_max = top;
  }
}

TEST(Sampler, UniformsMapToExactIds) {
  const torch::Tensor logits = logits_for(kProbs);
  const SamplingParams p = params(1);
  EXPECT_EQ(pick(logits, p, 0.0f), 1);       // u = 0: the most likely
  EXPECT_EQ(pick(logits, p, 0.4999f), 1);    // just below 0.5
  EXPECT_EQ(pick(logits, p, 0.5001f), 3);    // just above
  EXPECT_EQ(pick(logits, p, 0.7999f), 3);    // just below 0.8
  EXPECT_EQ(pick(logits, p, 0.8001f), 0);
  EXPECT_EQ(pick(logits, p, 0.9499f), 0);    // just below 0.95
  EXPECT_EQ(pick(logits, p, 0.9501f), 2);
  EXPECT_EQ(pick(logits, p, 0.999999f), 2);  // the least likely, last in sorted order
}

TEST(Sampler, UniformsNeverPickAFilteredId) {
  const torch::Tensor logits = logits_for(kProbs);
  for (const SamplingParams& p : {params(1, 2), params(1, 0, 0.7), params(1.7, 2), params(0.3, 0, 0.6)}) {
    SCOPED_TRACE(testing::Message() << "T=" << p.temperature << " k=" << p.top_k << " p=" << p.top_p);
    const torch::Tensor kept = charrnn::filtered_probabilities(logits, p)[0] > 0;
    for (int i = 0; i <= 1000; ++i) {
      const float u = std::min(static_cast<float>(i) / 1000.0f, 0.999999f);
      const int64_t id = pick(logits, p, u);
      ASSERT_TRUE(kept[id].item<bool>()) << "u=" << u << " picked filtered id " << id;
    }
  }
  // the boundaries within what top-k 2 keeps: 0.5 of the remaining 0.8
  const SamplingParams k2 = params(1, 2);
  EXPECT_EQ(pick(logits, k2, 0.0f), 1);
  EXPECT_EQ(pick(logits, k2, 0.6249f), 1);
  EXPECT_EQ(pick(logits, k2, 0.6251f), 3);
  EXPECT_EQ(pick(logits, k2, 0.999999f), 3);  // the last kept id, never 0 or 2
  EXPECT_EQ(pick(logits, k2, 1.0f), 3);       // even u = 1 (outside [0, 1)) stays inside
  EXPECT_EQ(pick(logits, params(1, 0, 0.7), 0.999999f), 3);
}

TEST(Sampler, OneUniformPerRow) {
  const torch::Tensor logits = logits_for(kProbs).expand({4, -1});
  const torch::Tensor u = torch::tensor({0.0f, 0.6f, 0.9f, 0.99f});
  const torch::Tensor ids = charrnn::sample_with_uniforms(logits, params(1), u);
  EXPECT_TRUE(torch::equal(ids, torch::tensor({1, 3, 0, 2}, torch::kLong)));
}

TEST(Sampler, SampleIsSampleWithUniformsFromTheGenerator) {
  const torch::Tensor logits = torch::randn({6, 9}, charrnn::make_generator(3));
  for (const SamplingParams& p : {params(1), params(0.7, 4), params(1.3, 0, 0.8)}) {
    charrnn::SampleRng a(11);
    charrnn::SampleRng b(11);
    for (int i = 0; i < 20; ++i) {
      const torch::Tensor drawn = charrnn::sample(logits, p, a);
      const torch::Tensor u = b.uniforms(6);
      EXPECT_TRUE(torch::equal(drawn, charrnn::sample_with_uniforms(logits, p, u)));
    }
  }
}

TEST(Sampler, SameSeedSameIds) {
  const torch::Tensor logits = torch::zeros({1, 10});  // uniform over 10 ids
  charrnn::SampleRng a(42), b(42), c(43);
  std::vector<int64_t> ia, ib, ic;
  for (int i = 0; i < 100; ++i) {
    ia.push_back(charrnn::sample(logits, params(1), a)[0].item<int64_t>());
    ib.push_back(charrnn::sample(logits, params(1), b)[0].item<int64_t>());
    ic.push_back(charrnn::sample(logits, params(1), c)[0].item<int64_t>());
  }
  EXPECT_EQ(ia, ib);
  EXPECT_NE(ia, ic);
}

TEST(Sampler, EmpiricalFrequenciesMatchTheDistribution) {
  const int64_t draws = 20000;
  const std::vector<float> probs = {0.1f, 0.2f, 0.3f, 0.4f};
  charrnn::SampleRng gen(2024);
  const torch::Tensor logits = logits_for(probs).expand({draws, -1});
  const torch::Tensor ids = charrnn::sample(logits, params(1), gen);
  const torch::Tensor counts = torch::bincount(ids, {}, 4).to(torch::kDouble) / draws;
  for (int64_t i = 0; i < 4; ++i) EXPECT_NEAR(counts[i].item<double>(), probs[i], 0.02) << "id " << i;

  // with top-k 2 only ids 2 and 3 appear, at 3/7 and 4/7
  const torch::Tensor k_ids = charrnn::sample(logits, params(1, 2), gen);
  const torch::Tensor k_counts = torch::bincount(k_ids, {}, 4).to(torch::kDouble) / draws;
  EXPECT_EQ(k_counts[0].item<double>(), 0.0);
  EXPECT_EQ(k_counts[1].item<double>(), 0.0);
  EXPECT_NEAR(k_counts[2].item<double>(), 3.0 / 7.0, 0.02);
  EXPECT_NEAR(k_counts[3].item<double>(), 4.0 / 7.0, 0.02);
}

// The recipe in sampler.h, written the plain way: a stable descending sort of
// the ids by probability, running sums in double, the first sum above u.
int64_t recipe_pick(const std::vector<float>& probs, const SamplingParams& p, double u) {
  const int64_t V = static_cast<int64_t>(probs.size());
  std::vector<int64_t> order(probs.size());
  for (int64_t i = 0; i < V; ++i) order[static_cast<size_t>(i)] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return probs[static_cast<size_t>(a)] > probs[static_cast<size_t>(b)];
  });
  const int64_t k = p.top_k > 0 && p.top_k < V ? p.top_k : V;
  std::vector<double> cdf;
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) cdf.push_back(sum += probs[static_cast<size_t>(order[static_cast<size_t>(i)])]);
  int64_t kept = k;
  if (p.top_p < 1.0) {
    kept = 1;
    while (kept < k && cdf[static_cast<size_t>(kept - 1)] < p.top_p * cdf.back()) ++kept;
  }
  const double target = u * cdf[static_cast<size_t>(kept - 1)];
  int64_t position = 0;
  while (position < kept && cdf[static_cast<size_t>(position)] <= target) ++position;
  return order[static_cast<size_t>(std::min(position, kept - 1))];
}

TEST(Sampler, RowSamplerOrdersAsAStableDescendingSort) {
  // Rows full of ties, zeros of both signs, subnormals and (as a caller of
  // RowSampler might pass) negative values: the sort by integer keys must
  // give the ids in exactly the stable sort's order, so every u picks the same id.
  const std::vector<float> values = {0.0f, -0.0f, 1e-45f, 1e-40f, 0.25f, 0.5f, 0.125f, 1.0f, -0.25f, 3e-8f};
  std::mt19937 gen(7);
  charrnn::RowSampler sampler;
  for (int trial = 0; trial < 300; ++trial) {
    const size_t V = 1 + gen() % 80;
    std::vector<float> probs(V);
    for (float& p : probs) p = values[gen() % values.size()];
    if (std::all_of(probs.begin(), probs.end(), [](float p) { return p <= 0; })) probs[gen() % V] = 0.5f;
    const SamplingParams p = params(1.0, static_cast<int64_t>(gen() % 4) * 3, trial % 3 == 0 ? 0.7 : 1.0);
    for (double u : {0.0, 0.01, 0.3, 0.5, 0.77, 0.999999}) {
      SCOPED_TRACE("trial " + std::to_string(trial) + ", u " + std::to_string(u));
      ASSERT_EQ(sampler.pick(probs.data(), static_cast<int64_t>(V), p, u), recipe_pick(probs, p, u));
    }
  }
}

}  // namespace
