// One checkpoint file holds everything needed to generate from a model or to
// resume training exactly: the resolved config, the vocabulary, the weights,
// Adam's state, the step counters and the random generators.
//
// Layout (little-endian):
//   8 bytes   magic "CHARRNN\n"
//   u32       format version (kCheckpointFormatVersion)
//   u64       header length, then the header: UTF-8 JSON with the config,
//             vocabulary, progress and a table of sections {name, size, crc32}
//   u32       CRC-32 of the header
//   sections  the raw bytes of each section in table order: "model" and
//             "optimizer" are LibTorch archives, "rng" an archive of generator
//             states; "training_model" (optional) a LibTorch archive too
// "model" holds the weights every command serves: with a weight average
// (train.ema_decay, weight_average.h) running, the average. The weights
// training steps are then kept in "training_model", which only resume reads.
// Readers skip sections they do not know, so a file with "training_model"
// keeps format version 1: an older charrnn serves its average and resumes
// from it; a file without it is read as before.
// Every length and checksum is verified before anything is parsed, so a
// truncated or corrupt file is a clear error, never a crash.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <torch/torch.h>

#include "charrnn/config.h"
#include "charrnn/model.h"
#include "charrnn/vocab.h"

namespace charrnn {

constexpr uint32_t kCheckpointFormatVersion = 1;

struct TrainingProgress {
  int64_t step = 0;                  ///< optimizer steps taken
  int64_t chars_trained = 0;         ///< characters seen by training
  double elapsed_seconds = 0;        ///< training wall-clock time so far
  double best_val_loss = std::numeric_limits<double>::quiet_NaN();  ///< NaN until validated
  int64_t best_step = -1;            ///< step of best_val_loss; -1 until validated
  double last_train_loss = std::numeric_limits<double>::quiet_NaN();
};

/// Where a fine-tuned model started (charrnn train --init-from).
struct ModelOrigin {
  std::string checkpoint;      ///< the --init-from path, as given
  int64_t step = 0;            ///< its optimizer steps
  int64_t chars_trained = 0;   ///< characters it had been trained on
  double best_val_loss = std::numeric_limits<double>::quiet_NaN();  ///< its best, on its own validation text
  std::string data;            ///< what it was trained on (data.path)
  std::string added_chars;     ///< characters the new text brought (UTF-8), in vocabulary order
};

/// A ModelOrigin as the checkpoint header stores it (and `charrnn info --json` prints it).
nlohmann::json to_json(const ModelOrigin& origin);

struct Checkpoint {
  Config config;
  Vocab vocab;
  TrainingProgress progress;
  /// The models this one was initialised from, nearest first; empty for a
  /// model trained from scratch. Kept by resume.
  std::vector<ModelOrigin> lineage;
  std::string charrnn_version;
  std::string model_bytes;      ///< LibTorch archive of the weights served: the average while one runs
  /// LibTorch archive of the weights training steps, when they are not
  /// model_bytes (a weight average runs); empty: model_bytes are those weights
  std::string training_model_bytes;
  std::string optimizer_bytes;  ///< LibTorch archive of Adam's state; may be empty
  std::string rng_bytes;        ///< LibTorch archive of generator states; may be empty
};

/// The file's bytes, as laid out above.
std::string serialize_checkpoint(const Checkpoint& checkpoint);
/// Serialises and writes atomically (temporary file, fsync, rename).
void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);

/// Reads and verifies a checkpoint; throws Error saying what is wrong.
Checkpoint load_checkpoint(const std::string& path);
/// A checkpoint or a TorchScript export (export.h), whichever `path` holds:
/// what every command that takes a model reads.
Checkpoint load_model_file(const std::string& path);
/// Verifies and parses a checkpoint's bytes; `source` names them in messages.
/// load_checkpoint is read_file plus this; it exists on its own so that the
/// fuzzer (fuzz/fuzz_checkpoint.cpp) can feed it from memory.
Checkpoint parse_checkpoint(const std::string& bytes, const std::string& source);

/// Builds the model a checkpoint describes and loads its weights onto `device`:
/// the served weights (model_bytes), what generate, eval, export and serve use.
CharRNN restore_model(const Checkpoint& checkpoint, const torch::Device& device);
/// The same with the weights training continues from: training_model_bytes
/// where the checkpoint holds them, else the served ones.
CharRNN restore_training_model(const Checkpoint& checkpoint, const torch::Device& device);

/// Archives (model weights, optimizer state, tensors) to and from bytes.
std::string archive_module(const torch::nn::Module& module);
std::string archive_optimizer(const torch::optim::Optimizer& optimizer);
void restore_optimizer(torch::optim::Optimizer& optimizer, const std::string& bytes, const torch::Device& device);
std::string archive_tensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors);
torch::Tensor read_archived_tensor(const std::string& bytes, const std::string& key);

/// One rank's place in its random streams, as the "rng" section keeps it:
/// rank 0's under plain names ("batcher", "torch_cpu", "carried_state"),
/// rank r's under the same names suffixed "_rankR". A checkpoint of one
/// process and rank 0's part of a distributed one read alike, and a run
/// resumed with the same world size continues every rank exactly.
struct RankStreams {
  torch::Tensor batcher;    ///< the batch sampler's generator state; undefined: none kept
  torch::Tensor torch_cpu;  ///< the global CPU generator's (dropout); undefined: none kept
  State carried;            ///< sequential batching's state after the last batch (float, CPU); undefined: none
};
/// One rank's streams as bytes, for gathering them from every rank.
std::string serialize_rank_streams(const RankStreams& streams);
RankStreams parse_rank_streams(const std::string& bytes);
/// The "rng" section: every rank's streams, indexed by rank, and the
/// batcher's place in its epoch, which all ranks share.
std::string archive_training_streams(const std::vector<RankStreams>& ranks, const torch::Tensor& batcher_position);
/// Rank `rank`'s streams in an "rng" section; all undefined where it holds
/// none (a checkpoint of an older version, or a rank the run did not have).
RankStreams read_rank_streams(const std::string& rng_bytes, int64_t rank);
/// The batcher's place in its epoch; undefined where the section holds none.
torch::Tensor read_batcher_position(const std::string& rng_bytes);

/// CRC-32 (IEEE), exposed for tests.
uint32_t crc32(const void* data, size_t size);

/// Throws UsageError, saying which key to raise, when a checkpoint at
/// `progress` has nothing left to train under `train` (its steps or its time
/// budget, the run's total, are spent).
void require_resumable(const TrainingProgress& progress, const TrainOptions& train);

}  // namespace charrnn
