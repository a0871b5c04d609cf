// vocab: a vocabulary whose ids are the sorted code points of the corpus,
// encoding that names what it lacks, and its JSON form.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "charrnn/error.h"
#include "charrnn/utf8.h"
#include "charrnn/vocab.h"
#include "test_helpers.h"

namespace {

using charrnn::decode_utf8;
using charrnn::Vocab;
using charrnn_test::thrown_message;
using namespace charrnn_test::utf8_samples;

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

}  // namespace
