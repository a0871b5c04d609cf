#include "charrnn/batcher.h"

#include "charrnn/error.h"
#include "charrnn/sampler.h"

namespace charrnn {

Batcher::Batcher(torch::Tensor ids, const BatcherOptions& options)
    : ids_(std::move(ids)),
      options_(options),
      generator_(make_generator(options.seed())),
      offsets_(torch::arange(options.burn_in() + options.seq_length() + 1, torch::kLong).unsqueeze(0)) {
  TORCH_CHECK(options_.batch_size() >= 1 && options_.seq_length() >= 1 && options_.burn_in() >= 0,
              "Batcher needs batch_size, seq_length >= 1 and burn_in >= 0");
  TORCH_CHECK(!options_.sequential() || options_.burn_in() == 0, "sequential batching takes no burn-in");
  TORCH_CHECK(ids_.dim() == 1 && ids_.size(0) >= options_.burn_in() + options_.seq_length() + 1,
              "Batcher needs at least burn_in + seq_length + 1 ids");
  require_room_for_tracks(parts_);
}

void Batcher::require_room_for_tracks(int64_t parts) const {
  TORCH_CHECK(!options_.sequential() ||
                  ids_.size(0) >= min_sequential_ids(parts * options_.batch_size(), options_.seq_length()),
              "sequential batching needs at least batch_size * seq_length + 1 ids per part");
}

Batch Batcher::gather(const torch::Tensor& starts, int64_t burn_in) const {
  const int64_t B = options_.batch_size(), T = options_.seq_length();
  const torch::Tensor chunks = ids_.index_select(0, (starts + offsets_).view(-1))
                                   .view({B, burn_in + T + 1})
                                   .to(torch::kLong);  // (B, burn_in+T+1)
  Batch batch;
  batch.inputs = chunks.narrow(1, burn_in, T);
  batch.targets = chunks.narrow(1, burn_in + 1, T);
  if (burn_in > 0) batch.burn_in = chunks.narrow(1, 0, burn_in);
  return batch;
}

int64_t Batcher::track_length(int64_t offset) const { return (ids_.size(0) - 1 - offset) / rows(); }

int64_t Batcher::steps_per_epoch() const { return track_length(track_offset_) / options_.seq_length(); }

Batch Batcher::next() {
  const int64_t B = options_.batch_size(), T = options_.seq_length();
  if (!options_.sequential()) {
    const int64_t burn_in = options_.burn_in();
    const int64_t starts_end = ids_.size(0) - T - burn_in;  // exclusive upper bound of a start
    torch::Tensor starts = torch::randint(0, starts_end, {rows(), 1}, generator_, torch::kLong);
    if (parts_ > 1) starts = starts.narrow(0, part_ * B, B);
    return gather(starts, burn_in);
  }
  if (taken_ < 0 || taken_ >= steps_per_epoch()) {
    // the widest offset that still leaves every track one batch
    const int64_t spare = ids_.size(0) - min_sequential_ids(rows(), T);
    track_offset_ = torch::randint(0, std::min(T, spare + 1), {1}, generator_, torch::kLong).item<int64_t>();
    taken_ = 0;
  }
  const torch::Tensor tracks = torch::arange(part_ * B, (part_ + 1) * B, torch::kLong).unsqueeze(1);  // (B, 1)
  Batch batch = gather(track_offset_ + tracks * track_length(track_offset_) + taken_ * T, 0);
  batch.starts_tracks = taken_ == 0;
  ++taken_;
  return batch;
}

void Batcher::keep_part(int64_t part, int64_t parts) {
  TORCH_CHECK(parts >= 1 && part >= 0 && part < parts, "Batcher::keep_part needs 0 <= part < parts");
  require_room_for_tracks(parts);
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

torch::Tensor Batcher::position() const { return torch::tensor({track_offset_, taken_}, torch::kLong); }

void Batcher::set_position(const torch::Tensor& position) {
  if (position.numel() != 2 || position.scalar_type() != torch::kLong)
    throw Error("checkpoint holds an invalid batch position");
  const int64_t offset = position[0].item<int64_t>(), taken = position[1].item<int64_t>();
  // a position the text cannot hold (a corrupt file, or another corpus) is
  // refused, not read past the end; the batcher keeps its own
  const int64_t T = options_.seq_length();
  if (offset < 0 || offset >= T || taken < -1 || ids_.size(0) - 1 - offset < rows() * T ||
      taken > track_length(offset) / T)
    throw Error("checkpoint holds a batch position outside this corpus");
  track_offset_ = offset;
  taken_ = taken;
}

void require_batching_fits(const TrainOptions& train, int64_t training_ids, int64_t world_size) {
  const int64_t tracks = train.batch_size * world_size;
  if (train.batching == Batching::Sequential && training_ids < Batcher::min_sequential_ids(tracks, train.seq_length))
    throw UsageError("train.batching=sequential cuts the training text into " + std::to_string(tracks) +
                     " tracks of at least train.seq_length=" + std::to_string(train.seq_length) +
                     " characters, but it has only " + std::to_string(training_ids) +
                     "; lower train.batch_size or train.seq_length, or use train.batching=random");
  if (train.burn_in > 0 && training_ids < train.burn_in + train.seq_length + 1)
    throw UsageError("train.burn_in=" + std::to_string(train.burn_in) + " plus train.seq_length needs " +
                     std::to_string(train.burn_in + train.seq_length + 1) +
                     " training characters, but there are only " + std::to_string(training_ids));
}

}  // namespace charrnn
