// The model a server serves, and its hot reload (`charrnn serve --watch`):
// when the checkpoint file is replaced (training renames each new one into
// place), new requests go to a new engine on the new weights while the old
// engine finishes its streams on the old weights and goes; a file that does
// not load leaves the old model serving, and is tried again once it changes
// again. src/cli/serve.cpp polls reload_if_replaced() and says what
// happened; tests call it directly, without a socket.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "charrnn/serve_engine.h"

namespace charrnn {

/// What reload_if_replaced() did.
struct ReloadResult {
  enum class Outcome {
    kUnchanged,  ///< the file is the one last looked at (or is missing)
    kReloaded,   ///< new requests go to the new model
    kFailed,     ///< the new file did not load; the old model goes on serving
  };
  Outcome outcome = Outcome::kUnchanged;
  int64_t step = 0;   ///< kReloaded: the training step of the new checkpoint
  std::string error;  ///< kFailed: why, as the loader said it
};

/// The streams of one request and the engine generating them, which they
/// keep alive until the last is read.
struct SubmittedRequest {
  std::shared_ptr<ServeEngine> engine;
  std::vector<std::shared_ptr<ServeStream>> streams;  ///< empty: no room (or stopping)
};

class ServedModel {
 public:
  /// Loads `path` (a checkpoint or a TorchScript export) into an engine;
  /// throws as load_model_file() does.
  ServedModel(std::string path, ServeEngineOptions options);
  /// Ends what still runs, at once, and waits for the retired engines.
  ~ServedModel();
  ServedModel(const ServedModel&) = delete;
  ServedModel& operator=(const ServedModel&) = delete;

  /// The engine new requests go to. A request is checked against its
  /// checkpoint (vocabulary, sample section) and submitted to it, so that a
  /// reload meanwhile does not change the model a request sees.
  std::shared_ptr<ServeEngine> engine() const;
  /// Submits to `engine`; when a reload retired it since the caller took
  /// it, to the current one instead.
  SubmittedRequest submit(std::shared_ptr<ServeEngine> engine, const std::vector<StreamRequest>& streams);
  /// Loads the file again when it was replaced since it was last looked at
  /// (another inode, size or modification time). Thread-safe.
  ReloadResult reload_if_replaced();
  /// Stops taking streams; those in flight on the current and the retired
  /// engines run until `deadline`, then end. Returns when all have ended.
  void drain(std::chrono::steady_clock::time_point deadline);

  const std::string& path() const { return path_; }

 private:
  struct FileStamp {
    uint64_t device = 0, inode = 0;
    int64_t size = -1, mtime_ns = 0;
    bool operator==(const FileStamp& o) const {
      return device == o.device && inode == o.inode && size == o.size && mtime_ns == o.mtime_ns;
    }
  };
  static FileStamp stamp_of(const std::string& path);

  std::string path_;
  ServeEngineOptions options_;
  mutable std::mutex mutex_;
  std::shared_ptr<ServeEngine> engine_;  // the current model; engine() reads it
  FileStamp seen_;                       // the file as it was last looked at
  std::mutex reload_mutex_;              // one reload at a time
  /// engines replaced by a reload, each with the thread that waits for its streams to end
  std::vector<std::pair<std::shared_ptr<ServeEngine>, std::thread>> retiring_;
};

}  // namespace charrnn
