// The learning rate over a run: an optional linear warm-up, then a decay
// from train.learning_rate to train.min_lr that follows the run's progress.
// Progress is the larger of steps done / train.steps and training time /
// train.max_seconds, so a run bounded by time reaches min_lr as its time
// runs out, and one bounded by steps as its last step is taken.
#pragma once

#include <cstdint>
#include <string>

#include "charrnn/config.h"

namespace charrnn {

/// In [0, 1]: how far a run with these options is after `steps_done` steps
/// and `elapsed_seconds` of training (summed over resumed runs).
double schedule_progress(const TrainOptions& train, int64_t steps_done, double elapsed_seconds);

/// The rate of the step taken after `steps_done` steps and `elapsed_seconds`.
/// Warm-up multiplies the decayed rate by (steps_done + 1) / warmup_steps
/// while that is below 1.
double scheduled_learning_rate(const TrainOptions& train, int64_t steps_done, double elapsed_seconds);

/// One line for people: the batching, the schedule, the weight decay and
/// the weight average, e.g. "sequential batching, cosine lr 0.008 -> 0.0008
/// over the steps, 100 warm-up steps, weight decay 0.1, weights averaged
/// (EMA 0.999) from 50% of the run".
std::string describe_recipe(const TrainOptions& train);

}  // namespace charrnn
