// Data-parallel training across processes and machines on PyTorch's own
// distributed engine, c10d: ranks meet through c10d's TCPStore and talk over
// a Gloo process group. Launch conventions are torchrun's: RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, and
// GLOO_SOCKET_IFNAME to pick the network interface.
//
// c10d stays behind this header, so the rest of charrnn (and a build whose
// LibTorch lacks c10d's Gloo headers) never sees it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace charrnn {

struct ProcessGroupOptions {
  int64_t rank = 0;              ///< this process, 0..world_size-1. Default: 0
  int64_t world_size = 1;        ///< processes in the run. Default: 1
  int64_t local_rank = 0;        ///< this process among those on its machine. Default: 0
  std::string master_addr = "127.0.0.1";  ///< where rank 0 hosts the rendezvous store. Default: 127.0.0.1
  int64_t master_port = 29500;   ///< its TCP port. Default: 29500 (torchrun's)
  std::string interface;         ///< network interface for Gloo; "" picks by address. Default: ""
  std::chrono::milliseconds timeout{300000};  ///< rendezvous and every collective. Default: 300 s
};

/// The torchrun variables, or nullopt when WORLD_SIZE is unset or 1. Throws
/// UsageError naming the variable when one is malformed or inconsistent.
std::optional<ProcessGroupOptions> process_group_from_environment();

/// True when this build has c10d with Gloo.
bool distributed_available();

/// A joined group of training processes. Every collective must be called by
/// every rank in the same order; a peer that dies or stops answering within
/// the timeout makes the call throw Error, never hang.
///
/// A run of one process has a group too, single(): rank 0 of 1, whose
/// collectives return their input (as llm.c's multi_gpu_cpu_float_sum does
/// for one process), so the training loop is the same code for one process
/// or many and never asks which it is.
class ProcessGroup {
 public:
  /// Meets the other ranks (rank 0 hosts the store) and connects them.
  /// Throws Error when they do not all arrive within the timeout.
  static std::shared_ptr<ProcessGroup> join(const ProcessGroupOptions& options);
  /// The group of a run that is one process.
  static std::shared_ptr<ProcessGroup> single();
  virtual ~ProcessGroup() = default;

  int64_t rank() const { return options_.rank; }
  int64_t size() const { return options_.world_size; }
  int64_t local_rank() const { return options_.local_rank; }
  const ProcessGroupOptions& options() const { return options_; }

  /// Starts summing `tensor` (contiguous) across ranks in place and returns
  /// the call that waits for the result, so work can go on meanwhile.
  virtual std::function<void()> start_sum(torch::Tensor tensor, const std::string& what) = 0;
  /// Sums `tensor` across ranks in place.
  void sum(torch::Tensor tensor, const std::string& what) { start_sum(std::move(tensor), what)(); }
  /// Copies rank `root`'s `tensor` into every rank's.
  virtual void broadcast(torch::Tensor tensor, int64_t root, const std::string& what) = 0;
  virtual void barrier(const std::string& what) = 0;

  /// Rank 0's bytes on every rank (e.g. a checkpoint to roll back to).
  std::string broadcast_bytes(const std::string& bytes_on_root, const std::string& what);
  /// Every rank's `bytes`, indexed by rank, on every rank.
  std::vector<std::string> gather_bytes(const std::string& bytes, const std::string& what);
  /// For each flag, whether any rank raised it (a blocking sum).
  std::vector<bool> any_rank(const std::vector<bool>& flags, const std::string& what);

 protected:
  explicit ProcessGroup(ProcessGroupOptions options) : options_(std::move(options)) {}
  ProcessGroupOptions options_;
};

/// Averages gradients across ranks the way DDP does: parameters go into
/// flat buckets of about `bucket_bytes`, and each bucket's all-reduce starts
/// from a gradient hook as soon as backward has produced its last gradient,
/// so communication overlaps the rest of backward. A few control values
/// (the loss, "stop now" flags) ride along, summed across ranks, so every
/// rank takes the same decisions at the same step.
///
/// In a group of one it registers no hooks and moves no gradient: finish()
/// returns the control values as given.
class GradientAverager {
 public:
  GradientAverager(std::vector<torch::Tensor> parameters, std::shared_ptr<ProcessGroup> group,
                   int64_t bucket_bytes);
  ~GradientAverager();
  GradientAverager(const GradientAverager&) = delete;
  GradientAverager& operator=(const GradientAverager&) = delete;

  /// Before backward: sets this rank's control values and starts their sum.
  void begin(const std::vector<double>& control);
  /// After backward: waits for every bucket, writes the averaged gradients
  /// into the parameters' .grad and returns the control values summed over
  /// ranks. A gradient that did not pass its hook (one computed with
  /// autograd::grad and written to .grad, as a batch split in parts does) is
  /// taken from .grad.
  std::vector<double> finish();

  int64_t bucket_count() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  struct Bucket {
    torch::Tensor flat;                 // the gradients of its parameters, end to end
    std::vector<int64_t> parameters;    // indices into parameters_
    std::vector<int64_t> offsets;       // where each starts in flat
    int64_t pending = 0;                // gradients not yet arrived this step
    std::function<void()> wait;         // set once its sum has started
  };
  void on_gradient(int64_t parameter, const torch::Tensor& grad);
  void start_ready_buckets();

  std::vector<torch::Tensor> parameters_;
  std::vector<int64_t> bucket_of_;      // parameter -> bucket
  std::vector<int64_t> slot_of_;        // parameter -> index within its bucket
  std::vector<Bucket> buckets_;
  std::vector<bool> arrived_;           // parameter -> its gradient came this step
  std::vector<unsigned> hook_ids_;
  std::shared_ptr<ProcessGroup> group_;
  torch::Tensor control_;
  std::function<void()> control_wait_;
  size_t next_to_start_ = 0;  // buckets start in a fixed order, the same on every rank
  bool in_step_ = false;
};

/// splitmix64: well-spread seeds for rank `salt`'s streams from one base seed.
uint64_t mix_seed(uint64_t base, uint64_t salt);
/// Test hook (CHARRNN_TEST_SHARED_BATCH_ORDER=1): every rank draws the
/// chunks of one large batch and keeps its share, so N ranks with batch B
/// see exactly what one process with batch N*B sees (the distributed
/// equivalence test).
bool ranks_share_one_batch_order();

}  // namespace charrnn
