#include "charrnn/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace charrnn {

double schedule_progress(const TrainOptions& train, int64_t steps_done, double elapsed_seconds) {
  double progress = train.steps > 0 ? static_cast<double>(steps_done) / static_cast<double>(train.steps) : 1.0;
  if (train.max_seconds > 0) progress = std::max(progress, elapsed_seconds / train.max_seconds);
  return std::clamp(progress, 0.0, 1.0);
}

double scheduled_learning_rate(const TrainOptions& train, int64_t steps_done, double elapsed_seconds) {
  const double peak = train.learning_rate, floor = std::min(train.min_lr, peak);
  double rate = peak;
  if (train.lr_schedule != LrSchedule::Constant) {
    const double p = schedule_progress(train, steps_done, elapsed_seconds);
    const double kept = train.lr_schedule == LrSchedule::Cosine ? 0.5 * (1.0 + std::cos(M_PI * p)) : 1.0 - p;
    rate = floor + (peak - floor) * kept;
  }
  if (steps_done < train.warmup_steps)
    rate *= static_cast<double>(steps_done + 1) / static_cast<double>(train.warmup_steps);
  return rate;
}

std::string describe_recipe(const TrainOptions& train) {
  std::ostringstream out;
  out << to_string(train.batching) << " batching";
  if (train.burn_in > 0) out << " with " << train.burn_in << " characters of burn-in";
  if (train.lr_schedule == LrSchedule::Constant) out << ", constant lr " << train.learning_rate;
  else
    out << ", " << to_string(train.lr_schedule) << " lr " << train.learning_rate << " -> " << train.min_lr << " over "
        << (train.max_seconds > 0 ? "the steps or the time limit, whichever ends first" : "the steps");
  if (train.warmup_steps > 0) out << ", " << train.warmup_steps << " warm-up steps";
  if (train.weight_decay > 0) out << ", weight decay " << train.weight_decay;
  if (train.ema_decay > 0) {
    out << ", weights averaged (EMA " << train.ema_decay << ") ";
    if (train.ema_start <= 0) out << "from the first step";
    else out << "from " << train.ema_start * 100 << "% of the run";
  }
  return out.str();
}

}  // namespace charrnn
