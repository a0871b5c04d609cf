#include "charrnn/file_io.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <sstream>
#include <fstream>
#include <system_error>
#include <thread>
#include <unistd.h>

#include "charrnn/error.h"

namespace charrnn {

namespace {

std::string parent_of(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

[[noreturn]] void fail(const std::string& path, const std::string& doing, int error) {
  throw Error("cannot write " + path + ": " + doing + ": " + std::strerror(error));
}

// A writer killed before commit() (SIGKILL, power cut) leaves PATH.tmp.PID
// behind. Remove those whose process is gone, so repeated kills do not fill
// the folder; a live writer's file is left alone.
void remove_stale_temporaries(const std::string& path) {
  const std::filesystem::path target(path);
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code ec;
  std::filesystem::directory_iterator it(parent_of(path), ec);
  if (ec) return;
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string pid_text = name.substr(prefix.size());
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::strtol(pid_text.c_str(), nullptr, 10);
    if (pid == ::getpid() || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH))
      std::filesystem::remove(entry.path(), ec);
  }
}

// Fault injection for the kill tests (tests/test_robustness.cpp): with
// CHARRNN_TEST_PAUSE_IN_WRITE_MS set, every atomic write pauses halfway
// through its data, so a kill can be aimed at a half-written file.
int pause_in_write_ms() {
  const char* value = std::getenv("CHARRNN_TEST_PAUSE_IN_WRITE_MS");
  return value ? std::atoi(value) : 0;
}

}  // namespace

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

void ensure_parent_directory(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(parent_of(path), ec);
  if (ec) throw Error("cannot create folder " + parent_of(path) + " for " + path + ": " + ec.message());
}

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), temporary_(path_ + ".tmp." + std::to_string(::getpid())) {
  remove_stale_temporaries(path_);
  fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(path_, "creating " + temporary_, errno);
}

AtomicFileWriter::~AtomicFileWriter() { abandon(); }

void AtomicFileWriter::abandon() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(temporary_.c_str());
  fd_ = -1;
}

void AtomicFileWriter::write(const void* data, size_t size) {
  const char* bytes = static_cast<const char*>(data);
  if (const int pause = pause_in_write_ms(); pause > 0 && size > 1) {
    write_all(bytes, size / 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(pause));
    write_all(bytes + size / 2, size - size / 2);
    return;
  }
  write_all(bytes, size);
}

void AtomicFileWriter::write_all(const char* bytes, size_t size) {
  size_t written = 0;
  while (written < size) {
    const ssize_t n = ::write(fd_, bytes + written, size - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = n < 0 ? errno : ENOSPC;
      abandon();
      fail(path_, "writing", error);
    }
    written += static_cast<size_t>(n);
  }
}

void AtomicFileWriter::commit() {
  if (::fsync(fd_) != 0) {
    const int error = errno;
    abandon();
    fail(path_, "flushing to disk", error);
  }
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    const int error = errno;
    ::unlink(temporary_.c_str());
    fail(path_, "closing", error);
  }
  if (::rename(temporary_.c_str(), path_.c_str()) != 0) {
    const int error = errno;
    ::unlink(temporary_.c_str());
    fail(path_, "renaming into place", error);
  }
  // the rename itself must reach the disk too, or a power cut can undo it
  const int dir = ::open(parent_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  AtomicFileWriter writer(path);
  writer.write(bytes.data(), bytes.size());
  writer.commit();
}

}  // namespace charrnn
