// The streaming encoder and the memory-mapped id file: same ids and
// vocabulary as encoding in memory, correct offsets for errors found deep in
// a file, freshness tracking, compact id widths, and clean errors on damage.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "charrnn/batcher.h"
#include "charrnn/corpus.h"
#include "charrnn/encoded_corpus.h"
#include "charrnn/error.h"
#include "charrnn/utf8.h"
#include "test_helpers.h"

namespace {

using charrnn_test::TempDir;

std::string mixed_text(size_t repeats) {
  std::string text;
  for (size_t i = 0; i < repeats; ++i) text += "Größe " + std::to_string(i) + " € 😀 naïve\n";
  return text;
}

std::vector<int64_t> as_vector(const torch::Tensor& ids) {
  const torch::Tensor wide = ids.to(torch::kLong).contiguous();
  return std::vector<int64_t>(wide.data_ptr<int64_t>(), wide.data_ptr<int64_t>() + wide.numel());
}

TEST(EncodedCorpus, MatchesInMemoryEncodingAcrossChunkBoundaries) {
  TempDir dir;
  const std::string text = mixed_text(200);
  charrnn_test::write_file(dir.file("c.txt"), text);
  const std::u32string decoded = charrnn::decode_utf8(text);
  const charrnn::Vocab expected = charrnn::Vocab::from_text(decoded);
  // chunk sizes that cut multi-byte characters in every possible place
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{64}, size_t{1} << 20}) {
    const charrnn::Vocab vocab = charrnn::encode_corpus_file(dir.file("c.txt"), dir.file("c.ids"), chunk);
    EXPECT_EQ(vocab.chars(), expected.chars()) << chunk;
    EXPECT_EQ(vocab.counts(), expected.counts()) << chunk;
    const charrnn::MappedIds mapped = charrnn::map_ids_file(dir.file("c.ids"));
    EXPECT_EQ(mapped.ids.scalar_type(), torch::kByte);
    EXPECT_EQ(as_vector(mapped.ids), expected.encode(decoded, "test")) << chunk;
    EXPECT_EQ(mapped.vocab.chars(), expected.chars());
  }
}

TEST(EncodedCorpus, LargeVocabulariesUseWiderIds) {
  TempDir dir;
  std::u32string text;
  for (char32_t c = 0x4E00; c < 0x4E00 + 600; ++c) text.push_back(c);  // 600 CJK characters
  charrnn_test::write_file(dir.file("cjk.txt"), charrnn::encode_utf8(text));
  charrnn::encode_corpus_file(dir.file("cjk.txt"), dir.file("cjk.ids"));
  const charrnn::MappedIds mapped = charrnn::map_ids_file(dir.file("cjk.ids"));
  EXPECT_EQ(mapped.ids.scalar_type(), torch::kShort);
  EXPECT_EQ(mapped.vocab.size(), 600);
  EXPECT_EQ(mapped.ids[599].item<int64_t>(), 599);
}

TEST(EncodedCorpus, ErrorsGiveTheOffsetInTheWholeFile) {
  TempDir dir;
  const std::string good = mixed_text(50);
  charrnn_test::write_file(dir.file("bad.txt"), good + "\xFF tail");
  EXPECT_CONTAINS(charrnn_test::thrown_message<charrnn::Error>(
                      [&] { charrnn::encode_corpus_file(dir.file("bad.txt"), dir.file("bad.ids"), 16); }),
                  "byte offset " + std::to_string(good.size()));
  charrnn_test::write_file(dir.file("cut.txt"), good + "\xE2\x82");  // a truncated € at the very end
  EXPECT_CONTAINS(charrnn_test::thrown_message<charrnn::Error>(
                      [&] { charrnn::encode_corpus_file(dir.file("cut.txt"), dir.file("cut.ids"), 16); }),
                  "byte offset " + std::to_string(good.size()) + " (truncated sequence)");
  charrnn_test::write_file(dir.file("nul.txt"), good + std::string(1, '\0'));
  EXPECT_CONTAINS(charrnn_test::thrown_message<charrnn::Error>(
                      [&] { charrnn::encode_corpus_file(dir.file("nul.txt"), dir.file("nul.ids"), 16); }),
                  "NUL byte at byte offset " + std::to_string(good.size()));
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad.ids"))) << "a failed encoding leaves no file";
}

TEST(EncodedCorpus, ByteOrderMarkIsDropped) {
  TempDir dir;
  charrnn_test::write_file(dir.file("bom.txt"), "\xEF\xBB\xBFhi");
  const charrnn::Vocab vocab = charrnn::encode_corpus_file(dir.file("bom.txt"), dir.file("bom.ids"));
  EXPECT_EQ(vocab.size(), 2);
  EXPECT_EQ(charrnn::map_ids_file(dir.file("bom.ids")).ids.numel(), 2);
}

TEST(EncodedCorpus, FreshnessFollowsTheSourceFile) {
  TempDir dir;
  charrnn_test::write_file(dir.file("t.txt"), "some text");
  EXPECT_FALSE(charrnn::ids_file_is_fresh(dir.file("t.ids"), dir.file("t.txt")));
  charrnn::encode_corpus_file(dir.file("t.txt"), dir.file("t.ids"));
  EXPECT_TRUE(charrnn::ids_file_is_fresh(dir.file("t.ids"), dir.file("t.txt")));
  charrnn_test::write_file(dir.file("t.txt"), "some other text");
  EXPECT_FALSE(charrnn::ids_file_is_fresh(dir.file("t.ids"), dir.file("t.txt")));
}

TEST(EncodedCorpus, DamagedIdFilesAreCleanErrors) {
  TempDir dir;
  charrnn_test::write_file(dir.file("t.txt"), mixed_text(20));
  charrnn::encode_corpus_file(dir.file("t.txt"), dir.file("t.ids"));
  const std::string whole = charrnn_test::read_file_bytes(dir.file("t.ids"));
  charrnn_test::write_file(dir.file("short.ids"), whole.substr(0, whole.size() - 3));
  EXPECT_CONTAINS(charrnn_test::thrown_message<charrnn::Error>([&] { charrnn::map_ids_file(dir.file("short.ids")); }),
                  "truncated");
  charrnn_test::write_file(dir.file("text.ids"), "not an id file at all, just words");
  EXPECT_CONTAINS(charrnn_test::thrown_message<charrnn::Error>([&] { charrnn::map_ids_file(dir.file("text.ids")); }),
                  "not a charrnn id file");
  EXPECT_FALSE(charrnn::ids_file_is_fresh(dir.file("short.ids"), dir.file("t.txt")));
}

TEST(EncodedCorpus, CachedCorpusSplitsAndBatchesLikeTheInMemoryOne) {
  TempDir dir;
  charrnn_test::write_file(dir.file("c.txt"), mixed_text(100));
  charrnn::DataOptions data;
  data.path = {dir.file("c.txt")};
  data.val_fraction = 0.2;
  const charrnn::Corpus plain = charrnn::load_corpus(data, 16);
  const charrnn::Corpus cached = charrnn::load_corpus(data, 16, std::nullopt, dir.file("cache/c.ids"));
  EXPECT_TRUE(std::filesystem::exists(dir.file("cache/c.ids")));
  EXPECT_EQ(cached.vocab.chars(), plain.vocab.chars());
  EXPECT_EQ(as_vector(cached.train), as_vector(plain.train));
  EXPECT_EQ(as_vector(cached.val), as_vector(plain.val));
  charrnn::Batcher a(plain.train, 4, 16, 9), b(cached.train, 4, 16, 9);
  for (int i = 0; i < 3; ++i) {
    const charrnn::Batch x = a.next(), y = b.next();
    EXPECT_EQ(y.inputs.scalar_type(), torch::kLong);
    EXPECT_TRUE(torch::equal(x.inputs, y.inputs));
    EXPECT_TRUE(torch::equal(x.targets, y.targets));
  }
  // a resumed run with another vocabulary falls back to encoding in memory, with its checks
  const charrnn::Vocab other = charrnn::Vocab::from_text(U"abc");
  EXPECT_CONTAINS(charrnn_test::thrown_message<charrnn::UsageError>(
                      [&] { charrnn::load_corpus(data, 16, other, dir.file("cache/c.ids")); }),
                  "never saw in training");
}

}  // namespace
