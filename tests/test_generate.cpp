// generate: prime first, exact lengths, reproducible from a seed, stop text,
// batched samples, streaming callback, and clear errors for bad primes.
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/error.h"
#include "charrnn/generate.h"
#include "charrnn/model.h"
#include "charrnn/utf8.h"
#include "charrnn/vocab.h"
#include "test_helpers.h"

namespace {

using charrnn::CharRNN;
using charrnn::GenerateOptions;
using charrnn::Vocab;
using charrnn_test::thrown_message;

const std::string kE_acute = "\xC3\xA9";  // é, two bytes

size_t char_count(const std::string& utf8) { return charrnn::decode_utf8(utf8).size(); }

class GenerateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(0);
    vocab_ = Vocab::from_text(charrnn::decode_utf8("the quick brown fox " + kE_acute + "\n"));
    model_ = make_model(vocab_);
  }

  static CharRNN make_model(const Vocab& vocab) {
    charrnn::ModelOptions o;
    o.cell = charrnn::CellType::LSTM;
    o.embedding_dim = 8;
    o.hidden_size = 16;
    o.num_layers = 1;
    return CharRNN(vocab.size(), o);
  }

  std::vector<std::string> run(const GenerateOptions& options, const charrnn::TextCallback& on_text = {}) {
    return charrnn::generate(model_, vocab_, options, torch::kCPU, on_text);
  }

  // generation written out by hand from the model, the sampler and a generator
  std::string reference(const std::string& prime, int64_t length, const charrnn::SamplingParams& sampling,
                        uint64_t seed) {
    torch::NoGradGuard no_grad;
    model_->eval();
    charrnn::SampleRng gen(seed);
    const auto prime_ids = vocab_.encode(charrnn::decode_utf8(prime), "prime");
    torch::Tensor inputs = torch::tensor(prime_ids, torch::kLong).unsqueeze(0);  // (1, P)
    charrnn::State state;
    std::string out = prime;
    for (int64_t i = 0; i < length; ++i) {
      auto [logits, next] = model_->forward(inputs, state);
      state = next;
      const torch::Tensor id = charrnn::sample(logits.select(1, -1), sampling, gen);  // (1)
      vocab_.append_decoded(out, id[0].item<int64_t>());
      inputs = id.unsqueeze(1);
    }
    return out;
  }

  Vocab vocab_;
  CharRNN model_{nullptr};
};

GenerateOptions options(const std::string& prime, int64_t length, double temperature, uint64_t seed) {
  GenerateOptions o;
  o.prime = prime;
  o.length = length;
  o.sampling.temperature = temperature;
  o.seed = seed;
  return o;
}

TEST_F(GenerateTest, StartsWithThePrimeAndHasTheRequestedLength) {
  const std::string prime = "the " + kE_acute;
  const auto texts = run(options(prime, 50, 1.0, 1));
  ASSERT_EQ(texts.size(), 1u);
  EXPECT_EQ(texts[0].substr(0, prime.size()), prime);
  EXPECT_EQ(char_count(texts[0]), char_count(prime) + 50);
}

TEST_F(GenerateTest, LengthZeroReturnsThePrime) {
  const auto texts = run(options("fox", 0, 1.0, 1));
  ASSERT_EQ(texts.size(), 1u);
  EXPECT_EQ(texts[0], "fox");
}

TEST_F(GenerateTest, MatchesAHandWrittenLoop) {
  for (double temperature : {1.0, 0.0, 0.7}) {
    SCOPED_TRACE(temperature);
    const auto texts = run(options("the ", 40, temperature, 9));
    EXPECT_EQ(texts[0], reference("the ", 40, charrnn::SamplingParams{temperature, 0, 1.0}, 9));
  }
}

TEST_F(GenerateTest, SameSeedSameTextOtherSeedOtherText) {
  const auto a = run(options("the", 200, 1.0, 7));
  const auto b = run(options("the", 200, 1.0, 7));
  const auto c = run(options("the", 200, 1.0, 8));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST_F(GenerateTest, GreedyIsDeterministicWhateverTheSeed) {
  const auto a = run(options("qu", 100, 0.0, 1));
  const auto b = run(options("qu", 100, 0.0, 2));
  EXPECT_EQ(a, b);
  GenerateOptions k1 = options("qu", 100, 1.0, 3);
  k1.sampling.top_k = 1;  // top-k 1 is greedy too
  EXPECT_EQ(run(k1), a);
}

TEST_F(GenerateTest, SeveralSamples) {
  GenerateOptions o = options("ox", 60, 1.0, 4);
  o.num_samples = 3;
  const auto texts = run(o);
  ASSERT_EQ(texts.size(), 3u);
  for (const auto& t : texts) {
    EXPECT_EQ(t.substr(0, 2), "ox");
    EXPECT_EQ(char_count(t), 62u);
  }
  EXPECT_FALSE(texts[0] == texts[1] && texts[1] == texts[2]) << "three samples, one text";
  // greedy samples are identical
  GenerateOptions g = options("ox", 30, 0.0, 4);
  g.num_samples = 3;
  const auto greedy = run(g);
  EXPECT_EQ(greedy[0], greedy[1]);
  EXPECT_EQ(greedy[1], greedy[2]);
  EXPECT_EQ(greedy[0], run(options("ox", 30, 0.0, 4))[0]);
}

TEST_F(GenerateTest, SamplesAreTheSameTextForAnyThreadCount) {
  // 16 samples run as one part, or split over two or three threads that each
  // step and sample their own streams; the same seed must give the same texts
  for (const charrnn::SamplingParams& sampling :
       {charrnn::SamplingParams{1.0, 0, 1.0}, charrnn::SamplingParams{0.7, 5, 0.9}, charrnn::SamplingParams{0.0, 0, 1.0}}) {
    GenerateOptions o = options("the ", 120, sampling.temperature, 11);
    o.sampling = sampling;
    o.num_samples = 16;
    o.threads = 1;
    const auto one = run(o);
    ASSERT_EQ(one.size(), 16u);
    if (sampling.temperature > 0) EXPECT_GT(std::set<std::string>(one.begin(), one.end()).size(), 8u);
    for (const int64_t threads : {2, 3}) {
      o.threads = threads;
      EXPECT_EQ(run(o), one) << threads << " threads, temperature " << sampling.temperature;
    }
  }
}

TEST_F(GenerateTest, StopTextEndsEachSampleAfterItsFirstOccurrence) {
  // three characters (one two-byte) so the two-character stop text turns up soon
  vocab_ = Vocab::from_text(charrnn::decode_utf8("ab" + kE_acute));
  model_ = make_model(vocab_);
  const std::string stop = "b" + kE_acute;
  GenerateOptions o = options("a", 300, 1.0, 5);
  o.num_samples = 8;
  o.stop = stop;
  std::vector<std::string> streamed(8);
  const auto texts = run(o, [&](int64_t s, std::string_view piece) { streamed[s] += piece; });
  ASSERT_EQ(texts.size(), 8u);
  EXPECT_EQ(streamed, texts);
  int stopped = 0;
  std::set<size_t> lengths;
  for (const auto& t : texts) {
    SCOPED_TRACE(t);
    ASSERT_EQ(t.substr(0, 1), "a");
    const std::string generated = t.substr(1);
    lengths.insert(char_count(t));
    if (char_count(t) == 1 + 300) {
      EXPECT_EQ(generated.find(stop), std::string::npos);
    } else {
      ++stopped;
      ASSERT_GE(generated.size(), stop.size());
      EXPECT_EQ(generated.substr(generated.size() - stop.size()), stop);
      EXPECT_EQ(generated.find(stop), generated.size() - stop.size()) << "stopped late";
    }
  }
  EXPECT_GE(stopped, 1) << "the test never exercised the stop text";
  EXPECT_GT(lengths.size(), 1u) << "samples should stop independently";
}

TEST_F(GenerateTest, PrimeWithUnknownCharacterIsAUsageError) {
  const std::string message = thrown_message<charrnn::UsageError>([&] { run(options("the zebra", 10, 1.0, 0)); });
  EXPECT_CONTAINS(message, "--prime");
  EXPECT_CONTAINS(message, "'z'");
  EXPECT_CONTAINS(message, "'a'");
  EXPECT_EQ(message.find("'e'"), std::string::npos) << message;
}

TEST_F(GenerateTest, PrimeWithInvalidUtf8IsAnError) {
  const std::string message = thrown_message<charrnn::Error>([&] { run(options("the \xC3", 10, 1.0, 0)); });
  EXPECT_CONTAINS(message, "--prime");
  EXPECT_CONTAINS(message, "byte offset 4");
}

TEST_F(GenerateTest, BadLengthOrSampleCountIsAUsageError) {
  EXPECT_THROW(run(options("the", -1, 1.0, 0)), charrnn::UsageError);
  GenerateOptions o = options("the", 5, 1.0, 0);
  o.num_samples = 0;
  EXPECT_THROW(run(o), charrnn::UsageError);
}

TEST_F(GenerateTest, CallbackReceivesExactlyTheReturnedText) {
  GenerateOptions o = options("the ", 80, 1.0, 6);
  o.num_samples = 2;
  std::vector<std::string> streamed(2);
  int64_t calls = 0;
  const auto texts = run(o, [&](int64_t s, std::string_view piece) {
    ASSERT_GE(s, 0);
    ASSERT_LT(s, 2);
    streamed[s] += piece;
    ++calls;
  });
  EXPECT_EQ(streamed, texts);
  EXPECT_EQ(calls, 2 * (1 + 80));  // the prime, then one call per character
}

TEST_F(GenerateTest, CollectFalseReturnsNothingButStillStreams) {
  GenerateOptions o = options("the ", 80, 1.0, 6);
  o.num_samples = 2;
  const auto collected = run(o);
  o.collect = false;
  std::vector<std::string> streamed(2);
  const auto texts = run(o, [&](int64_t s, std::string_view piece) { streamed[s] += piece; });
  EXPECT_TRUE(texts.empty());
  EXPECT_EQ(streamed, collected);
}

TEST_F(GenerateTest, EmptyPrimeStartsFromACharacterDrawnByFrequency) {
  // only 'q' was ever seen, so every sample must start with it
  std::vector<int64_t> counts(vocab_.size(), 0);
  counts[vocab_.id_or_negative(U'q')] = 10;
  vocab_ = Vocab(vocab_.chars(), counts);
  GenerateOptions o = options("", 20, 1.0, 3);
  o.num_samples = 4;
  std::vector<std::string> first_piece(4);
  const auto texts = run(o, [&](int64_t s, std::string_view piece) {
    if (first_piece[s].empty()) first_piece[s] = std::string(piece);
  });
  ASSERT_EQ(texts.size(), 4u);
  for (int s = 0; s < 4; ++s) {
    EXPECT_EQ(first_piece[s], "q");
    EXPECT_EQ(texts[s][0], 'q');
    EXPECT_EQ(char_count(texts[s]), 21u);
  }
}

TEST_F(GenerateTest, EmptyPrimeWithoutCountsStillWorks) {
  vocab_ = Vocab(vocab_.chars());  // counts all zero: drawn uniformly
  const auto texts = run(options("", 10, 1.0, 3));
  ASSERT_EQ(texts.size(), 1u);
  EXPECT_EQ(char_count(texts[0]), 11u);
}

TEST_F(GenerateTest, RestoresTrainingMode) {
  model_->train();
  run(options("the", 5, 1.0, 0));
  EXPECT_TRUE(model_->is_training());
  model_->eval();
  run(options("the", 5, 1.0, 0));
  EXPECT_FALSE(model_->is_training());
}

TEST(StopFilter, NeverReleasesAStopStringOrWhatCouldStartOne) {
  charrnn::StopFilter f({"\n\n", "END"});
  std::string out;
  for (const char* piece : {"a", "b", "\n", "c", "E", "N", "x", "\n"}) out += f.feed(piece);
  EXPECT_EQ(out, "ab\ncENx");
  EXPECT_FALSE(f.stopped());
  out += f.feed("\n");
  EXPECT_TRUE(f.stopped());
  EXPECT_EQ(out, "ab\ncENx");
  EXPECT_EQ(f.feed("more"), "");
  charrnn::StopFilter g({"END"});
  EXPECT_EQ(g.feed("xE"), "x");
  EXPECT_EQ(g.flush(), "E");  // a choice that ran out of length keeps its text
  charrnn::StopFilter none;
  EXPECT_EQ(none.feed("\xC3\xA9"), "\xC3\xA9");
}

TEST_F(GenerateTest, AdaptSamplesFromWeightsThatLearnAndLeavesTheModelAlone) {
  std::vector<torch::Tensor> before;
  for (const torch::Tensor& p : model_->parameters()) before.push_back(p.detach().clone());
  GenerateOptions options;
  options.prime = "the quick brown fox the quick brown fox the quick brown fox ";
  options.length = 200;
  options.seed = 11;
  const std::string plain = run(options).front();
  options.adapt = true;
  options.adaptation.learning_rate = 0.02;
  options.adaptation.segment = 16;
  const std::string adapted = run(options).front();
  EXPECT_EQ(char_count(adapted), char_count(plain));
  EXPECT_EQ(adapted.rfind(options.prime, 0), 0u);
  EXPECT_NE(adapted, plain);
  EXPECT_EQ(run(options).front(), adapted) << "the same seed must give the same adapted text";
  size_t i = 0;
  for (const torch::Tensor& p : model_->parameters()) EXPECT_TRUE(torch::equal(p, before[i++]));

  // learning rate 0: the copy never moves, so the text is the plain one
  options.adaptation.learning_rate = 0;
  EXPECT_EQ(run(options).front(), plain);
  // no prime: the copy learns from the generated text alone (the drawn
  // first character, then `length` more, as without adapt)
  options.prime = "";
  options.adapt = false;
  const std::string plain_unprimed = run(options).front();
  options.adapt = true;
  options.adaptation.learning_rate = 0.02;
  const std::string unprimed = run(options).front();
  EXPECT_EQ(char_count(unprimed), char_count(plain_unprimed));
  EXPECT_NE(unprimed, plain_unprimed);
}

TEST_F(GenerateTest, AdaptGeneratesOneSampleAtATime) {
  GenerateOptions options;
  options.prime = "the";
  options.adapt = true;
  options.num_samples = 2;
  EXPECT_THROW(run(options), charrnn::UsageError);
}

}  // namespace
