// Prompts people type, in the characters a model knows. A model trained on
// Moby-Dick has seen only curly quotes, so "I don't know" holds a character
// it never saw; a model trained on plain ASCII has never seen "…". Before a
// prompt is read, each character the vocabulary lacks is replaced by a
// standard equivalent it has, from one fixed table:
//
//   - typographic and ASCII quotes both ways: ' <-> ‘ ’ (and ‚ ‛ ′ ` ´ ‹ ›),
//     " <-> “ ” (and „ ‟ ″ « »). An ASCII quote becomes the opening form at
//     the start of the text or after a space, an opening bracket, dash or
//     quote, and the closing form (the apostrophe's) elsewhere;
//   - dashes: - ‐ ‑ ‒ – — ― − among each other, — also as "--";
//   - "…" as "...", and the no-break, narrow, ideographic and other spaces
//     (and a tab) as " ", line and paragraph separators as a newline, "\r\n"
//     and a lone "\r" as "\n";
//   - zero-width spaces and joiners, the byte-order mark and the soft hyphen
//     are dropped;
//   - otherwise Unicode: a combining sequence becomes its precomposed (NFC)
//     character ("e" + U+0301 -> "é"), a compatibility character its NFKC
//     form ("ﬁ" -> "fi", fullwidth "Ａ" -> "A"), and as a last resort an
//     accented letter its base letter ("é" -> "e"), a stray combining mark
//     nothing.
//
// A replacement is taken only when all of it is in the vocabulary, trying
// the candidates in the order above. A character with none stays, and the
// caller reports it (Vocab::encode names it with its code point). The
// mapping depends only on the text and the vocabulary, so the same prompt
// gives the same text through the CLI, chat, the server and a TorchScript
// export, which carries this table (table()) and applies the same rule.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "charrnn/vocab.h"

namespace charrnn {

/// One kind of replacement made in a text: `from` became `to`, `count` times.
struct Substitution {
  std::u32string from;
  std::u32string to;
  int64_t count = 0;
};

/// Adds `s` to `list`: to the entry with the same `from` and `to` when
/// there is one (their counts summed), else as a new entry at the end.
void add_substitution(std::vector<Substitution>& list, const Substitution& s);

struct FoldedText {
  std::u32string text;
  std::vector<Substitution> substitutions;  ///< in order of first appearance; empty: the text was unchanged
};

class CharFolder {
 public:
  explicit CharFolder(const Vocab& vocab);

  /// `text` with every character the vocabulary lacks replaced by its
  /// equivalent, where it has one (those without stay as they are).
  FoldedText fold(std::u32string_view text) const;

  /// The whole mapping for this vocabulary, for an exporter that applies it
  /// elsewhere: at each position the longest `sequences` key (two or more
  /// characters) that matches is replaced; otherwise a character the
  /// vocabulary lacks is looked up in `after_opening` when the character
  /// before it (in the input) is absent or one of `openers`, then in `single`.
  struct Table {
    std::map<std::u32string, std::u32string> sequences;
    std::map<char32_t, std::u32string> single;
    std::map<char32_t, std::u32string> after_opening;
    std::u32string openers;
  };
  /// Enumerates every code point, so it takes a few tens of milliseconds.
  Table table() const;

 private:
  /// The replacement for `c` (which the vocabulary lacks), if it has one.
  std::optional<std::u32string> replacement(char32_t c, bool after_opening) const;
  bool known(std::u32string_view text) const;

  const Vocab& vocab_;
  std::vector<std::u32string> sequences_;  // multi-character keys, longest first
  std::map<std::u32string, std::u32string> sequence_targets_;
};

/// `text` folded for `vocab`, or unchanged with `strict`; throws UsageError
/// naming the characters (with code points and names) that remain unknown,
/// `what` naming the text ("--prime", "prompt").
FoldedText fold_for_vocab(std::u32string_view text, const Vocab& vocab, bool strict, std::string_view what);

/// "replaced 2 character(s) the model never saw: ''' U+0027 APOSTROPHE -> '’'
/// U+2019 RIGHT SINGLE QUOTATION MARK (x2)" for a note on stderr.
std::string describe_substitutions(const std::vector<Substitution>& substitutions);

/// The same, one line per kind, in ASCII (an HTTP header's value):
/// "U+0027 -> U+2019 (x2)"; several joined by ", ".
std::string describe_substitutions_ascii(const std::vector<Substitution>& substitutions);

}  // namespace charrnn
