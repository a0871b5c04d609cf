// Text file -> code points -> ids, split into training and validation parts.
// The whole corpus is encoded once into an int64 tensor; batches are slices
// of it. The last `val_fraction` of the characters is held out, so
// validation text is never seen in training.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <torch/torch.h>

#include "charrnn/config.h"
#include "charrnn/vocab.h"

namespace charrnn {

/// Reads a whole file; throws Error when it cannot.
std::string read_file(const std::string& path);

/// Reads and strictly decodes a UTF-8 text file. A leading byte-order mark is
/// dropped; NUL bytes are rejected (they mean a binary file).
std::u32string read_text_file(const std::string& path);

/// ids -> 1-D int64 tensor.
torch::Tensor to_tensor(const std::vector<int64_t>& ids);

struct Corpus {
  Vocab vocab;
  torch::Tensor train;  // (N_train) int64
  torch::Tensor val;    // (N_val) int64; empty when val_fraction is 0
};

/// Loads the corpus named by `data`. With `vocab` given (resuming), the text
/// is encoded with it and unseen characters are an error; otherwise the
/// vocabulary is built from the whole file. With a `cache_path`, the text is
/// encoded once into that id file (encoded_corpus.h) and memory-mapped, so a
/// corpus larger than memory trains; the tensors are then uint8/int16/int32
/// views of the map rather than int64. Throws UsageError when the text is
/// too short for `seq_length`.
Corpus load_corpus(const DataOptions& data, int64_t seq_length, const std::optional<Vocab>& vocab = std::nullopt,
                   const std::string& cache_path = "");

}  // namespace charrnn
