#include "charrnn/serve_reload.h"

#include <sys/stat.h>

#include "charrnn/export.h"

namespace charrnn {

ServedModel::FileStamp ServedModel::stamp_of(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return {};
  return {static_cast<uint64_t>(info.st_dev), static_cast<uint64_t>(info.st_ino), static_cast<int64_t>(info.st_size),
          static_cast<int64_t>(info.st_mtim.tv_sec) * 1000000000 + info.st_mtim.tv_nsec};
}

ServedModel::ServedModel(std::string path, ServeEngineOptions options)
    : path_(std::move(path)), options_(options), seen_(stamp_of(path_)) {
  engine_ = std::make_shared<ServeEngine>(load_model_file(path_), options_);
}

ServedModel::~ServedModel() {
  drain(std::chrono::steady_clock::now());
}

std::shared_ptr<ServeEngine> ServedModel::engine() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return engine_;
}

SubmittedRequest ServedModel::submit(std::shared_ptr<ServeEngine> engine, const std::vector<StreamRequest>& streams) {
  SubmittedRequest submitted{engine, engine->submit(streams)};
  // a retired engine takes no streams: a reload came between engine() and now
  if (submitted.streams.empty() && engine != this->engine()) {
    submitted.engine = this->engine();
    submitted.streams = submitted.engine->submit(streams);
  }
  return submitted;
}

ReloadResult ServedModel::reload_if_replaced() {
  std::lock_guard<std::mutex> reloading(reload_mutex_);
  const FileStamp now = stamp_of(path_);
  if (now == seen_ || now.size < 0) return {};
  seen_ = now;
  ReloadResult result;
  std::shared_ptr<ServeEngine> fresh;
  try {
    fresh = std::make_shared<ServeEngine>(load_model_file(path_), options_);
  } catch (const std::exception& e) {
    result.outcome = ReloadResult::Outcome::kFailed;
    result.error = e.what();
    return result;
  }
  std::shared_ptr<ServeEngine> old;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    old = std::move(engine_);
    engine_ = fresh;
    // the old engine takes no new streams from now on (a request that took
    // it goes to the new one: submit()) and goes once its last one ends
    old->stop_taking();
    retiring_.emplace_back(old, std::thread([old] { old->drain(std::chrono::steady_clock::time_point::max()); }));
  }
  result.outcome = ReloadResult::Outcome::kReloaded;
  result.step = fresh->checkpoint().progress.step;
  return result;
}

void ServedModel::drain(std::chrono::steady_clock::time_point deadline) {
  std::shared_ptr<ServeEngine> current;
  std::vector<std::pair<std::shared_ptr<ServeEngine>, std::thread>> retiring;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    current = engine_;
    retiring.swap(retiring_);
  }
  // the earlier deadline replaces a retired engine's "when its streams end"
  for (auto& retired : retiring) retired.first->drain(deadline);
  current->drain(deadline);
  for (auto& retired : retiring) retired.second.join();
}

}  // namespace charrnn
