// libFuzzer target for the server's request reader: a /v1/completions body
// -> parse_completion_request -> choice_streams, as POST /v1/completions
// does before anything reaches the model.
//
// The input is the body. It is read against one small vocabulary (a few
// letters, space, newline, "." and "-", and "é" and "’", so that quotes,
// dashes, "…", accents and combining marks have something to fold to) and
// small limits (so that every limit is reachable by a short input), once as
// a lenient server reads it and once as a --strict-prompts one.
//
// A refusal must be an ApiError with status 400, a message, a `param` that
// is empty or names a request field, and an error body that can be sent
// (error_body(e).dump()). Anything else escaping, a crash or a sanitizer
// report is a finding. A request that is accepted must hold what the
// server relies on:
//   - at least one prompt; each non-empty, every character in the
//     vocabulary, at most limits.max_prompt_chars characters;
//   - max_tokens in [0, limits.max_tokens]; n >= 1 and prompts x n at most
//     limits.max_choices; at most 4 stop strings, none empty; temperature,
//     top_k and top_p within sampler.h's ranges; logprobs absent or in
//     [0, kMaxLogprobs]; model and user UTF-8;
//   - the substitutions describe what folding did (their header is ASCII);
//   - choice_streams gives prompts x n streams with the request's settings;
//   - strict accepts only what lenient accepts unchanged, and the request
//     with its folded prompts in place of the originals is accepted by a
//     strict server as it is.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <set>
#include <string>
#include <typeinfo>

#include <nlohmann/json.hpp>

#include "charrnn/sampler.h"
#include "charrnn/serve_api.h"
#include "charrnn/utf8.h"

namespace {

using charrnn::ApiError;
using charrnn::CompletionRequest;
using nlohmann::json;

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_completion_request: %s\n", what.c_str());
  std::abort();
}

void check(bool ok, const std::string& what) {
  if (!ok) finding(what);
}

const charrnn::Vocab& vocab() {
  static const charrnn::Vocab v = charrnn::Vocab::from_text(U"hello world. bad cord-\n\u00E9\u2019");
  return v;
}

charrnn::ServeLimits limits(bool strict) {
  charrnn::ServeLimits l;
  l.max_tokens = 40;
  l.max_prompt_chars = 5;  // two "…", read as "...", are over it
  l.max_choices = 6;
  l.strict_prompts = strict;
  return l;
}

// The model's sample section: a length above max_tokens, so that the cap
// applies to a request that leaves max_tokens out.
const charrnn::SampleOptions& defaults() {
  static const charrnn::SampleOptions d = [] {
    charrnn::SampleOptions s;
    s.length = 100;
    s.sampling.temperature = 0.7;
    s.sampling.top_k = 3;
    s.sampling.top_p = 0.9;
    return s;
  }();
  return d;
}

bool all_known(std::u32string_view text) {
  for (char32_t c : text)
    if (!vocab().contains(c)) return false;
  return true;
}

void check_refusal(const ApiError& e, const char* how) {
  static const std::set<std::string> fields = {"",      "model", "prompt", "max_tokens", "temperature",
                                               "top_p", "top_k", "n",      "stop",       "seed",
                                               "stream", "echo", "user",   "logprobs"};
  const std::string where = std::string(" (") + how + "): " + e.what();
  check(e.status == 400, "a refusal with status " + std::to_string(e.status) + where);
  check(e.type == "invalid_request_error", "a refusal of type " + e.type + where);
  check(std::string(e.what()).size() > 0, "a refusal without a message");
  check(fields.count(e.param) == 1, "a refusal naming param \"" + e.param + "\", which is no field" + where);
  try {
    const std::string body = charrnn::error_body(e).dump();
    check(json::parse(body)["error"]["message"] == e.what(), "the error body lost the message" + where);
  } catch (const json::exception& x) {
    finding(std::string("the error body cannot be sent: ") + x.what() + where);
  }
}

void check_accepted(const CompletionRequest& r, const charrnn::ServeLimits& l) {
  check(!r.prompts.empty(), "accepted without a prompt");
  for (const std::u32string& p : r.prompts) {
    check(!p.empty(), "accepted an empty prompt (after folding)");
    check(all_known(p), "a prompt holds a character the vocabulary lacks: " + charrnn::encode_utf8(p));
    check(static_cast<int64_t>(p.size()) <= l.max_prompt_chars,
          "a prompt of " + std::to_string(p.size()) + " characters, above the limit of " +
              std::to_string(l.max_prompt_chars) + ": " + charrnn::encode_utf8(p));
  }
  check(r.sample.length >= 0 && r.sample.length <= l.max_tokens,
        "max_tokens " + std::to_string(r.sample.length) + " outside [0, limit]");
  check(r.n >= 1, "n = " + std::to_string(r.n));
  check(r.n <= l.max_choices && static_cast<int64_t>(r.prompts.size()) * r.n <= l.max_choices,
        std::to_string(r.prompts.size()) + " prompts x n = " + std::to_string(r.n) + " above max_choices");
  check(r.stop.size() <= 4, std::to_string(r.stop.size()) + " stop strings");
  for (const std::string& s : r.stop) check(!s.empty() && charrnn::is_valid_utf8(s), "a bad stop string");
  check(charrnn::in_range(charrnn::kTemperatureRange, r.sample.sampling.temperature), "temperature out of range");
  check(charrnn::in_range(charrnn::kTopKRange, static_cast<double>(r.sample.sampling.top_k)), "top_k out of range");
  check(charrnn::in_range(charrnn::kTopPRange, r.sample.sampling.top_p), "top_p out of range");
  check(charrnn::is_valid_utf8(r.model) && charrnn::is_valid_utf8(r.user), "model or user is not UTF-8");
  check(!r.logprobs || (*r.logprobs >= 0 && *r.logprobs <= charrnn::kMaxLogprobs), "logprobs out of range");

  for (const charrnn::Substitution& s : r.substitutions) {
    check(s.count > 0, "a substitution made 0 times");
    check(!s.from.empty() && !all_known(s.from), "a substitution of text the vocabulary has");
    check(all_known(s.to), "a substitution into characters the vocabulary lacks");
  }
  if (l.strict_prompts) check(r.substitutions.empty(), "a strict server replaced characters");
  const std::string header = charrnn::describe_substitutions_ascii(r.substitutions);
  for (char c : header) check(c >= 0x20 && c < 0x7F, "the substitutions header is not printable ASCII: " + header);
  try {
    charrnn::substitutions_json(r.substitutions).dump();
  } catch (const json::exception& x) {
    finding(std::string("the substitutions cannot be sent: ") + x.what());
  }

  // the largest seed, so that seed + j wraps
  const uint64_t seed = r.seed.value_or(UINT64_MAX);
  const std::vector<charrnn::StreamRequest> streams = charrnn::choice_streams(r, seed);
  check(static_cast<int64_t>(streams.size()) == static_cast<int64_t>(r.prompts.size()) * r.n,
        "choice_streams gave " + std::to_string(streams.size()) + " streams");
  for (size_t k = 0; k < streams.size(); ++k) {
    const charrnn::StreamRequest& s = streams[k];
    const uint64_t j = k % static_cast<uint64_t>(r.n);
    check(s.prompt == r.prompts[k / static_cast<size_t>(r.n)], "stream " + std::to_string(k) + " has another prompt");
    check(s.max_chars == r.sample.length && s.stop == r.stop && s.seed == seed + j &&
              s.sampling.temperature == r.sample.sampling.temperature && s.sampling.top_k == r.sample.sampling.top_k &&
              s.sampling.top_p == r.sample.sampling.top_p && s.echo == r.echo &&
              s.logprobs == r.logprobs.value_or(-1),
          "stream " + std::to_string(k) + " has other settings than the request");
  }
}

// Whether two accepted requests are the same request.
bool same(const CompletionRequest& a, const CompletionRequest& b) {
  return a.model == b.model && a.prompts == b.prompts && a.sample.length == b.sample.length &&
         a.sample.sampling.temperature == b.sample.sampling.temperature &&
         a.sample.sampling.top_k == b.sample.sampling.top_k && a.sample.sampling.top_p == b.sample.sampling.top_p &&
         a.n == b.n && a.stop == b.stop && a.seed == b.seed && a.stream == b.stream && a.echo == b.echo &&
         a.logprobs == b.logprobs && a.user == b.user;
}

std::optional<CompletionRequest> parse(std::string_view body, bool strict, const char* how) {
  try {
    CompletionRequest r = charrnn::parse_completion_request(body, vocab(), limits(strict), defaults());
    check_accepted(r, limits(strict));
    return r;
  } catch (const ApiError& e) {
    check_refusal(e, how);
  } catch (const std::exception& e) {
    finding(std::string("an exception other than ApiError (") + how + ", " + typeid(e).name() + "): " + e.what());
  } catch (...) {
    finding(std::string("an exception other than ApiError (") + how + ")");
  }
  return std::nullopt;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  const std::optional<CompletionRequest> lenient = parse(body, false, "lenient");
  const std::optional<CompletionRequest> strict = parse(body, true, "strict");
  if (strict)
    check(lenient && same(*lenient, *strict) && lenient->substitutions.empty(),
          "a strict server accepted what a lenient one refused or changed");
  if (!lenient) return 0;

  // The same request with its prompts as they were folded: a strict server
  // takes it, and reads the same request.
  json j = json::parse(body);  // it was accepted, so it is a JSON object
  json prompts = json::array();
  for (const std::u32string& p : lenient->prompts) prompts.push_back(charrnn::encode_utf8(p));
  j["prompt"] = j["prompt"].is_string() ? prompts[0] : prompts;
  const std::optional<CompletionRequest> refolded = parse(j.dump(), true, "strict, folded prompts");
  check(refolded && same(*refolded, *lenient), "the request with its folded prompts reads otherwise:\n" + j.dump());
  return 0;
}
