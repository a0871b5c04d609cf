// utf8: strict UTF-8 with byte offsets in every error, and characters
// described and named for messages.
#include <string>

#include <gtest/gtest.h>

#include "charrnn/error.h"
#include "charrnn/utf8.h"
#include "test_helpers.h"

namespace {

using charrnn::decode_utf8;
using charrnn::encode_utf8;
using charrnn_test::thrown_message;
using namespace charrnn_test::utf8_samples;

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

TEST(Utf8, NamesCharacters) {
  EXPECT_EQ(charrnn::unicode_name(U'\''), "APOSTROPHE");
  EXPECT_EQ(charrnn::unicode_name(U'\n'), "LINE FEED");
  EXPECT_EQ(charrnn::describe_char_named(0x2019), "'\u2019' (U+2019 RIGHT SINGLE QUOTATION MARK)");
  EXPECT_EQ(charrnn::describe_char_named(U'\n'), "U+000A LINE FEED");
}

}  // namespace
