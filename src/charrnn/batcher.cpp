#include "charrnn/batcher.h"

#include "charrnn/error.h"
#include "charrnn/sampler.h"

namespace charrnn {

Batcher::Batcher(torch::Tensor ids, int64_t batch_size, int64_t seq_length, uint64_t seed)
    : ids_(std::move(ids)),
      batch_size_(batch_size),
      seq_length_(seq_length),
      generator_(make_generator(seed)),
      offsets_(torch::arange(seq_length + 1, torch::kLong).unsqueeze(0)) {
  TORCH_CHECK(ids_.dim() == 1 && ids_.size(0) >= seq_length + 1, "Batcher needs at least seq_length + 1 ids");
}

Batch Batcher::next() {
  const int64_t starts_end = ids_.size(0) - seq_length_;  // exclusive upper bound of a start
  torch::Tensor starts = torch::randint(0, starts_end, {batch_size_ * parts_, 1}, generator_, torch::kLong);
  if (parts_ > 1) starts = starts.narrow(0, part_ * batch_size_, batch_size_);
  const torch::Tensor chunks =
      ids_.index_select(0, (starts + offsets_).view(-1)).view({batch_size_, seq_length_ + 1}).to(torch::kLong);  // (B, T+1)
  return {chunks.narrow(1, 0, seq_length_), chunks.narrow(1, 1, seq_length_)};
}

void Batcher::keep_part(int64_t part, int64_t parts) {
  TORCH_CHECK(parts >= 1 && part >= 0 && part < parts, "Batcher::keep_part needs 0 <= part < parts");
  part_ = part;
  parts_ = parts;
}

torch::Tensor Batcher::rng_state() const { return generator_.get_state(); }

void Batcher::set_rng_state(const torch::Tensor& state) {
  try {
    generator_.set_state(state);
  } catch (const c10::Error& e) {
    throw Error(std::string("checkpoint holds an invalid batch sampler state: ") + e.what_without_backtrace());
  }
}

}  // namespace charrnn
