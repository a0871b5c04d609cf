// The surprisal page of `charrnn eval --html`: one self-contained HTML file
// (the viewer in src/web/surprisal.html, embedded at build time) that shows
// a text coloured by what each character cost the model, its top
// predictions on hover or focus, and a summary. Written as the text is
// scored, so the writer's memory does not grow with the text: the viewer,
// then one compact block per page of text (character ids into a vocabulary
// written once, surprisals quantised to 1/256 bit, the top predictions
// likewise, the means of the lines that end there), then the summary, whose
// parts are each kept in bounded memory (SurprisingSpans, LineMeans).
// The block layout is decided here and read by the viewer's JavaScript.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include "charrnn/evaluate.h"
#include "charrnn/file_io.h"
#include "charrnn/vocab.h"

namespace charrnn {

/// Surprisal as the page stores it: in 1/256 bit, an unsigned 16-bit value.
constexpr double kSurprisalSteps = 256.0;
/// The stored value of a character nothing scored (unknown, or the first).
constexpr uint16_t kUnscored = 65535;

/// -log2(exp(logprob)) in 1/256 bit, rounded to the nearest step and capped
/// at kUnscored - 1 (about 256 bits).
uint16_t quantise_surprisal(double logprob);
/// Bits of a quantised surprisal (not kUnscored).
double surprisal_bits(uint16_t quantised);

/// One of the most surprising spans of a text.
struct SurprisingSpan {
  int64_t start = 0;      ///< offset in the text (code points) of its first character
  int64_t end = 0;        ///< offset just after its last character
  double mean_bits = 0;   ///< mean quantised surprisal of its predicted characters, bits
  std::u32string text;    ///< its predicted characters, in order (characters nothing scores left out)
};

/// The `count` most surprising spans of `length` consecutive predicted
/// characters (characters nothing scores are skipped over), in bounded
/// memory. So that spans do not overlap, only a local maximum counts: a
/// span whose quantised sum is larger than that of every overlapping span
/// before it, and at least that of every overlapping span after it. Of
/// those, the `count` with the largest sums, most surprising first (ties:
/// the earlier first). A text with fewer than `length` predicted characters
/// has one span, all of them.
class SurprisingSpans {
 public:
  SurprisingSpans(int64_t length, int64_t count);
  /// The next predicted character: its offset in the text, itself and its quantised surprisal.
  void add(int64_t offset, char32_t c, uint16_t quantised);
  std::vector<SurprisingSpan> finish();

 private:
  struct Window {
    int64_t index = 0;  // of its first predicted character
    int64_t sum = 0;
    int64_t start = 0, end = 0;
    std::u32string text;
  };
  struct Better {  // a comes before b in the ranking
    bool operator()(const Window& a, const Window& b) const {
      return a.sum > b.sum || (a.sum == b.sum && a.index < b.index);
    }
  };
  void decide_up_to(int64_t last);
  struct Item {
    int64_t offset;
    char32_t c;
    uint16_t quantised;
  };
  int64_t length_, count_;
  std::deque<Item> recent_;     // the last `length_` predicted characters
  int64_t recent_sum_ = 0, added_ = 0;
  std::deque<Window> windows_;  // those still needed to decide the undecided ones
  int64_t next_undecided_ = 0;
  std::priority_queue<Window, std::vector<Window>, Better> best_;  // top: the worst kept
};

/// The mean surprisal of each line (a line ends with its line feed,
/// which belongs to it), over its scored characters, from the quantised
/// values, in 1/256 bit rounded to the nearest; kUnscored for a line
/// without any.
class LineMeans {
 public:
  /// The next character of the text, kUnscored when nothing scored it;
  /// returns the line's mean when `c` is a line feed.
  std::optional<uint16_t> add(char32_t c, uint16_t quantised);
  /// The last line's mean when the text does not end with a line feed.
  std::optional<uint16_t> finish();

 private:
  int64_t sum_ = 0, scored_ = 0;
  bool open_ = false;
};

/// How the page lays out its text and summary.
struct SurprisalPageOptions {
  int64_t page_chars = 10000;  ///< characters of the text the viewer shows at a time (>= 1). Default: 10000
  int64_t span_chars = 20;     ///< predicted characters per surprising span (>= 1). Default: 20
  int64_t spans = 10;          ///< surprising spans the summary lists (>= 0). Default: 10
  int64_t top_k = 5;           ///< predictions shown per character: the scores' first ones (>= 0). Default: 5
  std::string title;           ///< the page's heading, e.g. the checkpoint and the text. Default: ""
};

/// Writes the surprisal page to `path` as the characters come: add() each
/// character of the text in order (as TextScorer reports them), then
/// finish(). Nothing is visible at `path` until finish() (AtomicFileWriter).
class SurprisalPageWriter {
 public:
  /// Throws UsageError for options out of range or a vocabulary of more than 65,534 characters.
  SurprisalPageWriter(const std::string& path, const Vocab& vocab, const SurprisalPageOptions& options);
  void add(const TextChar& c);
  /// Writes the rest and the summary (its bpc and counts from `result`) and moves the file into place.
  void finish(const EvalResult& result);

 private:
  void flush_page();
  void write(const std::string& text);
  const Vocab& vocab_;
  SurprisalPageOptions options_;
  AtomicFileWriter writer_;
  std::string tail_;             // the viewer after its data
  int id_bytes_ = 1;             // 1 for a vocabulary of up to 254 characters, else 2
  std::string records_;          // this page's characters, binary
  std::vector<char32_t> unknown_;  // this page's characters the vocabulary lacks
  std::string line_means_;       // the means of the lines that end in this page, binary
  int64_t page_start_ = 0, page_first_line_ = 0, in_page_ = 0, lines_ = 0, pages_ = 0, chars_ = 0;
  SurprisingSpans spans_;
  LineMeans line_;
};

}  // namespace charrnn
