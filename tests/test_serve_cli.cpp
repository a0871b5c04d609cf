// charrnn serve end to end: the real binary on a loopback port, driven with
// cpp-httplib's client as any HTTP client would: OpenAI's routes and
// shapes, streaming, the same text as `charrnn generate`, the error
// statuses, the API key, and a clean stop on SIGTERM.
#include <httplib.h>

#include "cli_fixture.h"

namespace charrnn_cli_test {
namespace {

class Serve : public Cli {
 protected:
  void SetUp() override {
    Cli::SetUp();
    train_ok({"--set", "train.steps=30"});
    log_ = dir_ / "serve.log";
    std::vector<std::string> args = {"serve", "--checkpoint", checkpoint(), "--port", "0", "--slots", "8",
                                     "--queue", "8", "--api-key", "secret", "--max-body", "4096", "--max-length", "500"};
    for (const std::string& a : extra_args()) args.push_back(a);
    pid_ = spawn(args, log_);
    ASSERT_GT(pid_, 0);
    for (int i = 0; i < 400 && port_ == 0; ++i) {
      const std::string log = read_all(log_);
      const size_t at = log.find("http://127.0.0.1:");
      if (at != std::string::npos && log.find('/', at + 17) != std::string::npos)
        port_ = std::stoi(log.substr(at + 17));
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ASSERT_GT(port_, 0) << read_all(log_);
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    Cli::TearDown();
  }
  virtual std::vector<std::string> extra_args() const { return {}; }
  bool wait_for_log(const std::string& text) const {
    for (int i = 0; i < 400; ++i) {
      if (read_all(log_).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return false;
  }
  httplib::Client client(bool with_key = true) const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30, 0);
    if (with_key) c.set_default_headers({{"Authorization", "Bearer secret"}});
    return c;
  }
  static nlohmann::json body_of(const httplib::Result& r) {
    if (!r) {
      ADD_FAILURE() << "no response: " << httplib::to_string(r.error());
      return nlohmann::json::object();
    }
    return nlohmann::json::parse(r->body);
  }
  // `charrnn generate`'s continuation of `prime`
  std::string generated(const std::string& prime, int length, const std::string& temperature, int seed) const {
    const Result g = run({"generate", "--checkpoint", checkpoint(), "--prime", prime, "--length", std::to_string(length),
                          "--temperature", temperature, "--seed", std::to_string(seed)});
    EXPECT_EQ(g.exit_code, 0) << g.err;
    std::string text = g.out.substr(prime.size());
    if (!text.empty() && text.back() == '\n') text.pop_back();  // generate ends its output with a newline
    return text;
  }

  fs::path log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

TEST_F(Serve, CompletionsStreamingAndTheOtherRoutes) {
  httplib::Client c = client();
  const auto health = client(false).Get("/health");
  ASSERT_TRUE(health) << httplib::to_string(health.error());
  ASSERT_EQ(health->status, 200) << "health needs no key";
  EXPECT_EQ(body_of(client(false).Get("/health"))["status"], "ok");

  const nlohmann::json models = body_of(c.Get("/v1/models"));
  EXPECT_EQ(models["data"][0]["id"], "model");
  EXPECT_EQ(models["data"][0]["cell"], "lstm");
  EXPECT_EQ(models["data"][0]["trained_steps"], 30);

  // the same text as charrnn generate with the same prime, length, sampling and seed
  const std::string expected = generated("the sea", 80, "0.8", 5);
  const auto r = c.Post("/v1/completions", R"({"prompt": "the sea", "max_tokens": 80, "temperature": 0.8, "seed": 5})",
                        "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const nlohmann::json j = body_of(r);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], expected);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 7);
  EXPECT_EQ(j["usage"]["completion_tokens"], 80);

  // streamed: data: chunks that add up to the same text, then [DONE]
  std::string events;
  const auto s = c.Post("/v1/completions", R"({"prompt": "the sea", "max_tokens": 80, "temperature": 0.8, "seed": 5,
                        "stream": true, "echo": true})", "application/json");
  ASSERT_TRUE(s);
  ASSERT_EQ(s->status, 200);
  EXPECT_EQ(s->get_header_value("Content-Type"), "text/event-stream");
  std::string streamed, reason;
  size_t at = 0;
  int chunks = 0;
  while ((at = s->body.find("data: ", at)) != std::string::npos) {
    const size_t end = s->body.find("\n\n", at);
    const std::string data = s->body.substr(at + 6, end - at - 6);
    at = end;
    if (data == "[DONE]") break;
    const nlohmann::json chunk = nlohmann::json::parse(data);
    streamed += chunk["choices"][0]["text"].get<std::string>();
    if (!chunk["choices"][0]["finish_reason"].is_null()) reason = chunk["choices"][0]["finish_reason"];
    ++chunks;
  }
  EXPECT_EQ(streamed, "the sea" + expected);
  EXPECT_EQ(reason, "length");
  EXPECT_GE(chunks, 2);  // the echo and the text (in as many chunks as it took), the finish_reason
  EXPECT_NE(s->body.find("data: [DONE]\n\n"), std::string::npos);

  // several choices: n per prompt, seed + j each
  const auto n = c.Post("/v1/completions", R"({"prompt": ["the sea", "the"], "n": 2, "max_tokens": 30,
                        "temperature": 0.8, "seed": 5})", "application/json");
  const nlohmann::json nj = body_of(n);
  ASSERT_EQ(nj["choices"].size(), 4u);
  EXPECT_EQ(nj["choices"][1]["text"], generated("the sea", 30, "0.8", 6));
  EXPECT_EQ(nj["choices"][2]["text"], generated("the", 30, "0.8", 5));

  const auto metrics_response = c.Get("/metrics");
  ASSERT_TRUE(metrics_response);
  const std::string metrics = metrics_response->body;
  EXPECT_NE(metrics.find("charrnn_requests_total{route=\"/v1/completions\",status=\"200\"} 3"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("charrnn_time_to_first_char_seconds_count 3"), std::string::npos) << metrics;
  const auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_NE(page->body.find("<title>charrnn playground</title>"), std::string::npos);
}

// The characters (code points) of UTF-8 `text`, each as its own string.
std::vector<std::string> characters(const std::string& text) {
  std::vector<std::string> out;
  for (const char byte : text) {
    if ((static_cast<unsigned char>(byte) & 0xC0) != 0x80) out.emplace_back();
    out.back() += byte;
  }
  return out;
}

TEST_F(Serve, LogprobsStreamedOrNotAndAScoredTextAsEvalScoresIt) {
  httplib::Client c = client();
  const std::string request = R"({"prompt": "the sea", "max_tokens": 60, "temperature": 0.8, "seed": 9, "echo": true,
                                  "logprobs": 5, "stop": "ea)";
  const auto whole = c.Post("/v1/completions", request + "\"}", "application/json");
  const nlohmann::json choice = body_of(whole)["choices"][0];
  const nlohmann::json& l = choice["logprobs"];
  const std::vector<std::string> text = characters(choice["text"].get<std::string>());
  ASSERT_EQ(l["tokens"].size(), text.size());
  EXPECT_TRUE(l["token_logprobs"][0].is_null());
  EXPECT_TRUE(l["top_logprobs"][0].is_null());
  for (size_t i = 0; i < text.size(); ++i) {
    EXPECT_EQ(l["tokens"][i], text[i]) << i;
    EXPECT_EQ(l["text_offset"][i], i);
    if (i == 0) continue;
    const nlohmann::json& top = l["top_logprobs"][i];
    EXPECT_GE(top.size(), 5u);
    EXPECT_LE(top.size(), 6u);  // the character itself when it is not among the 5
    EXPECT_DOUBLE_EQ(top[l["tokens"][i].get<std::string>()].get<double>(), l["token_logprobs"][i].get<double>());
  }

  // streamed: each chunk carries its own characters' numbers, and together
  // they are the whole response's
  const auto streamed = c.Post("/v1/completions", request + "\", \"stream\": true}", "application/json");
  ASSERT_TRUE(streamed);
  nlohmann::json joined = {{"tokens", nlohmann::json::array()}, {"token_logprobs", nlohmann::json::array()},
                           {"top_logprobs", nlohmann::json::array()}, {"text_offset", nlohmann::json::array()}};
  std::string streamed_text;
  for (size_t at = 0; (at = streamed->body.find("data: ", at)) != std::string::npos;) {
    const size_t end = streamed->body.find("\n\n", at);
    const std::string data = streamed->body.substr(at + 6, end - at - 6);
    at = end;
    if (data == "[DONE]") break;
    const nlohmann::json chunk = nlohmann::json::parse(data)["choices"][0];
    const std::string piece = chunk["text"];
    EXPECT_EQ(chunk["logprobs"]["tokens"].size(), characters(piece).size());
    streamed_text += piece;
    for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"})
      for (const auto& v : chunk["logprobs"][key]) joined[key].push_back(v);
  }
  EXPECT_EQ(streamed_text, choice["text"]);
  EXPECT_EQ(joined, l);

  // max_tokens 0 + echo + logprobs scores a text: the mean is eval's loss
  const std::string scored = "the sea and the ship sailed north into the night";
  write_all(dir_ / "scored.txt", scored);
  const auto score = c.Post("/v1/completions",
                            R"({"prompt": ")" + scored + R"(", "max_tokens": 0, "echo": true, "logprobs": 1})",
                            "application/json");
  const nlohmann::json scored_choice = body_of(score)["choices"][0];
  EXPECT_EQ(scored_choice["text"], scored);
  EXPECT_EQ(scored_choice["finish_reason"], "length");
  const nlohmann::json& values = scored_choice["logprobs"]["token_logprobs"];
  ASSERT_EQ(values.size(), scored.size());
  double sum = 0;
  for (size_t i = 1; i < values.size(); ++i) sum += values[i].get<double>();
  const Result eval = run({"eval", "--checkpoint", checkpoint(), "--data", (dir_ / "scored.txt").string(), "--streams",
                           "1", "--json"});
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  EXPECT_NEAR(-sum / static_cast<double>(values.size() - 1), nlohmann::json::parse(eval.out)["loss"].get<double>(),
              1e-5);

  const auto refused = c.Post("/v1/completions", R"({"prompt": "the", "logprobs": 6})", "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400);
  EXPECT_EQ(body_of(refused)["error"]["param"], "logprobs");
}

TEST_F(Serve, BadRequestsGetOpenAiErrorsAndTheServerGoesOn) {
  httplib::Client c = client();
  const auto expect_error = [&](const httplib::Result& r, int status, const std::string& needle) {
    ASSERT_TRUE(r) << "no response";
    EXPECT_EQ(r->status, status) << r->body;
    const nlohmann::json j = nlohmann::json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
    EXPECT_NE(j["error"]["message"].get<std::string>().find(needle), std::string::npos) << r->body;
    EXPECT_TRUE(j["error"].contains("type") && j["error"].contains("param") && j["error"].contains("code"));
  };
  expect_error(client(false).Post("/v1/completions", R"({"prompt": "the"})", "application/json"), 401, "API key");
  httplib::Client wrong("127.0.0.1", port_);
  wrong.set_default_headers({{"Authorization", "Bearer nope"}});
  expect_error(wrong.Get("/v1/models"), 401, "API key");
  expect_error(wrong.Get("/metrics"), 401, "API key");
  // the page opens without the key (a browser cannot send one); the API it calls needs it
  const auto page = client(false).Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("id=\"key\""), std::string::npos);
  expect_error(c.Post("/v1/completions", R"({"prompt": "the", "max_tokens": )", "application/json"), 400, "JSON");
  expect_error(c.Post("/v1/completions", R"({"prompt": "Zebra"})", "application/json"), 400, "never saw");
  expect_error(c.Post("/v1/completions", R"({"prompt": "the", "top_p": 7})", "application/json"), 400, "top_p");
  expect_error(c.Post("/v1/completions", R"({"prompt": "the", "max_tokens": 501})", "application/json"), 400,
               "max_tokens");
  expect_error(c.Post("/v1/completions", std::string(5000, ' '), "application/json"), 413, "larger");
  expect_error(c.Get("/v1/completions"), 405, "not allowed");
  expect_error(c.Delete("/health"), 405, "not allowed");
  expect_error(c.Get("/v2/whatever"), 404, "no route");
  // and it still serves the right text
  const auto ok = c.Post("/v1/completions", R"({"prompt": "the", "max_tokens": 20, "temperature": 0, "stop": "zz"})",
                         "application/json");
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->status, 200);
  EXPECT_EQ(body_of(ok)["choices"][0]["text"], generated("the", 20, "0", 0));
}

TEST_F(Serve, SigtermEndsStreamsInFlightAndExitsZero) {
  std::thread slow([&] {
    httplib::Client c = client();
    c.Post("/v1/completions", R"({"prompt": "the", "max_tokens": 500, "stream": true})", "application/json");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto started = std::chrono::steady_clock::now();
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  slow.join();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(8));
  ASSERT_TRUE(WIFEXITED(status)) << read_all(log_);
  EXPECT_EQ(WEXITSTATUS(status), 0) << read_all(log_);
  EXPECT_NE(read_all(log_).find("stopped"), std::string::npos);
}

TEST_F(Serve, PromptCharactersTheModelNeverSawAreFoldedAndReported) {
  httplib::Client c = client();
  // a no-break space and the "\uFB01" ligature, as pasted text has them
  const std::string body = R"({"prompt": "the\u00A0sea o\ufb01", "max_tokens": 20, "temperature": 0})";
  const auto r = c.Post("/v1/completions", body, "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("X-Charrnn-Prompt-Substitutions"), "U+00A0 -> U+0020 (x1), U+FB01 -> U+0066 U+0069 (x1)");
  const nlohmann::json j = body_of(r);
  EXPECT_EQ(j["prompt_substitutions"][1], nlohmann::json({{"from", "\uFB01"}, {"to", "fi"}, {"count", 1}})) << j;
  EXPECT_EQ(j["choices"][0]["text"], generated("the sea ofi", 20, "0", 0));
  // streamed, the header says it too
  const auto streamed = c.Post("/v1/completions", R"({"prompt": "the\u00A0sea", "max_tokens": 5, "stream": true})",
                               "application/json");
  ASSERT_TRUE(streamed);
  EXPECT_EQ(streamed->get_header_value("X-Charrnn-Prompt-Substitutions"), "U+00A0 -> U+0020 (x1)");
  // nothing replaced, no header
  const auto plain = c.Post("/v1/completions", R"({"prompt": "the sea", "max_tokens": 5})", "application/json");
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->has_header("X-Charrnn-Prompt-Substitutions"));
  EXPECT_FALSE(body_of(plain).contains("prompt_substitutions"));
  // the playground's prompt starts as the model's own prime
  EXPECT_TRUE(body_of(c.Get("/v1/models"))["data"][0].contains("sample_prime"));
}

class ServeStrict : public Serve {
 protected:
  std::vector<std::string> extra_args() const override { return {"--strict-prompts"}; }
};

TEST_F(ServeStrict, RefusesPromptCharactersTheModelNeverSaw) {
  const auto r = client().Post("/v1/completions", R"({"prompt": "the\u00A0sea"})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("U+00A0 NO-BREAK SPACE"), std::string::npos) << r->body;
}

class ServeWatch : public Serve {
 protected:
  std::vector<std::string> extra_args() const override { return {"--watch"}; }
};

TEST_F(ServeWatch, ReloadsAReplacedCheckpointAndIgnoresOneThatDoesNotLoad) {
  httplib::Client c = client();
  const std::string request = R"({"prompt": "the", "max_tokens": 40, "temperature": 0})";
  const auto text_now = [&] {
    const auto r = c.Post("/v1/completions", request, "application/json");
    EXPECT_TRUE(r && r->status == 200);
    return r ? body_of(r)["choices"][0]["text"].get<std::string>() : std::string();
  };
  EXPECT_EQ(text_now(), generated("the", 40, "0", 0));
  // training on renames a new checkpoint into place
  const Result more = run({"train", "--resume", checkpoint(), "--set", "train.steps=80"});
  ASSERT_EQ(more.exit_code, 0) << more.err;
  // it renames one at every validation; the last is step 80's
  ASSERT_TRUE(wait_for_log("reloaded " + checkpoint() + " (step 80)")) << read_all(log_);
  const std::string newer = generated("the", 40, "0", 0);
  EXPECT_EQ(text_now(), newer);
  EXPECT_EQ(body_of(c.Get("/v1/models"))["data"][0]["trained_steps"], 80);
  // a broken file in its place is logged and ignored: the last good model serves on
  write_all(dir_ / "broken.pt", "not a checkpoint");
  fs::rename(dir_ / "broken.pt", checkpoint());
  ASSERT_TRUE(wait_for_log("ignored the new")) << read_all(log_);
  EXPECT_EQ(text_now(), newer);
}

}  // namespace
}  // namespace charrnn_cli_test
