#include "charrnn/spin_team.h"

#include <torch/torch.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CHARRNN_PAUSE() _mm_pause()
#else
#define CHARRNN_PAUSE() std::this_thread::yield()
#endif

namespace charrnn {

namespace {

// Past this, a waiter at a barrier yields its core at every look: the
// member it waits for was probably preempted, and on two cores the waiter
// may be what keeps it off.
constexpr std::chrono::microseconds kBarrierSpin{50};

}  // namespace

SpinTeam::SpinTeam(int64_t size) : size_(size), errors_(static_cast<size_t>(size > 0 ? size : 1)) {
  TORCH_CHECK(size >= 1, "SpinTeam needs at least one member");
  threads_.reserve(static_cast<size_t>(size - 1));
  for (int64_t member = 1; member < size; ++member) threads_.emplace_back(&SpinTeam::serve, this, member);
}

SpinTeam::~SpinTeam() {
  stopping_.store(true);
  {
    std::lock_guard<std::mutex> lock(mutex_);
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
}

bool SpinTeam::spin_until_changed(const std::atomic<uint64_t>& flag, uint64_t seen, std::chrono::nanoseconds limit) {
  const auto start = std::chrono::steady_clock::now();
  for (int64_t look = 1;; ++look) {
    if (flag.load(std::memory_order_acquire) != seen) return true;
    CHARRNN_PAUSE();
    if (look % 64 == 0 && std::chrono::steady_clock::now() - start > limit) return false;
  }
}

void SpinTeam::run(const std::function<void(int64_t)>& task) {
  for (std::exception_ptr& e : errors_) e = nullptr;
  if (size_ > 1) {
    task_ = &task;
    finished_.store(0, std::memory_order_relaxed);
    round_.fetch_add(1);  // seq_cst, against a member going to sleep (serve())
    if (sleeping_.load() > 0) {
      { std::lock_guard<std::mutex> lock(mutex_); }
      wake_.notify_all();
    }
  }
  try {
    task(0);
  } catch (...) {
    errors_[0] = std::current_exception();
  }
  if (size_ > 1) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t look = 1; finished_.load(std::memory_order_acquire) < size_ - 1; ++look) {
      CHARRNN_PAUSE();
      if (look % 64 == 0 && std::chrono::steady_clock::now() - start > kBarrierSpin) std::this_thread::yield();
    }
    task_ = nullptr;
  }
  for (const std::exception_ptr& e : errors_)
    if (e) std::rethrow_exception(e);
}

void SpinTeam::barrier() {
  if (size_ == 1) return;
  const uint64_t phase = phase_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) == size_ - 1) {
    arrived_.store(0, std::memory_order_relaxed);
    phase_.fetch_add(1, std::memory_order_release);
    return;
  }
  if (spin_until_changed(phase_, phase, kBarrierSpin)) return;
  while (phase_.load(std::memory_order_acquire) == phase) std::this_thread::yield();
}

void SpinTeam::serve(int64_t member) {
  uint64_t seen = 0;
  for (;;) {
    if (!spin_until_changed(round_, seen, kIdleSpin)) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleeping_.fetch_add(1);  // seq_cst: run() either sees it or this sees the new round
      wake_.wait(lock, [&] { return stopping_.load() || round_.load() != seen; });
      sleeping_.fetch_sub(1);
    }
    if (stopping_.load()) return;
    seen = round_.load(std::memory_order_acquire);
    try {
      (*task_)(member);
    } catch (...) {
      errors_[static_cast<size_t>(member)] = std::current_exception();
    }
    finished_.fetch_add(1, std::memory_order_acq_rel);
  }
}

}  // namespace charrnn
