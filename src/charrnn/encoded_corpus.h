// Corpora larger than memory: the text is encoded once, streaming, into a
// compact id file (1, 2 or 4 bytes per character, by vocabulary size) with
// its vocabulary, and training memory-maps that file and gathers its random
// chunks from the map. Nothing is copied per process or per run; the pages
// are the page cache's, shared and reclaimable.
//
// A corpus of several files (documents) is encoded as their texts joined by
// a separator, with where each document starts, so that validation can hold
// out whole documents.
//
// The id files live in one cache folder (corpus_cache_folder), one per
// corpus, named for it.
//
// Id file layout (little-endian):
//   8 bytes  magic "CRNNIDS\n"
//   u32      format version (2)
//   u32      bytes per id: 1, 2 or 4
//   u64      character count N
//   u64      the source files' total size in bytes
//   i64      fingerprint of the sources: every file's path, size and
//            modification time, and the separator
//   u64      header length, then a JSON header:
//            {"vocab": ..., "sources": [paths], "document_starts": [offsets]}
//   padding  to a multiple of 64 bytes
//   N ids
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <torch/torch.h>

#include "charrnn/config.h"

#include "charrnn/vocab.h"

namespace charrnn {

/// Encodes the files `text_paths` (each strict UTF-8; NUL bytes refused; a
/// leading byte-order mark dropped), joined by `separator`, into `ids_path`,
/// written atomically. Two streaming passes of `chunk_bytes`: the
/// vocabulary, then the ids. Memory stays at a few chunks whatever the
/// files' size. Returns the vocabulary.
Vocab encode_corpus_files(const std::vector<std::string>& text_paths, std::u32string_view separator,
                          const std::string& ids_path, size_t chunk_bytes = size_t{16} << 20);
/// The text read_documents(files, separator) returns, handed to `piece` in
/// pieces of at most `chunk_bytes` code points, read `chunk_bytes` bytes
/// at a time: memory stays at a few chunks whatever the files' size.
void read_documents_in_pieces(const std::vector<std::string>& files, std::u32string_view separator,
                              size_t chunk_bytes, const std::function<void(std::u32string_view)>& piece);
/// One file: encode_corpus_files({text_path}, ...).
Vocab encode_corpus_file(const std::string& text_path, const std::string& ids_path,
                         size_t chunk_bytes = size_t{16} << 20);

/// True when `ids_path` is a valid id file made from these files and
/// separator as they are now (same paths, sizes and modification times).
bool ids_file_is_fresh(const std::string& ids_path, const std::vector<std::string>& text_paths,
                       std::u32string_view separator);
bool ids_file_is_fresh(const std::string& ids_path, const std::string& text_path);

/// The narrowest integer type that holds every id of a vocabulary of
/// `vocab_size` characters: uint8, int16 or int32, as id files store them
/// and as a remapped corpus keeps them.
torch::ScalarType id_type_for(int64_t vocab_size);

struct MappedIds {
  Vocab vocab;
  torch::Tensor ids;  ///< (N) uint8, int16 or int32 over the mapping, read-only by contract
  std::vector<int64_t> document_starts;  ///< offset of each document's first id; {0} for one file
};

/// Memory-maps an id file. The tensor holds the mapping open; it is unmapped
/// when the last tensor viewing it is gone. Throws Error on a malformed file.
MappedIds map_ids_file(const std::string& ids_path);

/// Where encoded corpora are kept (data.cache): $XDG_CACHE_HOME/charrnn, or
/// ~/.cache/charrnn.
std::string corpus_cache_folder();
/// The id file of the corpus `data` names, in that folder: NAME-HASH.ids,
/// NAME the first path's file or folder name, HASH that of the absolute
/// paths, glob and separator.
std::string corpus_cache_path(const DataOptions& data);
/// "encoded the corpus once into PATH (N MB)..." for a run that wrote
/// `bytes_written` bytes of encoded corpus; "" for one that wrote none.
std::string corpus_cache_note(const DataOptions& data, int64_t bytes_written);

}  // namespace charrnn
