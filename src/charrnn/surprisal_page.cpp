#include "charrnn/surprisal_page.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "charrnn/error.h"
#include "charrnn/utf8.h"

namespace charrnn {

// src/web/surprisal.html, embedded by the build (cmake/embed_text.cmake)
extern const char* const kSurprisalPageSource;

namespace {

// Where the viewer's source wants its data.
constexpr const char* kDataMarker = "<!--charrnn:data-->";

std::string base64(const std::string& bytes) {
  static const char* const digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{static_cast<unsigned char>(bytes[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += digits[v >> 18], out += digits[(v >> 12) & 63], out += digits[(v >> 6) & 63], out += digits[v & 63];
  }
  if (i < bytes.size()) {
    const bool two = i + 1 < bytes.size();
    const uint32_t v = (uint32_t{static_cast<unsigned char>(bytes[i])} << 16) |
                       (two ? uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8 : 0);
    out += digits[v >> 18], out += digits[(v >> 12) & 63];
    out += two ? digits[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

void put_u16(std::string& out, uint32_t value) {
  out += static_cast<char>(value & 0xFF);
  out += static_cast<char>((value >> 8) & 0xFF);
}

// JSON to put inside <script>: no "</script>" can end it early.
std::string script_json(const nlohmann::json& j) {
  const std::string text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (c == '<')
      out += "\\u003c";  // '<' only ever occurs inside a JSON string
    else
      out += c;
  }
  return out;
}

std::string in_existing_folder(const std::string& path) {
  ensure_parent_directory(path);
  return path;
}

}  // namespace

uint16_t quantise_surprisal(double logprob) {
  const double steps = std::round(-logprob / std::log(2.0) * kSurprisalSteps);
  if (!(steps >= 0)) return 0;  // log probabilities are <= 0; a rounding above 0 is 0 bits
  return static_cast<uint16_t>(std::min<double>(steps, kUnscored - 1));
}

double surprisal_bits(uint16_t quantised) { return quantised / kSurprisalSteps; }

SurprisingSpans::SurprisingSpans(int64_t length, int64_t count) : length_(length), count_(count) {
  if (length < 1) throw UsageError("a surprising span needs >= 1 characters, got " + std::to_string(length));
  if (count < 0) throw UsageError("the number of surprising spans must be >= 0, got " + std::to_string(count));
}

void SurprisingSpans::add(int64_t offset, char32_t c, uint16_t quantised) {
  recent_.push_back({offset, c, quantised});
  recent_sum_ += quantised;
  ++added_;
  if (static_cast<int64_t>(recent_.size()) > length_) {
    recent_sum_ -= recent_.front().quantised;
    recent_.pop_front();
  }
  if (static_cast<int64_t>(recent_.size()) < length_) return;
  Window w;
  w.index = added_ - length_;
  w.sum = recent_sum_;
  w.start = recent_.front().offset;
  w.end = recent_.back().offset + 1;
  for (const Item& item : recent_) w.text += item.c;
  windows_.push_back(std::move(w));
  // a window is decided once every window overlapping it after it is known
  decide_up_to(windows_.back().index - (length_ - 1));
}

// Decides the windows next_undecided_ .. last against the overlapping ones known.
void SurprisingSpans::decide_up_to(int64_t last) {
  for (; next_undecided_ <= last; ++next_undecided_) {
    const int64_t first_index = windows_.front().index;
    const Window& w = windows_[static_cast<size_t>(next_undecided_ - first_index)];
    bool peak = true;
    for (const Window& other : windows_) {
      if (other.index == w.index || std::abs(other.index - w.index) >= length_) continue;
      if (other.index < w.index ? other.sum >= w.sum : other.sum > w.sum) {
        peak = false;
        break;
      }
    }
    if (peak && count_ > 0) {
      best_.push(w);
      if (static_cast<int64_t>(best_.size()) > count_) best_.pop();
    }
  }
  // the undecided ones still compare with the windows overlapping them before
  while (!windows_.empty() && windows_.front().index <= next_undecided_ - length_) windows_.pop_front();
}

std::vector<SurprisingSpan> SurprisingSpans::finish() {
  std::vector<SurprisingSpan> spans;
  if (windows_.empty() && !recent_.empty() && next_undecided_ == 0 && count_ > 0) {
    // fewer predicted characters than a span: all of them
    SurprisingSpan span;
    span.start = recent_.front().offset;
    span.end = recent_.back().offset + 1;
    for (const Item& item : recent_) span.text += item.c;
    span.mean_bits = static_cast<double>(recent_sum_) / kSurprisalSteps / static_cast<double>(recent_.size());
    spans.push_back(std::move(span));
    return spans;
  }
  if (!windows_.empty()) decide_up_to(windows_.back().index);
  for (; !best_.empty(); best_.pop()) {
    const Window& w = best_.top();
    spans.push_back({w.start, w.end, static_cast<double>(w.sum) / kSurprisalSteps / static_cast<double>(length_),
                     w.text});
  }
  std::reverse(spans.begin(), spans.end());
  return spans;
}

std::optional<uint16_t> LineMeans::add(char32_t c, uint16_t quantised) {
  open_ = true;
  if (quantised != kUnscored) {
    sum_ += quantised;
    ++scored_;
  }
  if (c != U'\n') return std::nullopt;
  return finish();
}

std::optional<uint16_t> LineMeans::finish() {
  if (!open_) return std::nullopt;
  const uint16_t mean = scored_ > 0 ? static_cast<uint16_t>((sum_ + scored_ / 2) / scored_) : kUnscored;
  sum_ = scored_ = 0;
  open_ = false;
  return mean;
}

SurprisalPageWriter::SurprisalPageWriter(const std::string& path, const Vocab& vocab,
                                         const SurprisalPageOptions& options)
    : vocab_(vocab),
      options_(options),
      writer_(in_existing_folder(path)),
      spans_(options.span_chars, options.spans) {
  if (options.page_chars < 1) throw UsageError("a page needs >= 1 characters, got " + std::to_string(options.page_chars));
  if (options.top_k < 0) throw UsageError("top-k must be >= 0, got " + std::to_string(options.top_k));
  if (vocab.size() >= kUnscored)
    throw UsageError("the surprisal page stores ids in 16 bits: a vocabulary of " + std::to_string(vocab.size()) +
                     " characters is too large");
  id_bytes_ = vocab.size() < 255 ? 1 : 2;
  const std::string source = kSurprisalPageSource;
  const size_t marker = source.find(kDataMarker);
  if (marker == std::string::npos) throw Error("the embedded surprisal page lacks its data marker");
  tail_ = source.substr(marker + std::string(kDataMarker).size());
  nlohmann::json vocabulary = nlohmann::json::array();
  for (const char32_t c : vocab.chars()) vocabulary.push_back(static_cast<uint32_t>(c));
  const nlohmann::json meta{{"title", options.title},       {"vocab", vocabulary},
                            {"id_bytes", id_bytes_},        {"top_k", options.top_k},
                            {"steps_per_bit", kSurprisalSteps}, {"unscored", kUnscored},
                            {"page_chars", options.page_chars}, {"span_chars", options.span_chars}};
  write(source.substr(0, marker));
  write("<script type=\"application/json\" id=\"meta\">" + script_json(meta) + "</script>\n");
}

void SurprisalPageWriter::write(const std::string& text) { writer_.write(text.data(), text.size()); }

void SurprisalPageWriter::add(const TextChar& c) {
  if (in_page_ == options_.page_chars) flush_page();
  const uint32_t sentinel = (1u << (8 * id_bytes_)) - 1;
  const auto put_id = [&](uint32_t id) {
    records_ += static_cast<char>(id & 0xFF);
    if (id_bytes_ == 2) records_ += static_cast<char>(id >> 8);
  };
  const uint16_t quantised = c.score ? quantise_surprisal(c.score->logprob) : kUnscored;
  if (c.known) {
    put_id(static_cast<uint32_t>(vocab_.id_or_negative(c.code_point)));
  } else {
    put_id(sentinel);
    unknown_.push_back(c.code_point);
  }
  put_u16(records_, quantised);
  const size_t shown = c.score ? std::min<size_t>(c.score->top_ids.size(), static_cast<size_t>(options_.top_k)) : 0;
  for (size_t i = 0; i < static_cast<size_t>(options_.top_k); ++i) {
    put_id(i < shown ? static_cast<uint32_t>(c.score->top_ids[i]) : sentinel);
    put_u16(records_, i < shown ? quantise_surprisal(c.score->top_logprobs[i]) : kUnscored);
  }
  if (c.score) spans_.add(c.offset, c.code_point, quantised);
  if (const auto mean = line_.add(c.code_point, quantised)) {
    put_u16(line_means_, *mean);
    ++lines_;
  }
  ++in_page_;
  ++chars_;
}

void SurprisalPageWriter::flush_page() {
  nlohmann::json unknown = nlohmann::json::array();
  for (const char32_t c : unknown_) unknown.push_back(static_cast<uint32_t>(c));
  write("<script type=\"application/octet-stream\" class=\"page\" data-start=\"" + std::to_string(page_start_) +
        "\" data-length=\"" + std::to_string(in_page_) + "\" data-first-line=\"" +
        std::to_string(page_first_line_) + "\" data-unknown=\"" + unknown.dump() + "\" data-lines=\"" +
        base64(line_means_) + "\">" + base64(records_) + "</script>\n");
  ++pages_;
  page_start_ += in_page_;
  page_first_line_ = lines_;
  in_page_ = 0;
  records_.clear();
  unknown_.clear();
  line_means_.clear();
}

void SurprisalPageWriter::finish(const EvalResult& result) {
  if (const auto mean = line_.finish()) {
    put_u16(line_means_, *mean);
    ++lines_;
  }
  if (in_page_ > 0 || pages_ == 0) flush_page();
  nlohmann::json spans = nlohmann::json::array();
  for (const SurprisingSpan& span : spans_.finish()) {
    std::string text;
    for (const char32_t c : span.text) append_utf8(text, c);
    spans.push_back({{"start", span.start}, {"end", span.end}, {"mean_bits", span.mean_bits}, {"text", text}});
  }
  const nlohmann::json summary{{"bpc", result.bpc},        {"loss", result.loss},   {"scored", result.chars},
                               {"unknown", result.unknown_chars}, {"chars", chars_}, {"lines", lines_},
                               {"pages", pages_},          {"spans", spans}};
  write("<script type=\"application/json\" id=\"summary\">" + script_json(summary) + "</script>\n");
  write(tail_);
  writer_.commit();
}

}  // namespace charrnn
