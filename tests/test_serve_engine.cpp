// serve_engine: continuous batching giving each request the text
// `generate` gives it, whatever else runs beside it.
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/evaluate.h"
#include "charrnn/generate.h"
#include "charrnn/serve_engine.h"
#include "charrnn/trainer.h"
#include "charrnn/utf8.h"
#include "test_helpers.h"

namespace {

// A small trained model, once for the engine tests.
const charrnn::Checkpoint& trained() {
  static charrnn_test::TempDir* dir = new charrnn_test::TempDir();
  static const charrnn::Checkpoint checkpoint = [] {
    charrnn::Trainer trainer(charrnn_test::small_config(*dir, "serve", charrnn::CellType::LSTM, 2, 0.0, 40, 40));
    trainer.run();
    return trainer.make_checkpoint();
  }();
  return checkpoint;
}

std::string generated(const charrnn::Checkpoint& c, const std::string& prime, int64_t length,
                      charrnn::SamplingParams sampling, uint64_t seed) {
  charrnn::CharRNN model = charrnn::restore_model(c, torch::kCPU);
  charrnn::GenerateOptions o;
  o.prime = prime;
  o.length = length;
  o.sampling = sampling;
  o.seed = seed;
  return charrnn::generate(model, c.vocab, o, torch::kCPU).at(0).substr(prime.size());
}

std::string read_all(charrnn::ServeStream& s) {
  std::string text;
  while (s.read(text, std::chrono::milliseconds(50))) {
  }
  return text;
}

TEST(ServeEngine, EachStreamGetsGeneratesTextAloneOrAmongOthers) {
  const charrnn::Checkpoint& c = trained();
  charrnn::ServeEngine engine(c, {8, 64, 2});
  const charrnn::SamplingParams warm{0.9, 0, 1.0}, nucleus{1.0, 5, 0.8}, greedy{0, 0, 1};
  const auto request = [](const std::string& prime, int64_t length, charrnn::SamplingParams p, uint64_t seed) {
    return charrnn::StreamRequest{charrnn::decode_utf8(prime), length, p, seed, {}};
  };
  // alone
  auto alone = engine.submit({request("hello", 60, warm, 3)});
  ASSERT_EQ(alone.size(), 1u);
  const std::string expected = generated(c, "hello", 60, warm, 3);
  EXPECT_EQ(read_all(*alone[0]), expected);
  EXPECT_EQ(alone[0]->finish_reason(), "length");
  EXPECT_EQ(alone[0]->generated(), 60);
  // among 12 others that start, finish and queue (8 slots) around it
  std::vector<std::vector<std::shared_ptr<charrnn::ServeStream>>> others;
  for (int i = 0; i < 6; ++i) others.push_back(engine.submit({request("abc", 10 + 7 * i, nucleus, 100 + i)}));
  auto again = engine.submit({request("hello", 60, warm, 3)});
  for (int i = 0; i < 6; ++i) others.push_back(engine.submit({request("wor", 5 + 11 * i, greedy, 0)}));
  EXPECT_EQ(read_all(*again[0]), expected);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(read_all(*others[i][0]), generated(c, "abc", 10 + 7 * i, nucleus, 100 + i)) << i;
  for (int i = 0; i < 6; ++i) EXPECT_EQ(read_all(*others[6 + i][0]), generated(c, "wor", 5 + 11 * i, greedy, 0)) << i;
  EXPECT_GT(engine.rebuilds(), 1);
}

TEST(ServeEngine, StreamsArrivingOneByOneJoinFreeRows) {
  // requests that come in one at a time while others generate take free rows
  // of the running batch; a new decoder is built only when the batch is full
  // (or worth shrinking), not for every arrival
  const charrnn::Checkpoint& c = trained();
  charrnn::ServeEngine engine(c, {16, 16, 2});
  const charrnn::SamplingParams warm{0.9, 0, 1.0};
  std::vector<std::vector<std::shared_ptr<charrnn::ServeStream>>> streams;
  for (int i = 0; i < 16; ++i) {
    streams.push_back(engine.submit({{U"abc", 200 + 5 * i, warm, static_cast<uint64_t>(300 + i), {}}}));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (int i = 0; i < 16; ++i)
    EXPECT_EQ(read_all(*streams[static_cast<size_t>(i)][0]), generated(c, "abc", 200 + 5 * i, warm, 300 + i)) << i;
  // the generating batch: capacities 2, 4, 8, 16 as it grows and 8, 4, 2 as
  // it empties; the prefill batch more, depending on how arrivals and steps
  // interleave (from under 14 up to 18 in runs on a loaded 2-core machine).
  // A new decoder per arrival in each batch would be 32 or more.
  EXPECT_LT(engine.rebuilds(), 32);
}

TEST(ServeEngine, PromptsThatArriveTogetherAreReadTogether) {
  const charrnn::Checkpoint& c = trained();
  charrnn::ServeEngine engine(c, {16, 16, 2});
  const charrnn::SamplingParams warm{0.9, 0, 1.0};
  const std::string text = "hello world, abc hello world, abc";
  std::vector<charrnn::StreamRequest> requests;
  std::vector<std::string> prompts;
  for (int i = 0; i < 16; ++i) {
    prompts.push_back(text.substr(static_cast<size_t>(i % 8), 20));  // 20 characters each
    requests.push_back({charrnn::decode_utf8(prompts.back()), 12, warm, static_cast<uint64_t>(40 + i), {}});
  }
  auto streams = engine.submit(requests);
  ASSERT_EQ(streams.size(), 16u);
  for (int i = 0; i < 16; ++i)
    EXPECT_EQ(read_all(*streams[static_cast<size_t>(i)]), generated(c, prompts[static_cast<size_t>(i)], 12, warm, 40 + i))
        << i;
  // one submit() queues all of them at once: their prompts are read side by
  // side, 20 steps in all, not 20 per stream
  EXPECT_EQ(engine.prefill_steps(), 20);
  EXPECT_EQ(engine.steps(), 11) << "the first character comes from the prefill batch";
}

TEST(ServeEngine, ALongPromptDoesNotHoldUpTheStreamsGenerating) {
  const charrnn::Checkpoint& c = trained();
  charrnn::ServeEngine engine(c, {4, 4, 2});
  const charrnn::SamplingParams greedy{0, 0, 1}, warm{0.9, 0, 1.0};
  auto running = engine.submit({{U"hel", 100000000, greedy, 0, {}}});
  ASSERT_EQ(running.size(), 1u);
  for (int i = 0; i < 400 && running[0]->generated() < 10; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::string long_prompt;
  while (long_prompt.size() < 4000) long_prompt += "hello world, abc ";
  const int64_t before = running[0]->generated();
  auto joining = engine.submit({{charrnn::decode_utf8(long_prompt), 30, warm, 9, {}}});
  ASSERT_EQ(joining.size(), 1u);
  while (joining[0]->generated() == 0 && joining[0]->finish_reason().empty())
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  // while 4,000 characters of prompt were read, the other stream went on: the
  // prefill batch gets a time budget (0.5 ms, or twice a main step) between two
  // main steps, so on this tiny model a few dozen prompt characters go by per
  // generated one; a prompt read in one go would leave the count at 0 or 1
  EXPECT_GT(running[0]->generated() - before, 20);
  EXPECT_GE(engine.prefill_steps(), 4000);
  EXPECT_EQ(read_all(*joining[0]), generated(c, long_prompt, 30, warm, 9));
  running[0]->cancel();
  std::string rest;
  while (running[0]->read(rest, std::chrono::milliseconds(50))) rest.clear();
  EXPECT_EQ(running[0]->finish_reason(), "cancelled");
}

TEST(ServeEngine, StopStringsCancellationAndAFullQueue) {
  const charrnn::Checkpoint& c = trained();
  charrnn::ServeEngine engine(c, {2, 1, 1});
  const charrnn::SamplingParams greedy{0, 0, 1};
  const std::string full = generated(c, "hel", 40, greedy, 0);
  const std::string stop = full.substr(5, 2);
  auto stopped = engine.submit({{U"hel", 40, greedy, 0, {stop}}});
  const std::string text = read_all(*stopped[0]);
  EXPECT_EQ(text, full.substr(0, full.find(stop)));
  EXPECT_EQ(stopped[0]->finish_reason(), "stop");
  // two slots and one place in the queue: a fourth long stream is refused
  auto a = engine.submit({{U"hel", 100000, greedy, 0, {}}, {U"abc", 100000, greedy, 0, {}}});
  auto b = engine.submit({{U"wor", 100000, greedy, 0, {}}});
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 1u);
  for (int i = 0; i < 200 && engine.active() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(engine.submit({{U"hel", 10, greedy, 0, {}}}).empty());
  // clients that go away free their slots; the queued stream then runs
  a[0]->cancel();
  a[1]->cancel();
  std::string some;
  for (int i = 0; i < 400 && some.size() < 20; ++i) b[0]->read(some, std::chrono::milliseconds(5));
  EXPECT_GE(some.size(), 20u);
  // draining ends what is left, with its text so far
  engine.drain(std::chrono::steady_clock::now() + std::chrono::milliseconds(50));
  read_all(*b[0]);
  EXPECT_EQ(b[0]->finish_reason(), "length");
  EXPECT_TRUE(engine.submit({{U"hel", 10, greedy, 0, {}}}).empty()) << "a draining engine takes nothing new";
}

// Text and per-character scores of a stream that reports them.
std::pair<std::string, std::vector<charrnn::TokenLogprob>> read_scored(charrnn::ServeStream& s) {
  std::string text;
  std::vector<charrnn::TokenLogprob> scores;
  while (s.read(text, std::chrono::milliseconds(50), &scores)) {
  }
  return {text, scores};
}

// What `charrnn eval --per-char` says of each character of `text` after the
// first: the reference the server's numbers must match.
std::vector<charrnn::CharScore> eval_scores(const charrnn::Checkpoint& c, const std::string& text, int64_t top_k) {
  charrnn::CharRNN model = charrnn::restore_model(c, torch::kCPU);
  const std::vector<int64_t> ids = c.vocab.encode(charrnn::decode_utf8(text), "text");
  std::vector<charrnn::CharScore> scores;
  charrnn::ScoreOptions options;
  options.top_k = top_k;
  charrnn::score_characters(model, torch::tensor(ids), options, torch::kCPU,
                            [&](const charrnn::CharScore& s) { scores.push_back(s); });
  return scores;
}

TEST(ServeEngine, LogprobsAreTheModelsOwnForEveryCharacterTheStreamSends) {
  // echo + logprobs: the prompt, then the generated text, each character
  // with its log-probability at temperature 1 (whatever the sampling) and
  // the top 3, equal to eval's for the same whole text; the first character
  // unscored
  const charrnn::Checkpoint& c = trained();
  charrnn::ServeEngine engine(c, {8, 64, 2});
  const charrnn::SamplingParams nucleus{0.7, 4, 0.9};
  charrnn::StreamRequest request{U"hello wor", 40, nucleus, 5, {}, true, 3};
  auto streams = engine.submit({request});
  const auto [text, scores] = read_scored(*streams[0]);
  EXPECT_EQ(text, "hello wor" + generated(c, "hello wor", 40, nucleus, 5));
  ASSERT_EQ(scores.size(), charrnn::decode_utf8(text).size());
  EXPECT_FALSE(scores[0].scored);
  EXPECT_EQ(scores[0].id, c.vocab.encode(U"h", "t")[0]);
  const std::vector<charrnn::CharScore> expected = eval_scores(c, text, 3);
  ASSERT_EQ(expected.size() + 1, scores.size());
  for (size_t i = 1; i < scores.size(); ++i) {
    const charrnn::CharScore& want = expected[i - 1];
    ASSERT_TRUE(scores[i].scored) << i;
    EXPECT_EQ(scores[i].id, want.id) << i;
    EXPECT_NEAR(scores[i].logprob, want.logprob, 1e-4) << i;
    ASSERT_EQ(scores[i].top_count, 3) << i;
    for (size_t k = 0; k < 3; ++k) {
      EXPECT_NEAR(scores[i].top_logprobs[k], want.top_logprobs[k], 1e-4) << i;
      // the same ranking unless two alternatives are within rounding of each other
      if (k + 1 < 3 && want.top_logprobs[k] - want.top_logprobs[k + 1] > 1e-4)
        EXPECT_EQ(scores[i].top_ids[k], want.top_ids[k]) << i;
    }
  }
  // without echo: the generated characters only, the same numbers
  request.echo = false;
  request.logprobs = 0;
  auto plain = engine.submit({request});
  const auto [generated_text, generated_scores] = read_scored(*plain[0]);
  EXPECT_EQ("hello wor" + generated_text, text);
  ASSERT_EQ(generated_scores.size(), 40u);
  for (size_t i = 0; i < generated_scores.size(); ++i) {
    EXPECT_EQ(generated_scores[i].logprob, scores[9 + i].logprob) << i;  // bit for bit: the same row kernel
    EXPECT_EQ(generated_scores[i].top_count, 0);
  }
}

TEST(ServeEngine, ScoringAPromptAloneMatchesEvalAndAmongOtherStreams) {
  // max_tokens 0 + echo + logprobs scores a text; its mean is eval's loss,
  // and the numbers do not depend on what else is being served
  const charrnn::Checkpoint& c = trained();
  charrnn::ServeEngine engine(c, {16, 64, 2});
  const std::string text = "hello world, abc hello world, abc hello";
  const charrnn::StreamRequest score{charrnn::decode_utf8(text), 0, {1.0, 0, 1.0}, 1, {}, true, 1};
  auto alone = engine.submit({score});
  const auto [echoed, scores] = read_scored(*alone[0]);
  EXPECT_EQ(echoed, text);
  EXPECT_EQ(alone[0]->finish_reason(), "length");
  EXPECT_EQ(alone[0]->generated(), 0);
  ASSERT_EQ(scores.size(), text.size());
  double sum = 0;
  for (size_t i = 1; i < scores.size(); ++i) sum += scores[i].logprob;
  charrnn::CharRNN model = charrnn::restore_model(c, torch::kCPU);
  const charrnn::EvalResult eval =
      charrnn::evaluate(model, torch::tensor(c.vocab.encode(charrnn::decode_utf8(text), "t")), 1, 256, torch::kCPU);
  EXPECT_NEAR(-sum / static_cast<double>(scores.size() - 1), eval.loss, 1e-5);

  std::vector<std::vector<std::shared_ptr<charrnn::ServeStream>>> others;
  for (int i = 0; i < 6; ++i)
    others.push_back(engine.submit({{U"abc", 30 + 9 * i, {0.9, 0, 1.0}, static_cast<uint64_t>(i), {}, i % 2 == 0, 5}}));
  auto among = engine.submit({score, score});
  for (int i = 0; i < 6; ++i)
    others.push_back(engine.submit({{U"wor", 20, {0.9, 0, 1.0}, static_cast<uint64_t>(i), {}, false, -1}}));
  for (const auto& stream : among) {
    const auto [again_text, again] = read_scored(*stream);
    EXPECT_EQ(again_text, text);
    ASSERT_EQ(again.size(), scores.size());
    for (size_t i = 0; i < again.size(); ++i) {
      EXPECT_EQ(again[i].logprob, scores[i].logprob) << i;
      EXPECT_EQ(again[i].top_ids, scores[i].top_ids) << i;
    }
  }
  for (auto& other : others) read_all(*other[0]);
}

TEST(ServeEngine, AStopStringTakesItsCharactersScoresWithIt) {
  const charrnn::Checkpoint& c = trained();
  charrnn::ServeEngine engine(c, {4, 16, 1});
  const charrnn::SamplingParams greedy{0, 0, 1};
  const std::string full = generated(c, "hel", 60, greedy, 0);
  ASSERT_GE(full.size(), 12u);
  const std::string stop = full.substr(8, 3);  // stops at its first occurrence
  auto streams = engine.submit({{U"hel", 60, greedy, 0, {stop}, false, 2}});
  const auto [text, scores] = read_scored(*streams[0]);
  EXPECT_EQ(text, full.substr(0, full.find(stop)));
  EXPECT_EQ(streams[0]->finish_reason(), "stop");
  EXPECT_EQ(scores.size(), charrnn::decode_utf8(text).size());
  for (size_t i = 0; i < scores.size(); ++i) EXPECT_EQ(scores[i].id, c.vocab.encode(charrnn::decode_utf8(text), "t")[i]);
}

}  // namespace
