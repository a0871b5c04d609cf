// evaluate: every character after the first predicted exactly once, with the
// state carried across windows. Checked against cross-entropy computed by hand
// from plain forward calls.
#include <algorithm>
#include <cmath>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/error.h"
#include "charrnn/evaluate.h"
#include "charrnn/model.h"

namespace {

using charrnn::CharRNN;
using charrnn::EvalResult;

constexpr int64_t V = 20, N = 500;

class EvaluateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(0);
    charrnn::ModelOptions o;
    o.cell = charrnn::CellType::LSTM;
    o.embedding_dim = 8;
    o.hidden_size = 32;
    o.num_layers = 2;
    o.dropout = 0.5;  // must not act during evaluation
    model_ = CharRNN(V, o);
    ids_ = torch::randint(0, V, {N}, torch::kLong);
  }

  // summed cross-entropy of predicting segment[1:] from segment[:-1], from the zero state
  double summed_loss_from_zero(const torch::Tensor& segment) {
    torch::NoGradGuard no_grad;
    const bool was_training = model_->is_training();
    model_->eval();
    const int64_t n = segment.size(0);
    auto [logits, state] = model_->forward(segment.narrow(0, 0, n - 1).unsqueeze(0));  // (1, n-1, V)
    if (was_training) model_->train();
    return torch::nn::functional::cross_entropy(
               logits.reshape({-1, V}), segment.narrow(0, 1, n - 1),
               torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
        .item<double>();
  }

  EvalResult eval(int64_t streams, int64_t window) {
    return charrnn::evaluate(model_, ids_, streams, window, torch::kCPU);
  }

  CharRNN model_{nullptr};
  torch::Tensor ids_;
};

TEST_F(EvaluateTest, UntrainedModelIsNearUniformAndMetricsAreConsistent) {
  const EvalResult r = eval(1, 64);
  EXPECT_EQ(r.chars, N - 1);
  EXPECT_NEAR(r.loss, std::log(static_cast<double>(V)), 0.3);
  EXPECT_NEAR(r.bpc, r.loss / std::log(2.0), 1e-12);
  EXPECT_NEAR(r.perplexity, std::exp(r.loss), 1e-9 * r.perplexity);
  EXPECT_EQ(r.unknown_chars, 0);
}

TEST_F(EvaluateTest, OneStreamEqualsOneForwardOverTheWholeText) {
  const double expected = summed_loss_from_zero(ids_) / static_cast<double>(N - 1);
  for (int64_t window : {1, 7, 64, 499, 10000}) {
    SCOPED_TRACE(window);
    const EvalResult r = eval(1, window);
    EXPECT_EQ(r.chars, N - 1);
    EXPECT_NEAR(r.loss, expected, 1e-5 * expected);
  }
}

TEST_F(EvaluateTest, SeveralStreamsPredictEveryCharacterOnce) {
  // streams=4, window=7 on 499 predictions: 4 streams of 124, and the 3
  // left over continue the last stream, so the last one holds 127. Each
  // stream starts from the zero state.
  const double expected = (summed_loss_from_zero(ids_.slice(0, 0, 125)) +
                           summed_loss_from_zero(ids_.slice(0, 124, 249)) +
                           summed_loss_from_zero(ids_.slice(0, 248, 373)) +
                           summed_loss_from_zero(ids_.slice(0, 372, 500))) /
                          static_cast<double>(N - 1);
  const EvalResult r = eval(4, 7);
  EXPECT_EQ(r.chars, N - 1);
  EXPECT_EQ(r.streams, 4);
  EXPECT_NEAR(r.loss, expected, 1e-5 * expected);
  // the split is the same whatever the window, so only rounding differs
  EXPECT_NEAR(eval(4, 1).loss, expected, 1e-5 * expected);
}

TEST_F(EvaluateTest, OneCharacterStreamsSeeNoContext) {
  // window 1 and more streams than predictions: every prediction starts from zeros
  torch::NoGradGuard no_grad;
  model_->eval();
  auto [logits, state] = model_->forward(ids_.narrow(0, 0, N - 1).unsqueeze(1));  // (N-1, 1, V)
  const double expected = torch::nn::functional::cross_entropy(logits.reshape({-1, V}), ids_.narrow(0, 1, N - 1))
                              .item<double>();
  const EvalResult r = eval(100000, 1);
  EXPECT_EQ(r.chars, N - 1);
  EXPECT_EQ(r.streams, N - 1) << "never more streams than predictions";
  EXPECT_NEAR(r.loss, expected, 1e-5 * expected);
}

TEST_F(EvaluateTest, StreamCountNeverDropsCharacters) {
  for (int64_t streams : {2, 3, 5, 16, 1000}) {
    for (int64_t window : {1, 3, 7, 50, 600}) {
      SCOPED_TRACE(testing::Message() << "streams " << streams << " window " << window);
      const EvalResult r = eval(streams, window);
      EXPECT_EQ(r.chars, N - 1);
      EXPECT_TRUE(std::isfinite(r.loss));
      EXPECT_NEAR(r.loss, std::log(static_cast<double>(V)), 0.3);
    }
  }
}

TEST_F(EvaluateTest, TwoIdsAreEnoughAndFewerAreAnError) {
  const torch::Tensor two = ids_.narrow(0, 0, 2);
  const EvalResult r = charrnn::evaluate(model_, two, 4, 7, torch::kCPU);
  EXPECT_EQ(r.chars, 1);
  EXPECT_NEAR(r.loss, summed_loss_from_zero(two), 1e-5);
  EXPECT_THROW(charrnn::evaluate(model_, ids_.narrow(0, 0, 1), 1, 7, torch::kCPU), charrnn::UsageError);
  EXPECT_THROW(charrnn::evaluate(model_, torch::zeros({0}, torch::kLong), 1, 7, torch::kCPU), charrnn::UsageError);
}

TEST_F(EvaluateTest, RestoresTrainingModeAndIgnoresDropout) {
  model_->train();
  const EvalResult a = eval(1, 64);
  EXPECT_TRUE(model_->is_training());
  model_->eval();
  const EvalResult b = eval(1, 64);
  EXPECT_FALSE(model_->is_training());
  EXPECT_EQ(a.loss, b.loss);  // dropout is off during evaluation
}

}  // namespace

namespace {

// Distributed ranks split validation into shares of the same streams; the
// shares' loss-weighted sums must be the full evaluation, whatever the split.
TEST_F(EvaluateTest, SharesOfTheStreamsSumToTheWholeEvaluation) {
  for (const int64_t streams : {1, 3, 7, 8}) {
    const EvalResult whole = eval(streams, 16);
    for (const int64_t parts : {1, 2, 3, 5, 9}) {
      SCOPED_TRACE("streams " + std::to_string(streams) + ", parts " + std::to_string(parts));
      double loss_sum = 0;
      int64_t chars = 0;
      for (int64_t part = 0; part < parts; ++part) {
        const EvalResult share = charrnn::evaluate(model_, ids_, streams, 16, torch::kCPU, part, parts);
        loss_sum += share.loss * static_cast<double>(share.chars);
        chars += share.chars;
      }
      EXPECT_EQ(chars, whole.chars);
      EXPECT_NEAR(loss_sum / static_cast<double>(chars), whole.loss, 1e-6);
    }
  }
}

TEST_F(EvaluateTest, ChunkedReadsEachWindowFromAZeroState) {
  for (const int64_t window : {1, 7, 50, 499, 600}) {
    double expected = 0;
    const int64_t predictions = N - 1;
    for (int64_t start = 0; start < predictions; start += window)
      expected += summed_loss_from_zero(ids_.narrow(0, start, std::min(window, predictions - start) + 1));
    for (const int64_t batch : {1, 3, 64}) {
      const EvalResult chunked = charrnn::evaluate_chunked(model_, ids_, window, batch, torch::kCPU);
      EXPECT_EQ(chunked.chars, predictions);
      EXPECT_EQ(chunked.streams, (predictions + window - 1) / window);
      EXPECT_NEAR(chunked.loss, expected / predictions, 1e-5) << "window " << window << " batch " << batch;
    }
  }
  // one window over the whole text is the carried protocol with one stream
  EXPECT_NEAR(charrnn::evaluate_chunked(model_, ids_, N, 4, torch::kCPU).loss, eval(1, 64).loss, 1e-5);
  EXPECT_TRUE(model_->is_training());
  EXPECT_THROW(charrnn::evaluate_chunked(model_, ids_.narrow(0, 0, 1), 8, 4, torch::kCPU), charrnn::UsageError);
}

}  // namespace

namespace {

// score_characters: each character's log probability, checked against
// log_softmax of one plain forward over the whole text.
TEST_F(EvaluateTest, ScoreCharactersMatchesOneForwardAndTheLoss) {
  torch::Tensor logp;  // (N-1, V)
  {
    torch::NoGradGuard no_grad;
    model_->eval();
    auto [logits, state] = model_->forward(ids_.narrow(0, 0, N - 1).unsqueeze(0));  // (1, N-1, V)
    model_->train();
    logp = torch::log_softmax(logits[0], -1).to(torch::kDouble);
  }
  for (const int64_t window : {1, 7, 64, 10000}) {
    SCOPED_TRACE(window);
    charrnn::ScoreOptions options;
    options.window = window;
    options.top_k = 4;
    int64_t expected_position = 1;
    double sum = 0;
    const EvalResult r = charrnn::score_characters(model_, ids_, options, torch::kCPU, [&](const charrnn::CharScore& s) {
      ASSERT_EQ(s.position, expected_position++) << "one call per predicted character, in text order";
      const int64_t row = s.position - 1;
      EXPECT_EQ(s.id, ids_[s.position].item<int64_t>());
      EXPECT_NEAR(s.logprob, logp[row][s.id].item<double>(), 1e-5);
      sum += s.logprob;
      ASSERT_EQ(s.top_ids.size(), 4u);
      ASSERT_EQ(s.top_logprobs.size(), 4u);
      EXPECT_EQ(s.top_ids[0], logp[row].argmax().item<int64_t>());
      for (size_t i = 0; i < 4; ++i) {
        EXPECT_NEAR(s.top_logprobs[i], logp[row][s.top_ids[i]].item<double>(), 1e-5);
        if (i > 0) {
          EXPECT_GE(s.top_logprobs[i - 1], s.top_logprobs[i]) << "descending";
          if (s.top_logprobs[i - 1] == s.top_logprobs[i]) EXPECT_LT(s.top_ids[i - 1], s.top_ids[i]) << "ties by id";
        }
      }
      // nothing outside the top K beats its last entry
      EXPECT_LE(std::get<0>(logp[row].sort(-1, true))[4].item<double>(), s.top_logprobs[3] + 1e-6);
    });
    EXPECT_EQ(expected_position, N);
    EXPECT_EQ(r.chars, N - 1);
    EXPECT_EQ(r.streams, 1);
    const double mean = sum / static_cast<double>(N - 1);
    EXPECT_NEAR(-mean, r.loss, 1e-9);
    EXPECT_NEAR(-mean, eval(1, window).loss, 1e-5) << "the per-character logprobs average to eval's loss";
  }
  EXPECT_TRUE(model_->is_training());
}

TEST_F(EvaluateTest, ScoreCharactersTopKBoundsAndTies) {
  charrnn::ScoreOptions options;
  options.top_k = 0;
  int64_t calls = 0;
  charrnn::score_characters(model_, ids_.narrow(0, 0, 10), options, torch::kCPU, [&](const charrnn::CharScore& s) {
    ++calls;
    EXPECT_TRUE(s.top_ids.empty());
  });
  EXPECT_EQ(calls, 9);
  options.top_k = V;  // all of them: a permutation of the vocabulary
  charrnn::score_characters(model_, ids_.narrow(0, 0, 3), options, torch::kCPU, [&](const charrnn::CharScore& s) {
    std::vector<int64_t> sorted = s.top_ids;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < V; ++i) EXPECT_EQ(sorted[static_cast<size_t>(i)], i);
  });
  for (const int64_t bad : {int64_t{-1}, V + 1}) {
    options.top_k = bad;
    EXPECT_THROW(charrnn::score_characters(model_, ids_, options, torch::kCPU, [](const charrnn::CharScore&) {}),
                 charrnn::UsageError);
  }
  options.top_k = 1;
  options.window = 0;
  EXPECT_THROW(charrnn::score_characters(model_, ids_, options, torch::kCPU, [](const charrnn::CharScore&) {}),
               charrnn::UsageError);
  options.window = 8;
  EXPECT_THROW(charrnn::score_characters(model_, ids_.narrow(0, 0, 1), options, torch::kCPU,
                                         [](const charrnn::CharScore&) {}),
               charrnn::UsageError);

  // equal logits: every probability ties, so the top list is the ids in order
  torch::NoGradGuard no_grad;
  for (auto& p : model_->named_parameters())
    if (p.key().rfind("head.", 0) == 0) p.value().zero_();
  options.top_k = 5;
  int64_t tied = 0;
  charrnn::score_characters(model_, ids_.narrow(0, 0, 4), options, torch::kCPU, [&](const charrnn::CharScore& s) {
    if (s.top_logprobs.front() != s.top_logprobs.back()) return;
    ++tied;
    EXPECT_EQ(s.top_ids, (std::vector<int64_t>{0, 1, 2, 3, 4}));
    EXPECT_NEAR(s.logprob, -std::log(static_cast<double>(V)), 1e-5);
  });
  EXPECT_EQ(tied, 3) << "the output layer's parameters were not found to zero";
}

}  // namespace

namespace {

// The streaming scorers: a text fed in pieces of any size gives what the
// whole-text functions give.
TEST_F(EvaluateTest, CharacterScorerFedInPiecesMatchesScoreCharacters) {
  charrnn::ScoreOptions options;
  options.window = 16;
  options.top_k = 3;
  std::vector<charrnn::CharScore> expected;
  const EvalResult whole =
      charrnn::score_characters(model_, ids_, options, torch::kCPU, [&](const charrnn::CharScore& s) { expected.push_back(s); });
  const std::vector<int64_t> ids(ids_.data_ptr<int64_t>(), ids_.data_ptr<int64_t>() + N);
  for (const size_t piece : {size_t{1}, size_t{5}, size_t{16}, size_t{17}, size_t{1000}}) {
    SCOPED_TRACE(piece);
    size_t seen = 0;
    charrnn::CharacterScorer scorer(model_, options, torch::kCPU, [&](const charrnn::CharScore& s) {
      ASSERT_LT(seen, expected.size());
      const charrnn::CharScore& e = expected[seen++];
      EXPECT_EQ(s.position, e.position);
      EXPECT_EQ(s.id, e.id);
      EXPECT_NEAR(s.logprob, e.logprob, 1e-6);
      EXPECT_EQ(s.top_ids, e.top_ids);
    });
    for (size_t at = 0; at < ids.size(); at += piece) scorer.feed(ids.data() + at, std::min(piece, ids.size() - at));
    const EvalResult r = scorer.finish();
    EXPECT_EQ(seen, expected.size());
    EXPECT_EQ(r.chars, whole.chars);
    EXPECT_NEAR(r.loss, whole.loss, 1e-9);
  }
  EXPECT_TRUE(model_->is_training());
  charrnn::CharacterScorer one(model_, options, torch::kCPU, [](const charrnn::CharScore&) {});
  one.feed(ids.data(), 1);
  EXPECT_THROW(one.finish(), charrnn::UsageError);
}

TEST_F(EvaluateTest, ChunkedEvaluatorFedInPiecesMatchesEvaluateChunked) {
  const std::vector<int64_t> ids(ids_.data_ptr<int64_t>(), ids_.data_ptr<int64_t>() + N);
  for (const int64_t window : {1, 7, 50, 600}) {
    for (const int64_t batch : {1, 3, 64}) {
      SCOPED_TRACE("window " + std::to_string(window) + " batch " + std::to_string(batch));
      const EvalResult whole = charrnn::evaluate_chunked(model_, ids_, window, batch, torch::kCPU);
      charrnn::ChunkedEvaluator chunked(model_, window, batch, torch::kCPU);
      for (size_t at = 0; at < ids.size(); at += 13) chunked.feed(ids.data() + at, std::min<size_t>(13, ids.size() - at));
      const EvalResult r = chunked.finish();
      EXPECT_EQ(r.chars, whole.chars);
      EXPECT_EQ(r.streams, whole.streams);
      EXPECT_NEAR(r.loss, whole.loss, 1e-9);
    }
  }
}

// TextScorer: every character of the text once, in order, the unknown ones
// and the first known one unscored, the others with the scores of the
// known characters' ids.
TEST_F(EvaluateTest, TextScorerReportsEveryCharacterWithItsScore) {
  std::vector<char32_t> letters;
  for (int64_t i = 0; i < V; ++i) letters.push_back(U'a' + static_cast<char32_t>(i));
  const charrnn::Vocab vocab(letters);
  // unknown characters first, between known ones and last
  std::u32string text = U"#?";
  for (int64_t i = 0; i < N; ++i) {
    text += static_cast<char32_t>(U'a' + ids_[i].item<int64_t>());
    if (i % 37 == 5) text += U"\u00e9";
  }
  text += U"!";
  charrnn::ScoreOptions options;
  options.window = 8;
  options.top_k = 2;
  std::vector<charrnn::CharScore> expected;
  charrnn::score_characters(model_, ids_, options, torch::kCPU, [&](const charrnn::CharScore& s) { expected.push_back(s); });
  charrnn::ChunkedEvaluator chunked(model_, 8, 4, torch::kCPU);
  int64_t next_offset = 0;
  size_t scored = 0;
  bool first_known = true;
  charrnn::TextScorer scorer(model_, vocab, options, torch::kCPU, [&](const charrnn::TextChar& c) {
    ASSERT_EQ(c.offset, next_offset++);
    ASSERT_LT(static_cast<size_t>(c.offset), text.size());
    EXPECT_EQ(c.code_point, text[static_cast<size_t>(c.offset)]);
    EXPECT_EQ(c.known, vocab.contains(c.code_point));
    if (!c.known || first_known) {
      EXPECT_EQ(c.score, nullptr);
      if (c.known) first_known = false;
      return;
    }
    ASSERT_NE(c.score, nullptr);
    ASSERT_LT(scored, expected.size());
    EXPECT_EQ(c.score->position, expected[scored].position);
    EXPECT_EQ(c.score->id, vocab.id_or_negative(c.code_point));
    EXPECT_NEAR(c.score->logprob, expected[scored].logprob, 1e-6);
    ++scored;
  }, &chunked);
  for (size_t at = 0; at < text.size(); at += 11) scorer.feed(std::u32string_view(text).substr(at, 11));
  const EvalResult r = scorer.finish();
  EXPECT_EQ(next_offset, static_cast<int64_t>(text.size()));
  EXPECT_EQ(scored, expected.size());
  EXPECT_EQ(r.chars, N - 1);
  EXPECT_EQ(r.unknown_chars, static_cast<int64_t>(text.size()) - N);
  EXPECT_EQ(scorer.known(), N);
  EXPECT_NEAR(chunked.finish().loss, charrnn::evaluate_chunked(model_, ids_, 8, 4, torch::kCPU).loss, 1e-9);
}

}  // namespace
