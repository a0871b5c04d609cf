// What a training run tells the world besides its checkpoints: the metrics
// file (JSON lines next to the checkpoint, one per evaluation), the loss plot
// drawn from it, and the progress lines on the terminal.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <limits>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace charrnn {

/// Paths written next to the checkpoint: the best checkpoint and metrics.
std::string best_checkpoint_path(const std::string& checkpoint);
std::string metrics_path(const std::string& checkpoint);

/// "1h05m", "3m07s", "42s"; "?" when unknown.
std::string format_duration(double seconds);
/// "812.4k chars/s", "1.2M chars/s".
std::string format_rate(double chars_per_second);

/// "562/3000", or "562/~2036" when a time budget ends the run first: the
/// step the clock stops at, at `seconds_per_step` (0: no pace yet).
std::string step_label(int64_t step, int64_t steps, double max_seconds, double elapsed_seconds,
                       double seconds_per_step);

/// The clock of a run's time budget: training time, validation included.
/// The test hook CHARRNN_TEST_SECONDS_PER_STEP makes every step take that
/// long instead, so that a time-bounded run's step count does not depend on
/// the machine's speed.
class RunClock {
 public:
  explicit RunClock(int64_t first_step);
  /// Seconds this process has trained by the budget's clock, at `step`.
  double seconds(int64_t step) const;
  /// Wall-clock seconds since the run started.
  double wall_seconds() const;

 private:
  std::chrono::steady_clock::time_point start_;
  int64_t first_step_;
  double seconds_per_step_;  // the test hook's; 0: the real clock
};

/// What an evaluation found, for its lines on the terminal.
struct EvaluationReport {
  std::string step_label;
  double train_loss = 0;
  double learning_rate = 0;
  std::optional<double> val_loss, val_bpc;
  bool improved = false;   ///< a new best validation loss
  std::string sample;
  std::string warning;     ///< a line of its own after the sample; "" for none
};

class RunLog {
 public:
  /// `log` nullptr is silent; `redraw` redraws one progress line in place (a
  /// terminal); `writes_files` is false on the ranks that leave files to rank 0.
  RunLog(std::string checkpoint, std::ostream* log, bool redraw, bool writes_files);

  /// Drops the metrics of steps after `step` (written before a kill, or by
  /// the run a fresh one replaces) and any torn last line, so the file reads
  /// as if the run had never stopped.
  void keep_metrics_up_to(int64_t step) const;
  /// Appends one metrics line (one write(2): a kill leaves whole lines or
  /// none) and redraws the loss plot from the file.
  void record(const nlohmann::json& metrics) const;

  /// Starts the progress meter at `step` (a run's start, or after an
  /// evaluation: the next rate covers training, not validation).
  void restart_progress(int64_t step, int64_t chars_per_step);
  /// Counts a finished step's loss and, when one is due, prints the progress
  /// line: the mean loss and the rate since the last one, and the time left
  /// to `steps` or to the end of `budget_left_seconds` (infinite: none).
  void step_done(int64_t step, int64_t steps, double loss, const std::string& step_label, double learning_rate,
                 double budget_left_seconds);
  void evaluation(const EvaluationReport& report) const;
  /// The warning to print when the validation loss has risen
  /// kRisingEvaluationsWarned evaluations in a row, else "".
  std::string watch_validation_loss(double val_loss, double best_val_loss, int64_t best_step);
  /// A line of its own (a rollback, an interruption), clearing a redrawn one.
  void say(const std::string& line) const;

  static constexpr int64_t kRisingEvaluationsWarned = 3;

 private:
  using Clock = std::chrono::steady_clock;
  std::string checkpoint_;
  std::ostream* log_;
  bool redraw_;
  bool writes_files_;
  // the progress meter: since the last line
  Clock::time_point report_time_ = Clock::now();
  int64_t report_step_ = 0, chars_per_step_ = 0;
  double loss_sum_ = 0;
  int64_t loss_count_ = 0;
  // validation losses that rose one after another
  int64_t rising_evaluations_ = 0;
  double last_val_loss_ = std::numeric_limits<double>::infinity();
};

}  // namespace charrnn
