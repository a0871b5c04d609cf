// lr_schedule: the rate at chosen steps and times, for each schedule, with
// and without warm-up, bounded by steps or by time.
#include <cmath>

#include <gtest/gtest.h>

#include "charrnn/lr_schedule.h"

namespace {

using charrnn::schedule_progress;
using charrnn::scheduled_learning_rate;
using charrnn::TrainOptions;

TrainOptions options(const char* schedule, int64_t steps = 1000, double max_seconds = 0) {
  TrainOptions t;
  t.learning_rate = 0.01;
  t.min_lr = 0.001;
  t.lr_schedule = charrnn::parse_lr_schedule(schedule, "test");
  // the keys these cases are about; the rest of the built-in recipe named off
  t.batching = charrnn::Batching::Random;
  t.warmup_steps = 0;
  t.weight_decay = 0;
  t.steps = steps;
  t.max_seconds = max_seconds;
  return t;
}

TEST(LrSchedule, ConstantIgnoresProgressAndMinLr) {
  const TrainOptions t = options("constant");
  for (int64_t step : {0, 1, 500, 999, 5000}) EXPECT_DOUBLE_EQ(scheduled_learning_rate(t, step, 1e9), 0.01);
}

TEST(LrSchedule, CosineFromPeakThroughMidpointToMinLr) {
  const TrainOptions t = options("cosine");
  EXPECT_DOUBLE_EQ(scheduled_learning_rate(t, 0, 0), 0.01);
  EXPECT_NEAR(scheduled_learning_rate(t, 250, 0), 0.001 + 0.009 * 0.5 * (1 + std::cos(M_PI / 4)), 1e-15);
  EXPECT_NEAR(scheduled_learning_rate(t, 500, 0), 0.0055, 1e-15);
  EXPECT_NEAR(scheduled_learning_rate(t, 1000, 0), 0.001, 1e-15);
  EXPECT_NEAR(scheduled_learning_rate(t, 3000, 0), 0.001, 1e-15) << "past the end it stays at min_lr";
}

TEST(LrSchedule, LinearFallsEvenly) {
  const TrainOptions t = options("linear");
  EXPECT_DOUBLE_EQ(scheduled_learning_rate(t, 0, 0), 0.01);
  EXPECT_NEAR(scheduled_learning_rate(t, 100, 0), 0.01 - 0.0009, 1e-15);
  EXPECT_NEAR(scheduled_learning_rate(t, 750, 0), 0.00325, 1e-15);
  EXPECT_NEAR(scheduled_learning_rate(t, 1000, 0), 0.001, 1e-15);
}

TEST(LrSchedule, WarmupRampsLinearlyThenHandsOverToTheDecay) {
  TrainOptions t = options("cosine");
  t.warmup_steps = 10;
  EXPECT_NEAR(scheduled_learning_rate(t, 0, 0), 0.01 * 0.1, 1e-15);
  EXPECT_NEAR(scheduled_learning_rate(t, 4, 0), 0.5 * (0.001 + 0.009 * 0.5 * (1 + std::cos(M_PI * 0.004))), 1e-15);
  EXPECT_NEAR(scheduled_learning_rate(t, 9, 0), 1.0 * (0.001 + 0.009 * 0.5 * (1 + std::cos(M_PI * 0.009))), 1e-15);
  EXPECT_NEAR(scheduled_learning_rate(t, 10, 0), 0.001 + 0.009 * 0.5 * (1 + std::cos(M_PI * 0.01)), 1e-15);
  t.lr_schedule = charrnn::LrSchedule::Constant;  // warm-up works without a decay too
  EXPECT_NEAR(scheduled_learning_rate(t, 1, 0), 0.002, 1e-15);
  EXPECT_NEAR(scheduled_learning_rate(t, 10, 0), 0.01, 1e-15);
}

TEST(LrSchedule, TimeLimitDrivesProgressWhenItEndsTheRunFirst) {
  // 10^8 steps will never be reached: the time limit decides
  const TrainOptions t = options("cosine", 100000000, 300);
  EXPECT_DOUBLE_EQ(schedule_progress(t, 10, 0), 1e-7);
  EXPECT_DOUBLE_EQ(schedule_progress(t, 10, 150), 0.5);
  EXPECT_NEAR(scheduled_learning_rate(t, 10, 150), 0.0055, 1e-9);
  EXPECT_NEAR(scheduled_learning_rate(t, 10, 300), 0.001, 1e-15) << "the rate reaches min_lr as the time runs out";
  EXPECT_NEAR(scheduled_learning_rate(t, 10, 900), 0.001, 1e-15);
  // and when the steps end first, they decide
  const TrainOptions few_steps = options("linear", 100, 300);
  EXPECT_DOUBLE_EQ(schedule_progress(few_steps, 50, 30), 0.5);
  EXPECT_DOUBLE_EQ(schedule_progress(few_steps, 10, 240), 0.8);
}

// min_lr 0: the schedule "to zero". The rate is exactly 0 once the
// progress is 1, whether the steps or the time ended the run. (The last step
// a run takes starts before its end: with steps, after steps - 1 of them,
// so its rate is the schedule's just before zero.)
TEST(LrSchedule, ToZeroReachesExactlyZeroAtTheEndOfTheStepsOrTheTime) {
  for (const char* schedule : {"linear", "cosine"}) {
    SCOPED_TRACE(schedule);
    TrainOptions by_steps = options(schedule, 1000);
    by_steps.min_lr = 0;
    by_steps.warmup_steps = 50;
    EXPECT_EQ(scheduled_learning_rate(by_steps, 1000, 0), 0.0);
    EXPECT_EQ(scheduled_learning_rate(by_steps, 1200, 0), 0.0);
    EXPECT_GT(scheduled_learning_rate(by_steps, 999, 0), 0.0);
    EXPECT_LT(scheduled_learning_rate(by_steps, 999, 0), 0.01 * 0.002);
    TrainOptions by_time = options(schedule, 100000000, 300);
    by_time.min_lr = 0;
    EXPECT_EQ(scheduled_learning_rate(by_time, 12345, 300), 0.0);
    EXPECT_EQ(scheduled_learning_rate(by_time, 12345, 301.5), 0.0);
    EXPECT_GT(scheduled_learning_rate(by_time, 12345, 299.9), 0.0);
    EXPECT_NEAR(scheduled_learning_rate(by_time, 12345, 150), 0.005, 1e-12);
  }
  TrainOptions linear = options("linear", 1000);
  linear.min_lr = 0;
  EXPECT_NEAR(scheduled_learning_rate(linear, 999, 0), 0.01 / 1000, 1e-18) << "the last step's rate";
}

TEST(LrSchedule, NoStepsIsTheEnd) {
  const TrainOptions t = options("linear", 0);
  EXPECT_DOUBLE_EQ(schedule_progress(t, 0, 0), 1.0);
}

TEST(LrSchedule, DescribeNamesTheRecipe) {
  TrainOptions t = options("cosine", 1000, 300);
  t.batching = charrnn::Batching::Sequential;
  t.warmup_steps = 100;
  t.weight_decay = 0.1;
  const std::string text = charrnn::describe_recipe(t);
  for (const char* part : {"sequential batching", "cosine lr 0.01 -> 0.001", "100 warm-up steps", "weight decay 0.1",
                           "time limit"})
    EXPECT_NE(text.find(part), std::string::npos) << part << " not in: " << text;
  EXPECT_EQ(charrnn::describe_recipe(options("constant")), "random batching, constant lr 0.01");
  TrainOptions to_zero = options("linear", 1000, 300);
  to_zero.min_lr = 0;
  EXPECT_EQ(charrnn::describe_recipe(to_zero),
            "random batching, linear lr 0.01 -> 0 over the steps or the time limit, whichever ends first");
  to_zero.max_seconds = 0;
  EXPECT_EQ(charrnn::describe_recipe(to_zero), "random batching, linear lr 0.01 -> 0 over the steps");
}

TEST(LrSchedule, DescribeNamesTheWeightAverage) {
  TrainOptions t = options("constant");
  t.ema_decay = 0.999;
  t.ema_start = 0.75;
  EXPECT_EQ(charrnn::describe_recipe(t), "random batching, constant lr 0.01, weights averaged (EMA 0.999) from 75% of the run");
  t.ema_start = 0;
  EXPECT_EQ(charrnn::describe_recipe(t), "random batching, constant lr 0.01, weights averaged (EMA 0.999) from the first step");
  t.ema_decay = 0;  // no average, nothing said
  EXPECT_EQ(charrnn::describe_recipe(t), "random batching, constant lr 0.01");
}

}  // namespace
