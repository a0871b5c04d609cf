#include "charrnn/part_threads.h"

#include <torch/torch.h>

namespace charrnn {

PartThreads::PartThreads(int64_t parts) : parts_(parts), errors_(static_cast<size_t>(parts > 0 ? parts : 1)) {
  TORCH_CHECK(parts >= 1, "PartThreads needs at least one part");
  threads_.reserve(static_cast<size_t>(parts - 1));
  for (int64_t index = 1; index < parts; ++index) threads_.emplace_back(&PartThreads::serve, this, index);
}

PartThreads::~PartThreads() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  start_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void PartThreads::run(const std::function<void(int64_t)>& part) {
  for (std::exception_ptr& e : errors_) e = nullptr;
  if (parts_ > 1) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &part;
      intra_op_threads_ = at::get_num_threads();
      grad_enabled_ = torch::GradMode::is_enabled();
      running_ = parts_ - 1;
      ++round_;
    }
    start_.notify_all();
  }
  try {
    part(0);
  } catch (...) {
    errors_[0] = std::current_exception();
  }
  if (parts_ > 1) {
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [this] { return running_ == 0; });
    task_ = nullptr;
  }
  for (const std::exception_ptr& e : errors_)
    if (e) std::rethrow_exception(e);
}

void PartThreads::serve(int64_t index) {
  uint64_t seen = 0;
  int intra_op_threads = -1;
  for (;;) {
    const std::function<void(int64_t)>* task;
    bool grad_enabled;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      start_.wait(lock, [&] { return stopping_ || round_ != seen; });
      if (stopping_) return;
      seen = round_;
      task = task_;
      grad_enabled = grad_enabled_;
      // a new thread would start from OpenMP's default, every core
      if (intra_op_threads != intra_op_threads_) {
        intra_op_threads = intra_op_threads_;
        at::set_num_threads(intra_op_threads);
      }
    }
    try {
      const torch::AutoGradMode grad_mode(grad_enabled);
      (*task)(index);
    } catch (...) {
      errors_[static_cast<size_t>(index)] = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --running_;
    }
    finished_.notify_one();
  }
}

}  // namespace charrnn
