// batcher: random chunks of T+1 consecutive ids, split into inputs and
// targets shifted by one, reproducible from a seed or a saved state.
//
// The data is arange(N), so a chunk is consecutive exactly when its values
// are consecutive integers, and its value is its offset in the data.
#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/batcher.h"
#include "charrnn/error.h"

namespace {

using charrnn::Batch;
using charrnn::Batcher;

void expect_consecutive_chunks(const Batch& batch, int64_t B, int64_t T, int64_t N) {
  ASSERT_EQ(batch.inputs.sizes(), (std::vector<int64_t>{B, T}));
  ASSERT_EQ(batch.targets.sizes(), (std::vector<int64_t>{B, T}));
  EXPECT_EQ(batch.inputs.scalar_type(), torch::kLong);
  EXPECT_EQ(batch.targets.scalar_type(), torch::kLong);
  const torch::Tensor inputs = batch.inputs.contiguous();
  const torch::Tensor targets = batch.targets.contiguous();
  auto x = inputs.accessor<int64_t, 2>();
  auto y = targets.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t start = x[b][0];
    EXPECT_GE(start, 0);
    EXPECT_LE(start + T, N - 1) << "the chunk's last target must lie inside the data";
    for (int64_t t = 0; t < T; ++t) {
      EXPECT_EQ(x[b][t], start + t) << "row " << b << " step " << t;
      EXPECT_EQ(y[b][t], x[b][t] + 1) << "row " << b << " step " << t;
    }
  }
}

bool same_batch(const Batch& a, const Batch& b) {
  return torch::equal(a.inputs, b.inputs) && torch::equal(a.targets, b.targets);
}

TEST(Batcher, ShapesAndConsecutiveShiftedChunks) {
  const int64_t N = 100, B = 4, T = 10;
  Batcher batcher(torch::arange(N, torch::kLong), B, T, 7);
  for (int i = 0; i < 50; ++i) expect_consecutive_chunks(batcher.next(), B, T, N);
}

TEST(Batcher, EveryStartIsReachableAndNoneOutside) {
  // starts are uniform over [0, N - T - 1]; 3000 rows over 11 starts hit every one
  const int64_t N = 21, B = 30, T = 10;
  Batcher batcher(torch::arange(N, torch::kLong), B, T, 3);
  std::set<int64_t> starts;
  for (int i = 0; i < 100; ++i) {
    const Batch batch = batcher.next();
    expect_consecutive_chunks(batch, B, T, N);
    const torch::Tensor first = batch.inputs.select(1, 0).contiguous();
    for (int64_t b = 0; b < B; ++b) starts.insert(first[b].item<int64_t>());
  }
  EXPECT_EQ(starts.size(), static_cast<size_t>(N - T));
  EXPECT_EQ(*starts.begin(), 0);
  EXPECT_EQ(*starts.rbegin(), N - T - 1);
}

TEST(Batcher, ExactlySeqLengthPlusOneIds) {
  const int64_t T = 10;
  Batcher batcher(torch::arange(T + 1, torch::kLong), 3, T, 1);
  for (int i = 0; i < 3; ++i) {
    const Batch batch = batcher.next();
    expect_consecutive_chunks(batch, 3, T, T + 1);
    EXPECT_TRUE(torch::equal(batch.inputs, torch::arange(T, torch::kLong).unsqueeze(0).expand({3, T})));
    EXPECT_TRUE(torch::equal(batch.targets, torch::arange(1, T + 1, torch::kLong).unsqueeze(0).expand({3, T})));
  }
}

TEST(Batcher, TooFewIdsIsRejected) {
  EXPECT_ANY_THROW(Batcher(torch::arange(10, torch::kLong), 2, 10, 0));
}

TEST(Batcher, SameSeedSameBatches) {
  Batcher a(torch::arange(1000, torch::kLong), 8, 16, 1234);
  Batcher b(torch::arange(1000, torch::kLong), 8, 16, 1234);
  Batcher c(torch::arange(1000, torch::kLong), 8, 16, 1235);
  bool any_different_from_c = false;
  for (int i = 0; i < 10; ++i) {
    const Batch x = a.next();
    EXPECT_TRUE(same_batch(x, b.next())) << "batch " << i;
    any_different_from_c |= !same_batch(x, c.next());
  }
  EXPECT_TRUE(any_different_from_c) << "a different seed should give different batches";
}

TEST(Batcher, DoesNotUseTheGlobalGenerator) {
  Batcher a(torch::arange(1000, torch::kLong), 8, 16, 5);
  Batcher b(torch::arange(1000, torch::kLong), 8, 16, 5);
  torch::manual_seed(1);
  const Batch x = a.next();
  torch::manual_seed(2);
  torch::rand({100});
  EXPECT_TRUE(same_batch(x, b.next()));
}

TEST(Batcher, RestoringRngStateReplaysBatches) {
  Batcher a(torch::arange(1000, torch::kLong), 8, 16, 99);
  a.next();
  a.next();
  const torch::Tensor state = a.rng_state();
  const Batch first = a.next();
  const Batch second = a.next();
  EXPECT_FALSE(same_batch(first, second));

  a.set_rng_state(state);
  EXPECT_TRUE(same_batch(a.next(), first));
  EXPECT_TRUE(same_batch(a.next(), second));

  // a different batcher (other seed) resumes the same stream from the state
  Batcher b(torch::arange(1000, torch::kLong), 8, 16, 0);
  b.set_rng_state(state.clone());
  EXPECT_TRUE(same_batch(b.next(), first));
  EXPECT_TRUE(same_batch(b.next(), second));
}

TEST(Batcher, InvalidRngStateThrowsError) {
  Batcher a(torch::arange(100, torch::kLong), 2, 4, 0);
  EXPECT_THROW(a.set_rng_state(torch::zeros({3}, torch::kByte)), charrnn::Error);
}

}  // namespace

namespace {

using charrnn::BatcherOptions;

Batcher sequential(int64_t N, int64_t B, int64_t T, uint64_t seed) {
  return Batcher(torch::arange(N, torch::kLong), BatcherOptions(B, T).sequential(true).seed(seed));
}

TEST(SequentialBatcher, EachEpochReadsEveryTrackPositionOnceInOrder) {
  const int64_t N = 1000, B = 4, T = 10;
  Batcher batcher = sequential(N, B, T, 5);
  std::set<int64_t> offsets;
  for (int epoch = 0; epoch < 6; ++epoch) {
    const Batch first = batcher.next();
    EXPECT_TRUE(first.starts_tracks);
    const torch::Tensor starts = first.inputs.select(1, 0).contiguous();
    const int64_t offset = starts[0].item<int64_t>();
    EXPECT_GE(offset, 0);
    EXPECT_LT(offset, T);
    offsets.insert(offset);
    const int64_t track = (N - 1 - offset) / B;  // every track this long, side by side
    const int64_t steps = track / T;
    EXPECT_EQ(batcher.steps_per_epoch(), steps);
    std::set<int64_t> seen;
    for (int64_t step = 0; step < steps; ++step) {
      const Batch batch = step == 0 ? first : batcher.next();
      EXPECT_EQ(batch.starts_tracks, step == 0);
      expect_consecutive_chunks(batch, B, T, N);
      for (int64_t b = 0; b < B; ++b) {
        // row b continues track b where the last batch left it
        EXPECT_EQ(batch.inputs[b][0].item<int64_t>(), offset + b * track + step * T) << "epoch " << epoch;
        for (int64_t t = 0; t < T; ++t) EXPECT_TRUE(seen.insert(batch.inputs[b][t].item<int64_t>()).second);
      }
    }
    // every position of every track, once: all but the offset before the
    // first track and the tails that do not fill a batch
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < steps * T; ++i) EXPECT_EQ(seen.count(offset + b * track + i), 1u);
    EXPECT_EQ(seen.size(), static_cast<size_t>(B * steps * T));
  }
  EXPECT_GT(offsets.size(), 1u) << "each epoch should draw its own offset";
}

TEST(SequentialBatcher, ShortestTextHasOneBatchPerEpochAndNoRoomToShift) {
  const int64_t B = 3, T = 5, N = Batcher::min_sequential_ids(B, T);
  Batcher batcher = sequential(N, B, T, 1);
  for (int i = 0; i < 4; ++i) {
    const Batch batch = batcher.next();
    EXPECT_TRUE(batch.starts_tracks);
    expect_consecutive_chunks(batch, B, T, N);
    EXPECT_EQ(batch.inputs[0][0].item<int64_t>(), 0);
    EXPECT_EQ(batch.targets[B - 1][T - 1].item<int64_t>(), N - 1);
  }
  EXPECT_ANY_THROW(sequential(N - 1, B, T, 1));
}

TEST(SequentialBatcher, PositionAndGeneratorResumeTheSameBatches) {
  Batcher a = sequential(2000, 8, 16, 9);
  for (int i = 0; i < 17; ++i) a.next();  // past an epoch boundary (15 batches per epoch)
  Batcher b = sequential(2000, 8, 16, 1234);
  b.set_rng_state(a.rng_state());
  b.set_position(a.position());
  for (int i = 0; i < 40; ++i) {
    const Batch x = a.next(), y = b.next();
    EXPECT_TRUE(same_batch(x, y)) << "batch " << i;
    EXPECT_EQ(x.starts_tracks, y.starts_tracks);
  }
}

TEST(SequentialBatcher, APositionOutsideTheTextIsAnError) {
  Batcher batcher = sequential(200, 4, 10, 0);
  for (const auto& bad : {torch::tensor({-1, 0}, torch::kLong), torch::tensor({10, 0}, torch::kLong),
                          torch::tensor({0, 99}, torch::kLong), torch::tensor({0, 0, 0}, torch::kLong),
                          torch::tensor({0.0, 0.0})})
    EXPECT_THROW(batcher.set_position(bad), charrnn::Error) << bad;
  EXPECT_NO_THROW(batcher.set_position(torch::tensor({9, 4}, torch::kLong)));
}

TEST(SequentialBatcher, PartsSplitTheTracksOfOneLargeBatch) {
  const int64_t N = 3000, B = 4, T = 8;
  Batcher whole = sequential(N, 3 * B, T, 77);
  std::vector<Batcher> parts;
  for (int64_t p = 0; p < 3; ++p) {
    parts.push_back(sequential(N, B, T, 77));
    parts.back().keep_part(p, 3);
  }
  for (int i = 0; i < 70; ++i) {  // a few epochs
    const Batch all = whole.next();
    for (int64_t p = 0; p < 3; ++p) {
      const Batch part = parts[static_cast<size_t>(p)].next();
      EXPECT_TRUE(torch::equal(part.inputs, all.inputs.narrow(0, p * B, B))) << "batch " << i << " part " << p;
      EXPECT_EQ(part.starts_tracks, all.starts_tracks);
    }
  }
}

TEST(RandomBatcher, BurnInIsTheTextRightBeforeEachChunk) {
  const int64_t N = 300, B = 6, T = 10, burn_in = 25;
  Batcher batcher(torch::arange(N, torch::kLong), BatcherOptions(B, T).burn_in(burn_in).seed(4));
  for (int i = 0; i < 30; ++i) {
    const Batch batch = batcher.next();
    expect_consecutive_chunks(batch, B, T, N);
    ASSERT_EQ(batch.burn_in.sizes(), (std::vector<int64_t>{B, burn_in}));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < burn_in; ++t)
        EXPECT_EQ(batch.burn_in[b][t].item<int64_t>(), batch.inputs[b][0].item<int64_t>() - burn_in + t);
  }
  // without burn-in the draws are today's, so random runs keep their batches
  Batcher plain(torch::arange(N, torch::kLong), B, T, 4);
  Batcher options(torch::arange(N, torch::kLong), BatcherOptions(B, T).seed(4));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(same_batch(plain.next(), options.next()));
}

}  // namespace
