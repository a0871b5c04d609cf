// PartThreads: every part runs once per round, parts really run at once on
// their own threads, exceptions come back to the caller, and the threads
// take the caller's grad mode.
#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/part_threads.h"
#include "test_helpers.h"

namespace {

using charrnn::PartThreads;

TEST(PartThreads, RunsEveryPartOncePerRound) {
  for (int64_t parts : {1, 2, 5}) {
    PartThreads threads(parts);
    EXPECT_EQ(threads.parts(), parts);
    std::vector<std::atomic<int>> runs(static_cast<size_t>(parts));
    for (int round = 0; round < 200; ++round)
      threads.run([&](int64_t part) { runs[static_cast<size_t>(part)].fetch_add(1); });
    for (int64_t part = 0; part < parts; ++part) EXPECT_EQ(runs[static_cast<size_t>(part)].load(), 200) << part;
  }
}

TEST(PartThreads, PartZeroRunsOnTheCallerAndTheOthersOnThreadsOfTheirOwn) {
  PartThreads threads(3);
  std::vector<std::thread::id> ids(3);
  threads.run([&](int64_t part) { ids[static_cast<size_t>(part)] = std::this_thread::get_id(); });
  EXPECT_EQ(ids[0], std::this_thread::get_id());
  EXPECT_EQ(std::set<std::thread::id>(ids.begin(), ids.end()).size(), 3u);
}

TEST(PartThreads, PartsRunAtTheSameTime) {
  // each part waits until all have started: this only ends if they overlap
  PartThreads threads(3);
  std::atomic<int> started{0};
  threads.run([&](int64_t) {
    started.fetch_add(1);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (started.load() < 3 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  });
  EXPECT_EQ(started.load(), 3);
}

TEST(PartThreads, RunReturnsOnlyWhenEveryPartHasFinished) {
  PartThreads threads(2);
  std::atomic<bool> slow_part_done{false};
  threads.run([&](int64_t part) {
    if (part == 1) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      slow_part_done = true;
    }
  });
  EXPECT_TRUE(slow_part_done.load());
}

TEST(PartThreads, TheLowestPartsExceptionComesBackAfterAllFinish) {
  PartThreads threads(3);
  std::atomic<int> finished{0};
  const std::string message = charrnn_test::thrown_message<std::runtime_error>([&] {
    threads.run([&](int64_t part) {
      finished.fetch_add(1);
      if (part >= 1) throw std::runtime_error("part " + std::to_string(part));
    });
  });
  EXPECT_EQ(message, "part 1");
  EXPECT_EQ(finished.load(), 3);
  // and the threads still serve the next round, without the old error
  std::atomic<int> runs{0};
  threads.run([&](int64_t) { runs.fetch_add(1); });
  EXPECT_EQ(runs.load(), 3);
}

TEST(PartThreads, PartsTakeTheCallersGradMode) {
  PartThreads threads(2);
  std::vector<int> enabled(2, -1);
  const auto record = [&](int64_t part) { enabled[static_cast<size_t>(part)] = torch::GradMode::is_enabled(); };
  {
    torch::NoGradGuard no_grad;
    threads.run(record);
  }
  EXPECT_EQ(enabled, std::vector<int>({0, 0}));
  threads.run(record);
  EXPECT_EQ(enabled, std::vector<int>({1, 1}));
}

TEST(PartThreads, NeedsAtLeastOnePart) { EXPECT_THROW(PartThreads(0), c10::Error); }

}  // namespace
