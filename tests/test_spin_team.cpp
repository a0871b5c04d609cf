// SpinTeam: every member runs once per round, member 0 on the caller and
// the others on threads of their own, a barrier holds every member until
// all reached it, members that slept between rounds wake for the next one,
// and exceptions come back to the caller.
#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "charrnn/spin_team.h"

namespace {

using charrnn::SpinTeam;

TEST(SpinTeam, RunsEveryMemberOncePerRound) {
  for (int64_t size : {1, 2, 3}) {
    SpinTeam team(size);
    EXPECT_EQ(team.size(), size);
    std::vector<std::atomic<int>> runs(static_cast<size_t>(size));
    for (int round = 0; round < 500; ++round)
      team.run([&](int64_t member) { runs[static_cast<size_t>(member)].fetch_add(1); });
    for (int64_t member = 0; member < size; ++member) EXPECT_EQ(runs[static_cast<size_t>(member)].load(), 500) << member;
  }
}

TEST(SpinTeam, MemberZeroRunsOnTheCallerAndTheOthersOnThreadsOfTheirOwn) {
  SpinTeam team(3);
  std::vector<std::thread::id> ids(3);
  team.run([&](int64_t member) { ids[static_cast<size_t>(member)] = std::this_thread::get_id(); });
  EXPECT_EQ(ids[0], std::this_thread::get_id());
  EXPECT_EQ(std::set<std::thread::id>(ids.begin(), ids.end()).size(), 3u);
}

TEST(SpinTeam, NoMemberPassesABarrierBeforeAllReachedIt) {
  SpinTeam team(3);
  std::atomic<int> reached{0};
  std::atomic<int> early{0};
  for (int round = 0; round < 200; ++round) {
    team.run([&](int64_t member) {
      for (int stage = 1; stage <= 5; ++stage) {
        if (member == round % 3) std::this_thread::yield();  // a different member lags each round
        reached.fetch_add(1);
        team.barrier();
        // everyone counted this stage before anyone goes on
        if (reached.load() < 3 * stage + 3 * 5 * round) early.fetch_add(1);
        team.barrier();
      }
    });
  }
  EXPECT_EQ(early.load(), 0);
  EXPECT_EQ(reached.load(), 3 * 5 * 200);
}

TEST(SpinTeam, MembersThatSleptWakeForTheNextRound) {
  SpinTeam team(2);
  std::atomic<int> runs{0};
  for (int round = 0; round < 3; ++round) {
    // longer than the members spin before they sleep
    std::this_thread::sleep_for(SpinTeam::kIdleSpin * 20);
    team.run([&](int64_t) { runs.fetch_add(1); });
  }
  EXPECT_EQ(runs.load(), 6);
}

TEST(SpinTeam, TheLowestMembersExceptionComesBackAfterAllFinish) {
  SpinTeam team(3);
  std::atomic<int> finished{0};
  try {
    team.run([&](int64_t member) {
      if (member >= 1) {
        finished.fetch_add(1);
        throw std::runtime_error("member " + std::to_string(member));
      }
      finished.fetch_add(1);
    });
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "member 1");
  }
  EXPECT_EQ(finished.load(), 3);
  // the team still works
  std::atomic<int> runs{0};
  team.run([&](int64_t) { runs.fetch_add(1); });
  EXPECT_EQ(runs.load(), 3);
}

}  // namespace
