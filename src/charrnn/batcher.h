// Random training batches: B chunks of T+1 consecutive characters drawn
// uniformly from the training ids, split into inputs and targets shifted by
// one. All gathering is done with tensor ops; the generator's state is
// saved in checkpoints so a resumed run sees the same batches.
#pragma once

#include <cstdint>

#include <torch/torch.h>

namespace charrnn {

struct Batch {
  torch::Tensor inputs;   // (B, T) int64
  torch::Tensor targets;  // (B, T) int64, inputs shifted left by one
};

class Batcher {
 public:
  /// `ids` (any integer type, e.g. a memory-mapped uint8 corpus) needs at
  /// least seq_length + 1 elements; batches are int64.
  Batcher(torch::Tensor ids, int64_t batch_size, int64_t seq_length, uint64_t seed);

  Batch next();

  /// From now on draws parts x batch_size chunks and returns only the
  /// part-th batch_size of them: `parts` batchers with the same seed then
  /// split one large batch between them. A test hook uses it to give
  /// distributed ranks exactly the chunks of a one-process run.
  void keep_part(int64_t part, int64_t parts);

  torch::Tensor rng_state() const;
  void set_rng_state(const torch::Tensor& state);

 private:
  torch::Tensor ids_;
  int64_t batch_size_;
  int64_t seq_length_;
  int64_t part_ = 0, parts_ = 1;
  at::Generator generator_;
  torch::Tensor offsets_;  // (1, T+1): 0..T
};

}  // namespace charrnn
