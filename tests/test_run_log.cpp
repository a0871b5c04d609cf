// run_log: the metrics file a run keeps next to its checkpoint (whole lines
// only, cut back to a resumed step), its plot, and the lines it prints.
#include <chrono>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "charrnn/run_log.h"
#include "test_helpers.h"

namespace {

using charrnn::RunLog;
using charrnn_test::read_file_bytes;
using charrnn_test::TempDir;
using charrnn_test::write_file;

TEST(RunLog, PathsSitNextToTheCheckpoint) {
  EXPECT_EQ(charrnn::best_checkpoint_path("models/default.pt"), "models/default.best.pt");
  EXPECT_EQ(charrnn::metrics_path("models/default.pt"), "models/default.metrics.jsonl");
  EXPECT_EQ(charrnn::metrics_path("runs.v2/model"), "runs.v2/model.metrics.jsonl");  // a dot in a folder is no extension
}

TEST(RunLog, DurationsRatesAndStepLabelsReadAsTheyArePrinted) {
  EXPECT_EQ(charrnn::format_duration(42.4), "42s");
  EXPECT_EQ(charrnn::format_duration(187), "3m07s");
  EXPECT_EQ(charrnn::format_duration(3900), "1h05m");
  EXPECT_EQ(charrnn::format_duration(-1), "?");
  EXPECT_EQ(charrnn::format_rate(812400), "812.4k chars/s");
  EXPECT_EQ(charrnn::format_rate(1.25e6), "1.2M chars/s");
  EXPECT_EQ(charrnn::step_label(562, 3000, 0, 10, 0.5), "562/3000");        // no budget
  EXPECT_EQ(charrnn::step_label(562, 3000, 300, 100, 0), "562/3000");       // no pace yet
  EXPECT_EQ(charrnn::step_label(562, 3000, 300, 100, 0.5), "562/~962");     // the clock ends it first
  EXPECT_EQ(charrnn::step_label(562, 600, 300, 100, 0.5), "562/600");       // the steps end it first
}

TEST(RunLog, RecordsWholeLinesAndDrawsThePlot) {
  TempDir dir;
  const std::string checkpoint = dir.file("m.pt");
  const RunLog log(checkpoint, nullptr, false, true);
  log.record({{"step", 10}, {"train_loss", 2.5}, {"val_loss", 2.6}});
  log.record({{"step", 20}, {"train_loss", 2.0}});
  EXPECT_EQ(read_file_bytes(charrnn::metrics_path(checkpoint)),
            "{\"step\":10,\"train_loss\":2.5,\"val_loss\":2.6}\n{\"step\":20,\"train_loss\":2.0}\n");
  EXPECT_NE(read_file_bytes(dir.file("m.loss.svg")).find("<svg"), std::string::npos);
}

TEST(RunLog, KeepsTheMetricsUpToAResumedStepAndDropsATornLine) {
  TempDir dir;
  const std::string checkpoint = dir.file("m.pt");
  write_file(charrnn::metrics_path(checkpoint), "{\"step\":10}\n{\"step\":20}\n{\"step\":30}\n{\"st");
  RunLog(checkpoint, nullptr, false, true).keep_metrics_up_to(20);
  EXPECT_EQ(read_file_bytes(charrnn::metrics_path(checkpoint)), "{\"step\":10}\n{\"step\":20}\n");
  RunLog(checkpoint, nullptr, false, true).keep_metrics_up_to(0);  // a fresh run: a fresh curve
  EXPECT_EQ(read_file_bytes(charrnn::metrics_path(checkpoint)), "");
}

TEST(RunLog, ARankThatLeavesFilesToRankZeroWritesNone) {
  TempDir dir;
  const std::string checkpoint = dir.file("m.pt");
  write_file(charrnn::metrics_path(checkpoint), "{\"step\":10}\n{\"step\":20}\n");
  const RunLog log(checkpoint, nullptr, false, /*writes_files=*/false);
  log.keep_metrics_up_to(10);
  log.record({{"step", 30}});
  EXPECT_EQ(read_file_bytes(charrnn::metrics_path(checkpoint)), "{\"step\":10}\n{\"step\":20}\n");
}

TEST(RunLog, EvaluationLinesShowTheLossesTheBestAndTheSample) {
  std::ostringstream out;
  const RunLog log("m.pt", &out, false, false);
  charrnn::EvaluationReport report;
  report.step_label = "200/400";
  report.train_loss = 1.5;
  report.learning_rate = 0.002;
  report.val_loss = 1.6;
  report.val_bpc = 2.308;
  report.improved = true;
  report.sample = "hello";
  log.evaluation(report);
  EXPECT_EQ(out.str(),
            "step 200/400  train loss 1.5000  lr 0.002  val loss 1.6000  val bpc 2.308  (best)\n"
            "--- sample ---\nhello\n--------------\n");
  std::ostringstream redrawn;
  RunLog(("m.pt"), &redrawn, true, false).say("interrupted");
  EXPECT_EQ(redrawn.str(), "\r\033[Kinterrupted\n");
}

TEST(RunLog, ProgressLinesComeWhenDueWithTheMeanLossSinceTheLastOne) {
  std::ostringstream out;
  RunLog log("m.pt", &out, /*redraw=*/true, false);  // redrawn: a line every quarter second at most
  log.restart_progress(0, 1000);
  log.step_done(1, 100, 2.0, "1/100", 0.01, 1e9);
  EXPECT_EQ(out.str(), "");  // not due yet
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  log.step_done(2, 100, 1.0, "2/100", 0.01, 1e9);
  const std::string line = out.str();
  EXPECT_EQ(line.rfind("\r\033[Kstep 2/100  loss 1.5000  lr 0.01  ", 0), 0u) << line;
  EXPECT_NE(line.find("k chars/s  ETA "), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);  // redrawn in place
}

TEST(RunLog, WarnsOnceWhenTheValidationLossHasRisenThreeTimesInARow) {
  RunLog log("models/m.pt", nullptr, false, false);
  EXPECT_EQ(log.watch_validation_loss(2.0, 2.0, 10), "");
  EXPECT_EQ(log.watch_validation_loss(2.1, 2.0, 10), "");
  EXPECT_EQ(log.watch_validation_loss(2.2, 2.0, 10), "");
  const std::string warning = log.watch_validation_loss(2.3, 2.0, 10);
  EXPECT_EQ(warning.rfind("warning: the validation loss has risen 3 evaluations in a row; the best, 2.0000 at step 10, "
                          "stays in models/m.best.pt",
                          0),
            0u)
      << warning;
  EXPECT_EQ(log.watch_validation_loss(2.4, 2.0, 10), "");  // once, not at every later rise
  EXPECT_EQ(log.watch_validation_loss(1.9, 1.9, 15), "");  // a fall starts the count again
}

}  // namespace
