// The vocabulary: the sorted set of Unicode code points seen in a corpus,
// with how often each occurred. Ids are positions in that sorted list, so the
// same corpus always gives the same ids. It travels inside every checkpoint.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace charrnn {

class Vocab {
 public:
  Vocab() = default;
  /// `chars` must be strictly increasing; `counts` is empty or parallel to it.
  explicit Vocab(std::vector<char32_t> chars, std::vector<int64_t> counts = {});

  static Vocab from_text(std::u32string_view text);
  /// From occurrence counts indexed by code point; characters with count 0 are left out.
  static Vocab from_histogram(const std::vector<int64_t>& counts_by_code_point);

  int64_t size() const { return static_cast<int64_t>(chars_.size()); }
  bool contains(char32_t c) const { return id_or_negative(c) >= 0; }
  /// -1 when `c` is not in the vocabulary.
  int64_t id_or_negative(char32_t c) const {
    return c < lookup_.size() ? lookup_[c] : -1;
  }
  char32_t char_at(int64_t id) const { return chars_.at(static_cast<size_t>(id)); }

  /// Encodes every character; throws UsageError naming the characters the
  /// vocabulary lacks (`what` says where the text came from, e.g. "--prime").
  std::vector<int64_t> encode(std::u32string_view text, std::string_view what) const;

  struct Encoded {
    std::vector<int64_t> ids;
    int64_t unknown = 0;  ///< characters dropped because the vocabulary lacks them
  };
  /// Encodes, dropping (and counting) unknown characters: evaluation on new
  /// text must not fail because of one stray symbol.
  Encoded encode_skipping_unknown(std::u32string_view text) const;

  /// Distinct characters of `text` missing from the vocabulary, in order of appearance.
  std::u32string unknown_chars(std::u32string_view text) const;

  std::string decode(const std::vector<int64_t>& ids) const;
  void append_decoded(std::string& out, int64_t id) const;

  const std::vector<char32_t>& chars() const { return chars_; }
  const std::vector<int64_t>& counts() const { return counts_; }

  nlohmann::json to_json() const;
  /// Throws Error when the stored vocabulary is malformed.
  static Vocab from_json(const nlohmann::json& j);

 private:
  std::vector<char32_t> chars_;
  std::vector<int64_t> counts_;
  std::vector<int32_t> lookup_;  // code point -> id, -1 where absent; dense for speed
};

}  // namespace charrnn
