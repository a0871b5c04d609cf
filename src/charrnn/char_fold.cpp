#include "charrnn/char_fold.h"

#include <algorithm>

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include "charrnn/error.h"
#include "charrnn/utf8.h"

namespace charrnn {

namespace {

// The fold table: a character, the replacements tried in order elsewhere,
// and (for the ASCII quotes) those tried after an opener.
struct FoldEntry {
  char32_t from;
  std::vector<std::u32string> candidates;
  std::vector<std::u32string> after_opening;
};

const std::vector<FoldEntry>& fold_entries() {
  static const std::vector<FoldEntry> entries = {
      // quotes
      {U'\'', {U"\u2019", U"\u2018"}, {U"\u2018", U"\u2019"}},
      {U'"', {U"\u201D", U"\u201C", U"\u00BB"}, {U"\u201C", U"\u201D", U"\u00AB"}},
      {U'\u2018', {U"'", U"\u2019"}, {}},
      {U'\u2019', {U"'", U"\u2018"}, {}},
      {U'\u201A', {U"'", U","}, {}},
      {U'\u201B', {U"'", U"\u2018"}, {}},
      {U'\u2032', {U"'", U"\u2019"}, {}},
      {U'`', {U"'", U"\u2018"}, {}},
      {U'\u00B4', {U"'", U"\u2019"}, {}},
      {U'\u2039', {U"'", U"\u2018"}, {}},
      {U'\u203A', {U"'", U"\u2019"}, {}},
      {U'\u201C', {U"\"", U"\u201D"}, {}},
      {U'\u201D', {U"\"", U"\u201C"}, {}},
      {U'\u201E', {U"\"", U"\u201C"}, {}},
      {U'\u201F', {U"\"", U"\u201C"}, {}},
      {U'\u2033', {U"\"", U"\u201D"}, {}},
      {U'\u00AB', {U"\"", U"\u201C"}, {}},
      {U'\u00BB', {U"\"", U"\u201D"}, {}},
      // dashes
      {U'-', {U"\u2010", U"\u2013", U"\u2014"}, {}},
      {U'\u2010', {U"-", U"\u2011"}, {}},
      {U'\u2011', {U"-", U"\u2010"}, {}},
      {U'\u2012', {U"-", U"\u2013"}, {}},
      {U'\u2013', {U"-", U"\u2014"}, {}},
      {U'\u2014', {U"\u2013", U"--", U"-"}, {}},
      {U'\u2015', {U"\u2014", U"\u2013", U"--", U"-"}, {}},
      {U'\u2212', {U"-", U"\u2013"}, {}},
      // ellipsis
      {U'\u2026', {U"..."}, {}},
      // spaces and line breaks
      {U'\t', {U" "}, {}},
      {U'\u00A0', {U" "}, {}},
      {U'\u1680', {U" "}, {}},
      {U'\u2000', {U" "}, {}},
      {U'\u2001', {U" "}, {}},
      {U'\u2002', {U" "}, {}},
      {U'\u2003', {U" "}, {}},
      {U'\u2004', {U" "}, {}},
      {U'\u2005', {U" "}, {}},
      {U'\u2006', {U" "}, {}},
      {U'\u2007', {U" "}, {}},
      {U'\u2008', {U" "}, {}},
      {U'\u2009', {U" "}, {}},
      {U'\u200A', {U" "}, {}},
      {U'\u202F', {U" "}, {}},
      {U'\u205F', {U" "}, {}},
      {U'\u3000', {U" "}, {}},
      {U'\r', {U"\n"}, {}},
      {U'\u0085', {U"\n"}, {}},
      {U'\u2028', {U"\n"}, {}},
      {U'\u2029', {U"\n"}, {}},
      // invisible characters: dropped
      {U'\u200B', {U""}, {}},
      {U'\u200C', {U""}, {}},
      {U'\u200D', {U""}, {}},
      {U'\u2060', {U""}, {}},
      {U'\uFEFF', {U""}, {}},
      {U'\u00AD', {U""}, {}},
  };
  return entries;
}

const FoldEntry* find_entry(char32_t c) {
  for (const FoldEntry& e : fold_entries())
    if (e.from == c) return &e;
  return nullptr;
}

// An ASCII quote after these (or at the start) opens.
constexpr char32_t kOpeners[] = U" \t\n\r\u00A0\u2003([{<\u201C\u2018\u00AB\u2039\u2014\u2013-/";

bool is_opener(char32_t c) { return std::u32string_view(kOpeners).find(c) != std::u32string_view::npos; }

std::u32string from_icu(const icu::UnicodeString& s) {
  std::u32string out;
  for (int32_t i = 0; i < s.length();) {
    const UChar32 cp = s.char32At(i);
    out.push_back(static_cast<char32_t>(cp));
    i += U16_LENGTH(cp);
  }
  return out;
}

const icu::Normalizer2& normalizer(UNormalization2Mode mode, const char* name) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = icu::Normalizer2::getInstance(nullptr, name, mode, status);
  if (U_FAILURE(status) || !n) throw Error(std::string("ICU: no ") + name + " normalizer: " + u_errorName(status));
  return *n;
}
const icu::Normalizer2& nfkc() {
  static const icu::Normalizer2& n = normalizer(UNORM2_COMPOSE, "nfkc");
  return n;
}
const icu::Normalizer2& nfkd() {
  static const icu::Normalizer2& n = normalizer(UNORM2_DECOMPOSE, "nfkc");
  return n;
}
const icu::Normalizer2& nfd() {
  static const icu::Normalizer2& n = normalizer(UNORM2_DECOMPOSE, "nfc");
  return n;
}

std::u32string normalize(const icu::Normalizer2& n, std::u32string_view text) {
  icu::UnicodeString s;
  for (char32_t c : text) s.append(static_cast<UChar32>(c));
  UErrorCode status = U_ZERO_ERROR;
  const icu::UnicodeString result = n.normalize(s, status);
  if (U_FAILURE(status)) throw Error(std::string("ICU: normalization failed: ") + u_errorName(status));
  return from_icu(result);
}

std::string quoted(std::u32string_view text) {
  std::string out = "\"";
  for (char32_t c : text) {
    if (c == '\n') out += "\\n";
    else if (c == '"' || c == '\\') { out += '\\'; append_utf8(out, c); }
    else append_utf8(out, c);
  }
  return out + "\"";
}

std::string describe_text(std::u32string_view text) {
  if (text.empty()) return "nothing";
  if (text.size() == 1) return describe_char_named(text[0]);
  return quoted(text);
}

std::string code_points(std::u32string_view text) {
  if (text.empty()) return "nothing";
  std::string out;
  char buffer[16];
  for (char32_t c : text) {
    std::snprintf(buffer, sizeof buffer, "U+%04X", static_cast<unsigned>(c));
    out += (out.empty() ? "" : " ") + std::string(buffer);
  }
  return out;
}

}  // namespace

void add_substitution(std::vector<Substitution>& list, const Substitution& s) {
  for (Substitution& t : list)
    if (t.from == s.from && t.to == s.to) {
      t.count += s.count;
      return;
    }
  list.push_back(s);
}

CharFolder::CharFolder(const Vocab& vocab) : vocab_(vocab) {
  // "\r\n" is one line break; a precomposed character the vocabulary has
  // is also matched in its decomposed (NFD) form
  if (vocab_.contains('\n') && !vocab_.contains('\r')) sequence_targets_[U"\r\n"] = U"\n";
  for (char32_t v : vocab_.chars()) {
    const std::u32string decomposed = normalize(nfd(), std::u32string(1, v));
    if (decomposed.size() >= 2 && !known(decomposed)) sequence_targets_[decomposed] = std::u32string(1, v);
  }
  for (const auto& [key, value] : sequence_targets_) sequences_.push_back(key);
  std::stable_sort(sequences_.begin(), sequences_.end(),
                   [](const std::u32string& a, const std::u32string& b) { return a.size() > b.size(); });
}

bool CharFolder::known(std::u32string_view text) const {
  return std::all_of(text.begin(), text.end(), [&](char32_t c) { return vocab_.contains(c); });
}

std::optional<std::u32string> CharFolder::replacement(char32_t c, bool after_opening) const {
  if (const FoldEntry* entry = find_entry(c)) {
    const auto& first = after_opening && !entry->after_opening.empty() ? entry->after_opening : entry->candidates;
    for (const std::u32string& candidate : first)
      if (known(candidate)) return candidate;
    return std::nullopt;
  }
  // Unicode's own equivalences, for characters that have a decomposition
  icu::UnicodeString decomposition;
  if (!nfkd().getDecomposition(static_cast<UChar32>(c), decomposition) &&
      u_charType(static_cast<UChar32>(c)) != U_NON_SPACING_MARK)
    return std::nullopt;
  const std::u32string compatible = normalize(nfkc(), std::u32string(1, c));
  if (compatible != std::u32string(1, c) && !compatible.empty() && known(compatible)) return compatible;
  std::u32string base;  // the decomposition without its combining marks: "é" -> "e"
  for (char32_t d : normalize(nfkd(), std::u32string(1, c)))
    if (u_charType(static_cast<UChar32>(d)) != U_NON_SPACING_MARK) base.push_back(d);
  if (base != std::u32string(1, c) && known(base)) return base;
  return std::nullopt;
}

FoldedText CharFolder::fold(std::u32string_view text) const {
  FoldedText result;
  result.text.reserve(text.size());
  const auto record = [&](std::u32string from, const std::u32string& to) {
    add_substitution(result.substitutions, {std::move(from), to, 1});
  };
  if (known(text)) {
    result.text = text;
    return result;
  }
  size_t i = 0;
  while (i < text.size()) {
    bool matched = false;
    for (const std::u32string& key : sequences_) {
      if (text.compare(i, key.size(), key) != 0) continue;
      const std::u32string& to = sequence_targets_.at(key);
      result.text += to;
      record(key, to);
      i += key.size();
      matched = true;
      break;
    }
    if (matched) continue;
    const char32_t c = text[i];
    const bool opening = i == 0 || is_opener(text[i - 1]);
    std::optional<std::u32string> to;
    if (!vocab_.contains(c)) to = replacement(c, opening);
    if (to) {
      result.text += *to;
      record(std::u32string(1, c), *to);
    } else {
      result.text.push_back(c);  // known, or with no equivalent: the caller reports it
    }
    ++i;
  }
  return result;
}

CharFolder::Table CharFolder::table() const {
  Table t;
  t.sequences = sequence_targets_;
  t.openers = kOpeners;
  for (char32_t c = 0; c <= 0x10FFFF; ++c) {
    if ((c >= 0xD800 && c <= 0xDFFF) || vocab_.contains(c)) continue;
    if (std::optional<std::u32string> to = replacement(c, false)) t.single[c] = *to;
    const FoldEntry* entry = find_entry(c);
    if (entry && !entry->after_opening.empty())
      if (std::optional<std::u32string> to = replacement(c, true)) t.after_opening[c] = *to;
  }
  return t;
}

FoldedText fold_for_vocab(std::u32string_view text, const Vocab& vocab, bool strict, std::string_view what) {
  FoldedText folded;
  // a text the model knows (most prompts) needs no fold table built
  if (strict || vocab.unknown_chars(text).empty()) folded.text = text;
  else folded = CharFolder(vocab).fold(text);
  vocab.encode(folded.text, what);  // throws, naming what is left unknown
  return folded;
}

std::string describe_substitutions(const std::vector<Substitution>& substitutions) {
  int64_t total = 0;
  std::string list;
  for (const Substitution& s : substitutions) {
    total += s.count;
    list += (list.empty() ? "" : "; ") + describe_text(s.from) + " -> " + describe_text(s.to);
    if (s.count > 1) list += " (x" + std::to_string(s.count) + ")";
  }
  return "replaced " + std::to_string(total) + " character(s) the model never saw: " + list;
}

std::string describe_substitutions_ascii(const std::vector<Substitution>& substitutions) {
  std::string out;
  for (const Substitution& s : substitutions)
    out += (out.empty() ? "" : ", ") + code_points(s.from) + " -> " + code_points(s.to) + " (x" +
           std::to_string(s.count) + ")";
  return out;
}

}  // namespace charrnn
