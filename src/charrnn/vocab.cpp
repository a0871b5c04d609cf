#include "charrnn/vocab.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "charrnn/error.h"
#include "charrnn/utf8.h"

namespace charrnn {

namespace {
constexpr char32_t kMaxCodePoint = 0x10FFFF;
constexpr size_t kMaxNamedUnknown = 10;  // keep error lines readable

bool is_code_point(char32_t c) { return c <= kMaxCodePoint && !(c >= 0xD800 && c <= 0xDFFF); }
}  // namespace

Vocab::Vocab(std::vector<char32_t> chars, std::vector<int64_t> counts)
    : chars_(std::move(chars)), counts_(std::move(counts)) {
  if (!counts_.empty() && counts_.size() != chars_.size())
    throw Error("vocabulary: " + std::to_string(counts_.size()) + " counts for " +
                std::to_string(chars_.size()) + " characters");
  for (size_t i = 0; i < chars_.size(); ++i) {
    if (!is_code_point(chars_[i]))
      throw Error("vocabulary: invalid code point " + std::to_string(chars_[i]));
    if (i > 0 && chars_[i] <= chars_[i - 1])
      throw Error("vocabulary: characters must be sorted and distinct");
  }
  if (counts_.empty()) counts_.assign(chars_.size(), 0);
  lookup_.assign(chars_.empty() ? 0 : chars_.back() + 1, -1);
  for (size_t i = 0; i < chars_.size(); ++i) lookup_[chars_[i]] = static_cast<int32_t>(i);
}

Vocab Vocab::from_text(std::u32string_view text) {
  std::vector<int64_t> histogram;
  for (char32_t c : text) {
    // Checked before the histogram, which is indexed by code point, grows:
    // a stray 0x808090F4 asked for 16 GiB, and 0xFFFFFFFF wrapped c + 1 to 0
    // and wrote out of bounds (found by fuzz/fuzz_utf8_vocab.cpp).
    if (!is_code_point(c)) throw Error("vocabulary: invalid code point " + std::to_string(c));
    if (c >= histogram.size()) histogram.resize(std::max<size_t>(size_t{c} + 1, 128), 0);
    ++histogram[c];
  }
  return from_histogram(histogram);
}

Vocab Vocab::from_histogram(const std::vector<int64_t>& counts_by_code_point) {
  std::vector<char32_t> chars;
  std::vector<int64_t> counts;
  for (size_t c = 0; c < counts_by_code_point.size(); ++c) {
    if (counts_by_code_point[c] > 0) {
      chars.push_back(static_cast<char32_t>(c));
      counts.push_back(counts_by_code_point[c]);
    }
  }
  return Vocab(std::move(chars), std::move(counts));
}

std::u32string Vocab::unknown_chars(std::u32string_view text) const {
  std::u32string unknown;
  for (char32_t c : text)
    if (!contains(c) && unknown.find(c) == std::u32string::npos) unknown.push_back(c);
  return unknown;
}

std::vector<int64_t> Vocab::encode(std::u32string_view text, std::string_view what) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size());
  for (char32_t c : text) {
    const int64_t id = id_or_negative(c);
    if (id < 0) {
      const std::u32string unknown = unknown_chars(text);
      std::string names;
      for (size_t i = 0; i < unknown.size() && i < kMaxNamedUnknown; ++i)
        names += (i ? ", " : "") + describe_char_named(unknown[i]);
      if (unknown.size() > kMaxNamedUnknown)
        names += " and " + std::to_string(unknown.size() - kMaxNamedUnknown) + " more";
      throw UsageError(std::string(what) + " contains " + std::to_string(unknown.size()) +
                       " character(s) the model never saw in training: " + names);
    }
    ids.push_back(id);
  }
  return ids;
}

Vocab::Encoded Vocab::encode_skipping_unknown(std::u32string_view text) const {
  Encoded result;
  result.ids.reserve(text.size());
  for (char32_t c : text) {
    const int64_t id = id_or_negative(c);
    if (id < 0)
      ++result.unknown;
    else
      result.ids.push_back(id);
  }
  return result;
}

void Vocab::append_decoded(std::string& out, int64_t id) const {
  append_utf8(out, char_at(id));
}

std::string Vocab::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  out.reserve(ids.size());
  for (int64_t id : ids) append_decoded(out, id);
  return out;
}

nlohmann::json Vocab::to_json() const {
  std::vector<uint32_t> code_points(chars_.begin(), chars_.end());
  return {{"code_points", code_points}, {"counts", counts_}};
}

namespace {
// nlohmann's get<integer>() converts a float with a plain static_cast: 1e300
// is undefined behaviour and 65.5 silently becomes 65, and an integer out of
// range wraps. A stored vocabulary is untrusted, so its numbers are checked
// here first (found by fuzz/fuzz_checkpoint.cpp: "counts": [1e300]).
template <typename T>
std::vector<T> integers_in_range(const nlohmann::json& j, const char* key, uint64_t max) {
  const nlohmann::json& array = j.at(key);
  if (!array.is_array()) throw Error(std::string("vocabulary is malformed: \"") + key + "\" is not an array");
  std::vector<T> out;
  out.reserve(array.size());
  for (const nlohmann::json& v : array) {
    const bool ok = v.is_number_unsigned() ? v.get<uint64_t>() <= max
                                           : v.is_number_integer() && v.get<int64_t>() >= 0 &&
                                                 static_cast<uint64_t>(v.get<int64_t>()) <= max;
    if (!ok)
      throw Error(std::string("vocabulary is malformed: \"") + key + "\" holds " + v.dump() +
                  ", not an integer in [0, " + std::to_string(max) + "]");
    out.push_back(static_cast<T>(v.get<uint64_t>()));
  }
  return out;
}
}  // namespace

Vocab Vocab::from_json(const nlohmann::json& j) {
  try {
    auto code_points = integers_in_range<char32_t>(j, "code_points", kMaxCodePoint);
    auto counts = integers_in_range<int64_t>(j, "counts", std::numeric_limits<int64_t>::max());
    return Vocab(std::move(code_points), std::move(counts));
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("vocabulary is malformed: ") + e.what());
  }
}

}  // namespace charrnn
