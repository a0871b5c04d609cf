// The training loop: random chunks -> model -> cross-entropy -> Adam with
// global-norm clipping. Every eval_every steps it measures validation loss
// and bits per character, writes a short sample and a metrics line (JSON
// lines next to the checkpoint), saves the latest checkpoint and keeps the
// best one. A stop request (Ctrl-C) saves a checkpoint and returns.
//
// It is one rank of a data-parallel run, a run of one process being rank 0
// of 1 (ProcessGroup::single()): each rank draws its own chunks, gradients
// are averaged across ranks, validation is split between them, and only
// rank 0 writes files. Every decision (stop, divergence, best) is taken on
// values all ranks share, so they never part.
//
// With train.ema_decay > 0 it keeps an average of the weights from
// train.ema_start on (weight_average.h): validation (and so the best
// checkpoint), the samples and every checkpoint's served weights are the
// average's, while steps, resume and rollback continue the raw weights.
//
// Shape legend: B batch, T seq_length, V vocabulary.
#pragma once

#include <atomic>
#include <iosfwd>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include <torch/torch.h>

#include "charrnn/batch_split.h"
#include "charrnn/batcher.h"
#include "charrnn/checkpoint.h"
#include "charrnn/config.h"
#include "charrnn/corpus.h"
#include "charrnn/distributed.h"
#include "charrnn/evaluate.h"
#include "charrnn/lr_schedule.h"
#include "charrnn/model.h"
#include "charrnn/optimizer.h"
#include "charrnn/run_log.h"
#include "charrnn/weight_average.h"

namespace charrnn {

struct TrainerIO {
  std::ostream* log = nullptr;                     ///< progress and summaries; nullptr is silent. Default: nullptr
  bool redraw = false;                             ///< redraw one progress line in place (a terminal). Default: false
  const std::atomic<bool>* stop_requested = nullptr;  ///< set by a signal handler to stop and save. Default: nullptr
};

struct TrainSummary {
  int64_t steps_done = 0;      ///< steps taken by this run
  double seconds = 0;          ///< wall-clock time of this run
  double chars_per_second = 0;  ///< training throughput of this run
  bool interrupted = false;    ///< stopped by a stop request
};

class Trainer {
 public:
  /// A fresh run. Loads the corpus and builds the model; throws on bad input.
  /// `group` is this process's place in a distributed run; nullptr: a run of one process.
  Trainer(const Config& config, TrainerIO io = {}, std::shared_ptr<ProcessGroup> group = nullptr);
  /// Continues `checkpoint` with `config` (the checkpoint's own config with
  /// any overrides applied). The model section must be unchanged.
  Trainer(const Checkpoint& checkpoint, const Config& config, TrainerIO io = {},
          std::shared_ptr<ProcessGroup> group = nullptr);

  /// Fine-tunes `base` (loaded from `base_path`) on `config`'s corpus: its
  /// weights, extended to the characters the corpus adds (fine_tune.h), a
  /// fresh optimizer and schedule from step 0. The model section must match
  /// the base's shape; train.checkpoint must be another file.
  Trainer(const Checkpoint& base, const std::string& base_path, const Config& config, TrainerIO io = {},
          std::shared_ptr<ProcessGroup> group = nullptr);
  TrainSummary run();

  /// Seconds spent in each phase of train_step, summed over calls.
  struct StepTimes {
    double batch = 0, forward = 0, backward = 0, clip = 0, optimizer = 0;
  };
  /// One optimizer step on a fresh random batch; returns the batch loss.
  /// run() is a loop over this; `charrnn bench` times it directly, and
  /// passes `times` to see where a step's time goes.
  double train_step(StepTimes* times = nullptr);

  const Config& config() const { return config_; }
  const TrainingProgress& progress() const { return progress_; }
  /// The learning rate the schedule gave the last step (before the first: the next one's).
  double learning_rate() const {
    return current_lr_ > 0 ? current_lr_
                           : scheduled_learning_rate(config_.train, progress_.step, progress_.elapsed_seconds);
  }
  const Vocab& vocab() const { return corpus_.vocab; }
  /// What the model was initialised from, nearest first (empty: from scratch).
  const std::vector<ModelOrigin>& lineage() const { return lineage_; }
  /// Documents (files) the corpus holds, and of which held out.
  int64_t documents() const { return corpus_.documents; }
  int64_t validation_documents() const { return corpus_.val_documents; }
  /// The weights training steps (not the average: see weight_average()).
  CharRNN& model() { return model_; }
  /// The average of the weights (train.ema_decay); not started before train.ema_start.
  const WeightAverage& weight_average() const { return weight_average_; }
  const torch::Tensor& training_ids() const { return corpus_.train; }
  const torch::Tensor& validation_ids() const { return corpus_.val; }
  const torch::Device& device() const { return device_; }

  /// Everything needed to resume, as of now. Every rank must call it: it
  /// collects all ranks' random streams.
  Checkpoint make_checkpoint() const;

  /// The first words of the training text, a prime it is sure to know.
  std::string corpus_prime() const;
  /// Samples (and the checkpoint's sample.prime, generate's default) use
  /// corpus_prime() from now on; `why` is kept for sample_prime_note().
  void use_corpus_prime(const std::string& why);
  /// "encoded the corpus once into PATH (N MB)..." when this run wrote the
  /// encoded corpus (data.cache); "" when it mapped one already there.
  const std::string& corpus_cache_note() const { return cache_note_; }
  /// Why the samples' prime is not the config's; "" when it is.
  const std::string& sample_prime_note() const { return sample_prime_note_; }

  /// How many threads a CPU step splits its batch over (1: no split).
  int64_t batch_parts(int64_t batch_size) const;

  /// Processes training together.
  int64_t world_size() const { return group_->size(); }
  /// True on the process that writes checkpoints, metrics and samples.
  bool writes_files() const { return group_->rank() == 0; }

 private:
  /// What every constructor does first: the members, and the config checked.
  Trainer(const Config& config, TrainerIO io, std::shared_ptr<ProcessGroup> group, std::nullptr_t);
  void setup(const std::optional<Vocab>& vocab, VocabUse use = VocabUse::kExactly);
  /// Model, weight average, optimizer and random streams from `checkpoint` (resume, rollback).
  void restore(const Checkpoint& checkpoint);
  /// The batcher's place in its epoch and this rank's carried state, where
  /// the checkpoint holds them and batched the same way.
  void restore_batch_position(const Checkpoint& checkpoint, const State& carried);
  /// Loads the corpus; with several processes on a machine, local rank 0
  /// encodes the cache first and the others map what it wrote.
  void load_corpus_once_per_machine(const std::optional<Vocab>& vocab, VocabUse use);
  /// The optimizer and gradient averaging, after the model has been built or restored.
  void attach_optimizer(const std::string& optimizer_bytes);

  /// What a batch starts from: the carried state (sequential), the state
  /// its burn-in leaves (random with burn-in), or zeros.
  State initial_state(const Batch& batch);
  /// Backward from a batch's `loss`; leaves the rank-averaged gradients in
  /// .grad and returns the loss averaged over ranks.
  double backward(const torch::Tensor& loss);
  /// Forward and backward in `parts` slices of the batch on as many threads
  /// (batch_split.h), averaged over ranks the same way; with the state after the batch.
  std::pair<double, State> forward_backward_in_parts(const torch::Tensor& inputs, const torch::Tensor& targets,
                                                     const State& initial, int64_t parts);
  /// Seeds this rank's batch stream: rank 0 uses the single-process seed.
  uint64_t batch_seed() const;

  /// False when it found divergence and rolled back instead of saving.
  bool evaluate_and_save(double train_loss, double chars_per_second);
  /// Held-out loss, split between ranks and summed.
  EvalResult evaluate_held_out();
  /// Rank 0's sample, or nullopt (on every rank) when the model's outputs are not finite.
  std::optional<std::string> sample_on_rank_0();
  /// A NaN or infinite loss: rolls back (train.divergence_rollbacks) or throws.
  void on_divergence(const std::string& what);
  std::string step_label() const {
    return charrnn::step_label(progress_.step, config_.train.steps, config_.train.max_seconds,
                               progress_.elapsed_seconds, seconds_per_step_);
  }

  Config config_;
  TrainerIO io_;
  std::shared_ptr<ProcessGroup> group_;
  RunLog run_log_;
  torch::Device device_{torch::kCPU};
  Corpus corpus_;
  CharRNN model_{nullptr};
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<GradientAverager> averager_;
  WeightAverage weight_average_;  // served once started (train.ema_decay)
  std::unique_ptr<Batcher> batcher_;
  BatchSplit batch_split_;   // a CPU step's batch in parts on threads
  State carried_;            // sequential batching: the state after the last batch, detached
  double current_lr_ = 0;    // the rate of the last step, as the schedule set it
  TrainingProgress progress_;
  std::vector<ModelOrigin> lineage_;
  int64_t rollbacks_done_ = 0;
  double seconds_per_step_ = 0;  // this run's pace so far, by the budget's clock
  std::string sample_prime_note_;
  std::string cache_note_;
};

}  // namespace charrnn
