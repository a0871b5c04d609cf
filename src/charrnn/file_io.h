// Files in and out. Reading is whole-file; writing never leaves a
// half-written file in place after a kill, a crash or a full disk: write to
// a temporary file in the same folder, fsync it, rename it over the target,
// then fsync the folder.
#pragma once

#include <cstddef>
#include <string>

namespace charrnn {

/// Streams a file into place. Nothing is visible at `path` until commit();
/// a writer destroyed without commit() removes its temporary file. Every
/// failure throws Error naming the path and the system's reason, and leaves
/// any previous file at `path` untouched.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t size);
  void commit();

 private:
  void write_all(const char* bytes, size_t size);
  void abandon();
  std::string path_;
  std::string temporary_;
  int fd_ = -1;
};

/// Reads a whole file; throws Error when it cannot.
std::string read_file(const std::string& path);

/// Replaces `path` with `bytes` atomically (see AtomicFileWriter).
void write_file_atomically(const std::string& path, const std::string& bytes);

/// Creates the folder holding `path` (and its parents) when missing.
void ensure_parent_directory(const std::string& path);

}  // namespace charrnn
