// GradientAverager: DDP-style bucketed gradient averaging, checked against
// gradients computed by hand, over a real Gloo group of two ranks (two
// threads of this process) and over a recording stand-in that shows when
// each bucket's sum starts.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <thread>

#include <torch/torch.h>

#include "charrnn/distributed.h"
#include "charrnn/error.h"
#include "charrnn/launch.h"

namespace {

using charrnn::GradientAverager;
using charrnn::ProcessGroup;

// A group of two where "the other rank" always sends what this one has:
// sums double, averages are the local values. It records each sum's start.
class MirrorGroup final : public ProcessGroup {
 public:
  MirrorGroup() : ProcessGroup(options()) {}
  std::function<void()> start_sum(torch::Tensor tensor, const std::string& what) override {
    starts.push_back({what, tensor.numel(), backward_done});
    return [tensor]() mutable { tensor.mul_(2); };
  }
  void broadcast(torch::Tensor, int64_t, const std::string&) override {}
  void barrier(const std::string&) override {}

  struct Start {
    std::string what;
    int64_t numel;
    bool after_backward;
  };
  std::vector<Start> starts;
  bool backward_done = false;

 private:
  static charrnn::ProcessGroupOptions options() {
    charrnn::ProcessGroupOptions o;
    o.world_size = 2;
    return o;
  }
};

torch::nn::Sequential make_model() {
  return torch::nn::Sequential(torch::nn::Linear(6, 16), torch::nn::Tanh(), torch::nn::Linear(16, 16),
                               torch::nn::Tanh(), torch::nn::Linear(16, 3));
}

TEST(GradientAverager, SumsOfBucketsStartDuringBackwardInAFixedOrder) {
  torch::manual_seed(0);
  auto model = make_model();
  auto group = std::make_shared<MirrorGroup>();
  // 300 bytes: every parameter but the small biases gets a bucket of its own
  GradientAverager averager(model->parameters(), group, 300);
  EXPECT_GT(averager.bucket_count(), 3);

  const torch::Tensor x = torch::randn({5, 6});
  model->zero_grad();
  const torch::Tensor loss = model->forward(x).pow(2).mean();
  averager.begin({loss.item<double>(), 1.0});
  loss.backward();
  group->backward_done = true;
  std::vector<torch::Tensor> local;
  for (const auto& p : model->parameters()) local.push_back(p.grad().clone());
  const std::vector<double> control = averager.finish();

  ASSERT_EQ(control.size(), 2u);
  EXPECT_DOUBLE_EQ(control[0], 2 * loss.item<double>());  // summed over the two "ranks"
  EXPECT_DOUBLE_EQ(control[1], 2.0);
  ASSERT_EQ(static_cast<int64_t>(group->starts.size()), 1 + averager.bucket_count());
  EXPECT_EQ(group->starts[0].what, "summing the step's control values");
  int64_t during_backward = 0, numel = 0;
  for (size_t i = 1; i < group->starts.size(); ++i) {
    during_backward += group->starts[i].after_backward ? 0 : 1;
    numel += group->starts[i].numel;
  }
  // every bucket was complete, and sent, before backward returned: the
  // communication overlaps the rest of backward
  EXPECT_EQ(during_backward, averager.bucket_count());
  int64_t parameters = 0;
  for (const auto& p : model->parameters()) parameters += p.numel();
  EXPECT_EQ(numel, parameters);
  // the first bucket holds the last layer, whose gradient backward makes first
  // the head's bias and weight and the previous bias: 67 floats, 268 bytes
  EXPECT_EQ(group->starts[1].numel, 3 + 48 + 16);
  const auto params = model->parameters();
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(torch::allclose(params[i].grad(), local[i])) << i;
}


// A gradient written to .grad without passing its hook (a batch split in
// parts computes its gradients with autograd::grad) is averaged all the same.
TEST(GradientAverager, TakesGradientsThatBypassedTheirHooksFromGrad) {
  torch::manual_seed(0);
  auto model = make_model();
  auto group = std::make_shared<MirrorGroup>();
  GradientAverager averager(model->parameters(), group, 300);
  const torch::Tensor loss = model->forward(torch::randn({5, 6})).pow(2).mean();
  const std::vector<torch::Tensor> params = model->parameters();
  const std::vector<torch::Tensor> grads = torch::autograd::grad({loss}, params);
  for (size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = grads[i].clone() * 3;  // not the hook's
  averager.begin({loss.item<double>()});
  const std::vector<double> control = averager.finish();
  EXPECT_DOUBLE_EQ(control[0], 2 * loss.item<double>());
  // the mirror's other rank has the same gradient: the average is .grad's
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(torch::equal(params[i].grad(), grads[i] * 3)) << i;
}

// A run of one process has a group too: rank 0 of 1, collectives that
// return their input, and an averager that moves nothing.
TEST(SingleProcessGroup, IsRankZeroOfOneAndItsCollectivesReturnTheirInput) {
  const auto group = ProcessGroup::single();
  EXPECT_EQ(group->rank(), 0);
  EXPECT_EQ(group->size(), 1);
  EXPECT_EQ(group->local_rank(), 0);
  torch::Tensor t = torch::tensor({1.5, -2.0}, torch::kDouble);
  group->sum(t, "test");
  EXPECT_TRUE(torch::equal(t, torch::tensor({1.5, -2.0}, torch::kDouble)));
  group->broadcast(t, 0, "test");
  EXPECT_TRUE(torch::equal(t, torch::tensor({1.5, -2.0}, torch::kDouble)));
  group->barrier("test");
  const std::string bytes("a\0b\xff", 4);
  EXPECT_EQ(group->broadcast_bytes(bytes, "test"), bytes);
  EXPECT_EQ(group->gather_bytes(bytes, "test"), std::vector<std::string>{bytes});
  EXPECT_EQ(group->any_rank({true, false}, "test"), (std::vector<bool>{true, false}));
}

TEST(SingleProcessGroup, AveragerLeavesGradientsAsBackwardMadeThemAndReturnsTheControlValues) {
  torch::manual_seed(0);
  auto model = make_model();
  auto twin = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(model->clone());
  const torch::Tensor x = torch::randn({5, 6});
  twin->forward(x).pow(2).mean().backward();

  GradientAverager averager(model->parameters(), ProcessGroup::single(), 300);
  EXPECT_EQ(averager.bucket_count(), 0);
  const torch::Tensor loss = model->forward(x).pow(2).mean();
  averager.begin({loss.item<double>(), 7.0});
  loss.backward();
  EXPECT_EQ(averager.finish(), (std::vector<double>{loss.item<double>(), 7.0}));
  const auto params = model->parameters(), expected = twin->parameters();
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(torch::equal(params[i].grad(), expected[i].grad())) << i;
}

// Flags raised on any rank are raised on all: the mirror's sum doubles them.
TEST(ProcessGroupAnyRank, AFlagRaisedOnOneRankIsRaisedOnAll) {
  MirrorGroup group;
  EXPECT_EQ(group.any_rank({false, true, false}, "stop"), (std::vector<bool>{false, true, false}));
  ASSERT_EQ(group.starts.size(), 1u);
  EXPECT_EQ(group.starts[0].what, "stop");
}

// Two ranks over real Gloo, each with its own batch: afterwards both hold
// the mean of the two batches' gradients, bit for bit the same on both.
TEST(GradientAverager, TwoGlooRanksEndWithTheMeanGradient) {
  if (!charrnn::distributed_available()) GTEST_SKIP() << "this LibTorch lacks c10d's Gloo headers";
  const int port = static_cast<int>(charrnn::free_local_port());
  torch::manual_seed(1);
  const auto reference = make_model();
  const torch::Tensor inputs[2] = {torch::randn({4, 6}), torch::randn({7, 6})};

  // each rank's own gradient, computed by hand
  std::vector<std::vector<torch::Tensor>> local(2);
  for (int r = 0; r < 2; ++r) {
    auto copy = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(reference->clone());
    copy->forward(inputs[r]).pow(2).mean().backward();
    for (const auto& p : copy->parameters()) local[static_cast<size_t>(r)].push_back(p.grad().clone());
  }

  std::vector<std::vector<torch::Tensor>> averaged(2);
  std::vector<double> losses(2);
  std::string failure;
  std::mutex failure_mutex;
  const auto rank_main = [&](int rank) {
    try {
      charrnn::ProcessGroupOptions o;
      o.rank = rank;
      o.world_size = 2;
      o.master_port = port;
      o.timeout = std::chrono::milliseconds(20000);
      auto group = ProcessGroup::join(o);
      auto model = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(reference->clone());
      GradientAverager averager(model->parameters(), group, 256);
      const torch::Tensor loss = model->forward(inputs[rank]).pow(2).mean();
      averager.begin({loss.item<double>()});
      loss.backward();
      losses[static_cast<size_t>(rank)] = averager.finish()[0];
      for (const auto& p : model->parameters()) averaged[static_cast<size_t>(rank)].push_back(p.grad().clone());
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(failure_mutex);
      failure += e.what();
    }
  };
  std::thread other(rank_main, 1);
  rank_main(0);
  other.join();
  ASSERT_TRUE(failure.empty()) << failure;
  EXPECT_DOUBLE_EQ(losses[0], losses[1]);
  for (size_t i = 0; i < local[0].size(); ++i) {
    const torch::Tensor mean = (local[0][i] + local[1][i]) / 2;
    EXPECT_TRUE(torch::allclose(averaged[0][i], mean, 1e-5, 1e-6)) << i;
    EXPECT_TRUE(torch::equal(averaged[0][i], averaged[1][i])) << i;
  }
}

TEST(ProcessGroupEnvironment, SingleProcessWithoutWorldSizeAndTorchrunVariablesOtherwise) {
  ::unsetenv("WORLD_SIZE");
  EXPECT_FALSE(charrnn::process_group_from_environment().has_value());
  ::setenv("WORLD_SIZE", "1", 1);
  EXPECT_FALSE(charrnn::process_group_from_environment().has_value());
  ::setenv("WORLD_SIZE", "4", 1);
  ::setenv("RANK", "3", 1);
  ::setenv("LOCAL_RANK", "1", 1);
  ::setenv("MASTER_ADDR", "10.0.0.7", 1);
  ::setenv("MASTER_PORT", "29512", 1);
  ::setenv("GLOO_SOCKET_IFNAME", "eth1", 1);
  const auto o = charrnn::process_group_from_environment();
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->world_size, 4);
  EXPECT_EQ(o->rank, 3);
  EXPECT_EQ(o->local_rank, 1);
  EXPECT_EQ(o->master_addr, "10.0.0.7");
  EXPECT_EQ(o->master_port, 29512);
  EXPECT_EQ(o->interface, "eth1");
  ::setenv("MASTER_PORT", "70000", 1);
  EXPECT_THROW(charrnn::process_group_from_environment(), charrnn::UsageError);
  for (const char* name : {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "GLOO_SOCKET_IFNAME"})
    ::unsetenv(name);
}

}  // namespace
