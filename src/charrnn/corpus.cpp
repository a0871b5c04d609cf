#include "charrnn/corpus.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fnmatch.h>
#include <fstream>
#include <random>
#include <sstream>
#include <sys/stat.h>

#include "charrnn/encoded_corpus.h"
#include "charrnn/error.h"
#include "charrnn/file_io.h"
#include "charrnn/utf8.h"

namespace charrnn {

std::u32string read_text_file(const std::string& path) {
  std::string bytes = read_file(path);
  const auto nul = bytes.find('\0');
  if (nul != std::string::npos) throw_nul_byte(path, nul);
  std::u32string text = decode_utf8(bytes, path);
  if (!text.empty() && text.front() == 0xFEFF) text.erase(0, 1);  // byte-order mark, not content
  return text;
}

torch::Tensor to_tensor(const std::vector<int64_t>& ids) {
  return torch::tensor(torch::ArrayRef<int64_t>(ids), torch::kLong);
}

namespace {

bool is_hidden(const std::filesystem::path& name) {
  const std::string s = name.filename().string();
  return !s.empty() && s.front() == '.';
}

// Every regular file under `folder` that `glob` lets through, sorted.
std::vector<std::string> files_under(const std::string& folder, const std::string& glob) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(folder, fs::directory_options::none, ec);
  if (ec) throw Error(folder + ": " + ec.message());
  for (const fs::recursive_directory_iterator end; it != end; it.increment(ec)) {
    if (ec) throw Error(folder + ": " + ec.message());
    const fs::path& path = it->path();
    if (is_hidden(path)) {
      // a hidden folder (.git, .cache) is not part of the corpus, nor is anything in it
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec)) continue;  // folders are descended; sockets, fifos and broken links skipped
    if (!glob.empty() && ::fnmatch(glob.c_str(), path.filename().c_str(), 0) != 0) continue;
    files.push_back(path.string());
  }
  if (ec) throw Error(folder + ": " + ec.message());
  std::sort(files.begin(), files.end());
  if (files.empty())
    throw UsageError(folder + (glob.empty() ? ": the folder holds no (non-hidden) file"
                                            : ": no file in the folder matches data.glob=" + glob));
  return files;
}

}  // namespace

std::vector<std::string> list_corpus_files(const std::vector<std::string>& paths, const std::string& glob) {
  std::vector<std::string> files;
  for (const std::string& path : paths) {
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) throw Error(path + ": " + std::strerror(errno));
    if (S_ISDIR(info.st_mode)) {
      for (std::string& file : files_under(path, glob)) files.push_back(std::move(file));
    } else {
      files.push_back(path);  // named on its own, a file is taken whatever the glob says
    }
  }
  return files;
}

std::u32string read_documents(const std::vector<std::string>& files, std::u32string_view separator,
                              std::vector<int64_t>* document_starts) {
  std::u32string text;
  if (document_starts) document_starts->clear();
  for (size_t i = 0; i < files.size(); ++i) {
    if (i > 0) text += separator;
    if (document_starts) document_starts->push_back(static_cast<int64_t>(text.size()));
    text += read_text_file(files[i]);
  }
  return text;
}

namespace {

// The text's ids, its own vocabulary and where its documents start, from the
// id file (encoded once, then mapped) or read into memory.
struct EncodedText {
  torch::Tensor ids;
  Vocab vocab;
  std::vector<int64_t> document_starts;
  int64_t cache_bytes_written = 0;
};

EncodedText encode_text(const std::vector<std::string>& files, std::u32string_view separator,
                        const std::string& cache_path) {
  if (!cache_path.empty()) {
    int64_t written = 0;
    if (!ids_file_is_fresh(cache_path, files, separator)) {
      encode_corpus_files(files, separator, cache_path);
      written = static_cast<int64_t>(std::filesystem::file_size(cache_path));
    }
    MappedIds mapped = map_ids_file(cache_path);
    return {mapped.ids, std::move(mapped.vocab), std::move(mapped.document_starts), written};
  }
  EncodedText encoded;
  const std::u32string text = read_documents(files, separator, &encoded.document_starts);
  encoded.vocab = Vocab::from_text(text);
  std::vector<int64_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = encoded.vocab.id_or_negative(text[i]);
  encoded.ids = to_tensor(ids);
  return encoded;
}

// The given vocabulary extended by the characters of `text_vocab` it lacks,
// with the new text's counts (0 for characters only the old one has).
Vocab merged_vocab(const Vocab& given, const Vocab& text_vocab) {
  std::vector<char32_t> chars = given.chars();
  chars.insert(chars.end(), text_vocab.chars().begin(), text_vocab.chars().end());
  std::sort(chars.begin(), chars.end());
  chars.erase(std::unique(chars.begin(), chars.end()), chars.end());
  std::vector<int64_t> counts(chars.size(), 0);
  for (size_t i = 0; i < chars.size(); ++i) {
    const int64_t id = text_vocab.id_or_negative(chars[i]);
    if (id >= 0 && !text_vocab.counts().empty()) counts[i] = text_vocab.counts()[static_cast<size_t>(id)];
  }
  return Vocab(std::move(chars), std::move(counts));
}

// ids of `from` rewritten as ids of `to` (which holds every character of
// `from`), in the narrowest integer type that fits `to`, a slice at a time so
// that a mapped corpus is never widened to int64 all at once.
torch::Tensor remap_ids(const torch::Tensor& ids, const Vocab& from, const Vocab& to) {
  std::vector<int64_t> table(static_cast<size_t>(from.size()));
  for (int64_t id = 0; id < from.size(); ++id) table[static_cast<size_t>(id)] = to.id_or_negative(from.char_at(id));
  const torch::Tensor lookup = to_tensor(table);
  torch::Tensor out = torch::empty({ids.numel()}, torch::TensorOptions(id_type_for(to.size())));
  constexpr int64_t kSlice = int64_t{1} << 22;
  for (int64_t start = 0; start < ids.numel(); start += kSlice) {
    const int64_t length = std::min(kSlice, ids.numel() - start);
    out.narrow(0, start, length).copy_(lookup.index_select(0, ids.narrow(0, start, length).to(torch::kLong)));
  }
  return out;
}

// Document d's characters are [starts[d], end_of(d)); the separator follows.
struct Documents {
  const std::vector<int64_t>& starts;
  int64_t total;
  int64_t separator_length;
  int64_t size() const { return static_cast<int64_t>(starts.size()); }
  int64_t begin(int64_t d) const { return starts[static_cast<size_t>(d)]; }
  int64_t end(int64_t d) const {
    return d + 1 < size() ? starts[static_cast<size_t>(d + 1)] - separator_length : total;
  }
};

// The chosen documents (ascending) joined by the separator: runs of
// neighbouring documents are one slice, since the separator already lies
// between them.
torch::Tensor join_documents(const torch::Tensor& all, const Documents& docs, const std::vector<int64_t>& chosen) {
  std::vector<torch::Tensor> pieces;
  const torch::Tensor separator =
      docs.size() > 1 ? all.narrow(0, docs.end(0), docs.separator_length) : all.narrow(0, 0, 0);
  for (size_t i = 0; i < chosen.size();) {
    size_t j = i;
    while (j + 1 < chosen.size() && chosen[j + 1] == chosen[j] + 1) ++j;
    if (!pieces.empty() && docs.separator_length > 0) pieces.push_back(separator);
    pieces.push_back(all.narrow(0, docs.begin(chosen[i]), docs.end(chosen[j]) - docs.begin(chosen[i])));
    i = j + 1;
  }
  if (pieces.empty()) return all.narrow(0, 0, 0);
  return pieces.size() == 1 ? pieces.front() : torch::cat(pieces);
}

// val_split=documents: a seeded shuffle of the documents, taken until they
// hold val_fraction of the characters, always leaving one for training.
std::vector<int64_t> choose_validation_documents(const Documents& docs, double val_fraction, uint64_t seed) {
  std::vector<int64_t> order(static_cast<size_t>(docs.size()));
  for (int64_t d = 0; d < docs.size(); ++d) order[static_cast<size_t>(d)] = d;
  // Fisher-Yates on mt19937_64's raw output, which the standard fixes on
  // every platform (its distributions are not)
  std::mt19937_64 rng(seed);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  const auto wanted = static_cast<int64_t>(static_cast<double>(docs.total) * val_fraction);
  std::vector<int64_t> chosen;
  int64_t held_out = 0;
  for (size_t i = 0; i + 1 < order.size() && held_out < std::max<int64_t>(wanted, 1); ++i) {
    chosen.push_back(order[i]);
    held_out += docs.end(order[i]) - docs.begin(order[i]);
  }
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

}  // namespace

Corpus load_corpus(const DataOptions& data, int64_t seq_length, const std::optional<Vocab>& vocab,
                   const std::string& cache_path, VocabUse use) {
  const std::string where = describe_paths(data.path);
  const std::vector<std::string> files = list_corpus_files(data.path, data.glob);
  const std::u32string separator = decode_utf8(data.separator, "data.separator");
  EncodedText text = encode_text(files, separator, cache_path);

  Corpus corpus;
  corpus.documents = static_cast<int64_t>(text.document_starts.size());
  corpus.cache_bytes_written = text.cache_bytes_written;
  if (!vocab) {
    corpus.vocab = text.vocab;
  } else if (use == VocabUse::kExtending) {
    corpus.vocab = merged_vocab(*vocab, text.vocab);
  } else {
    corpus.vocab = *vocab;
    const std::u32string missing =
        vocab->unknown_chars(std::u32string(text.vocab.chars().begin(), text.vocab.chars().end()));
    if (!missing.empty()) {
      try {
        vocab->encode(missing, where);  // names the characters
      } catch (const UsageError& e) {
        throw UsageError(std::string(e.what()) +
                         "; to train this model on text with new characters, start a new run from it with "
                         "charrnn train --init-from CHECKPOINT");
      }
    }
  }
  torch::Tensor all =
      corpus.vocab.chars() == text.vocab.chars() ? text.ids : remap_ids(text.ids, text.vocab, corpus.vocab);
  if (all.numel() == 0) throw UsageError(where + ": the corpus is empty; give it some text to learn from");

  const int64_t n = all.size(0);
  if (data.val_fraction > 0 && data.val_split == ValSplit::Documents) {
    const Documents docs{text.document_starts, n, static_cast<int64_t>(separator.size())};
    if (docs.size() < 2)
      throw UsageError(where + ": data.val_split=documents holds out whole files, but the corpus is " +
                       std::to_string(docs.size()) +
                       " file; give a folder or list of files, or use data.val_split=tail");
    const std::vector<int64_t> val_docs =
        choose_validation_documents(docs, data.val_fraction, static_cast<uint64_t>(data.val_seed));
    std::vector<int64_t> train_docs;
    for (int64_t d = 0, v = 0; d < docs.size(); ++d) {
      if (v < static_cast<int64_t>(val_docs.size()) && val_docs[static_cast<size_t>(v)] == d)
        ++v;
      else
        train_docs.push_back(d);
    }
    corpus.train = join_documents(all, docs, train_docs);
    corpus.val = join_documents(all, docs, val_docs);
    corpus.val_documents = static_cast<int64_t>(val_docs.size());
  } else {
    const auto n_val = static_cast<int64_t>(static_cast<double>(n) * data.val_fraction);
    corpus.train = all.narrow(0, 0, n - n_val);
    corpus.val = all.narrow(0, n - n_val, n_val);
  }
  const int64_t n_train = corpus.train.numel();
  const int64_t n_val = corpus.val.numel();
  // a training chunk is seq_length inputs plus the one character after them
  if (n_train < seq_length + 1)
    throw UsageError(where + ": " + std::to_string(n_train) +
                     " characters for training, but train.seq_length=" + std::to_string(seq_length) +
                     " needs at least " + std::to_string(seq_length + 1) +
                     "; use a longer text or a smaller train.seq_length");
  if (data.val_fraction > 0 && n_val < 2)
    throw UsageError(where + ": data.val_fraction=" + std::to_string(data.val_fraction) + " holds out " +
                     std::to_string(n_val) +
                     " character(s), too few to validate on; raise it or set it to 0 to train without validation");
  return corpus;
}

std::string first_words(const Corpus& corpus) {
  const int64_t n = std::min<int64_t>(corpus.train.size(0), 400);
  const torch::Tensor head = corpus.train.narrow(0, 0, n).to(torch::kLong).contiguous();
  std::u32string text;
  for (int64_t i = 0; i < n; ++i) text.push_back(corpus.vocab.char_at(head[i].item<int64_t>()));
  const size_t begin = text.find_first_not_of(U" \t\n");
  if (begin == std::u32string::npos) return "";
  std::u32string prime;
  for (size_t i = begin; i < text.size() && text[i] != '\n' && prime.size() < 24; ++i) {
    if (prime.size() >= 12 && text[i] == ' ') break;
    prime.push_back(text[i]);
  }
  return encode_utf8(prime);
}

}  // namespace charrnn
