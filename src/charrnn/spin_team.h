// A few threads that run one task together, thousands of times a second,
// and meet at barriers inside it: the decoder's step for a batch of few
// rows, whose matrix products are split by columns (each thread keeps its
// share of the weights in its own core's cache) and whose element-wise work
// runs between two barriers.
//
// PartThreads (part_threads.h) wakes its threads through a condition
// variable once per round, which costs tens of microseconds: fine for a
// step of many rows, far too much for a step of 50 µs with five meeting
// points. These threads spin instead, at the barriers and between rounds,
// and sleep only after a round has not come for a while (kIdleSpin), so an
// idle server does not keep a core busy. Spinning is bounded so a thread
// that was preempted does not hold a core for its whole time slice.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace charrnn {

class SpinTeam {
 public:
  /// `size` >= 1 threads in all; size - 1 are started (the caller is member 0).
  explicit SpinTeam(int64_t size);
  ~SpinTeam();
  SpinTeam(const SpinTeam&) = delete;
  SpinTeam& operator=(const SpinTeam&) = delete;

  int64_t size() const { return size_; }

  /// Runs task(member) on every member at once, member 0 on the calling
  /// thread; returns when all have finished. If members throw, the
  /// lowest-numbered one's exception is rethrown here, after all finish. A
  /// member that throws skips the barriers left in its task and the others
  /// would wait there for ever: a task with barriers checks its inputs
  /// before run() (the decoder's steps do).
  void run(const std::function<void(int64_t member)>& task);
  /// Inside a task: waits until every member has reached this barrier.
  void barrier();

  /// How long a member waits for the next round before it sleeps.
  static constexpr std::chrono::microseconds kIdleSpin{200};

 private:
  void serve(int64_t member);
  /// Spins until `flag` differs from `seen`; true if it did within `limit`.
  static bool spin_until_changed(const std::atomic<uint64_t>& flag, uint64_t seen, std::chrono::nanoseconds limit);

  const int64_t size_;
  const std::function<void(int64_t)>* task_ = nullptr;
  std::atomic<uint64_t> round_{0};     // bumped to start a round
  std::atomic<int64_t> finished_{0};   // members done with this round
  std::atomic<int64_t> arrived_{0};    // members at the current barrier
  std::atomic<uint64_t> phase_{0};     // bumped when all reached a barrier
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> sleeping_{0};
  std::mutex mutex_;                   // for sleeping members only
  std::condition_variable wake_;
  std::vector<std::exception_ptr> errors_;
  std::vector<std::thread> threads_;
};

}  // namespace charrnn
