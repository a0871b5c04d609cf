// The HTTP server's protocol, apart from any HTTP library: OpenAI's
// /v1/completions request (characters are the tokens) read and checked into
// a CompletionRequest, the response and stream-chunk bodies, OpenAI's error
// shape, and the Prometheus metrics. src/cli/serve.cpp
// puts these behind cpp-httplib; tests use them directly.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "charrnn/char_fold.h"
#include "charrnn/error.h"
#include "charrnn/sampler.h"
#include "charrnn/vocab.h"

namespace charrnn {

/// A request the server refuses: the HTTP status and OpenAI's error fields.
class ApiError : public Error {
 public:
  ApiError(int status, const std::string& message, std::string type = "invalid_request_error",
           std::string param = "", std::string code = "")
      : Error(message), status(status), type(std::move(type)), param(std::move(param)), code(std::move(code)) {}
  int status;
  std::string type, param, code;
};

/// {"error": {"message", "type", "param", "code"}}; empty param and code are null.
nlohmann::json error_body(const ApiError& error);

/// Why a request's framing is refused before its body is read, or "" when
/// it is not: more than one Content-Length with different values, one that
/// is not a decimal number of bytes, Transfer-Encoding other than plain
/// "chunked", both headers at once (which two readers of the request could
/// take differently), or a chunked body sent to a route that takes none
/// (`takes_body`). The values are the headers' as received, one per header.
std::string request_framing_problem(const std::vector<std::string>& content_lengths,
                                    const std::vector<std::string>& transfer_encodings, bool takes_body);

struct ServeLimits {
  int64_t max_tokens = 10000;         ///< --max-length: characters one choice may ask for
  int64_t max_prompt_chars = 100000;  ///< characters of one prompt
  int64_t max_choices = 64;           ///< prompts x n in one request
  /// --strict-prompts: a prompt character the model never saw is a 400,
  /// instead of being replaced by an equivalent it knows (char_fold.h)
  bool strict_prompts = false;
};

struct CompletionRequest {
  std::string model;                 ///< echoed back; any name is accepted (one model is served)
  std::vector<std::u32string> prompts;  ///< one choice each (times n), folded into the vocabulary
  std::vector<Substitution> substitutions;  ///< what folding replaced in the prompts, all of them together
  /// The model's sample section with the request's fields over it:
  /// max_tokens is its length (characters generated after the prompt, per
  /// choice), temperature, top_k and top_p its sampling. Its prime and seed
  /// are not read: the prompts and the seed below take their place.
  SampleOptions sample;
  int64_t n = 1;                     ///< choices per prompt; choice j of a prompt uses seed + j
  std::vector<std::string> stop;     ///< up to 4; a choice ends before the first it produces
  std::optional<uint64_t> seed;      ///< absent: a random one per request
  bool stream = false;
  bool echo = false;                 ///< the prompt is returned before the text (scored too, with logprobs)
  /// logprobs: absent, none reported; N in 0..kMaxLogprobs, each
  /// character's log-probability and the N most likely alternatives
  std::optional<int64_t> logprobs;
  std::string user;
};

/// The most alternatives `logprobs` may ask for, as OpenAI's legacy API.
inline constexpr int64_t kMaxLogprobs = 5;

/// Parses and checks a /v1/completions body. Throws ApiError (400, naming
/// the field in `param`) for malformed JSON or UTF-8, a wrong type, a value
/// outside the shared sampling ranges (sampler.h) or the limits, and a
/// prompt with characters `vocab` lacks and has no equivalent for (the
/// message names them, as the CLI does; with limits.strict_prompts, any
/// character it lacks). What the body leaves out comes from `defaults`,
/// the model's sample section, as `charrnn generate` takes it (max_tokens
/// capped at limits.max_tokens). Unknown fields are ignored, as OpenAI's
/// clients send many.
CompletionRequest parse_completion_request(std::string_view body, const Vocab& vocab, const ServeLimits& limits,
                                           const SampleOptions& defaults);

/// One choice as the engine generates it (serve_engine.h).
struct StreamRequest {
  std::u32string prompt;       ///< non-empty, every character in the vocabulary
  int64_t max_chars = 16;      ///< characters generated after it
  SamplingParams sampling;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  bool echo = false;      ///< the stream starts with the prompt's text
  int64_t logprobs = -1;  ///< < 0: none; N: a TokenLogprob per character of the text, with N alternatives
};

/// One character's log-probabilities (natural log) under the model's own
/// distribution: temperature 1, before top-k and top-p, as OpenAI reports
/// them. Fixed size, so that recording one per generated character
/// allocates nothing.
struct TokenLogprob {
  int32_t id = 0;       ///< the character's vocabulary id
  bool scored = false;  ///< false for an echoed prompt's first character, which nothing predicts
  float logprob = 0;
  int32_t top_count = 0;  ///< alternatives in top_ids: the N asked for, most likely first (ties: smaller id)
  std::array<int32_t, kMaxLogprobs> top_ids{};
  std::array<float, kMaxLogprobs> top_logprobs{};
};

/// Scores `id` against one row of logits (`vocab` floats): its
/// log-probability after a softmax at temperature 1, and the `top` (0..5)
/// most likely ids with theirs.
void score_logits(const float* logits, int64_t vocab, int64_t id, int64_t top, TokenLogprob& out);

/// The choices a request asks for, in the order of the response's
/// "index": prompt i's choice j is choice i * n + j, with the request's
/// max_tokens, sampling and stop strings, and seed + j (so n choices of a
/// prompt differ, and a prompt given twice gets the same texts twice).
/// `seed` is the request's, or the random one drawn for it.
std::vector<StreamRequest> choice_streams(const CompletionRequest& request, uint64_t seed);

/// The response header naming what folding replaced in the prompts, in
/// ASCII ("U+0027 -> U+2019 (x2)"); sent, streamed or not, only when it did.
inline constexpr const char* kSubstitutionsHeader = "X-Charrnn-Prompt-Substitutions";
/// The same as a response field: [{"from": "'", "to": "’", "count": 2}].
nlohmann::json substitutions_json(const std::vector<Substitution>& substitutions);

/// One choice of a response or a stream chunk. finish_reason is "" while a
/// stream is still running (null in the JSON).
struct ChoiceText {
  int64_t index = 0;
  std::string text;
  std::string finish_reason;
  std::optional<nlohmann::ordered_json> logprobs;  ///< absent: null (none asked for)
};

/// OpenAI's legacy `logprobs` object for the characters of one choice (or
/// of one stream chunk): {"tokens", "token_logprobs", "top_logprobs",
/// "text_offset"}, a character being a token. top_logprobs maps each of the
/// N most likely characters to its log-probability, most likely first, and
/// the character itself when it is not among them (so up to N + 1, as
/// OpenAI does); an echoed prompt's first character has null for both.
/// text_offset counts characters (code points) of the choice's whole text,
/// the echoed prompt included: `text_offset` is the first one's. Values are
/// rounded to 1e-6 nats, about the precision float32 logits hold.
nlohmann::ordered_json logprobs_json(const std::vector<TokenLogprob>& records, const Vocab& vocab,
                                     int64_t text_offset);
struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0;
};
/// {"id", "object": "text_completion", "created", "model", "choices", "usage"}.
/// The choices are taken by value: their logprobs, the bulk of a body that
/// has them, are moved into it rather than copied.
nlohmann::ordered_json completion_body(const std::string& id, int64_t created, const std::string& model,
                                       std::vector<ChoiceText> choices, const std::optional<Usage>& usage);

/// The playground page GET / answers with (src/web/playground.html,
/// embedded at build time): it calls the API from the browser.
extern const char* const kPlaygroundPage;
/// The module it imports from /probabilities.js, the "show probabilities"
/// view it shares with the web export's page (src/web/probabilities.js).
extern const char* const kProbabilityViewSource;

/// Counters and histograms for GET /metrics, in Prometheus' text format.
/// Thread-safe.
class ServerMetrics {
 public:
  void count_request(const std::string& route, int status);
  void add_generated(int64_t chars);
  void observe_first_char(double seconds);
  void observe_request(double seconds);
  /// The exposition text, with the gauges given now.
  std::string render(int64_t active_streams, int64_t queued_streams, int64_t slots) const;

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<int64_t> counts;  // per bound, then +Inf
    double sum = 0;
    int64_t total = 0;
    void observe(double v);
  };
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  int64_t generated_ = 0;
  Histogram first_char_{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}, {}};
  Histogram duration_{{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}, {}};
};

}  // namespace charrnn
