// serve_engine: continuous batching giving each request the text
// `generate` gives it, whatever else runs beside it.
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

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
  // it empties; the prefill batch a few more, depending on how arrivals and
  // steps interleave. A decoder per arrival would be 16 or more.
  EXPECT_LT(engine.rebuilds(), 14);
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

}  // namespace
