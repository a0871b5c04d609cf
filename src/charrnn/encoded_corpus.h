// Corpora larger than memory: the text is encoded once, streaming, into a
// compact id file (1, 2 or 4 bytes per character, by vocabulary size) with
// its vocabulary, and training memory-maps that file and gathers its random
// chunks from the map. Nothing is copied per process or per run; the pages
// are the page cache's, shared and reclaimable.
//
// Id file layout (little-endian):
//   8 bytes  magic "CRNNIDS\n"
//   u32      format version (1)
//   u32      bytes per id: 1, 2 or 4
//   u64      character count N
//   u64      source file size in bytes
//   i64      source modification time, ns since the epoch
//   u64      header length, then a JSON header: {"vocab": ..., "source": path}
//   padding  to a multiple of 64 bytes
//   N ids
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "charrnn/vocab.h"

namespace charrnn {

/// Encodes `text_path` (strict UTF-8; NUL bytes refused; a leading
/// byte-order mark dropped) into `ids_path`, written atomically. Two streaming
/// passes of `chunk_bytes`: the vocabulary, then the ids. Memory stays at a
/// few chunks whatever the file size. Returns the vocabulary.
Vocab encode_corpus_file(const std::string& text_path, const std::string& ids_path,
                         size_t chunk_bytes = size_t{16} << 20);

/// True when `ids_path` is a valid id file made from `text_path` as it is now
/// (same size and modification time).
bool ids_file_is_fresh(const std::string& ids_path, const std::string& text_path);

struct MappedIds {
  Vocab vocab;
  torch::Tensor ids;  ///< (N) uint8, int16 or int32 over the mapping, read-only by contract
};

/// Memory-maps an id file. The tensor holds the mapping open; it is unmapped
/// when the last tensor viewing it is gone. Throws Error on a malformed file.
MappedIds map_ids_file(const std::string& ids_path);

}  // namespace charrnn
