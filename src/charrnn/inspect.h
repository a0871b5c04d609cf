// What a model's units respond to, in the manner of Karpathy, Johnson and
// Fei-Fei's "Visualizing and Understanding Recurrent Networks": the model
// reads a text from a zero state, one stream with the state carried, and
// every layer's h (and the LSTM's c) is kept after every character; simple
// features of the text (inside quotes, bracket depth, position in the line,
// ...) are computed beside it, and every unit is correlated with every
// feature. inspect_page() puts it all in one self-contained HTML page (the
// template is src/web/inspect.html, embedded at build time).
//
// It deliberately stays with features charrnn can compute from the text
// alone: no part-of-speech tags, no external annotations.
//
// Shape legend: L layers, T characters read, H hidden, S state kinds (1: h;
// 2: h and c for LSTM), K features.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <torch/torch.h>

#include "charrnn/config.h"
#include "charrnn/model.h"
#include "charrnn/vocab.h"

namespace charrnn {

struct InspectOptions {
  /// Characters read from the start of the text, counting only those the
  /// vocabulary has; 0 reads all of it. Per unit and character read, the
  /// page holds 4/3 byte (8 bits in base64) and inspecting takes some 30
  /// bytes of memory. Default: 10000
  int64_t max_chars = 10000;
  /// Units in the ranked list, each with the feature it correlates with
  /// most strongly; >= 1. Default: 20
  int64_t top_units = 20;
};

/// One feature of a text: a value per character, as things stand once that
/// character has been read.
struct TextFeature {
  std::string name;           ///< e.g. in_quotes
  std::string description;    ///< one line for the page
  std::vector<float> values;  ///< one per character of the text
};

/// The features units are correlated with, in this order:
///  - in_quotes: 1 from an opening double quote (" or U+201C) up to, not
///    including, the closing one (" or U+201D); a plain " opens or closes.
///  - bracket_depth: nesting of ( [ {, counting an opening bracket itself
///    and not a closing one; a closing bracket with none open is ignored.
///  - in_brackets: bracket_depth > 0.
///  - line_position: characters since the last newline (the newline itself
///    0, the first character of a line 1); the text starts as after one.
///  - word_start: a letter or digit (non-ASCII from U+00C0 on counts as a
///    letter, except general punctuation U+2000..U+206F) after a character
///    that is not one, or first in the text.
///  - upper_case: A-Z and the Latin-1 capitals U+00C0..U+00DE but U+00D7.
///  - digit: 0-9.
///  - after_newline: the first character of a line (the text's first too).
std::vector<TextFeature> text_features(std::u32string_view text);

/// Pearson's correlation of every column of `a` (T, U) with every column of
/// `b` (T, K), computed in double: (U, K), NaN where either column is
/// constant (zero variance) or T < 2.
torch::Tensor pearson_columns(const torch::Tensor& a, const torch::Tensor& b);

/// Which of a layer's states a unit is part of.
enum class StateKind { Hidden, Cell };  // h; c (LSTM only)
/// "h" or "c".
std::string to_string(StateKind kind);

struct UnitCorrelation {
  int64_t layer = 0;
  StateKind state = StateKind::Hidden;
  int64_t unit = 0;
  size_t feature = 0;  ///< index into Inspection::features
  double r = 0;        ///< Pearson's correlation over the characters read
};

struct Inspection {
  std::u32string text;        ///< the characters read, in order (those the vocabulary lacks are skipped)
  int64_t unknown_chars = 0;  ///< characters skipped before the last one read
  StateTrace states;          ///< h (L, T, H), and c for LSTM
  std::vector<TextFeature> features;
  /// (S, L, H, K) double: every unit with every feature; NaN where either is
  /// constant over the text.
  torch::Tensor correlations;
  /// The top_units units whose strongest correlation is largest in
  /// magnitude, each once, with that feature; ties keep the order h before
  /// c, lower layer, lower unit, earlier feature.
  std::vector<UnitCorrelation> ranking;
};

/// Reads `text` with `model` (on the CPU) and correlates its units with
/// text_features(). Throws UsageError for options out of range or when
/// fewer than 2 characters of the text are in `vocab`.
Inspection inspect(CharRNN& model, const Vocab& vocab, std::u32string_view text, const InspectOptions& options);

/// The page for an inspection: src/web/inspect.html with the data in a
/// JSON block. Each unit's activations are quantised to 8 bits between its
/// minimum and maximum over the text (an error below 0.2% of its range) and
/// base64-encoded; `title` heads the page (e.g. the checkpoint's name).
std::string inspect_page(const Inspection& inspection, const ModelOptions& model, const std::string& title);

}  // namespace charrnn
