// Training batches of B rows of T characters, inputs and targets shifted by
// one, in one of two orders (train.batching):
//   random      each row is a chunk drawn uniformly from the training ids,
//               trained from a zero state, or from the state left by
//               `burn_in` characters before it, read without gradient;
//   sequential  the ids are cut into B contiguous tracks, and each batch is
//               the next T characters of every track, so the trainer can
//               carry the state from one batch to the next (truncated
//               backprop through time, as char-rnn trains). Every epoch
//               starts the tracks at a fresh random offset in [0, T), so
//               chunk boundaries move between epochs.
// All gathering is done with tensor ops; the generator's state and the
// position in the epoch go into checkpoints, so a resumed run sees the same
// batches.
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "charrnn/config.h"

namespace charrnn {

struct Batch {
  torch::Tensor inputs;   // (B, T) int64
  torch::Tensor targets;  // (B, T) int64, inputs shifted left by one
  torch::Tensor burn_in;  // (B, burn_in) int64, the ids right before inputs; undefined without burn-in
  bool starts_tracks = true;  // sequential: the first batch of an epoch, whose rows start from a zero state
};

struct BatcherOptions {
  BatcherOptions(int64_t batch_size, int64_t seq_length) : batch_size_(batch_size), seq_length_(seq_length) {}
  TORCH_ARG(int64_t, batch_size);
  TORCH_ARG(int64_t, seq_length);
  TORCH_ARG(bool, sequential) = false;
  TORCH_ARG(int64_t, burn_in) = 0;  // random batching only
  TORCH_ARG(uint64_t, seed) = 0;
};

class Batcher {
 public:
  /// `ids` (any integer type, e.g. a memory-mapped uint8 corpus) needs at
  /// least seq_length + burn_in + 1 elements, and sequential batching at
  /// least batch_size * seq_length + 1 (Trainer checks and says so); batches are int64.
  Batcher(torch::Tensor ids, const BatcherOptions& options);
  /// Random batching without burn-in.
  Batcher(torch::Tensor ids, int64_t batch_size, int64_t seq_length, uint64_t seed)
      : Batcher(std::move(ids), BatcherOptions(batch_size, seq_length).seed(seed)) {}

  Batch next();

  /// From now on draws parts x batch_size rows and returns only the
  /// part-th batch_size of them: `parts` batchers with the same seed then
  /// split one large batch between them (for sequential batching: its
  /// tracks). Distributed ranks use it to share one order of batches.
  void keep_part(int64_t part, int64_t parts);

  /// The fewest training ids sequential batching needs for these sizes.
  static int64_t min_sequential_ids(int64_t rows, int64_t seq_length) { return rows * seq_length + 1; }

  /// Sequential batching: batches per epoch.
  int64_t steps_per_epoch() const;

  torch::Tensor rng_state() const;
  void set_rng_state(const torch::Tensor& state);
  /// Where the epoch is: {track offset, batches already taken from it}, int64.
  torch::Tensor position() const;
  void set_position(const torch::Tensor& position);

 private:
  int64_t rows() const { return options_.batch_size() * parts_; }
  /// Sequential: the ids of each track when the epoch starts at `offset`.
  int64_t track_length(int64_t offset) const;
  /// Sequential batching of `parts` x batch_size tracks fits the ids.
  void require_room_for_tracks(int64_t parts) const;
  Batch gather(const torch::Tensor& starts, int64_t burn_in) const;

  torch::Tensor ids_;
  BatcherOptions options_;
  int64_t part_ = 0, parts_ = 1;
  at::Generator generator_;
  torch::Tensor offsets_;  // (1, burn_in+T+1): 0..burn_in+T
  // sequential: the epoch's track offset and the batches taken from it;
  // taken == -1 means the next batch starts a new epoch
  int64_t track_offset_ = 0, taken_ = -1;
};

/// Throws UsageError, naming the keys to change, when a text of
/// `training_ids` characters cannot be batched as `train` says by
/// `world_size` processes (too short for the sequential tracks or the burn-in).
void require_batching_fits(const TrainOptions& train, int64_t training_ids, int64_t world_size);

}  // namespace charrnn
