// serve_api: the request checks with OpenAI's error shape, prompt folding,
// the choices a request makes, and the response and metrics text.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "charrnn/serve_api.h"
#include "charrnn/utf8.h"
#include "test_helpers.h"

namespace {

using charrnn::ApiError;
using charrnn::CompletionRequest;
using nlohmann::json;

const charrnn::Vocab kVocab = charrnn::Vocab::from_text(U"hello world, abc\n");

// A model's sample section, as the server passes it: what a request leaves out.
charrnn::SampleOptions model_sample() {
  charrnn::SampleOptions sample;
  sample.length = 16;
  return sample;
}

CompletionRequest parse(const std::string& body, charrnn::ServeLimits limits = {}) {
  return charrnn::parse_completion_request(body, kVocab, limits, model_sample());
}

TEST(ServeApi, ReadsOpenAisFields) {
  const CompletionRequest r = parse(R"({"model": "m", "prompt": ["hello", "abc"], "max_tokens": 7, "temperature": 0,
      "top_p": 0.5, "top_k": 3, "n": 2, "stop": ["\n", "ab"], "seed": 11, "stream": true, "echo": true,
      "user": "u", "presence_penalty": 0})");
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[1], U"abc");
  EXPECT_EQ(r.sample.length, 7);
  EXPECT_EQ(r.sample.sampling.temperature, 0);
  EXPECT_EQ(r.sample.sampling.top_p, 0.5);
  EXPECT_EQ(r.sample.sampling.top_k, 3);
  EXPECT_EQ(r.n, 2);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n", "ab"}));
  EXPECT_EQ(*r.seed, 11u);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.echo);
  EXPECT_FALSE(r.logprobs.has_value());
  for (const int n : {0, 1, 5}) {
    const CompletionRequest l = parse(R"({"prompt": "hello", "logprobs": )" + std::to_string(n) + "}");
    ASSERT_TRUE(l.logprobs.has_value());
    EXPECT_EQ(*l.logprobs, n);
    EXPECT_EQ(charrnn::choice_streams(l, 1).at(0).logprobs, n);
  }
  EXPECT_FALSE(parse(R"({"prompt": "hello", "logprobs": null})").logprobs.has_value());
  // left out: the model's own defaults, a random seed, one choice
  const CompletionRequest d = parse(R"({"prompt": "hello", "stop": "o"})");
  EXPECT_EQ(d.sample.length, 16);
  EXPECT_EQ(d.sample.sampling.temperature, charrnn::SamplingParams{}.temperature);
  EXPECT_FALSE(d.seed.has_value());
  EXPECT_EQ(d.stop, std::vector<std::string>{"o"});
}

TEST(ServeApi, PromptCharactersTheModelNeverSawAreFolded) {
  // a no-break space and an en space, as pasted text has them
  const CompletionRequest r = parse("{\"prompt\": [\"hello\u00A0world\", \"abc\u2002\u00A0\"]}");
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[0], U"hello world");
  EXPECT_EQ(r.prompts[1], U"abc  ");
  ASSERT_EQ(r.substitutions.size(), 2u);
  EXPECT_EQ(r.substitutions[0].from, U"\u00A0");
  EXPECT_EQ(r.substitutions[0].count, 2);
  EXPECT_EQ(r.substitutions[1].from, U"\u2002");
  EXPECT_EQ(charrnn::substitutions_json(r.substitutions)[0],
            json({{"from", "\u00A0"}, {"to", " "}, {"count", 2}}));
  EXPECT_TRUE(parse(R"({"prompt": "hello"})").substitutions.empty());
  charrnn::ServeLimits strict;
  strict.strict_prompts = true;
  try {
    parse("{\"prompt\": \"hello\u00A0world\"}", strict);
    ADD_FAILURE() << "a strict server folds nothing";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(std::string(e.what()).find("U+00A0 NO-BREAK SPACE"), std::string::npos) << e.what();
  }
}

TEST(ServeApi, BadRequestsAre400sNamingTheField) {
  struct Case {
    std::string body, param, needle;
  };
  const std::vector<Case> cases = {
      {"{\"prompt\": \"hel", "", "not valid JSON"},
      {"[1, 2]", "", "JSON object"},
      {"{\"prompt\": \"caf\xC3\"}", "", "not valid JSON"},  // invalid UTF-8
      {"{}", "prompt", "prompt is required"},
      {R"({"prompt": 5})", "prompt", "string"},
      {R"({"prompt": [1, 2, 3]})", "prompt", "token ids"},
      {R"({"prompt": []})", "prompt", "non-empty"},
      {R"({"prompt": ""})", "prompt", "empty"},
      {R"({"prompt": "Zebra"})", "prompt", "never saw in training: 'Z'"},
      {R"({"prompt": "hello", "max_tokens": -1})", "max_tokens", "[0, 10000]"},
      {R"({"prompt": "hello", "max_tokens": 10001})", "max_tokens", "[0, 10000]"},
      {R"({"prompt": "hello", "max_tokens": "many"})", "max_tokens", "integer"},
      {R"({"prompt": "hello", "max_tokens": 2.5})", "max_tokens", "integer"},
      {R"({"prompt": "hello", "temperature": 3})", "temperature", "in [0, 2]"},
      {R"({"prompt": "hello", "temperature": "hot"})", "temperature", "number"},
      {R"({"prompt": "hello", "top_p": 7})", "top_p", "in (0, 1]"},
      {R"({"prompt": "hello", "top_p": 0})", "top_p", "in (0, 1]"},
      {R"({"prompt": "hello", "top_k": -1})", "top_k", ">= 0"},
      {R"({"prompt": "hello", "n": 0})", "n", ">= 1"},
      {R"({"prompt": "hello", "n": 1000})", "n", "at most 64"},
      {R"({"prompt": "hello", "stop": ["a", "b", "c", "d", "e"]})", "stop", "up to 4"},
      {R"({"prompt": "hello", "stop": [1]})", "stop", "strings"},
      {R"({"prompt": "hello", "seed": "x"})", "seed", "integer"},
      {R"({"prompt": "hello", "stream": "yes"})", "stream", "true or false"},
      {R"({"prompt": "hello", "echo": 1})", "echo", "true or false"},
      {R"({"prompt": "hello", "logprobs": 6})", "logprobs", "in [0, 5]"},
      {R"({"prompt": "hello", "logprobs": -1})", "logprobs", "in [0, 5]"},
      {R"({"prompt": "hello", "logprobs": 18446744073709551615})", "logprobs", "in [0, 5]"},
      {R"({"prompt": "hello", "logprobs": true})", "logprobs", "integer"},
      {R"({"prompt": "hello", "logprobs": 1.5})", "logprobs", "integer"},
      {R"({"prompt": "hello", "model": 3})", "model", "string"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.body);
    try {
      parse(c.body);
      ADD_FAILURE() << "accepted";
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400);
      EXPECT_EQ(e.param, c.param);
      EXPECT_CONTAINS(std::string(e.what()), c.needle);
      const json body = charrnn::error_body(e);
      EXPECT_EQ(body["error"]["type"], "invalid_request_error");
      EXPECT_EQ(body["error"]["message"], e.what());
      EXPECT_TRUE(c.param.empty() ? body["error"]["param"].is_null() : body["error"]["param"] == c.param);
      EXPECT_TRUE(body["error"].contains("code"));
    }
  }
  charrnn::ServeLimits small;
  small.max_prompt_chars = 4;
  EXPECT_THROW(parse(R"({"prompt": "hello"})", small), ApiError);
}

TEST(ServeApi, AFramingTwoReadersCouldTakeDifferentlyIsRefused) {
  using charrnn::request_framing_problem;
  const std::vector<std::string> none;
  EXPECT_EQ(request_framing_problem(none, none, true), "");
  EXPECT_EQ(request_framing_problem({"42"}, none, true), "");
  EXPECT_EQ(request_framing_problem({"42", "42"}, none, true), "") << "the same length twice says one thing";
  EXPECT_EQ(request_framing_problem(none, {"chunked"}, true), "");
  EXPECT_EQ(request_framing_problem(none, {"Chunked"}, true), "") << "the coding is case-insensitive";
  EXPECT_CONTAINS(request_framing_problem({"42", "3"}, none, true), "two different");
  for (const std::string bad : {"-1", "", "lots", "4 2", "+5", "0x10", "100000000000000000000"})
    EXPECT_CONTAINS(request_framing_problem({bad}, none, true), "number of bytes") << bad;
  EXPECT_CONTAINS(request_framing_problem({"10"}, {"chunked"}, true), "both");
  EXPECT_CONTAINS(request_framing_problem(none, {"gzip"}, true), "chunked");
  EXPECT_CONTAINS(request_framing_problem(none, {"gzip, chunked"}, true), "chunked");
  EXPECT_CONTAINS(request_framing_problem(none, {"chunked", "chunked"}, true), "chunked");
  EXPECT_CONTAINS(request_framing_problem(none, {"chunked"}, false), "takes a request body");
}

TEST(ServeApi, ChoiceJOfEachPromptGetsSeedPlusJAndTheRequestsSettings) {
  const CompletionRequest r = parse(R"({"prompt": ["hello", "abc"], "n": 3, "max_tokens": 9, "temperature": 0.5,
      "top_k": 4, "top_p": 0.75, "stop": ["\n", "ab"], "seed": 100})");
  const std::vector<charrnn::StreamRequest> streams = charrnn::choice_streams(r, *r.seed);
  ASSERT_EQ(streams.size(), 6u);  // in the order of the response's "index": prompt * n + j
  for (size_t i = 0; i < streams.size(); ++i) {
    const charrnn::StreamRequest& s = streams[i];
    EXPECT_EQ(s.prompt, i < 3 ? U"hello" : U"abc") << i;
    EXPECT_EQ(s.seed, 100u + i % 3) << i;  // each prompt's choices start again from the seed
    EXPECT_EQ(s.max_chars, 9);
    EXPECT_EQ(s.sampling.temperature, 0.5);
    EXPECT_EQ(s.sampling.top_k, 4);
    EXPECT_EQ(s.sampling.top_p, 0.75);
    EXPECT_EQ(s.stop, (std::vector<std::string>{"\n", "ab"}));
    EXPECT_FALSE(s.echo);
    EXPECT_EQ(s.logprobs, -1);  // none reported
  }
  // left out: one choice per prompt, with the model's defaults and no stop
  const CompletionRequest d = parse(R"({"prompt": "hello"})");
  const std::vector<charrnn::StreamRequest> one = charrnn::choice_streams(d, 7);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].seed, 7u);
  EXPECT_EQ(one[0].max_chars, 16);
  EXPECT_EQ(one[0].sampling.temperature, model_sample().sampling.temperature);
  EXPECT_TRUE(one[0].stop.empty());
  // the seed wraps as an unsigned number, as a request may give any uint64
  const CompletionRequest wrap = parse(R"({"prompt": "abc", "n": 2, "seed": 18446744073709551615})");
  const std::vector<charrnn::StreamRequest> wrapped = charrnn::choice_streams(wrap, *wrap.seed);
  EXPECT_EQ(wrapped[0].seed, 18446744073709551615u);
  EXPECT_EQ(wrapped[1].seed, 0u);
}

TEST(ServeApi, ScoresAreALogSoftmaxAtTemperatureOneWithTheMostLikelyFirst) {
  // fixed logits in, exact log-probabilities out: log softmax of
  // (2, 0, 2, -1, 1), with the tie between ids 0 and 2 going to the smaller
  const std::vector<float> logits{2, 0, 2, -1, 1};
  double normaliser = 0;
  for (const float l : logits) normaliser += std::exp(static_cast<double>(l));
  const auto expected = [&](size_t id) { return static_cast<float>(logits[id] - std::log(normaliser)); };
  charrnn::TokenLogprob s;
  charrnn::score_logits(logits.data(), 5, 3, 4, s);
  EXPECT_TRUE(s.scored);
  EXPECT_EQ(s.id, 3);
  EXPECT_FLOAT_EQ(s.logprob, expected(3));
  ASSERT_EQ(s.top_count, 4);
  EXPECT_EQ((std::vector<int32_t>(s.top_ids.begin(), s.top_ids.begin() + 4)), (std::vector<int32_t>{0, 2, 4, 1}));
  for (size_t k = 0; k < 4; ++k) EXPECT_FLOAT_EQ(s.top_logprobs[k], expected(static_cast<size_t>(s.top_ids[k])));
  charrnn::score_logits(logits.data(), 5, 4, 0, s);
  EXPECT_EQ(s.top_count, 0);
  EXPECT_FLOAT_EQ(s.logprob, expected(4));
  charrnn::score_logits(logits.data(), 5, 0, 5, s);  // every id
  EXPECT_EQ((std::vector<int32_t>(s.top_ids.begin(), s.top_ids.end())), (std::vector<int32_t>{0, 2, 4, 1, 3}));
  // large logits: no overflow
  const std::vector<float> large{1000, 999, -1000};
  charrnn::score_logits(large.data(), 3, 1, 1, s);
  EXPECT_NEAR(s.logprob, -1 - std::log1p(std::exp(-1.0)), 1e-6);
  EXPECT_EQ(s.top_ids[0], 0);
}

TEST(ServeApi, LogprobsHaveOpenAisLegacyShape) {
  // "h" unscored (an echoed prompt's first), then "e" and "l" with top 2
  const auto id = [](char32_t ch) { return static_cast<int32_t>(kVocab.encode(std::u32string(1, ch), "t")[0]); };
  charrnn::TokenLogprob first, second, third;
  first.id = id(U'h');
  second = {id(U'e'), true, -0.5f, 2, {id(U'e'), id(U'a')}, {-0.5f, -1.5f}};
  third = {id(U'l'), true, -3.0f, 2, {id(U'o'), id(U'a')}, {-0.25f, -2.0f}};
  const nlohmann::ordered_json l = charrnn::logprobs_json({first, second, third}, kVocab, 7);
  EXPECT_EQ(l.dump(), nlohmann::ordered_json::parse(R"({"tokens": ["h", "e", "l"],
      "token_logprobs": [null, -0.5, -3.0],
      "top_logprobs": [null, {"e": -0.5, "a": -1.5}, {"o": -0.25, "a": -2.0, "l": -3.0}],
      "text_offset": [7, 8, 9]})").dump());  // the character itself joins a top it is not in
  charrnn::ChoiceText choice{0, "hel", "stop", l};
  const nlohmann::ordered_json body = charrnn::completion_body("cmpl-1", 5, "m", {choice}, std::nullopt);
  EXPECT_EQ(body["choices"][0]["logprobs"]["tokens"].size(), 3u);
  EXPECT_EQ(body["choices"][0]["logprobs"]["top_logprobs"][1].begin().key(), "e");  // most likely first
  EXPECT_EQ(charrnn::logprobs_json({}, kVocab, 0).dump(),
            R"({"tokens":[],"token_logprobs":[],"top_logprobs":[],"text_offset":[]})");
}

TEST(ServeApi, ResponseAndMetricsShapes) {
  const auto body = charrnn::completion_body("cmpl-1", 5, "m", {{0, "hi", "length", {}}, {1, "yo", "", {}}},
                                             charrnn::Usage{3, 4});
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(body["choices"][1]["finish_reason"].is_null());
  EXPECT_TRUE(body["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(body["usage"]["total_tokens"], 7);
  charrnn::ServerMetrics metrics;
  metrics.count_request("/v1/completions", 200);
  metrics.count_request("/v1/completions", 200);
  metrics.add_generated(42);
  metrics.observe_first_char(0.02);
  metrics.observe_request(0.3);
  const std::string text = metrics.render(3, 1, 64);
  EXPECT_CONTAINS(text, "charrnn_requests_total{route=\"/v1/completions\",status=\"200\"} 2");
  EXPECT_CONTAINS(text, "charrnn_generated_chars_total 42");
  EXPECT_CONTAINS(text, "charrnn_active_streams 3");
  EXPECT_CONTAINS(text, "charrnn_time_to_first_char_seconds_bucket{le=\"0.025\"} 1");
  EXPECT_CONTAINS(text, "charrnn_time_to_first_char_seconds_bucket{le=\"0.01\"} 0");
  EXPECT_CONTAINS(text, "charrnn_request_duration_seconds_count 1");
}

}  // namespace
