#include "charrnn/corpus.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "charrnn/encoded_corpus.h"
#include "charrnn/error.h"
#include "charrnn/utf8.h"

namespace charrnn {

std::string read_file(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0)
    throw Error(path + ": " + std::strerror(errno));
  if (S_ISDIR(info.st_mode)) throw Error(path + ": is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open: " + std::strerror(errno));
  std::string bytes;
  bytes.resize(static_cast<size_t>(info.st_size));
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (in.gcount() != static_cast<std::streamsize>(bytes.size())) {
    // the file changed size under us (or is a pipe); fall back to streaming
    in.clear();
    in.seekg(0);
    std::stringstream buffer;
    buffer << in.rdbuf();
    bytes = buffer.str();
  }
  return bytes;
}

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

Corpus load_corpus(const DataOptions& data, int64_t seq_length, const std::optional<Vocab>& vocab,
                   const std::string& cache_path) {
  Corpus corpus;
  torch::Tensor all;
  if (!cache_path.empty()) {
    if (!ids_file_is_fresh(cache_path, data.path)) encode_corpus_file(data.path, cache_path);
    MappedIds mapped = map_ids_file(cache_path);
    // a resumed run on text with other characters re-encodes in memory below,
    // where unseen characters are reported
    if (!vocab || vocab->chars() == mapped.vocab.chars()) {
      corpus.vocab = vocab ? *vocab : mapped.vocab;
      all = mapped.ids;
    }
  }
  if (!all.defined()) {
    const std::u32string text = read_text_file(data.path);
    corpus.vocab = vocab ? *vocab : Vocab::from_text(text);
    all = to_tensor(corpus.vocab.encode(text, data.path));
  }
  if (all.numel() == 0) throw UsageError(data.path + ": the corpus is empty; give it some text to learn from");
  const int64_t n = all.size(0);
  const auto n_val = static_cast<int64_t>(static_cast<double>(n) * data.val_fraction);
  const int64_t n_train = n - n_val;
  // a training chunk is seq_length inputs plus the one character after them
  if (n_train < seq_length + 1)
    throw UsageError(data.path + ": " + std::to_string(n_train) +
                     " characters for training, but train.seq_length=" + std::to_string(seq_length) +
                     " needs at least " + std::to_string(seq_length + 1) +
                     "; use a longer text or a smaller train.seq_length");
  if (data.val_fraction > 0 && n_val < 2)
    throw UsageError(data.path + ": data.val_fraction=" + std::to_string(data.val_fraction) + " holds out " +
                     std::to_string(n_val) +
                     " character(s), too few to validate on; raise it or set it to 0 to train without validation");
  corpus.train = all.narrow(0, 0, n_train);
  corpus.val = all.narrow(0, n_train, n_val);
  return corpus;
}

}  // namespace charrnn
