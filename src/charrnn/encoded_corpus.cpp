#include "charrnn/encoded_corpus.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fcntl.h>
#include <fstream>
#include <iomanip>
#include <memory>
#include <sstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "charrnn/error.h"
#include "charrnn/file_io.h"
#include "charrnn/utf8.h"

namespace charrnn {

namespace {

constexpr char kMagic[8] = {'C', 'R', 'N', 'N', 'I', 'D', 'S', '\n'};
constexpr uint32_t kVersion = 2;
constexpr size_t kAlignment = 64;
constexpr size_t kFixedHeader = 8 + 4 + 4 + 8 + 8 + 8 + 8;

struct SourceStamp {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

SourceStamp stamp_of(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) throw Error(path + ": " + std::strerror(errno));
  if (S_ISDIR(info.st_mode)) throw Error(path + ": is a directory, not a file");
  return {static_cast<uint64_t>(info.st_size),
          static_cast<int64_t>(info.st_mtim.tv_sec) * 1000000000 + info.st_mtim.tv_nsec};
}

// FNV-1a, 64 bits: a file added, removed, renamed, resized or touched, or
// another separator, gives another fingerprint and so a fresh encoding.
class Fingerprint {
 public:
  void add(const void* data, size_t size) {
    for (size_t i = 0; i < size; ++i) hash_ = (hash_ ^ static_cast<const unsigned char*>(data)[i]) * 0x100000001B3ull;
  }
  template <typename T>
  void add_value(T value) { add(&value, sizeof value); }
  int64_t value() const { return static_cast<int64_t>(hash_); }

 private:
  uint64_t hash_ = 0xCBF29CE484222325ull;
};

SourceStamp stamp_of(const std::vector<std::string>& paths, std::u32string_view separator) {
  SourceStamp total;
  Fingerprint fingerprint;
  for (const std::string& path : paths) {
    const SourceStamp one = stamp_of(path);
    total.size += one.size;
    fingerprint.add(path.data(), path.size() + 1);  // with its NUL, so "ab"+"c" differs from "a"+"bc"
    fingerprint.add_value(one.size);
    fingerprint.add_value(one.mtime_ns);
  }
  fingerprint.add_value(paths.size() > 1 ? separator.size() : 0);  // one file has no separator
  if (paths.size() > 1) fingerprint.add(separator.data(), separator.size() * sizeof(char32_t));
  total.mtime_ns = fingerprint.value();
  return total;
}

template <typename T>
void put(std::string& out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((static_cast<uint64_t>(value) >> (8 * i)) & 0xFF));
}

template <typename T>
T get(const unsigned char* in) {
  uint64_t value = 0;
  for (size_t i = 0; i < sizeof(T); ++i) value |= static_cast<uint64_t>(in[i]) << (8 * i);
  return static_cast<T>(value);
}

// Reads the text in chunks and hands each decoded code point to `visit`,
// keeping a sequence cut by a chunk boundary for the next chunk.
template <typename Visit>
void stream_code_points(const std::string& path, size_t chunk_bytes, Visit&& visit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open: " + std::strerror(errno));
  std::vector<char> buffer(chunk_bytes + 4);
  size_t carried = 0;
  uint64_t offset = 0;  // file offset of buffer[0]
  bool first = true;
  while (true) {
    in.read(buffer.data() + carried, static_cast<std::streamsize>(chunk_bytes));
    const size_t got = static_cast<size_t>(in.gcount());
    const size_t size = carried + got;
    const bool last = got == 0 || in.eof();
    if (const void* nul = std::memchr(buffer.data() + carried, '\0', got))
      throw_nul_byte(path, offset + static_cast<uint64_t>(static_cast<const char*>(nul) - buffer.data()));
    const size_t left = visit_utf8(std::string_view(buffer.data(), size), path, offset, /*allow_cut_tail=*/!last,
                                   [&](char32_t cp) {
                                     if (first) {
                                       first = false;
                                       if (cp == 0xFEFF) return;  // byte-order mark, not content
                                     }
                                     visit(cp);
                                   });
    if (last) break;
    std::memmove(buffer.data(), buffer.data() + size - left, left);
    offset += size - left;
    carried = left;
  }
}

// Every code point of the documents, the separator between them; `on_document`
// is told where each one starts (in code points).
template <typename Visit, typename OnDocument>
void stream_documents(const std::vector<std::string>& paths, std::u32string_view separator, size_t chunk_bytes,
                      Visit&& visit, OnDocument&& on_document) {
  uint64_t position = 0;
  for (size_t i = 0; i < paths.size(); ++i) {
    if (i > 0)
      for (char32_t cp : separator) {
        visit(cp);
        ++position;
      }
    on_document(position);
    stream_code_points(paths[i], chunk_bytes, [&](char32_t cp) {
      visit(cp);
      ++position;
    });
  }
}

}  // namespace

void read_documents_in_pieces(const std::vector<std::string>& files, std::u32string_view separator,
                              size_t chunk_bytes, const std::function<void(std::u32string_view)>& piece) {
  std::u32string buffer;
  buffer.reserve(chunk_bytes);
  stream_documents(
      files, separator, chunk_bytes,
      [&](char32_t cp) {
        buffer += cp;
        if (buffer.size() >= chunk_bytes) {
          piece(buffer);
          buffer.clear();
        }
      },
      [](uint64_t) {});
  if (!buffer.empty()) piece(buffer);
}

torch::ScalarType id_type_for(int64_t vocab_size) {
  return vocab_size <= 256 ? torch::kByte : vocab_size <= 32768 ? torch::kShort : torch::kInt;
}

Vocab encode_corpus_file(const std::string& text_path, const std::string& ids_path, size_t chunk_bytes) {
  return encode_corpus_files({text_path}, U"", ids_path, chunk_bytes);
}

Vocab encode_corpus_files(const std::vector<std::string>& text_paths, std::u32string_view separator,
                          const std::string& ids_path, size_t chunk_bytes) {
  if (text_paths.empty()) throw Error(ids_path + ": no text files to encode");
  const SourceStamp stamp = stamp_of(text_paths, separator);
  // pass 1: which characters occur, and how often, and where documents start
  std::vector<int64_t> histogram(0x110000, 0);
  std::vector<int64_t> document_starts;
  uint64_t count = 0;
  stream_documents(
      text_paths, separator, chunk_bytes,
      [&](char32_t cp) {
        ++histogram[cp];
        ++count;
      },
      [&](uint64_t start) { document_starts.push_back(static_cast<int64_t>(start)); });
  Vocab vocab = Vocab::from_histogram(histogram);
  histogram = {};
  const auto id_bytes = static_cast<uint32_t>(c10::elementSize(id_type_for(vocab.size())));

  std::string header;
  header.append(kMagic, sizeof kMagic);
  put<uint32_t>(header, kVersion);
  put<uint32_t>(header, id_bytes);
  put<uint64_t>(header, count);
  put<uint64_t>(header, stamp.size);
  put<int64_t>(header, stamp.mtime_ns);
  const std::string meta =
      nlohmann::json{{"vocab", vocab.to_json()}, {"sources", text_paths}, {"document_starts", document_starts}}.dump();
  put<uint64_t>(header, meta.size());
  header += meta;
  header.resize((header.size() + kAlignment - 1) / kAlignment * kAlignment, '\0');

  // pass 2: the ids, a chunk at a time
  ensure_parent_directory(ids_path);
  AtomicFileWriter writer(ids_path);
  writer.write(header.data(), header.size());
  std::vector<unsigned char> out;
  out.reserve(chunk_bytes * id_bytes + 16);
  uint64_t written = 0;
  stream_documents(
      text_paths, separator, chunk_bytes,
      [&](char32_t cp) {
        const int64_t id = vocab.id_or_negative(cp);
        if (id < 0) throw Error(ids_path + ": the source files changed while they were being encoded; try again");
        for (uint32_t b = 0; b < id_bytes; ++b) out.push_back(static_cast<unsigned char>(static_cast<uint32_t>(id) >> (8 * b)));
        if (out.size() >= chunk_bytes * id_bytes) {
          writer.write(out.data(), out.size());
          out.clear();
        }
        ++written;
      },
      [](uint64_t) {});
  writer.write(out.data(), out.size());
  if (written != count || stamp_of(text_paths, separator).mtime_ns != stamp.mtime_ns)
    throw Error((text_paths.size() == 1 ? text_paths.front() + ": the file" : ids_path + ": a source file") +
                " changed while it was being encoded; try again");
  writer.commit();
  return vocab;
}

namespace {

struct Header {
  uint32_t id_bytes = 0;
  uint64_t count = 0;
  SourceStamp source;
  size_t data_offset = 0;
  Vocab vocab;
  std::vector<int64_t> document_starts;
};

Header parse_header(const unsigned char* data, size_t size, const std::string& path, bool with_vocab) {
  if (size < kFixedHeader || std::memcmp(data, kMagic, sizeof kMagic) != 0)
    throw Error(path + ": not a charrnn id file");
  Header h;
  if (get<uint32_t>(data + 8) != kVersion) throw Error(path + ": unsupported id file version");
  h.id_bytes = get<uint32_t>(data + 12);
  h.count = get<uint64_t>(data + 16);
  h.source.size = get<uint64_t>(data + 24);
  h.source.mtime_ns = get<int64_t>(data + 32);
  const auto meta_size = get<uint64_t>(data + 40);
  if (h.id_bytes != 1 && h.id_bytes != 2 && h.id_bytes != 4) throw Error(path + ": corrupt id file (id width)");
  if (meta_size > size - kFixedHeader) throw Error(path + ": corrupt id file (header length)");
  h.data_offset = (kFixedHeader + meta_size + kAlignment - 1) / kAlignment * kAlignment;
  if (h.data_offset > size || h.count > (size - h.data_offset) / h.id_bytes ||
      h.data_offset + h.count * h.id_bytes != size)
    throw Error(path + ": corrupt or truncated id file");
  if (with_vocab) {
    try {
      const nlohmann::json meta =
          nlohmann::json::parse(std::string(reinterpret_cast<const char*>(data + kFixedHeader), meta_size));
      h.vocab = Vocab::from_json(meta.at("vocab"));
      // non-decreasing offsets inside the ids (an empty file is an empty
      // document), the first at 0: a split by documents trusts them
      for (const nlohmann::json& start : meta.at("document_starts")) {
        const int64_t s = start.is_number_integer() ? start.get<int64_t>() : -1;
        if (s < 0 || static_cast<uint64_t>(s) > h.count ||
            (h.document_starts.empty() ? s != 0 : s < h.document_starts.back()))
          throw Error(path + ": corrupt id file header (document offsets)");
        h.document_starts.push_back(s);
      }
      if (h.document_starts.empty()) throw Error(path + ": corrupt id file header (no documents)");
    } catch (const nlohmann::json::exception& e) {
      throw Error(path + ": corrupt id file header: " + e.what());
    }
  }
  return h;
}

}  // namespace

bool ids_file_is_fresh(const std::string& ids_path, const std::string& text_path) {
  return ids_file_is_fresh(ids_path, std::vector<std::string>{text_path}, U"");
}

bool ids_file_is_fresh(const std::string& ids_path, const std::vector<std::string>& text_paths,
                       std::u32string_view separator) {
  std::ifstream in(ids_path, std::ios::binary);
  if (!in) return false;
  unsigned char fixed[kFixedHeader];
  in.read(reinterpret_cast<char*>(fixed), sizeof fixed);
  if (in.gcount() != static_cast<std::streamsize>(sizeof fixed)) return false;
  struct stat info {};
  if (::stat(ids_path.c_str(), &info) != 0) return false;
  try {
    // only the fixed part is read here; the size check needs the file size
    if (std::memcmp(fixed, kMagic, sizeof kMagic) != 0 || get<uint32_t>(fixed + 8) != kVersion) return false;
    const SourceStamp now = stamp_of(text_paths, separator);
    const uint32_t id_bytes = get<uint32_t>(fixed + 12);
    const uint64_t count = get<uint64_t>(fixed + 16);
    const uint64_t meta = get<uint64_t>(fixed + 40);
    const uint64_t data_offset = (kFixedHeader + meta + kAlignment - 1) / kAlignment * kAlignment;
    return get<uint64_t>(fixed + 24) == now.size && get<int64_t>(fixed + 32) == now.mtime_ns &&
           (id_bytes == 1 || id_bytes == 2 || id_bytes == 4) &&
           data_offset + count * id_bytes == static_cast<uint64_t>(info.st_size);
  } catch (const Error&) {
    return false;
  }
}

MappedIds map_ids_file(const std::string& ids_path) {
  const int fd = ::open(ids_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ids_path + ": " + std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0 || info.st_size <= 0) {
    ::close(fd);
    throw Error(ids_path + ": empty or unreadable id file");
  }
  const auto size = static_cast<size_t>(info.st_size);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);  // the mapping stays valid without the descriptor
  if (map == MAP_FAILED) throw Error(ids_path + ": cannot memory-map: " + std::strerror(errno));
  std::shared_ptr<void> mapping(map, [size](void* p) { ::munmap(p, size); });
  const auto* bytes = static_cast<const unsigned char*>(map);
  Header h = parse_header(bytes, size, ids_path, /*with_vocab=*/true);
  // random chunks are read all over the file; tell the kernel not to read ahead
  ::madvise(map, size, MADV_RANDOM);
  const torch::ScalarType type = h.id_bytes == 1 ? torch::kByte : h.id_bytes == 2 ? torch::kShort : torch::kInt;
  if (h.vocab.size() > 32768 && h.id_bytes != 4) throw Error(ids_path + ": corrupt id file (id width)");
  // from_blob takes a mutable pointer; nothing writes through it (PROT_READ would fault).
  torch::Tensor ids = torch::from_blob(const_cast<unsigned char*>(bytes) + h.data_offset,
                                       {static_cast<int64_t>(h.count)}, [mapping](void*) {}, torch::TensorOptions(type));
  return {std::move(h.vocab), ids, std::move(h.document_starts)};
}

std::string corpus_cache_folder() {
  // the XDG base directory convention, as other tools' caches
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg == '/') return std::string(xdg) + "/charrnn";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/charrnn";
  return (std::filesystem::temp_directory_path() / "charrnn-cache").string();
}

std::string corpus_cache_path(const DataOptions& data) {
  // named after the first path ("lyrics/" counts as "lyrics"), with how many
  // more a list holds, and a hash of what the text is made of (the absolute
  // paths, glob and separator), so that two corpora with one name never
  // share a file; the id file's fingerprint tells a changed text apart
  std::filesystem::path first = std::filesystem::path(data.path.front()).lexically_normal();
  if (first.filename().empty()) first = first.parent_path();
  std::string name = first.filename().string();
  if (name.empty() || name == "." || name == "..") name = "corpus";
  if (data.path.size() > 1) name += "+" + std::to_string(data.path.size() - 1);
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a
  const auto mix = [&](const std::string& text) {
    for (const char c : text + '\0') hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  };
  for (const std::string& path : data.path) mix(std::filesystem::absolute(path).lexically_normal().string());
  mix(data.glob);
  mix(data.separator);
  char suffix[24];
  std::snprintf(suffix, sizeof suffix, "-%016llx.ids", static_cast<unsigned long long>(hash));
  return corpus_cache_folder() + "/" + name + suffix;
}

std::string corpus_cache_note(const DataOptions& data, int64_t bytes_written) {
  if (bytes_written <= 0) return "";
  std::ostringstream note;
  note << "encoded the corpus once into " << corpus_cache_path(data) << " (" << std::fixed << std::setprecision(1)
       << static_cast<double>(bytes_written) / 1e6 << " MB); runs on the same text map it (data.cache=false turns this off)";
  return note.str();
}

}  // namespace charrnn
