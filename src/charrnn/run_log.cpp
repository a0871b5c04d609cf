#include "charrnn/run_log.h"

#include <cerrno>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "charrnn/error.h"
#include "charrnn/file_io.h"
#include "charrnn/plot.h"

namespace charrnn {

namespace {

std::string strip_extension(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const auto dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return path;
  return path.substr(0, dot);
}

void append_line(const std::string& path, const std::string& line) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot write metrics to " + path + ": " + std::strerror(errno));
  const std::string text = line + "\n";
  const ssize_t n = ::write(fd, text.data(), text.size());
  const int error = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size()))
    throw Error("cannot write metrics to " + path + ": " + (n < 0 ? std::strerror(error) : "short write"));
}

}  // namespace

std::string best_checkpoint_path(const std::string& checkpoint) { return strip_extension(checkpoint) + ".best.pt"; }
std::string metrics_path(const std::string& checkpoint) { return strip_extension(checkpoint) + ".metrics.jsonl"; }

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  std::ostringstream out;
  if (s >= 3600) out << s / 3600 << "h" << std::setw(2) << std::setfill('0') << (s % 3600) / 60 << "m";
  else if (s >= 60) out << s / 60 << "m" << std::setw(2) << std::setfill('0') << s % 60 << "s";
  else out << s << "s";
  return out.str();
}

std::string format_rate(double chars_per_second) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1);
  if (chars_per_second >= 1e6) out << chars_per_second / 1e6 << "M";
  else out << chars_per_second / 1e3 << "k";
  return out.str() + " chars/s";
}

std::string step_label(int64_t step, int64_t steps, double max_seconds, double elapsed_seconds,
                       double seconds_per_step) {
  const std::string done = std::to_string(step) + "/";
  if (max_seconds > 0 && seconds_per_step > 0) {
    // the step the clock will stop at, at the pace so far (validation included)
    const double left = std::max(0.0, max_seconds - elapsed_seconds);
    const int64_t end = step + static_cast<int64_t>(left / seconds_per_step);
    if (end < steps) return done + "~" + std::to_string(end);
  }
  return done + std::to_string(steps);
}

RunClock::RunClock(int64_t first_step)
    : start_(std::chrono::steady_clock::now()), first_step_(first_step), seconds_per_step_([] {
        const char* fixed = std::getenv("CHARRNN_TEST_SECONDS_PER_STEP");
        return fixed ? std::atof(fixed) : 0.0;
      }()) {}

double RunClock::seconds(int64_t step) const {
  return seconds_per_step_ > 0 ? seconds_per_step_ * static_cast<double>(step - first_step_) : wall_seconds();
}

double RunClock::wall_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

RunLog::RunLog(std::string checkpoint, std::ostream* log, bool redraw, bool writes_files)
    : checkpoint_(std::move(checkpoint)), log_(log), redraw_(redraw), writes_files_(writes_files) {}

void RunLog::keep_metrics_up_to(int64_t step) const {
  if (!writes_files_) return;
  const std::string path = metrics_path(checkpoint_);
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  bool dropped = false;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= step)
      kept += line + "\n";
    else
      dropped = true;
  }
  if (dropped) write_file_atomically(path, kept);
}

void RunLog::record(const nlohmann::json& metrics) const {
  if (!writes_files_) return;
  append_line(metrics_path(checkpoint_), metrics.dump());
  write_loss_plot({metrics_path(checkpoint_)}, loss_plot_path(checkpoint_));
}

void RunLog::restart_progress(int64_t step, int64_t chars_per_step) {
  report_time_ = Clock::now();
  report_step_ = step;
  chars_per_step_ = chars_per_step;
  loss_sum_ = 0;
  loss_count_ = 0;
}

void RunLog::step_done(int64_t step, int64_t steps, double loss, const std::string& step_label,
                       double learning_rate, double budget_left_seconds) {
  loss_sum_ += loss;
  ++loss_count_;
  // often when redrawn in place, rarely in a log file
  const double since = std::chrono::duration<double>(Clock::now() - report_time_).count();
  if (!log_ || since < (redraw_ ? 0.25 : 10.0)) return;
  const double rate = static_cast<double>((step - report_step_) * chars_per_step_) / since;
  const double eta =
      std::min(since / static_cast<double>(step - report_step_) * static_cast<double>(steps - step), budget_left_seconds);
  std::ostream& log = *log_;
  if (redraw_) log << "\r\033[K";
  log << "step " << step_label << std::fixed << std::setprecision(4) << "  loss "
      << loss_sum_ / static_cast<double>(loss_count_) << "  lr " << std::defaultfloat << std::setprecision(3)
      << learning_rate << "  " << format_rate(rate) << "  ETA " << format_duration(eta) << (redraw_ ? "" : "\n")
      << std::flush;
  restart_progress(step, chars_per_step_);
}

std::string RunLog::watch_validation_loss(double val_loss, double best_val_loss, int64_t best_step) {
  rising_evaluations_ = val_loss > last_val_loss_ ? rising_evaluations_ + 1 : 0;
  last_val_loss_ = val_loss;
  if (rising_evaluations_ != kRisingEvaluationsWarned) return "";
  std::ostringstream warning;
  warning << std::fixed << std::setprecision(4) << "warning: the validation loss has risen " << kRisingEvaluationsWarned
          << " evaluations in a row; the best, " << best_val_loss << " at step " << best_step << ", stays in "
          << best_checkpoint_path(checkpoint_)
          << ". The model is learning this text by heart: stop here (Ctrl-C saves), or train fewer steps, "
             "with a lower train.learning_rate or more model.dropout\n";
  return warning.str();
}

void RunLog::evaluation(const EvaluationReport& r) const {
  if (!log_) return;
  std::ostream& log = *log_;
  if (redraw_) log << "\r\033[K";
  log << "step " << r.step_label << std::fixed << std::setprecision(4) << "  train loss " << r.train_loss << "  lr "
      << std::defaultfloat << std::setprecision(3) << r.learning_rate << std::fixed << std::setprecision(4);
  if (r.val_loss)
    log << "  val loss " << *r.val_loss << "  val bpc " << std::setprecision(3) << r.val_bpc.value_or(0)
        << (r.improved ? "  (best)" : "");
  log << "\n--- sample ---\n" << r.sample << "\n--------------\n" << r.warning << std::flush;
}

void RunLog::say(const std::string& line) const {
  if (log_) *log_ << (redraw_ ? "\r\033[K" : "") << line << "\n" << std::flush;
}

}  // namespace charrnn
