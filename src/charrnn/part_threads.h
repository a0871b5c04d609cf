// A fixed set of threads that run the parts of one task together, many times
// over: the per-character steps of batched generation, where each part is a
// share of the streams. Starting threads for every step would cost tens of
// microseconds against steps of a few hundred; these threads are started
// once and wait between rounds.
//
// Each thread takes LibTorch's intra-op thread count and grad mode from the
// thread that runs the task, since both are per thread in LibTorch.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace charrnn {

class PartThreads {
 public:
  /// `parts` >= 1; parts - 1 threads are started (the caller runs part 0).
  explicit PartThreads(int64_t parts);
  ~PartThreads();
  PartThreads(const PartThreads&) = delete;
  PartThreads& operator=(const PartThreads&) = delete;

  int64_t parts() const { return parts_; }

  /// Runs part(0) ... part(parts - 1) at once, part(0) on the calling
  /// thread, and returns when all have finished. If parts throw, the
  /// lowest-numbered part's exception is rethrown here, after all finish.
  void run(const std::function<void(int64_t)>& part);

 private:
  void serve(int64_t index);

  const int64_t parts_;
  std::mutex mutex_;
  std::condition_variable start_, finished_;
  const std::function<void(int64_t)>* task_ = nullptr;
  uint64_t round_ = 0;
  int64_t running_ = 0;
  bool stopping_ = false;
  int intra_op_threads_ = 1;
  bool grad_enabled_ = false;
  std::vector<std::exception_ptr> errors_;
  std::vector<std::thread> threads_;
};

}  // namespace charrnn
