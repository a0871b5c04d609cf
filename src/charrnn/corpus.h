// Text files -> code points -> ids, split into training and validation parts.
// A corpus is one file, or many (a folder, a list): each file is a document,
// and documents are joined by data.separator. The whole corpus is encoded
// once into a tensor; batches are slices of it. Validation holds out the last
// `val_fraction` of the characters (val_split=tail) or a seeded choice of
// whole documents (val_split=documents), so validation text is never seen
// in training.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <torch/torch.h>

#include "charrnn/config.h"
#include "charrnn/vocab.h"

namespace charrnn {

/// Reads and strictly decodes a UTF-8 text file. A leading byte-order mark is
/// dropped; NUL bytes are rejected (they mean a binary file).
std::u32string read_text_file(const std::string& path);

/// ids -> 1-D int64 tensor.
torch::Tensor to_tensor(const std::vector<int64_t>& ids);

/// The files `paths` name, in order: a file as itself (whatever `glob`
/// says), a folder as every regular file under it, recursively, in sorted
/// path order, skipping hidden files and folders (names starting with a
/// dot) and, with a `glob` (fnmatch syntax, e.g. *.txt), files whose name
/// does not match. Throws Error for a path that does not exist and
/// UsageError for a folder that gives no file.
std::vector<std::string> list_corpus_files(const std::vector<std::string>& paths, const std::string& glob = "");

/// The texts of `files` (as read_text_file reads them) joined by
/// `separator`; `document_starts`, when given, receives where each begins.
std::u32string read_documents(const std::vector<std::string>& files, std::u32string_view separator,
                              std::vector<int64_t>* document_starts = nullptr);

/// What a given vocabulary means to load_corpus.
enum class VocabUse {
  kExactly,    ///< the text is encoded with it; characters it lacks are an error (resuming)
  kExtending,  ///< characters it lacks are added, in sorted order (fine-tuning)
};

struct Corpus {
  Vocab vocab;
  torch::Tensor train;  // (N_train) integer ids
  torch::Tensor val;    // (N_val) integer ids; empty when val_fraction is 0
  int64_t documents = 1;      ///< files the text was read from
  int64_t val_documents = 0;  ///< of which held out (val_split=documents)
  int64_t cache_bytes_written = 0;  ///< the size of the id file this load wrote; 0 when it reused one (or none)
};

/// Loads the corpus named by `data`. With `vocab` given, the text is encoded
/// with it as `use` says; otherwise the vocabulary is built from the whole
/// text. With a `cache_path`, the text is encoded once into that id file
/// (encoded_corpus.h) and memory-mapped, so a corpus larger than memory
/// trains; the tensors are then uint8/int16/int32 views of the map rather
/// than int64 (a split by documents copies them, in the same type). Throws
/// UsageError when the text is too short for `seq_length`.
Corpus load_corpus(const DataOptions& data, int64_t seq_length, const std::optional<Vocab>& vocab = std::nullopt,
                   const std::string& cache_path = "", VocabUse use = VocabUse::kExactly);

/// The first words of the training text, a prime it is sure to know: up to
/// 12 characters, finished to the end of a word (24 at most), within the
/// first line that holds any.
std::string first_words(const Corpus& corpus);

}  // namespace charrnn
