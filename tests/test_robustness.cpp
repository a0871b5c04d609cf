// Reliability, end to end: kills at any moment lose only the steps since the
// last save, write failures leave the previous checkpoint intact, and bad
// input of every kind ends in one "error:" line with exit status 1 or 2.
// docs/robustness.md lists each case with the test that covers it.
#include <sys/resource.h>

#include <cstdlib>
#include <map>

#include "cli_fixture.h"

namespace {

using namespace charrnn_cli_test;

class Robustness : public Cli {
 protected:
  // The step of a checkpoint, read by `charrnn info`; -1 if it does not load.
  int64_t checkpoint_step(const std::string& path) const {
    const Result info = run({"info", "--checkpoint", path, "--json"});
    if (info.exit_code != 0) return -1;
    return nlohmann::json::parse(info.out)["step"].get<int64_t>();
  }

  std::vector<fs::path> temporaries() const {
    std::vector<fs::path> found;
    for (const auto& entry : fs::directory_iterator(dir_))
      if (entry.path().filename().string().find(".tmp.") != std::string::npos) found.push_back(entry.path());
    return found;
  }

  // (step, train loss, val loss) per metrics line: the loss curve, without the timings.
  static std::vector<std::tuple<int64_t, double, double>> loss_curve(const fs::path& metrics) {
    std::vector<std::tuple<int64_t, double, double>> curve;
    for (const auto& line : read_metrics(metrics))
      curve.emplace_back(line["step"].get<int64_t>(), line["train_loss"].get<double>(),
                         line.value("val_loss", std::nan("")));
    return curve;
  }
};

// The last "step N/M  train loss" line a training log shows: printed only
// after the checkpoint of step N was in place.
int64_t last_logged_save(const std::string& log) {
  int64_t step = -1;
  size_t at = 0;
  while ((at = log.find("step ", at)) != std::string::npos) {
    const size_t slash = log.find('/', at);
    const size_t line_end = log.find('\n', at);
    if (slash != std::string::npos && log.compare(log.find(' ', slash), 13, "  train loss ") == 0 &&
        slash < line_end)
      step = std::stoll(log.substr(at + 5, slash - at - 5));
    at += 5;
  }
  return step;
}

// ---- kills -----------------------------------------------------------------

TEST_F(Robustness, SigkillAtTwentyMomentsLosesOnlyUnsavedStepsAndResumesExactly) {
  const int64_t total = 8000;  // long enough that 20 kills land before the end
  const std::vector<std::string> settings = {"--set", "train.steps=" + std::to_string(total), "--set", "train.eval_every=10",
                                             "--set", "train.eval_max_chars=1000", "--set", "sample.length=10"};
  // the run the interrupted one must reproduce
  const fs::path straight_dir = dir_ / "straight";
  std::vector<std::string> straight = train_args(settings);
  straight.insert(straight.end(), {"--set", "train.checkpoint=" + (straight_dir / "model.pt").string()});
  const Result s = run(straight);
  ASSERT_EQ(s.exit_code, 0) << s.err;

  std::mt19937 rng(20261122);
  std::uniform_int_distribution<int> delay_ms(250, 1800);
  int kills = 0, mid_write = 0;
  int64_t previous_step = 0;
  for (int k = 0; k < 20; ++k) {
    const bool resume = fs::exists(checkpoint());
    std::vector<std::string> args = resume ? std::vector<std::string>{"train", "--resume", checkpoint()} : train_args(settings);
    // every other run pauses inside each atomic write, so kills land mid-write
    std::vector<std::string> env;
    if (k % 2 == 1) env.push_back("CHARRNN_TEST_PAUSE_IN_WRITE_MS=150");
    const fs::path log = dir_ / ("run" + std::to_string(k) + ".log");
    const pid_t pid = spawn(args, log, env);
    ASSERT_GT(pid, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFEXITED(status)) {  // finished before the kill
      ASSERT_EQ(WEXITSTATUS(status), 0) << read_all(log);
      break;
    }
    ++kills;
    if (!temporaries().empty()) ++mid_write;
    if (!fs::exists(checkpoint())) continue;  // killed before the first save
    const int64_t step = checkpoint_step(checkpoint());
    ASSERT_GE(step, 0) << "kill " << k << " left a checkpoint that does not load";
    EXPECT_GE(step, last_logged_save(read_all(log))) << "kill " << k << " lost a saved step";
    EXPECT_GE(step, previous_step) << "kill " << k;
    EXPECT_EQ(step % 10, 0);
    previous_step = step;
  }
  std::cout << "[ info     ] " << kills << " kills, " << mid_write << " inside a checkpoint write\n";
  EXPECT_GE(kills, 10);
  EXPECT_GE(mid_write, 3) << "too few kills landed inside a checkpoint write";

  if (checkpoint_step(checkpoint()) < total) {
    const Result finish = run(fs::exists(checkpoint()) ? std::vector<std::string>{"train", "--resume", checkpoint()}
                                                       : train_args(settings));
    ASSERT_EQ(finish.exit_code, 0) << finish.err;
  }
  EXPECT_EQ(checkpoint_step(checkpoint()), total);
  EXPECT_TRUE(temporaries().empty()) << "stale temporary files were left behind";

  // bit-identical continuation: the same loss curve, the same held-out loss
  // and the same greedy text as the run that was never interrupted
  EXPECT_EQ(loss_curve(dir_ / "model.metrics.jsonl"), loss_curve(straight_dir / "model.metrics.jsonl"));
  const auto eval = [&](const std::string& path) {
    return nlohmann::json::parse(run({"eval", "--checkpoint", path, "--data", corpus_, "--json"}).out)["loss"].get<double>();
  };
  EXPECT_EQ(eval(checkpoint()), eval((straight_dir / "model.pt").string()));
  const auto greedy = [&](const std::string& path) {
    return run({"generate", "--checkpoint", path, "--prime", "the", "--length", "200", "--temperature", "0"}).out;
  };
  EXPECT_EQ(greedy(checkpoint()), greedy((straight_dir / "model.pt").string()));
}

TEST_F(Robustness, SigtermSavesACheckpointAndExitsCleanly) {
  interrupt_training_with(SIGTERM);
  EXPECT_GT(checkpoint_step(checkpoint()), 0);
  const Result resumed = run({"train", "--resume", checkpoint(), "--set", "train.steps=" +
                                                                        std::to_string(checkpoint_step(checkpoint()) + 5)});
  EXPECT_EQ(resumed.exit_code, 0) << resumed.err;
}

// ---- write failures ----------------------------------------------------------

TEST_F(Robustness, ReadOnlyCheckpointFolderIsAnErrorAndKeepsThePreviousCheckpoint) {
  const fs::path folder = dir_ / "out";
  const std::string ckpt = (folder / "model.pt").string();
  ASSERT_EQ(run(train_args({"--set", "train.steps=20", "--set", "train.checkpoint=" + ckpt})).exit_code, 0);
  const std::string before = read_all(ckpt);
  const std::string resume = quote(CHARRNN_BIN) + " train --resume " + quote(ckpt) + " --set train.steps=40";
  std::string command;
  if (::geteuid() != 0) {
    fs::permissions(folder, fs::perms::owner_read | fs::perms::owner_exec);
    command = resume;
  } else {
    // root ignores permission bits: make the folder a read-only mount in a
    // private mount namespace instead
    const auto read_only = [&](const std::string& then) {
      const std::string f = quote(folder.string());
      return "unshare -m sh -c " + quote("mount --bind " + f + " " + f + " && mount -o remount,bind,ro " + f + " && " + then);
    };
    if (std::system((read_only("true") + " >/dev/null 2>&1").c_str()) != 0)
      GTEST_SKIP() << "running as root where a read-only mount cannot be made (unshare -m)";
    command = read_only(resume);
  }
  const fs::path err = dir_ / "err.txt";
  const int status = std::system((command + " >/dev/null 2>" + quote(err.string())).c_str());
  fs::permissions(folder, fs::perms::owner_all);
  Result r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.err = read_all(err);
  expect_error_after_progress(r, 1, "Read-only file system");
  EXPECT_EQ(read_all(ckpt), before) << "the previous checkpoint changed";
  EXPECT_EQ(checkpoint_step(ckpt), 20);
}

TEST_F(Robustness, FullDiskIsAnErrorAndKeepsThePreviousCheckpoint) {
  train_ok({"--set", "train.steps=20"});
  const std::string before = read_all(checkpoint());
  // a file-size limit below the checkpoint's size fails its write like a full disk
  const std::string command = "ulimit -f " + std::to_string(before.size() / 1024 / 2) + "; " + quote(CHARRNN_BIN) +
                              " train --resume " + quote(checkpoint()) + " --set train.steps=40";
  const fs::path err = dir_ / "err.txt";
  const int status = std::system(("bash -c " + quote(command) + " >/dev/null 2>" + quote(err.string())).c_str());
  Result r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.err = read_all(err);
  expect_error_after_progress(r, 1, "File too large");
  EXPECT_EQ(read_all(checkpoint()), before);
  EXPECT_TRUE(temporaries().empty());
  // and the run continues once there is room
  const Result resumed = run({"train", "--resume", checkpoint(), "--set", "train.steps=40"});
  EXPECT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(checkpoint_step(checkpoint()), 40);
}

TEST_F(Robustness, CheckpointFolderThatCannotBeCreated) {
  write_all(dir_ / "afile", "x");
  expect_clean_error(run(train_args({"--set", "train.steps=5", "--set",
                                     "train.checkpoint=" + (dir_ / "afile" / "sub" / "model.pt").string()})),
                     1, "cannot create folder");
}

TEST_F(Robustness, ExportToAPathThatCannotBeWritten) {
  train_ok({"--set", "train.steps=5"});
  write_all(dir_ / "afile", "x");
  expect_clean_error(run({"export", "--checkpoint", checkpoint(), "--out", (dir_ / "afile" / "m.ts.pt").string()}), 1,
                     "afile");
  expect_clean_error(run({"export", "--checkpoint", checkpoint(), "--out", dir_.string()}), 1, "cannot write");
}

// ---- numerical faults --------------------------------------------------------

TEST_F(Robustness, DivergenceStopsWithAnErrorAndKeepsTheBestCheckpoint) {
  train_ok({"--set", "train.steps=20", "--set", "train.eval_every=10"});
  const fs::path best = dir_ / "model.best.pt";
  const std::string best_before = read_all(best), latest_before = read_all(checkpoint());
  // an absurd learning rate without clipping blows the weights up within a
  // few steps, long before the next save at step 30
  const Result r = run({"train", "--resume", checkpoint(), "--set", "train.steps=2000", "--set",
                        "train.learning_rate=1e30", "--set", "train.grad_clip=0"});
  expect_error_after_progress(r, 1, "diverged");
  EXPECT_EQ(read_all(best), best_before);
  EXPECT_EQ(read_all(checkpoint()), latest_before);
}

TEST_F(Robustness, DivergenceRollsBackToTheLastCheckpointWithHalfTheLearningRate) {
  train_ok({"--set", "train.steps=20", "--set", "train.eval_every=10"});
  const std::string latest_before = read_all(checkpoint());
  // 1e30 halved three times still diverges: three rollbacks, then the error
  const Result r = run({"train", "--resume", checkpoint(), "--set", "train.steps=2000", "--set",
                        "train.learning_rate=1e30", "--set", "train.grad_clip=0", "--set",
                        "train.divergence_rollbacks=3"});
  expect_error_after_progress(r, 1, "diverged");
  for (const char* rollback : {"rolled back to step 20 with train.learning_rate 5e+29 (rollback 1 of 3)",
                               "rollback 2 of 3", "rolled back to step 20 with train.learning_rate 1.25e+29 (rollback 3 of 3)"})
    EXPECT_NE(r.err.find(rollback), std::string::npos) << rollback << " missing from:\n" << r.err;
  EXPECT_EQ(read_all(checkpoint()), latest_before);
  expect_bad_setting("train.divergence_rollbacks=-1", "train.divergence_rollbacks");
}

// ---- bad input ---------------------------------------------------------------

TEST_F(Robustness, CorruptedCheckpoints) {
  train_ok({"--set", "train.steps=2"});
  const std::string whole = read_all(checkpoint());
  std::string flipped = whole;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x5A);
  write_all(dir_ / "flipped.pt", flipped);
  expect_clean_error(run({"generate", "--checkpoint", (dir_ / "flipped.pt").string()}), 1, "corrupt");
  std::string newer = whole;
  newer[8] = 99;  // the format version follows the 8-byte signature
  write_all(dir_ / "newer.pt", newer);
  expect_clean_error(run({"info", "--checkpoint", (dir_ / "newer.pt").string()}), 1, "newer charrnn");
  write_all(dir_ / "zip.pt", std::string("PK\x03\x04", 4) + "not really a zip archive");
  expect_clean_error(run({"generate", "--checkpoint", (dir_ / "zip.pt").string()}), 1, "zip.pt");
  expect_clean_error(run({"generate", "--checkpoint", dir_.string()}), 1, dir_.filename().string());
  expect_clean_error(run({"train", "--resume", (dir_ / "flipped.pt").string()}), 1, "corrupt");
}

TEST_F(Robustness, CorpusFolderWithoutUsableFiles) {
  fs::create_directories(dir_ / "folder" / ".hidden");
  write_all(dir_ / "folder" / ".hidden" / "a.txt", "hidden text is not corpus text");
  write_all(dir_ / "folder" / ".notes.txt", "nor is a hidden file");
  expect_clean_error(run(train_args({"--set", "data.path=" + (dir_ / "folder").string()})), 2, "holds no");
  write_all(dir_ / "folder" / "a.md", "some text that is not matched by the glob");
  expect_clean_error(run(train_args({"--set", "data.path=" + (dir_ / "folder").string(), "--set", "data.glob=*.txt"})),
                     2, "data.glob=*.txt");
  expect_clean_error(run(train_args({"--set", R"(data.path=[")" + (dir_ / "folder" / "a.md").string() + R"(", ")" +
                                                (dir_ / "gone").string() + R"("])"})),
                     1, "gone");
}

TEST_F(Robustness, RecipeSettingsOutsideTheirRangeOrTooLargeForTheText) {
  expect_bad_setting("train.batching=shuffled", "train.batching must be random or sequential");
  expect_bad_setting("train.lr_schedule=step", "train.lr_schedule must be constant, cosine or linear");
  expect_bad_setting("train.min_lr=1", "train.min_lr must be in [0, train.learning_rate]");
  expect_bad_setting("train.weight_decay=-1", "train.weight_decay");
  expect_bad_setting("train.warmup_steps=-5", "train.warmup_steps");
  expect_bad_setting("model.forget_bias=nan", "model.forget_bias");
  // the shipped tiny config's 18,000 training characters hold 8 tracks of
  // 32, but not 1000 tracks, nor 20,000 characters of burn-in
  expect_clean_error(run(train_args({"--set", "train.batching=sequential", "--set", "train.batch_size=1000"})), 2,
                     "lower train.batch_size or train.seq_length");
  expect_clean_error(run(train_args({"--set", "train.burn_in=20000"})), 2, "train.burn_in=20000");
  expect_clean_error(run(train_args({"--set", "train.batching=sequential", "--set", "train.burn_in=8"})), 2,
                     "train.burn_in needs train.batching=random");
  train_ok({"--set", "train.steps=2"});
  for (const char* flag : {"--streams", "--window"})
    expect_clean_error(run({"eval", "--checkpoint", checkpoint(), "--data", corpus_, flag, "0"}), 2,
                       std::string(flag) + " must be >= 1");
}

TEST_F(Robustness, ControlCharactersAreOrdinaryCharacters) {
  std::string text = make_corpus(6000);
  for (size_t i = 0; i < text.size(); i += 97) text[i] = static_cast<char>(1 + i % 30);  // C0 controls, no NUL
  write_all(corpus_, text);
  train_ok({"--set", "train.steps=5"});
  const Result g = run({"generate", "--checkpoint", checkpoint(), "--length", "50", "--prime", std::string("\x01", 1)});
  EXPECT_EQ(g.exit_code, 0) << g.err;
}

TEST_F(Robustness, ConfigValuesOutsideTheirRange) {
  expect_bad_setting("train.learning_rate=nan", "train.learning_rate");
  expect_bad_setting("train.learning_rate=inf", "train.learning_rate");
  expect_bad_setting("data.val_fraction=-0.1", "data.val_fraction");
  expect_bad_setting("model.num_layers=-1", "model.num_layers");
  expect_bad_setting("train.seq_length=0", "train.seq_length");
  expect_bad_setting("model.hidden_size=99999999999", "GB");
  expect_bad_setting("train.batch_size=1000000000", "GB");
}

TEST_F(Robustness, ValFractionZeroTrainsWithoutValidation) {
  const Result r = run(train_args({"--set", "data.val_fraction=0", "--set", "train.steps=10"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(checkpoint_step(checkpoint()), 10);
}

TEST_F(Robustness, HundredThousandCharacterPrime) {
  train_ok({"--set", "train.steps=5"});
  const std::string prime = make_corpus(100000, 7).substr(0, 100000);
  write_all(dir_ / "prime.txt", prime);
  const Result g = run({"generate", "--checkpoint", checkpoint(), "--prime", prime, "--length", "20"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_EQ(g.out.compare(0, prime.size(), prime), 0);
  EXPECT_GE(g.out.size(), prime.size() + 20);
}

TEST_F(Robustness, InvalidUtf8Prime) {
  train_ok({"--set", "train.steps=5"});
  expect_clean_error(run({"generate", "--checkpoint", checkpoint(), "--prime", std::string("the \xC3(", 6)}), 2,
                     "UTF-8");
}

TEST_F(Robustness, SamplingArgumentsOutsideTheirRange) {
  train_ok({"--set", "train.steps=5"});
  expect_clean_error(run({"generate", "--checkpoint", checkpoint(), "--temperature", "nan"}), 2, "--temperature");
  expect_clean_error(run({"generate", "--checkpoint", checkpoint(), "--top-p", "1e999"}), 2, "--top-p");
  expect_clean_error(run({"generate", "--checkpoint", checkpoint(), "--top-p", "-0.5"}), 2, "--top-p");
  expect_clean_error(run({"generate", "--checkpoint", checkpoint(), "--num-samples", "100000000000"}), 2,
                     "--num-samples");
  expect_clean_error(run({"generate", "--checkpoint", checkpoint(), "--length", "1e3"}), 2, "--length");
}

TEST_F(Robustness, LengthZeroPrintsOnlyThePrime) {
  train_ok({"--set", "train.steps=5"});
  const Result g = run({"generate", "--checkpoint", checkpoint(), "--prime", "the sea", "--length", "0"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_EQ(g.out, "the sea\n");
}

TEST_F(Robustness, LongGenerationStreamsWithFlatMemory) {
  train_ok({"--set", "train.steps=5"});
  // peak memory of one generate run, from the kernel's accounting of that child
  // on the CPU: the host memory of the loop is what is checked, and a GPU
  // would spend minutes on a million launch-bound single-character steps
  const auto peak_rss_kb = [&](int64_t length) {
    const pid_t pid = spawn({"generate", "--checkpoint", checkpoint(), "--device", "cpu", "--length",
                             std::to_string(length)},
                            "/dev/null");
    int status = 0;
    struct rusage usage {};
    ::wait4(pid, &status, 0, &usage);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "length " << length;
    return static_cast<int64_t>(usage.ru_maxrss);
  };
  const int64_t short_run = peak_rss_kb(100000), long_run = peak_rss_kb(1000000);
  EXPECT_LT(long_run - short_run, 16 * 1024) << "100k chars: " << short_run << " kB, 1M chars: " << long_run << " kB";
}

}  // namespace
