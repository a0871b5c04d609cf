// char_fold: prompt characters the model never saw, replaced by the
// equivalents it knows, from one table, the same way every time.
#include <string>

#include <gtest/gtest.h>

#include "charrnn/char_fold.h"
#include "charrnn/error.h"
#include "charrnn/utf8.h"
#include "charrnn/vocab.h"
#include "test_helpers.h"

namespace {

using charrnn::CharFolder;
using charrnn::decode_utf8;
using charrnn::encode_utf8;
using charrnn::Vocab;
using charrnn_test::thrown_message;

Vocab vocab_of(const std::string& utf8) { return Vocab::from_text(decode_utf8(utf8)); }

std::string fold(const Vocab& vocab, const std::string& text) {
  return encode_utf8(CharFolder(vocab).fold(decode_utf8(text)).text);
}

// Moby-Dick's quotes: curly ones only.
const std::string kCurly = "abcdefghijklmnopqrstuvwxyzIT .,\n\u2018\u2019\u201C\u201D";

TEST(CharFold, AsciiQuotesBecomeTheCurlyOnesAModelKnows) {
  const Vocab vocab = vocab_of(kCurly);
  EXPECT_EQ(fold(vocab, "I don't know"), "I don\u2019t know");
  // opening after a space or at the start, closing elsewhere
  EXPECT_EQ(fold(vocab, "he said \"hi\""), "he said \u201Chi\u201D");
  EXPECT_EQ(fold(vocab, "'tis the 'sea'"), "\u2018tis the \u2018sea\u2019");
  EXPECT_EQ(fold(vocab, "\"a\"\n\"b\""), "\u201Ca\u201D\n\u201Cb\u201D");
}

TEST(CharFold, CurlyQuotesBecomeAscii) {
  const Vocab vocab = vocab_of("abcdefghijklmnopqrstuvwxyzI '\"");
  EXPECT_EQ(fold(vocab, "I don\u2019t"), "I don't");
  EXPECT_EQ(fold(vocab, "\u201Chi\u201D \u00ABho\u00BB \u201Elo\u201C"), "\"hi\" \"ho\" \"lo\"");
  EXPECT_EQ(fold(vocab, "\u2018a\u2019 `b\u00B4"), "'a' 'b'");
}

TEST(CharFold, DashesEllipsisAndSpaces) {
  const Vocab dash_only = vocab_of("ab -.\n");
  EXPECT_EQ(fold(dash_only, "a\u2013b\u2014a\u2212b\u2010a"), "a-b--a-b-a");
  EXPECT_EQ(fold(dash_only, "a\u2026"), "a...");
  EXPECT_EQ(fold(dash_only, "a\u00A0b\u2009a\u3000b\u202Fa\tb"), "a b a b a b");
  EXPECT_EQ(fold(dash_only, "a\r\nb\rb\u2028a"), "a\nb\nb\na");
  EXPECT_EQ(fold(dash_only, "a\u200Bb\uFEFFa\u00ADb"), "abab");
  const Vocab em_dash = vocab_of("ab\u2014");
  EXPECT_EQ(fold(em_dash, "a-b\u2013a"), "a\u2014b\u2014a");
  const Vocab en_dash = vocab_of("ab\u2013");
  EXPECT_EQ(fold(en_dash, "a\u2014b"), "a\u2013b");
}

TEST(CharFold, UnicodeNormalForms) {
  const Vocab vocab = vocab_of("abcdefilnorstuv \u00E9");
  // a combining sequence becomes the precomposed character the model knows
  EXPECT_EQ(fold(vocab, "cafe\u0301"), "caf\u00E9");
  // compatibility characters their NFKC form
  EXPECT_EQ(fold(vocab, "\uFB01ne \uFF41"), "fine a");
  // an accented letter the model lacks its base letter; a stray mark nothing
  EXPECT_EQ(fold(vocab, "na\u00EFve \u00E8tre o\u0308"), "naive etre o");
}

TEST(CharFold, KnownTextIsUntouchedAndUnknownCharactersStay) {
  const Vocab vocab = vocab_of(kCurly);
  const charrnn::FoldedText same = CharFolder(vocab).fold(decode_utf8("it is \u2018so\u2019"));
  EXPECT_EQ(encode_utf8(same.text), "it is \u2018so\u2019");
  EXPECT_TRUE(same.substitutions.empty());
  // no equivalent: left for the caller to report
  EXPECT_EQ(fold(vocab, "Z's \u20AC"), "Z\u2019s \u20AC");
}

TEST(CharFold, CountsEachKindOfSubstitution) {
  const charrnn::FoldedText folded = CharFolder(vocab_of(kCurly)).fold(decode_utf8("it's 'so', isn't it"));
  ASSERT_EQ(folded.substitutions.size(), 2u);
  EXPECT_EQ(folded.substitutions[0].from, U"'");
  EXPECT_EQ(folded.substitutions[0].to, U"\u2019");
  EXPECT_EQ(folded.substitutions[0].count, 3);
  EXPECT_EQ(folded.substitutions[1].to, U"\u2018");
  EXPECT_EQ(folded.substitutions[1].count, 1);
  const std::string note = charrnn::describe_substitutions(folded.substitutions);
  EXPECT_NE(note.find("replaced 4 character(s)"), std::string::npos) << note;
  EXPECT_NE(note.find("U+0027 APOSTROPHE"), std::string::npos) << note;
  EXPECT_NE(note.find("U+2019 RIGHT SINGLE QUOTATION MARK"), std::string::npos) << note;
  EXPECT_NE(note.find("(x3)"), std::string::npos) << note;
  EXPECT_EQ(charrnn::describe_substitutions_ascii(folded.substitutions),
            "U+0027 -> U+2019 (x3), U+0027 -> U+2018 (x1)");
}

TEST(CharFold, StrictRefusesAndErrorsNameCodePoints) {
  const Vocab vocab = vocab_of(kCurly);
  EXPECT_EQ(encode_utf8(charrnn::fold_for_vocab(U"don't", vocab, false, "--prime").text), "don\u2019t");
  const std::string strict = thrown_message<charrnn::UsageError>([&] { charrnn::fold_for_vocab(U"don't", vocab, true, "--prime"); });
  EXPECT_NE(strict.find("--prime contains 1 character(s) the model never saw in training: ''' (U+0027 APOSTROPHE)"),
            std::string::npos)
      << strict;
  const std::string none = thrown_message<charrnn::UsageError>([&] { charrnn::fold_for_vocab(U"Zoo\u20AC", vocab, false, "prompt"); });
  EXPECT_NE(none.find("'Z' (U+005A LATIN CAPITAL LETTER Z), '\u20AC' (U+20AC EURO SIGN)"), std::string::npos) << none;
  EXPECT_THROW(charrnn::fold_for_vocab(U"\u20AC", vocab, false, "prompt"), charrnn::UsageError);
}

TEST(CharFold, TableAgreesWithFold) {
  // what an exporter gets is the rule fold() applies
  const Vocab vocab = vocab_of(kCurly + "\u00E9");
  const CharFolder folder(vocab);
  const CharFolder::Table table = folder.table();
  EXPECT_EQ(table.single.at(U'\''), U"\u2019");
  EXPECT_EQ(table.after_opening.at(U'\''), U"\u2018");
  EXPECT_EQ(table.after_opening.at(U'"'), U"\u201C");
  EXPECT_EQ(table.sequences.at(U"e\u0301"), U"\u00E9");
  EXPECT_EQ(table.sequences.at(U"\r\n"), U"\n");
  EXPECT_EQ(table.single.count(U'a'), 0u) << "known characters are not in the table";
  EXPECT_EQ(table.single.count(0x20AC), 0u) << "characters with no equivalent are not in it";
  for (const auto& [from, to] : table.single)
    EXPECT_EQ(folder.fold(std::u32string(1, U'x') + from).text, U"x" + to) << static_cast<uint32_t>(from);
}

}  // namespace
