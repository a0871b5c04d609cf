#include "charrnn/serve_api.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>

#include "charrnn/utf8.h"

namespace charrnn {

using nlohmann::json;

json error_body(const ApiError& e) {
  return {{"error",
           {{"message", e.what()},
            {"type", e.type},
            {"param", e.param.empty() ? json(nullptr) : json(e.param)},
            {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

std::string request_framing_problem(const std::vector<std::string>& content_lengths,
                                    const std::vector<std::string>& transfer_encodings, bool takes_body) {
  for (const std::string& length : content_lengths) {
    if (length.empty() || length.size() > 18 || length.find_first_not_of("0123456789") != std::string::npos)
      return "Content-Length must be a number of bytes, got \"" + length.substr(0, 40) + "\"";
    if (length != content_lengths.front()) return "two different Content-Length headers";
  }
  if (transfer_encodings.empty()) return "";
  if (!content_lengths.empty()) return "both Content-Length and Transfer-Encoding";
  std::string encoding = transfer_encodings.size() == 1 ? transfer_encodings.front() : "";
  for (char& ch : encoding) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (encoding != "chunked") return "Transfer-Encoding must be \"chunked\" alone";
  if (!takes_body) return "only POST /v1/completions takes a request body";
  return "";
}

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message, const std::string& code = "") {
  throw ApiError(400, message, "invalid_request_error", param, code);
}

bool is_integer(const json& v) { return v.is_number_integer() || v.is_number_unsigned(); }

int64_t integer_field(const json& v, const std::string& name) {
  if (!is_integer(v)) bad(name, name + " must be an integer, got " + v.dump());
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    bad(name, name + " is out of range: " + v.dump());
  return v.get<int64_t>();
}

double number_field(const json& v, const std::string& name) {
  if (!v.is_number()) bad(name, name + " must be a number, got " + v.dump());
  return v.get<double>();
}

// The shared range check (sampler.h), as a 400 naming the field.
void in_range(const SamplingRange& range, double value, const std::string& name) {
  if (!charrnn::in_range(range, value))
    bad(name, name + " must be " + range_requirement(range) + ", got " + json(value).dump());
}

}  // namespace

CompletionRequest parse_completion_request(std::string_view body, const Vocab& vocab, const ServeLimits& limits,
                                           const SampleOptions& defaults) {
  json j;
  try {
    j = json::parse(body.begin(), body.end());
  } catch (const json::exception& e) {
    // invalid UTF-8 inside a string is a parse error too, and a number
    // beyond a double (1e400) is out_of_range, not parse_error. nlohmann quotes the
    // bytes it stopped at, which then need not be UTF-8, and error_body's
    // dump() would throw on them (a 500): those bytes become U+FFFD.
    const std::string what = json(e.what()).dump(-1, ' ', false, json::error_handler_t::replace);
    bad("", "the body is not valid JSON: " + json::parse(what).get<std::string>(), "invalid_json");
  }
  if (!j.is_object()) bad("", "the body must be a JSON object", "invalid_json");

  CompletionRequest r;
  r.sample = defaults;
  r.sample.length = std::min(defaults.length, limits.max_tokens);
  const auto field = [&](const char* name) -> const json* {
    const auto it = j.find(name);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };

  if (const json* v = field("model")) {
    if (!v->is_string()) bad("model", "model must be a string");
    r.model = v->get<std::string>();
  }
  const json* prompt = field("prompt");
  if (!prompt) bad("prompt", "prompt is required: a string, or a list of strings (one choice each)");
  std::vector<std::string> texts;
  if (prompt->is_string()) {
    texts.push_back(prompt->get<std::string>());
  } else if (prompt->is_array() && !prompt->empty()) {
    for (const json& p : *prompt) {
      if (!p.is_string()) bad("prompt", "prompt must be a string or a list of strings (token ids are not taken)");
      texts.push_back(p.get<std::string>());
    }
  } else {
    bad("prompt", "prompt must be a string or a non-empty list of strings");
  }
  for (const std::string& text : texts) {
    std::u32string decoded = decode_utf8(text, "prompt");  // the JSON parser has checked it
    if (decoded.empty())
      bad("prompt", "prompt is empty; the model continues text, so give it at least one character (\"\\n\" starts a line)");
    if (static_cast<int64_t>(decoded.size()) > limits.max_prompt_chars)
      bad("prompt", "prompt has " + std::to_string(decoded.size()) + " characters; this server takes at most " +
                        std::to_string(limits.max_prompt_chars), "prompt_too_long");
    FoldedText folded;
    try {
      folded = fold_for_vocab(decoded, vocab, limits.strict_prompts, "prompt");  // names them, as the CLI does
    } catch (const UsageError& e) {
      bad("prompt", e.what(), "unknown_characters");
    }
    // Folding drops some characters (zero-width spaces, soft hyphens) and
    // lengthens others ("…" -> "..."), so its result is checked again.
    if (folded.text.empty())
      bad("prompt", "prompt is empty once the characters the model has no use for (zero-width and invisible ones) "
                    "are dropped; give it at least one character it knows");
    if (static_cast<int64_t>(folded.text.size()) > limits.max_prompt_chars)
      bad("prompt", "prompt has " + std::to_string(folded.text.size()) + " characters once those the model never saw "
                        "are replaced (\"\u2026\" by \"...\"); this server takes at most " +
                        std::to_string(limits.max_prompt_chars), "prompt_too_long");
    for (const Substitution& s : folded.substitutions) add_substitution(r.substitutions, s);
    r.prompts.push_back(std::move(folded.text));
  }

  if (const json* v = field("max_tokens")) {
    r.sample.length = integer_field(*v, "max_tokens");
    if (r.sample.length < 0 || r.sample.length > limits.max_tokens)
      bad("max_tokens", "max_tokens must be in [0, " + std::to_string(limits.max_tokens) + "] characters, got " +
                            std::to_string(r.sample.length));
  }
  if (const json* v = field("temperature")) {
    r.sample.sampling.temperature = number_field(*v, "temperature");
    in_range(kTemperatureRange, r.sample.sampling.temperature, "temperature");
  }
  if (const json* v = field("top_p")) {
    r.sample.sampling.top_p = number_field(*v, "top_p");
    in_range(kTopPRange, r.sample.sampling.top_p, "top_p");
  }
  if (const json* v = field("top_k")) {
    r.sample.sampling.top_k = integer_field(*v, "top_k");
    in_range(kTopKRange, static_cast<double>(r.sample.sampling.top_k), "top_k");
  }
  if (const json* v = field("n")) {
    r.n = integer_field(*v, "n");
    if (r.n < 1) bad("n", "n must be >= 1, got " + std::to_string(r.n));
  }
  // n > max / prompts rather than prompts * n > max, which overflows for a huge n
  if (r.n > limits.max_choices / static_cast<int64_t>(r.prompts.size()))
    bad("n", std::to_string(r.prompts.size()) + " prompt(s) x n=" + std::to_string(r.n) +
                 " choices; this server takes at most " + std::to_string(limits.max_choices) + " in one request");
  if (const json* v = field("stop")) {
    std::vector<json> stops;
    if (v->is_string()) stops.push_back(*v);
    else if (v->is_array() && v->size() <= 4) stops.assign(v->begin(), v->end());
    else bad("stop", "stop must be a string or a list of up to 4 strings");
    for (const json& s : stops) {
      if (!s.is_string()) bad("stop", "stop must be a string or a list of up to 4 strings");
      const std::string text = s.get<std::string>();
      if (text.size() > 1000) bad("stop", "a stop string may have at most 1000 bytes");
      if (!text.empty()) r.stop.push_back(text);
    }
  }
  if (const json* v = field("seed")) {
    if (!is_integer(*v)) bad("seed", "seed must be an integer, got " + v->dump());
    r.seed = v->is_number_unsigned() ? v->get<uint64_t>() : static_cast<uint64_t>(v->get<int64_t>());
  }
  const auto boolean = [&](const char* name, bool& out) {
    if (const json* v = field(name)) {
      if (!v->is_boolean()) bad(name, std::string(name) + " must be true or false, got " + v->dump());
      out = v->get<bool>();
    }
  };
  boolean("stream", r.stream);
  boolean("echo", r.echo);
  if (const json* v = field("user")) {
    if (!v->is_string()) bad("user", "user must be a string");
    r.user = v->get<std::string>();
  }
  if (const json* v = field("logprobs")) {
    const std::string range = "logprobs must be an integer in [0, " + std::to_string(kMaxLogprobs) +
                              "] (the most likely characters reported beside each one)";
    if (!is_integer(*v)) bad("logprobs", range + ", got " + v->dump());
    const bool fits = v->is_number_unsigned() ? v->get<uint64_t>() <= static_cast<uint64_t>(kMaxLogprobs)
                                              : v->get<int64_t>() >= 0 && v->get<int64_t>() <= kMaxLogprobs;
    if (!fits) bad("logprobs", range + ", got " + v->dump());
    r.logprobs = v->get<int64_t>();
  }
  return r;
}

std::vector<StreamRequest> choice_streams(const CompletionRequest& request, uint64_t seed) {
  std::vector<StreamRequest> streams;
  streams.reserve(request.prompts.size() * static_cast<size_t>(request.n));
  for (const std::u32string& prompt : request.prompts)
    for (int64_t j = 0; j < request.n; ++j)
      streams.push_back({prompt, request.sample.length, request.sample.sampling, seed + static_cast<uint64_t>(j),
                         request.stop, request.echo, request.logprobs.value_or(-1)});
  return streams;
}

void score_logits(const float* logits, int64_t vocab, int64_t id, int64_t top, TokenLogprob& out) {
  // log-sum-exp in double from the largest logit: the same log-softmax as
  // `charrnn eval` takes, to float precision
  float largest = logits[0];
  for (int64_t v = 1; v < vocab; ++v) largest = std::max(largest, logits[v]);
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v]) - largest);
  const double log_normaliser = largest + std::log(sum);
  out.id = static_cast<int32_t>(id);
  out.scored = true;
  out.logprob = static_cast<float>(logits[id] - log_normaliser);
  // the top N by insertion into a short sorted list: N <= 5, V about 100
  const int64_t n = std::min(std::max<int64_t>(top, 0), std::min(kMaxLogprobs, vocab));
  int32_t count = 0;
  for (int64_t v = 0; v < vocab && n > 0; ++v) {
    if (count == n && logits[v] <= logits[out.top_ids[static_cast<size_t>(count - 1)]]) continue;
    int32_t at = count < n ? count++ : count - 1;
    // a later id with an equal logit stays behind: ties go to the smaller id
    while (at > 0 && logits[v] > logits[out.top_ids[static_cast<size_t>(at - 1)]]) {
      out.top_ids[static_cast<size_t>(at)] = out.top_ids[static_cast<size_t>(at - 1)];
      --at;
    }
    out.top_ids[static_cast<size_t>(at)] = static_cast<int32_t>(v);
  }
  out.top_count = count;
  for (int32_t i = 0; i < count; ++i)
    out.top_logprobs[static_cast<size_t>(i)] =
        static_cast<float>(logits[out.top_ids[static_cast<size_t>(i)]] - log_normaliser);
}

nlohmann::ordered_json logprobs_json(const std::vector<TokenLogprob>& records, const Vocab& vocab,
                                     int64_t text_offset) {
  using ordered = nlohmann::ordered_json;
  ordered tokens = ordered::array(), token_logprobs = ordered::array(), top_logprobs = ordered::array(),
          offsets = ordered::array();
  for (ordered* list : {&tokens, &token_logprobs, &top_logprobs, &offsets})
    list->get_ref<ordered::array_t&>().reserve(records.size());
  // to 1e-6 nats, about what float32 logits hold: short numbers, where a
  // float's exact value written as a double would take 17 digits
  const auto rounded = [](float logprob) { return std::round(static_cast<double>(logprob) * 1e6) / 1e6; };
  const auto text_of = [&](int32_t id) {
    std::string text;
    vocab.append_decoded(text, id);
    return text;
  };
  for (const TokenLogprob& record : records) {
    tokens.push_back(text_of(record.id));
    offsets.push_back(text_offset++);
    if (!record.scored) {
      token_logprobs.push_back(nullptr);
      top_logprobs.push_back(nullptr);
      continue;
    }
    token_logprobs.push_back(rounded(record.logprob));
    ordered top = ordered::object();
    top.get_ref<ordered::object_t&>().reserve(static_cast<size_t>(record.top_count) + 1);
    bool has_own = false;
    for (int32_t i = 0; i < record.top_count; ++i) {
      top[text_of(record.top_ids[static_cast<size_t>(i)])] = rounded(record.top_logprobs[static_cast<size_t>(i)]);
      has_own = has_own || record.top_ids[static_cast<size_t>(i)] == record.id;
    }
    if (!has_own) top[text_of(record.id)] = rounded(record.logprob);
    top_logprobs.push_back(std::move(top));
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(token_logprobs)},
          {"top_logprobs", std::move(top_logprobs)},
          {"text_offset", std::move(offsets)}};
}

json substitutions_json(const std::vector<Substitution>& substitutions) {
  json list = json::array();
  for (const Substitution& s : substitutions)
    list.push_back({{"from", encode_utf8(s.from)}, {"to", encode_utf8(s.to)}, {"count", s.count}});
  return list;
}

nlohmann::ordered_json completion_body(const std::string& id, int64_t created, const std::string& model,
                                       std::vector<ChoiceText> choices, const std::optional<Usage>& usage) {
  using ordered = nlohmann::ordered_json;
  ordered list = ordered::array();
  for (ChoiceText& c : choices) {
    // assigned, not listed: a brace list would copy the logprobs
    ordered choice = ordered::object();
    choice["text"] = std::move(c.text);
    choice["index"] = c.index;
    choice["logprobs"] = c.logprobs ? std::move(*c.logprobs) : ordered(nullptr);
    choice["finish_reason"] = c.finish_reason.empty() ? ordered(nullptr) : ordered(c.finish_reason);
    list.push_back(std::move(choice));
  }
  ordered body = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model}, {"choices", list}};
  if (usage)
    body["usage"] = {{"prompt_tokens", usage->prompt_tokens},
                     {"completion_tokens", usage->completion_tokens},
                     {"total_tokens", usage->prompt_tokens + usage->completion_tokens}};
  return body;
}

void ServerMetrics::Histogram::observe(double v) {
  if (counts.empty()) counts.assign(bounds.size() + 1, 0);
  size_t i = 0;
  while (i < bounds.size() && v > bounds[i]) ++i;
  ++counts[i];
  sum += v;
  ++total;
}

void ServerMetrics::count_request(const std::string& route, int status) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{route, status}];
}

void ServerMetrics::add_generated(int64_t chars) {
  std::lock_guard<std::mutex> lock(mutex_);
  generated_ += chars;
}

void ServerMetrics::observe_first_char(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  first_char_.observe(seconds);
}

void ServerMetrics::observe_request(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  duration_.observe(seconds);
}

std::string ServerMetrics::render(int64_t active_streams, int64_t queued_streams, int64_t slots) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream out;
  out << std::setprecision(10);
  out << "# HELP charrnn_requests_total HTTP requests answered, by route and status.\n"
      << "# TYPE charrnn_requests_total counter\n";
  for (const auto& [key, count] : requests_)
    out << "charrnn_requests_total{route=\"" << key.first << "\",status=\"" << key.second << "\"} " << count << "\n";
  out << "# HELP charrnn_generated_chars_total Characters generated for completions.\n"
      << "# TYPE charrnn_generated_chars_total counter\ncharrnn_generated_chars_total " << generated_ << "\n"
      << "# HELP charrnn_active_streams Streams being generated now.\n"
      << "# TYPE charrnn_active_streams gauge\ncharrnn_active_streams " << active_streams << "\n"
      << "# HELP charrnn_queued_streams Streams waiting for a slot.\n"
      << "# TYPE charrnn_queued_streams gauge\ncharrnn_queued_streams " << queued_streams << "\n"
      << "# HELP charrnn_slots Streams generated together at most.\n"
      << "# TYPE charrnn_slots gauge\ncharrnn_slots " << slots << "\n";
  const auto histogram = [&](const char* name, const char* help, const Histogram& h) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
    int64_t cumulative = 0;
    for (size_t i = 0; i < h.bounds.size(); ++i) {
      cumulative += h.counts.empty() ? 0 : h.counts[i];
      out << name << "_bucket{le=\"" << h.bounds[i] << "\"} " << cumulative << "\n";
    }
    out << name << "_bucket{le=\"+Inf\"} " << h.total << "\n"
        << name << "_sum " << h.sum << "\n"
        << name << "_count " << h.total << "\n";
  };
  histogram("charrnn_time_to_first_char_seconds", "From a completion request to its first generated character.",
            first_char_);
  histogram("charrnn_request_duration_seconds", "From a completion request to its last byte.", duration_);
  return out.str();
}

}  // namespace charrnn
