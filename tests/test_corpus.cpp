// corpus: reading a text file, folders and lists of files as one corpus of documents, the
// separator between them, validation by whole documents, the id cache's
// freshness over many files, and a vocabulary extended for fine-tuning.
#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/corpus.h"
#include "charrnn/encoded_corpus.h"
#include "charrnn/error.h"
#include "charrnn/utf8.h"
#include "test_helpers.h"

namespace {

namespace fs = std::filesystem;
using charrnn::DataOptions;
using charrnn_test::TempDir;
using charrnn_test::thrown_message;
using charrnn_test::write_file;

void make_tree(const TempDir& dir, const std::vector<std::pair<std::string, std::string>>& files) {
  for (const auto& [name, text] : files) {
    fs::create_directories(fs::path(dir.file(name)).parent_path());
    write_file(dir.file(name), text);
  }
}

std::string decoded(const charrnn::Vocab& vocab, const torch::Tensor& ids) {
  const torch::Tensor wide = ids.to(torch::kLong).contiguous();
  return vocab.decode(std::vector<int64_t>(wide.data_ptr<int64_t>(), wide.data_ptr<int64_t>() + wide.numel()));
}

std::vector<std::string> relative(const TempDir& dir, const std::vector<std::string>& files) {
  std::vector<std::string> out;
  for (const std::string& f : files) out.push_back(fs::relative(f, dir.path()).string());
  return out;
}

TEST(CorpusFiles, FolderIsEveryVisibleFileUnderItRecursivelyInSortedPathOrder) {
  TempDir dir;
  make_tree(dir, {{"lyrics/b/2.txt", "two"},
                  {"lyrics/a.txt", "a"},
                  {"lyrics/a/1.txt", "one"},
                  {"lyrics/notes.md", "not a song"},
                  {"lyrics/.draft.txt", "hidden file"},
                  {"lyrics/.git/objects/x.txt", "hidden folder"},
                  {"lyrics/c/d/e/3.txt", "three"}});
  const std::vector<std::string> all = charrnn::list_corpus_files({dir.file("lyrics")});
  EXPECT_EQ(relative(dir, all), (std::vector<std::string>{"lyrics/a.txt", "lyrics/a/1.txt", "lyrics/b/2.txt",
                                                         "lyrics/c/d/e/3.txt", "lyrics/notes.md"}));
  const std::vector<std::string> txt = charrnn::list_corpus_files({dir.file("lyrics")}, "*.txt");
  EXPECT_EQ(relative(dir, txt),
            (std::vector<std::string>{"lyrics/a.txt", "lyrics/a/1.txt", "lyrics/b/2.txt", "lyrics/c/d/e/3.txt"}));
  // "lyrics/" names the same folder
  EXPECT_EQ(charrnn::list_corpus_files({dir.file("lyrics") + "/"}, "*.txt").size(), 4u);
}

TEST(CorpusFiles, ListKeepsItsOrderAndANamedFileIgnoresTheGlob) {
  TempDir dir;
  make_tree(dir, {{"z.md", "zed"}, {"poems/b.txt", "bee"}, {"poems/a.txt", "ay"}, {"first.txt", "1"}});
  const std::vector<std::string> files =
      charrnn::list_corpus_files({dir.file("z.md"), dir.file("poems"), dir.file("first.txt")}, "*.txt");
  EXPECT_EQ(relative(dir, files), (std::vector<std::string>{"z.md", "poems/a.txt", "poems/b.txt", "first.txt"}));
}

TEST(CorpusFiles, BadPathsAreClearErrors) {
  TempDir dir;
  make_tree(dir, {{"empty/.hidden", "x"}, {"md/a.md", "x"}});
  EXPECT_CONTAINS(thrown_message<charrnn::Error>([&] { charrnn::list_corpus_files({dir.file("missing")}); }),
                  "missing");
  EXPECT_CONTAINS(thrown_message<charrnn::UsageError>([&] { charrnn::list_corpus_files({dir.file("empty")}); }),
                  "holds no");
  EXPECT_CONTAINS(
      thrown_message<charrnn::UsageError>([&] { charrnn::list_corpus_files({dir.file("md")}, "*.txt"); }),
      "data.glob=*.txt");
}

TEST(CorpusFiles, DocumentsAreJoinedByTheSeparatorInMemoryAndCached) {
  TempDir dir;
  make_tree(dir, {{"docs/1.txt", "first"}, {"docs/2.txt", "\xEF\xBB\xBFsecond"}, {"docs/3.txt", "third"}});
  DataOptions data;
  data.path = {dir.file("docs")};
  data.val_fraction = 0;
  data.separator = "\n--\n";
  const charrnn::Corpus plain = charrnn::load_corpus(data, 4);
  EXPECT_EQ(decoded(plain.vocab, plain.train), "first\n--\nsecond\n--\nthird");  // the byte-order mark dropped
  EXPECT_EQ(plain.documents, 3);
  const charrnn::Corpus cached = charrnn::load_corpus(data, 4, std::nullopt, dir.file("cache/docs.ids"));
  EXPECT_EQ(decoded(cached.vocab, cached.train), "first\n--\nsecond\n--\nthird");
  EXPECT_EQ(charrnn::map_ids_file(dir.file("cache/docs.ids")).document_starts, (std::vector<int64_t>{0, 9, 19}));
  std::vector<int64_t> starts;
  EXPECT_EQ(charrnn::encode_utf8(charrnn::read_documents(charrnn::list_corpus_files(data.path), U"|", &starts)),
            "first|second|third");
  EXPECT_EQ(starts, (std::vector<int64_t>{0, 6, 13}));
}

TEST(CorpusFiles, InvalidUtf8NamesTheFileAndOffset) {
  TempDir dir;
  make_tree(dir, {{"docs/1.txt", "fine text"}, {"docs/2.txt", "caf\xE9 au lait"}});
  DataOptions data;
  data.path = {dir.file("docs")};
  for (const std::string cache : {std::string(), dir.file("c.ids")}) {
    const std::string message = thrown_message<charrnn::Error>([&] { charrnn::load_corpus(data, 2, std::nullopt, cache); });
    EXPECT_CONTAINS(message, "2.txt");
    EXPECT_CONTAINS(message, "byte offset 3");  // of \xE9, within that file
  }
}

// 30 documents of distinct words, so that each is recognisable in the split.
std::vector<std::pair<std::string, std::string>> numbered_documents(int count) {
  std::vector<std::pair<std::string, std::string>> files;
  for (int i = 0; i < count; ++i) {
    const std::string n = (i < 10 ? "0" : "") + std::to_string(i);
    std::string text;
    // no newline at the end, so that the "\n\n" separator splits them unambiguously
    for (int r = 0; r <= i % 4; ++r) text += (r ? "\n" : "") + ("document " + n + " line " + std::to_string(r) + ".");
    files.push_back({"docs/" + n + ".txt", text});
  }
  return files;
}

std::vector<std::string> split_documents(const std::string& text, const std::string& separator) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t at; (at = text.find(separator, start)) != std::string::npos; start = at + separator.size())
    out.push_back(text.substr(start, at - start));
  out.push_back(text.substr(start));
  return out;
}

TEST(CorpusFiles, ValidationByDocumentsIsSeededWholeDocumentsAndTheSameWithTheCache) {
  TempDir dir;
  const auto files = numbered_documents(30);
  make_tree(dir, files);
  DataOptions data;
  data.path = {dir.file("docs")};
  data.val_split = charrnn::ValSplit::Documents;
  data.val_fraction = 0.2;
  const charrnn::Corpus a = charrnn::load_corpus(data, 8);
  const charrnn::Corpus again = charrnn::load_corpus(data, 8);
  const charrnn::Corpus cached = charrnn::load_corpus(data, 8, std::nullopt, dir.file("cache/docs.ids"));
  EXPECT_TRUE(torch::equal(a.val, again.val));
  EXPECT_TRUE(torch::equal(a.train, again.train));
  EXPECT_EQ(decoded(cached.vocab, cached.val), decoded(a.vocab, a.val));
  EXPECT_EQ(decoded(cached.vocab, cached.train), decoded(a.vocab, a.train));

  // whole documents, each on one side only, together all of them
  const std::vector<std::string> val = split_documents(decoded(a.vocab, a.val), "\n\n");
  const std::vector<std::string> train = split_documents(decoded(a.vocab, a.train), "\n\n");
  EXPECT_EQ(static_cast<int64_t>(val.size()), a.val_documents);
  EXPECT_EQ(val.size() + train.size(), files.size());
  std::set<std::string> originals, seen;
  for (const auto& f : files) originals.insert(f.second);
  for (const auto& d : val) EXPECT_TRUE(originals.count(d)) << d;
  for (const auto& d : train) EXPECT_TRUE(originals.count(d)) << d;
  seen.insert(val.begin(), val.end());
  seen.insert(train.begin(), train.end());
  EXPECT_EQ(seen, originals);
  // at least the fraction asked for, and not just the last files in sort order
  const int64_t total = a.train.numel() + a.val.numel();
  EXPECT_GE(static_cast<double>(a.val.numel()), 0.2 * static_cast<double>(total) - 4);
  EXPECT_NE(val.back(), files.back().second);

  data.val_seed = 1;
  const charrnn::Corpus other = charrnn::load_corpus(data, 8);
  EXPECT_NE(decoded(other.vocab, other.val), decoded(a.vocab, a.val)) << "another val_seed, another choice";

  data.path = {dir.file("docs/00.txt")};
  EXPECT_CONTAINS(thrown_message<charrnn::UsageError>([&] { charrnn::load_corpus(data, 2); }), "val_split=tail");
}

TEST(CorpusFiles, TheCacheIsReencodedWhenAFileChangesIsAddedOrRemoved) {
  TempDir dir;
  make_tree(dir, {{"docs/a.txt", "alpha"}, {"docs/b.txt", "beta"}});
  DataOptions data;
  data.path = {dir.file("docs")};
  data.val_fraction = 0;
  const std::string cache = dir.file("cache/docs.ids");
  const auto text_now = [&] {
    const charrnn::Corpus c = charrnn::load_corpus(data, 2, std::nullopt, cache);
    EXPECT_TRUE(charrnn::ids_file_is_fresh(cache, charrnn::list_corpus_files(data.path), U"\n\n"));
    return decoded(c.vocab, c.train);
  };
  EXPECT_EQ(text_now(), "alpha\n\nbeta");
  const auto encoded_at = fs::last_write_time(cache);
  EXPECT_EQ(text_now(), "alpha\n\nbeta");
  EXPECT_EQ(fs::last_write_time(cache), encoded_at) << "an unchanged corpus is mapped, not encoded again";

  write_file(dir.file("docs/b.txt"), "BETA");  // same size: the modification time tells
  fs::last_write_time(dir.file("docs/b.txt"), fs::last_write_time(dir.file("docs/b.txt")) + std::chrono::seconds(2));
  EXPECT_EQ(text_now(), "alpha\n\nBETA");
  write_file(dir.file("docs/c.txt"), "gamma");
  EXPECT_EQ(text_now(), "alpha\n\nBETA\n\ngamma");
  fs::remove(dir.file("docs/a.txt"));
  EXPECT_EQ(text_now(), "BETA\n\ngamma");
  data.separator = " ";
  const charrnn::Corpus spaced = charrnn::load_corpus(data, 2, std::nullopt, cache);
  EXPECT_EQ(decoded(spaced.vocab, spaced.train), "BETA gamma");
}

TEST(CorpusFiles, AGivenVocabularyIsExtendedForFineTuningAndExactOtherwise) {
  TempDir dir;
  make_tree(dir, {{"de.txt", "\xC3\xBC" "ber alles, ab"}});
  DataOptions data;
  data.path = {dir.file("de.txt")};
  data.val_fraction = 0;
  const charrnn::Vocab base(std::vector<char32_t>{U' ', U'a', U'b', U'e', U'l', U'r', U's', U'z'});
  for (const std::string cache : {std::string(), dir.file("de.ids")}) {
    SCOPED_TRACE(cache);
    const charrnn::Corpus c = charrnn::load_corpus(data, 2, base, cache, charrnn::VocabUse::kExtending);
    EXPECT_EQ(charrnn::encode_utf8(std::u32string(c.vocab.chars().begin(), c.vocab.chars().end())),
              " ,abelrsz\xC3\xBC");
    EXPECT_EQ(c.vocab.counts()[static_cast<size_t>(c.vocab.id_or_negative(U'z'))], 0) << "kept, never seen";
    EXPECT_EQ(c.vocab.counts()[static_cast<size_t>(c.vocab.id_or_negative(U'a'))], 2);
    EXPECT_EQ(decoded(c.vocab, c.train), "\xC3\xBC" "ber alles, ab");
    const std::string message = thrown_message<charrnn::UsageError>(
        [&] { charrnn::load_corpus(data, 2, base, cache, charrnn::VocabUse::kExactly); });
    EXPECT_CONTAINS(message, "never saw");
    EXPECT_CONTAINS(message, "--init-from");
    // a vocabulary holding more than the text is fine, and encodes with its own ids
    const charrnn::Corpus exact = charrnn::load_corpus(data, 2, c.vocab, cache, charrnn::VocabUse::kExactly);
    EXPECT_EQ(exact.vocab.chars(), c.vocab.chars());
    EXPECT_EQ(decoded(exact.vocab, exact.train), "\xC3\xBC" "ber alles, ab");
  }
}

TEST(Corpus, ReadTextFileDropsBomAndRejectsNul) {
  charrnn_test::TempDir dir;
  const std::string bom = dir.file("bom.txt");
  charrnn_test::write_file(bom, "\xEF\xBB\xBF" "ab" "\xE2\x82\xAC");
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
