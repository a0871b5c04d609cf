// utf8 and vocab: strict UTF-8 with byte offsets in every error, and a
// vocabulary whose ids are the sorted code points of the corpus.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "charrnn/corpus.h"
#include "charrnn/error.h"
#include "charrnn/utf8.h"
#include "charrnn/vocab.h"
#include "test_helpers.h"

namespace {

using charrnn::decode_utf8;
using charrnn::encode_utf8;
using charrnn::Vocab;
using charrnn_test::thrown_message;

// 1-, 2-, 3- and 4-byte characters, written as explicit bytes.
const std::string kE_acute = "\xC3\xA9";       // U+00E9 é
const std::string kEuro = "\xE2\x82\xAC";      // U+20AC €
const std::string kGrin = "\xF0\x9F\x98\x80";  // U+1F600 😀

TEST(Utf8, DecodesOneToFourByteCharacters) {
  const std::string text = "a" + kE_acute + kEuro + kGrin + "z";
  const std::u32string decoded = decode_utf8(text);
  EXPECT_EQ(decoded, (std::u32string{U'a', 0xE9, 0x20AC, 0x1F600, U'z'}));
}

TEST(Utf8, RoundTripsEveryEncodingLength) {
  // the boundaries of each encoding length, plus ordinary characters
  const std::u32string points = {0x0,    0x7F,   0x80,    0x7FF,   0x800,    0xD7FF,
                                 0xE000, 0xFFFD, 0xFFFF,  0x10000, 0x1F600,  0x10FFFF,
                                 0xE9,   0x20AC, U'\n',   U'x'};
  const std::string bytes = encode_utf8(points);
  EXPECT_EQ(decode_utf8(bytes), points);
  // and bytes -> code points -> bytes
  const std::string text = "caf" + kE_acute + " costs 3" + kEuro + " " + kGrin;
  EXPECT_EQ(encode_utf8(decode_utf8(text)), text);
}

TEST(Utf8, EncodesToTheExpectedBytes) {
  EXPECT_EQ(encode_utf8(std::u32string{0xE9}), kE_acute);
  EXPECT_EQ(encode_utf8(std::u32string{0x20AC}), kEuro);
  EXPECT_EQ(encode_utf8(std::u32string{0x1F600}), kGrin);
  std::string out = "x";
  charrnn::append_utf8(out, 0x20AC);
  EXPECT_EQ(out, "x" + kEuro);
}

TEST(Utf8, EmptyInputDecodesToEmpty) { EXPECT_TRUE(decode_utf8("").empty()); }

struct InvalidCase {
  const char* name;
  std::string bytes;
  size_t offset;
};

TEST(Utf8, InvalidInputThrowsWithByteOffset) {
  const InvalidCase cases[] = {
      {"stray continuation byte", std::string("ab\x80" "c"), 2},
      {"stray continuation after 2-byte char", "x" + kE_acute + "\xBF", 3},
      {"truncated 3-byte sequence at the end", std::string("abc\xE2\x82"), 3},
      {"truncated 4-byte sequence at the end", kEuro + std::string("\xF0\x9F\x98"), 3},
      {"lead byte followed by ASCII", std::string("\xE2(a"), 0},
      {"overlong slash", std::string("x\xC0\xAF"), 1},
      {"overlong 3-byte NUL", std::string("\xE0\x80\x80"), 0},
      {"UTF-16 surrogate", kE_acute + std::string("\xED\xA0\x80"), 2},
      {"code point above U+10FFFF", kGrin + std::string("\xF4\x90\x80\x80"), 4},
      {"invalid lead byte 0xFF", std::string("ok\xFF"), 2},
      {"5-byte lead", std::string("\xF8\x88\x80\x80\x80"), 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string message =
        thrown_message<charrnn::Error>([&] { decode_utf8(c.bytes, "corpus.txt"); });
    EXPECT_CONTAINS(message, "byte offset " + std::to_string(c.offset) + " ");
    EXPECT_CONTAINS(message, "corpus.txt");
  }
}

TEST(Utf8, InvalidInputIsNotAUsageError) {
  // bad bytes in a file are a runtime failure (exit 1), not a bad flag
  try {
    decode_utf8("\x80");
    FAIL() << "did not throw";
  } catch (const charrnn::UsageError&) {
    FAIL() << "threw UsageError";
  } catch (const charrnn::Error&) {
  }
}

TEST(Utf8, DescribeCharQuotesVisibleAndNamesInvisible) {
  EXPECT_EQ(charrnn::describe_char(U'x'), "'x'");
  EXPECT_EQ(charrnn::describe_char(0xE9), "'" + kE_acute + "'");
  EXPECT_EQ(charrnn::describe_char(0x1F600), "'" + kGrin + "'");
  EXPECT_EQ(charrnn::describe_char(U'\n'), "U+000A");
  EXPECT_EQ(charrnn::describe_char(U'\t'), "U+0009");
  EXPECT_EQ(charrnn::describe_char(U' '), "U+0020");
  EXPECT_EQ(charrnn::describe_char(0x7F), "U+007F");
  EXPECT_EQ(charrnn::describe_char(0x85), "U+0085");
  EXPECT_EQ(charrnn::describe_char(0x200B), "U+200B");
  EXPECT_EQ(charrnn::describe_char(0xFEFF), "U+FEFF");
}

TEST(Vocab, FromTextSortsByCodePointAndCounts) {
  const std::u32string text = decode_utf8("banana " + kEuro + kE_acute + kEuro);
  const Vocab vocab = Vocab::from_text(text);
  ASSERT_EQ(vocab.size(), 6);
  EXPECT_EQ(vocab.chars(), (std::vector<char32_t>{U' ', U'a', U'b', U'n', 0xE9, 0x20AC}));
  EXPECT_EQ(vocab.counts(), (std::vector<int64_t>{1, 3, 1, 2, 1, 2}));
  for (int64_t id = 0; id < vocab.size(); ++id) {
    EXPECT_EQ(vocab.id_or_negative(vocab.char_at(id)), id);
    EXPECT_TRUE(vocab.contains(vocab.char_at(id)));
  }
  EXPECT_EQ(vocab.id_or_negative(U'z'), -1);
  EXPECT_EQ(vocab.id_or_negative(0x1F600), -1);  // beyond the largest code point
  EXPECT_FALSE(vocab.contains(U'z'));
}

TEST(Vocab, SameTextSameIdsWhateverTheOrder) {
  const Vocab a = Vocab::from_text(U"abcabc");
  const Vocab b = Vocab::from_text(U"cbacba");
  EXPECT_EQ(a.chars(), b.chars());
  EXPECT_EQ(a.counts(), b.counts());
}

TEST(Vocab, EncodeDecodeRoundTrip) {
  const std::string text = "na" + kGrin + "ve caf" + kE_acute + "\n";
  const std::u32string decoded = decode_utf8(text);
  const Vocab vocab = Vocab::from_text(decoded);
  const std::vector<int64_t> ids = vocab.encode(decoded, "test");
  ASSERT_EQ(ids.size(), decoded.size());
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(vocab.char_at(ids[i]), decoded[i]);
  EXPECT_EQ(vocab.decode(ids), text);
}

TEST(Vocab, EncodeUnknownCharactersThrowsUsageErrorNamingThem) {
  const Vocab vocab = Vocab::from_text(U"abc");
  const std::u32string text = decode_utf8("abxz\nx" + kEuro);
  const std::string message = thrown_message<charrnn::UsageError>([&] { vocab.encode(text, "--prime"); });
  EXPECT_CONTAINS(message, "--prime");
  EXPECT_CONTAINS(message, "4 character(s)");  // x, z, newline, euro: distinct ones
  EXPECT_CONTAINS(message, "'x'");
  EXPECT_CONTAINS(message, "'z'");
  EXPECT_CONTAINS(message, "U+000A");
  EXPECT_CONTAINS(message, "'" + kEuro + "'");
  EXPECT_EQ(vocab.unknown_chars(text), (std::u32string{U'x', U'z', U'\n', 0x20AC}));
}

TEST(Vocab, EncodeNamesAtMostTenUnknownCharacters) {
  const Vocab vocab = Vocab::from_text(U"a");
  const std::string message =
      thrown_message<charrnn::UsageError>([&] { vocab.encode(U"bcdefghijklm", "text"); });
  EXPECT_CONTAINS(message, "12 character(s)");
  EXPECT_CONTAINS(message, "'k'");  // the tenth
  EXPECT_EQ(message.find("'l'"), std::string::npos) << message;
  EXPECT_CONTAINS(message, "and 2 more");
}

TEST(Vocab, EncodeSkippingUnknownDropsAndCounts) {
  const Vocab vocab = Vocab::from_text(U"abc");
  const auto encoded = vocab.encode_skipping_unknown(decode_utf8("axb" + kGrin + "yc"));
  EXPECT_EQ(encoded.ids, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(encoded.unknown, 3);
  const auto clean = vocab.encode_skipping_unknown(U"cab");
  EXPECT_EQ(clean.ids, (std::vector<int64_t>{2, 0, 1}));
  EXPECT_EQ(clean.unknown, 0);
}

TEST(Vocab, JsonRoundTrip) {
  const Vocab vocab = Vocab::from_text(decode_utf8("hello " + kE_acute + kEuro + kGrin + kGrin));
  const nlohmann::json j = vocab.to_json();
  const Vocab back = Vocab::from_json(nlohmann::json::parse(j.dump()));
  EXPECT_EQ(back.chars(), vocab.chars());
  EXPECT_EQ(back.counts(), vocab.counts());
  EXPECT_EQ(back.id_or_negative(0x1F600), vocab.size() - 1);
}

TEST(Vocab, MalformedJsonOrCharsThrowError) {
  EXPECT_THROW(Vocab::from_json(nlohmann::json::object()), charrnn::Error);
  EXPECT_THROW(Vocab::from_json({{"code_points", "abc"}, {"counts", {1}}}), charrnn::Error);
  EXPECT_THROW(Vocab::from_json({{"code_points", {98, 97}}, {"counts", {1, 1}}}), charrnn::Error);  // unsorted
  EXPECT_THROW(Vocab::from_json({{"code_points", {97, 98}}, {"counts", {1}}}), charrnn::Error);     // counts
  EXPECT_THROW(Vocab::from_json({{"code_points", {0xD800}}, {"counts", {1}}}), charrnn::Error);     // surrogate
  EXPECT_THROW(Vocab::from_json({{"code_points", {0x110000}}, {"counts", {1}}}), charrnn::Error);   // too big
  EXPECT_THROW(Vocab({U'a', U'a'}), charrnn::Error);  // not distinct
}

TEST(Corpus, ReadTextFileDropsBomAndRejectsNul) {
  charrnn_test::TempDir dir;
  const std::string bom = dir.file("bom.txt");
  charrnn_test::write_file(bom, "\xEF\xBB\xBF" "ab" + kEuro);
  EXPECT_EQ(charrnn::read_text_file(bom), (std::u32string{U'a', U'b', 0x20AC}));

  const std::string binary = dir.file("binary.bin");
  charrnn_test::write_file(binary, std::string("abc\0def", 7));
  const std::string message = thrown_message<charrnn::Error>([&] { charrnn::read_text_file(binary); });
  EXPECT_CONTAINS(message, "byte offset 3");
  EXPECT_CONTAINS(message, binary);

  const std::string bad = dir.file("latin1.txt");
  charrnn_test::write_file(bad, "caf\xE9!");
  const std::string bad_message = thrown_message<charrnn::Error>([&] { charrnn::read_text_file(bad); });
  EXPECT_CONTAINS(bad_message, "byte offset 3");
  EXPECT_CONTAINS(bad_message, bad);
}

}  // namespace
