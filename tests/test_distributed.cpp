// Distributed training end to end: real charrnn processes on loopback (and,
// where this test may create them, in network namespaces joined by a veth
// pair, as two hosts). Checkpoints are read back with charrnn_core to compare
// weights.

#include "cli_fixture.h"

#include <torch/torch.h>

#include "charrnn/checkpoint.h"
#include "charrnn/distributed.h"
#include "charrnn/launch.h"

namespace charrnn_cli_test {
namespace {

using Clock = std::chrono::steady_clock;

// Waits for `pid`; returns its exit code (128 + signal), or -1 after `limit`.
int wait_for(pid_t pid, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

std::vector<torch::Tensor> weights(const std::string& checkpoint) {
  const charrnn::Checkpoint c = charrnn::load_checkpoint(checkpoint);
  std::vector<torch::Tensor> out;
  for (const auto& p : charrnn::restore_model(c, torch::kCPU)->parameters()) out.push_back(p.detach().clone());
  return out;
}

double largest_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
  return worst;
}

class Distributed : public Cli {
 protected:
  void SetUp() override {
    if (!charrnn::distributed_available()) GTEST_SKIP() << "this LibTorch lacks c10d's Gloo headers";
    Cli::SetUp();
  }

  std::vector<std::string> launch_args(int nproc, const std::vector<std::string>& train) const {
    std::vector<std::string> args = {"launch", "--nproc", std::to_string(nproc), "--"};
    args.insert(args.end(), train.begin(), train.end());
    return args;
  }

  // torchrun's variables for rank `rank` of `world` meeting at 127.0.0.1:port
  static std::vector<std::string> rank_env(int rank, int world, int port) {
    return {"RANK=" + std::to_string(rank), "WORLD_SIZE=" + std::to_string(world),
            "LOCAL_RANK=" + std::to_string(rank), "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port),
            "CHARRNN_THREADS=1"};
  }
};

// The proof of data parallelism: 2 ranks with batch B, fed (by a test hook)
// the two halves of the chunks one process with batch 2B gets, take the same
// steps: the same losses and, at the end, the same weights. With a weight
// average (gru) each rank keeps its own, never exchanged: rank 1 validates
// its share of the held-out text with it, so the same validation loss as one
// process's shows that the ranks' averages agree.
TEST_F(Distributed, TwoRanksTakeTheStepsOfOneProcessWithTheCombinedBatch) {
  for (const std::string cell : {"lstm", "gru"}) {
    SCOPED_TRACE(cell);
    std::vector<std::string> common = {"--set", "model.cell=" + cell, "--set", "train.steps=30",
                                       "--set", "train.eval_every=10", "--set", "model.num_layers=2"};
    if (cell == "gru") common.insert(common.end(), {"--set", "train.ema_decay=0.8", "--set", "train.ema_start=0.2"});
    std::vector<std::string> one = train_args(common);
    one.insert(one.end(), {"--set", "train.batch_size=16", "--set", "train.checkpoint=" + (dir_ / "one.pt").string()});
    const Result single = run(one);
    ASSERT_EQ(single.exit_code, 0) << single.err;

    std::vector<std::string> two = train_args(common);
    two.insert(two.end(), {"--set", "train.batch_size=8", "--set", "train.checkpoint=" + (dir_ / "two.pt").string()});
    const std::string hook = "CHARRNN_TEST_SHARED_BATCH_ORDER=1";
    ::putenv(const_cast<char*>(hook.c_str()));
    const Result pair = run(launch_args(2, two));
    ::unsetenv("CHARRNN_TEST_SHARED_BATCH_ORDER");
    ASSERT_EQ(pair.exit_code, 0) << pair.err;
    EXPECT_NE(pair.err.find("2 processes (effective batch 8 x 2 = 16)"), std::string::npos) << pair.err;

    const auto a = read_metrics(dir_ / "one.metrics.jsonl"), b = read_metrics(dir_ / "two.metrics.jsonl");
    ASSERT_EQ(a.size(), 3u);
    ASSERT_EQ(b.size(), 3u);  // rank 0 alone writes metrics: one line per evaluation
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i]["step"], b[i]["step"]);
      EXPECT_EQ(a[i]["chars_trained"], b[i]["chars_trained"]);
      EXPECT_NEAR(a[i]["train_loss"].get<double>(), b[i]["train_loss"].get<double>(), 1e-4);
      // validation is split between the ranks and summed: the same mean
      EXPECT_NEAR(a[i]["val_loss"].get<double>(), b[i]["val_loss"].get<double>(), 1e-4);
      EXPECT_EQ(a[i]["val_chars"], b[i]["val_chars"]);
    }
    EXPECT_LT(largest_difference(weights((dir_ / "one.pt").string()), weights((dir_ / "two.pt").string())), 1e-4);
  }
}

// Same world size, interrupted or not, same run: every rank's random
// streams are in the checkpoint, and so are the weight average (from the
// first step: the same start whatever train.steps) and the raw weights.
TEST_F(Distributed, ResumeWithTheSameWorldSizeIsExactAndOnlyRankZeroWrites) {
  const std::vector<std::string> common = {"--set", "train.eval_every=10", "--set", "model.dropout=0.2",
                                           "--set", "model.num_layers=2", "--set", "train.ema_decay=0.9",
                                           "--set", "train.ema_start=0"};
  std::vector<std::string> whole = train_args(common);
  whole.insert(whole.end(), {"--set", "train.steps=40", "--set", "train.checkpoint=" + (dir_ / "whole.pt").string()});
  const Result w = run(launch_args(2, whole));
  ASSERT_EQ(w.exit_code, 0) << w.err;
  // ranks other than 0 print nothing but errors
  EXPECT_EQ(w.err.find("training lstm", w.err.find("training lstm") + 1), std::string::npos) << w.err;

  std::vector<std::string> first = train_args(common);
  first.insert(first.end(), {"--set", "train.steps=20", "--set", "train.checkpoint=" + (dir_ / "parts.pt").string()});
  ASSERT_EQ(run(launch_args(2, first)).exit_code, 0);
  const Result second = run(launch_args(2, {"train", "--resume", (dir_ / "parts.pt").string(), "--set", "train.steps=40"}));
  ASSERT_EQ(second.exit_code, 0) << second.err;

  EXPECT_EQ(largest_difference(weights((dir_ / "whole.pt").string()), weights((dir_ / "parts.pt").string())), 0.0);
  const charrnn::Checkpoint whole_end = charrnn::load_checkpoint((dir_ / "whole.pt").string());
  const charrnn::Checkpoint parts_end = charrnn::load_checkpoint((dir_ / "parts.pt").string());
  ASSERT_FALSE(whole_end.training_model_bytes.empty());
  EXPECT_TRUE(whole_end.training_model_bytes == parts_end.training_model_bytes);
  const auto a = read_metrics(dir_ / "whole.metrics.jsonl"), b = read_metrics(dir_ / "parts.metrics.jsonl");
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["step"], b[i]["step"]);
    EXPECT_EQ(a[i]["train_loss"], b[i]["train_loss"]);
    EXPECT_EQ(a[i]["val_loss"], b[i]["val_loss"]);
    EXPECT_EQ(a[i]["sample"], b[i]["sample"]);
  }
  // nothing but rank 0's files: no per-rank checkpoints, metrics or leftovers
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const std::string name = entry.path().filename().string();
    EXPECT_TRUE(name == "corpus.txt" || name == "cache" || name.rfind("whole.", 0) == 0 ||
                name.rfind("parts.", 0) == 0 || name.rfind("std", 0) == 0)
        << name;
  }
}

// Sequential batching splits the tracks of one cut of the text between the
// ranks (no test hook needed): 2 ranks with batch B take the steps of one
// process with batch 2B, schedule included; and a run stopped and resumed
// on the same world size continues every rank's carried state exactly.
TEST_F(Distributed, SequentialTracksAreSplitBetweenRanksAndResumeExactly) {
  const std::vector<std::string> common = {"--set", "train.batching=sequential", "--set", "model.num_layers=2",
                                           "--set", "train.eval_every=10"};
  const auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = train_args(common);
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  const std::vector<std::string> cosine = {"--set", "train.lr_schedule=cosine", "--set", "train.min_lr=0.001",
                                           "--set", "train.steps=30"};
  std::vector<std::string> one = with(cosine), two = with(cosine);
  one.insert(one.end(), {"--set", "train.batch_size=16", "--set", "train.checkpoint=" + (dir_ / "one.pt").string()});
  two.insert(two.end(), {"--set", "train.batch_size=8", "--set", "train.checkpoint=" + (dir_ / "two.pt").string()});
  const Result single = run(one);
  ASSERT_EQ(single.exit_code, 0) << single.err;
  const Result pair = run(launch_args(2, two));
  ASSERT_EQ(pair.exit_code, 0) << pair.err;
  const auto a = read_metrics(dir_ / "one.metrics.jsonl"), b = read_metrics(dir_ / "two.metrics.jsonl");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(a[i]["train_loss"].get<double>(), b[i]["train_loss"].get<double>(), 1e-4) << "evaluation " << i;
    EXPECT_EQ(a[i]["lr"], b[i]["lr"]);
  }
  EXPECT_LT(largest_difference(weights((dir_ / "one.pt").string()), weights((dir_ / "two.pt").string())), 1e-4);

  const Result whole = run(launch_args(2, with({"--set", "train.steps=40", "--set",
                                                "train.checkpoint=" + (dir_ / "whole.pt").string()})));
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  ASSERT_EQ(run(launch_args(2, with({"--set", "train.steps=15", "--set",
                                     "train.checkpoint=" + (dir_ / "parts.pt").string()})))
                .exit_code,
            0);
  const Result rest = run(launch_args(2, {"train", "--resume", (dir_ / "parts.pt").string(), "--set", "train.steps=40"}));
  ASSERT_EQ(rest.exit_code, 0) << rest.err;
  EXPECT_EQ(largest_difference(weights((dir_ / "whole.pt").string()), weights((dir_ / "parts.pt").string())), 0.0);
}

// A rank that dies, or hangs, must not leave the others waiting forever:
// they stop with one clear error within distributed.timeout_s, and the last
// checkpoint resumes on another world size.
TEST_F(Distributed, ALostRankStopsTheOthersWithAClearErrorAndTheRunResumesOnAnotherWorldSize) {
  for (const int lost_signal : {SIGKILL, SIGSTOP}) {
    SCOPED_TRACE(lost_signal == SIGKILL ? "killed rank" : "hung rank");
    const int port = static_cast<int>(charrnn::free_local_port());
    const std::vector<std::string> args = train_args({"--set", "train.steps=1000000", "--set", "train.eval_every=5",
                                                      "--set", "distributed.timeout_s=5"});
    const fs::path log0 = dir_ / "rank0.log", log1 = dir_ / "rank1.log";
    fs::remove(log0);
    fs::remove(log1);
    fs::remove(checkpoint());
    const pid_t rank0 = spawn(args, log0, rank_env(0, 2, port));
    const pid_t rank1 = spawn(args, log1, rank_env(1, 2, port));
    for (int i = 0; i < 1200 && !fs::exists(checkpoint()); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(fs::exists(checkpoint())) << read_all(log0) << read_all(log1);
    const auto lost_at = Clock::now();
    ::kill(rank1, lost_signal);
    const int code = wait_for(rank0, std::chrono::seconds(30));
    const double seconds = std::chrono::duration<double>(Clock::now() - lost_at).count();
    if (code < 0) ::kill(rank0, SIGKILL);
    ::kill(rank1, SIGKILL);
    ::waitpid(rank1, nullptr, 0);
    if (code < 0) ::waitpid(rank0, nullptr, 0);
    const std::string log = read_all(log0);
    ASSERT_EQ(code, 1) << log;
    EXPECT_LT(seconds, 5 + 5.0) << "the timeout is 5 s";
    Result r;
    r.exit_code = code;
    r.err = log;
    expect_error_after_progress(r, 1, "rank 0 of 2 lost contact with the other training processes");
    EXPECT_NE(log.find("--resume"), std::string::npos) << log;
  }
  // the last checkpoint continues alone, and on three processes
  const Result alone = run({"train", "--resume", checkpoint(), "--set", "train.steps=60", "--set", "train.eval_every=20"});
  ASSERT_EQ(alone.exit_code, 0) << alone.err;
  const Result three = run(launch_args(3, {"train", "--resume", checkpoint(), "--set", "train.steps=80"}));
  ASSERT_EQ(three.exit_code, 0) << three.err;
  EXPECT_NE(three.err.find("3 processes"), std::string::npos) << three.err;
}

// Ctrl-C reaches ranks at different steps; they agree on one, rank 0 saves
// it, and every rank exits with 130.
TEST_F(Distributed, AnInterruptStopsEveryRankAtTheSameStep) {
  const pid_t launcher = spawn(launch_args(2, train_args({"--set", "train.steps=1000000", "--set", "train.eval_every=1000000"})),
                               dir_ / "launch.log");
  for (int i = 0; i < 1200 && read_all(dir_ / "launch.log").find("step ") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ::kill(launcher, SIGINT);
  const int code = wait_for(launcher, std::chrono::seconds(60));
  const std::string log = read_all(dir_ / "launch.log");
  ASSERT_EQ(code, 130) << log;
  EXPECT_NE(log.find("interrupted at step"), std::string::npos) << log;
  EXPECT_EQ(log.find("error"), std::string::npos) << log;
  const Result resumed = run(launch_args(2, {"train", "--resume", checkpoint(), "--set", "train.steps=" +
                                                 std::to_string(charrnn::load_checkpoint(checkpoint()).progress.step + 10)}));
  EXPECT_EQ(resumed.exit_code, 0) << resumed.err;
}

TEST_F(Distributed, MissingPeersAndBadVariablesAreClearErrors) {
  {  // rank 1 never comes
    const auto start = Clock::now();
    const int port = static_cast<int>(charrnn::free_local_port());
    const pid_t alone = spawn(train_args({"--set", "distributed.timeout_s=2"}), dir_ / "alone.log", rank_env(0, 2, port));
    const int code = wait_for(alone, std::chrono::seconds(60));
    const std::string log = read_all(dir_ / "alone.log");
    EXPECT_EQ(code, 1) << log;
    EXPECT_NE(log.find("could not meet the other ranks at 127.0.0.1:"), std::string::npos) << log;
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 30);
  }
  const auto bad = [&](const std::vector<std::string>& env, const std::string& needle) {
    SCOPED_TRACE(needle);
    const pid_t pid = spawn(train_args(), dir_ / "bad.log", env);
    const int code = wait_for(pid, std::chrono::seconds(30));
    Result r;
    r.exit_code = code;
    r.err = read_all(dir_ / "bad.log");
    fs::remove(dir_ / "bad.log");
    expect_clean_error(r, 2, needle);
  };
  bad({"WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=29500"}, "RANK is not set");
  bad({"WORLD_SIZE=2", "RANK=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=29500"}, "RANK must be an integer in [0, 1]");
  bad({"WORLD_SIZE=two", "RANK=0"}, "WORLD_SIZE must be an integer");
  bad({"WORLD_SIZE=2", "RANK=0", "MASTER_PORT=29500"}, "MASTER_ADDR is not set");
  expect_clean_error(run({"launch", "--nproc", "0", "--", "train"}), 2, "--nproc must be in [1, 4096]");
  expect_clean_error(run({"launch", "--nproc", "2", "--", "generate"}), 2, "the command after -- must be train");
  expect_clean_error(run({"launch", "--nproc", "2"}), 2, "launch needs the worker's command after --");
  expect_clean_error(run({"launch", "--nproc", "2", "--nnodes", "2", "--node-rank", "0", "--", "train"}), 2,
                     "--master-port is required with --nnodes > 1");
}

// Two hosts: network namespaces joined by a veth pair, made here. Needs root
// (CAP_NET_ADMIN) and iproute2; skipped otherwise. The run must match the
// same run over loopback exactly.
class NetworkNamespaces {
 public:
  explicit NetworkNamespaces(const std::string& tag) : a_("charrnn_a_" + tag), b_("charrnn_b_" + tag) {
    ok_ = sh("ip netns add " + a_) && sh("ip netns add " + b_) &&
          sh("ip link add veth_" + tag + "a netns " + a_ + " type veth peer name veth_" + tag + "b netns " + b_) &&
          sh("ip -n " + a_ + " addr add 10.231.0.1/24 dev veth_" + tag + "a") &&
          sh("ip -n " + b_ + " addr add 10.231.0.2/24 dev veth_" + tag + "b") &&
          sh("ip -n " + a_ + " link set veth_" + tag + "a up") && sh("ip -n " + b_ + " link set veth_" + tag + "b up") &&
          sh("ip -n " + a_ + " link set lo up") && sh("ip -n " + b_ + " link set lo up") && can_connect();
    interface_a_ = "veth_" + tag + "a";
    interface_b_ = "veth_" + tag + "b";
  }
  ~NetworkNamespaces() {
    sh("ip netns del " + a_);
    sh("ip netns del " + b_);
  }
  bool ok() const { return ok_; }
  const std::string& a() const { return a_; }
  const std::string& b() const { return b_; }
  const std::string& interface_a() const { return interface_a_; }
  const std::string& interface_b() const { return interface_b_; }

 private:
  static bool sh(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()) == 0; }
  // A TCP connection from b to a: the namespaces exist and carry traffic
  // (a container may allow creating them but not entering them).
  bool can_connect() const {
    const std::string listen = R"(import socket; s = socket.socket(); s.bind(("10.231.0.1", 29612)); s.listen(1); s.settimeout(8); s.accept())";
    const std::string connect = R"(import socket; socket.create_connection(("10.231.0.1", 29612), 3))";
    return sh("ip netns exec " + a_ + " /usr/bin/python3 -c '" + listen + "' & sleep 1; ip netns exec " + b_ +
              " /usr/bin/python3 -c '" + connect + "'; r=$?; wait; exit $r");
  }
  std::string a_, b_, interface_a_, interface_b_;
  bool ok_ = false;
};

TEST_F(Distributed, TwoHostsInNetworkNamespacesTrainLikeLoopback) {
  if (::geteuid() != 0) GTEST_SKIP() << "creating network namespaces needs root";
  if (std::system("command -v ip >/dev/null 2>&1") != 0) GTEST_SKIP() << "iproute2 (ip) is not installed";
  const std::string tag = std::to_string(::getpid() % 100000);
  NetworkNamespaces hosts(tag);
  if (!hosts.ok()) GTEST_SKIP() << "cannot create, enter and connect two network namespaces here";

  // a bounded timeout: a namespace setup that lets no traffic through fails, never hangs
  const std::vector<std::string> common = {"--set", "train.steps=30", "--set", "train.eval_every=10",
                                           "--set", "distributed.timeout_s=60"};
  std::vector<std::string> local = train_args(common);
  local.insert(local.end(), {"--set", "train.checkpoint=" + (dir_ / "loopback.pt").string()});
  ASSERT_EQ(run(launch_args(2, local)).exit_code, 0);

  // each "host" runs `charrnn launch --nnodes 2 --node-rank I` in its namespace.
  // Both share this machine's cores, so each gets the one thread a loopback
  // worker gets: with two, the layers' products go to OpenBLAS instead of
  // the tile kernels (PackedWeight::best_kernel), whose last bits differ by
  // CPU and OpenBLAS core, and the test would compare thread counts, not
  // the network.
  std::vector<std::string> remote = train_args(common);
  remote.insert(remote.end(), {"--set", "train.checkpoint=" + (dir_ / "hosts.pt").string()});
  const auto host_command = [&](const std::string& ns, int node, const std::string& interface) {
    std::string command = "ip netns exec " + ns + " env CHARRNN_THREADS=1 GLOO_SOCKET_IFNAME=" + interface + " " + quote(CHARRNN_BIN) +
                          " launch --nproc 1 --nnodes 2 --node-rank " + std::to_string(node) +
                          " --master-addr 10.231.0.1 --master-port 29611 --";
    for (const std::string& a : remote) command += " " + quote(a);
    return command + " >" + quote((dir_ / ("host" + std::to_string(node) + ".log")).string()) + " 2>&1";
  };
  std::thread host1([&] { std::system(host_command(hosts.b(), 1, hosts.interface_b()).c_str()); });
  const int code0 = std::system(host_command(hosts.a(), 0, hosts.interface_a()).c_str());
  host1.join();
  ASSERT_EQ(code0, 0) << read_all(dir_ / "host0.log") << read_all(dir_ / "host1.log");

  const auto a = read_metrics(dir_ / "loopback.metrics.jsonl"), b = read_metrics(dir_ / "hosts.metrics.jsonl");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["train_loss"], b[i]["train_loss"]);
    EXPECT_EQ(a[i]["val_loss"], b[i]["val_loss"]);
  }
  EXPECT_EQ(largest_difference(weights((dir_ / "loopback.pt").string()), weights((dir_ / "hosts.pt").string())), 0.0);
}

}  // namespace
}  // namespace charrnn_cli_test
