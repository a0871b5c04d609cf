// The end-to-end fixture: runs the real charrnn binary as a user would, in a
// temporary folder per test with a corpus the test writes itself.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

namespace charrnn_cli_test {

namespace fs = std::filesystem;


struct Result {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

inline std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_all(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

inline std::string quote(const std::string& arg) {
  std::string q = "'";
  for (char c : arg) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// English-like text from a small word list, deterministic.
inline std::string make_corpus(size_t chars, unsigned seed = 1) {
  const std::vector<std::string> words = {"the", "sea", "whale", "ship", "captain", "and", "of", "a",
                                          "storm", "sailed", "north", "into", "night", "we", "saw", "old"};
  std::mt19937 rng(seed);
  std::string text;
  size_t in_line = 0;
  while (text.size() < chars) {
    text += words[rng() % words.size()];
    if (++in_line % 9 == 0) text += ".\n";
    else text += ' ';
  }
  return text;
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("charrnn_cli_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    // encoded corpora go to $XDG_CACHE_HOME/charrnn: this test's own folder
    ::setenv("XDG_CACHE_HOME", (dir_ / "cache").c_str(), 1);
    corpus_ = (dir_ / "corpus.txt").string();
    write_all(corpus_, make_corpus(20000));
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // Runs charrnn with `input` as its stdin (a file, so not a terminal).
  Result run(const std::vector<std::string>& args, const std::string& input = "") const {
    std::string command = quote(CHARRNN_BIN);
    for (const auto& a : args) command += " " + quote(a);
    const fs::path out = dir_ / "stdout.txt", err = dir_ / "stderr.txt", in = dir_ / "stdin.txt";
    write_all(in, input);
    command += " >" + quote(out.string()) + " 2>" + quote(err.string()) + " <" + quote(in.string());
    const int status = std::system(command.c_str());
    Result r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = read_all(out);
    r.err = read_all(err);
    return r;
  }

  // Tiny config pointed at this test's corpus and folder.
  std::vector<std::string> train_args(const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> args = {"train", "--config", std::string(CHARRNN_SOURCE_DIR) + "/configs/tiny.json",
                                     "--set", "data.path=" + corpus_, "--set", "train.checkpoint=" + checkpoint(),
                                     "--set", "train.device=cpu"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  // Starts charrnn with stdout and stderr appended to `log`, and `env`
  // ("NAME=value") added to its environment. Returns its pid.
  pid_t spawn(const std::vector<std::string>& args, const fs::path& log,
              const std::vector<std::string>& env = {}) const {
    const pid_t pid = ::fork();
    if (pid != 0) return pid;
    for (const std::string& assignment : env) ::putenv(const_cast<char*>(assignment.c_str()));
    std::vector<std::string> copy = args;
    std::string bin = CHARRNN_BIN;
    std::vector<char*> argv = {bin.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (!std::freopen(log.c_str(), "a", stderr) || !std::freopen(log.c_str(), "a", stdout)) ::_exit(126);
    std::freopen("/dev/null", "r", stdin);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }

  // Starts a long training, sends `signal` once it is under way, and expects
  // a clean stop: exit status 130 and the "interrupted" line.
  void interrupt_training_with(int signal) const {
    const pid_t pid = spawn(train_args({"--set", "train.steps=1000000", "--set", "train.eval_every=1000000"}),
                            dir_ / "train.log");
    ASSERT_GT(pid, 0);
    for (int i = 0; i < 600 && read_all(dir_ / "train.log").find("step ") == std::string::npos; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ::kill(pid, signal);
    int status = 0;
    ::waitpid(pid, &status, 0);
    const std::string log = read_all(dir_ / "train.log");
    ASSERT_TRUE(WIFEXITED(status)) << log;
    EXPECT_EQ(WEXITSTATUS(status), 130) << log;
    EXPECT_NE(log.find("interrupted at step"), std::string::npos) << log;
  }

  // `--set assignment` alone is refused with a clean usage error naming `needle`.
  void expect_bad_setting(const std::string& assignment, const std::string& needle) const;

  std::string checkpoint() const { return (dir_ / "model.pt").string(); }

  void train_ok(const std::vector<std::string>& extra = {}) const {
    const Result r = run(train_args(extra));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  fs::path dir_;
  std::string corpus_;
};

// Every failure is one "error:" line, never a crash or a LibTorch backtrace.
inline void expect_clean_error(const Result& r, int code, const std::string& needle) {
  EXPECT_EQ(r.exit_code, code) << r.err;
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "expected \"" << needle << "\" in: " << r.err;
  EXPECT_EQ(r.err.find("Exception raised from"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// A failure after progress output (a resumed or running training): the last
// line is the one "error:" line, and nothing crashed.
inline void expect_error_after_progress(const Result& r, int code, const std::string& needle) {
  EXPECT_EQ(r.exit_code, code) << r.err;
  const size_t last_line = r.err.rfind("\nerror: ");
  const size_t start = r.err.rfind("error: ", 0) == 0 ? 0 : (last_line == std::string::npos ? last_line : last_line + 1);
  ASSERT_NE(start, std::string::npos) << r.err;
  const std::string line = r.err.substr(start);
  EXPECT_NE(line.find(needle), std::string::npos) << "expected \"" << needle << "\" in: " << line;
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.find("Exception raised from"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << r.err;
}

inline void Cli::expect_bad_setting(const std::string& assignment, const std::string& needle) const {
  SCOPED_TRACE(assignment);
  expect_clean_error(run(train_args({"--set", assignment})), 2, needle);
}

inline std::vector<nlohmann::json> read_metrics(const fs::path& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

}  // namespace charrnn_cli_test
