#include "charrnn/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "charrnn/cell.h"
#include "charrnn/encoded_corpus.h"
#include "charrnn/error.h"
#include "charrnn/file_io.h"
#include "charrnn/fine_tune.h"
#include "charrnn/generate.h"
#include "charrnn/lr_schedule.h"
#include "charrnn/runtime.h"
#include "charrnn/sampler.h"
#include "charrnn/utf8.h"

namespace charrnn {

using Clock = std::chrono::steady_clock;

Trainer::Trainer(const Config& config, TrainerIO io, std::shared_ptr<ProcessGroup> group, std::nullptr_t)
    : config_(config),
      io_(io),
      group_(group ? std::move(group) : ProcessGroup::single()),
      run_log_(config_.train.checkpoint, io_.log, io_.redraw, writes_files()) {
  validate(config_);
}

Trainer::Trainer(const Config& config, TrainerIO io, std::shared_ptr<ProcessGroup> group)
    : Trainer(config, io, std::move(group), nullptr) {
  setup(std::nullopt);
  run_log_.keep_metrics_up_to(0);  // a fresh run replaces the checkpoint, so it starts a fresh loss curve too
}

Trainer::Trainer(const Checkpoint& checkpoint, const Config& config, TrainerIO io,
                 std::shared_ptr<ProcessGroup> group)
    : Trainer(config, io, std::move(group), nullptr) {
  require_same_model_shape(checkpoint.config.model, config_.model, "--resume");
  progress_ = checkpoint.progress;
  require_resumable(progress_, config_.train);
  setup(checkpoint.vocab);
  run_log_.keep_metrics_up_to(progress_.step);
  restore(checkpoint);
  lineage_ = checkpoint.lineage;
}

Trainer::Trainer(const Checkpoint& base, const std::string& base_path, const Config& config, TrainerIO io,
                 std::shared_ptr<ProcessGroup> group)
    : Trainer(config, io, std::move(group), nullptr) {
  require_fine_tunable(base, base_path, config_);
  setup(base.vocab, VocabUse::kExtending);
  // the base's weights on the characters it knows, new rows for the ones the text adds
  model_ = extend_vocabulary(restore_model(base, device_), base.vocab, corpus_.vocab, config_.model);
  attach_optimizer("");
  lineage_ = fine_tuned_lineage(base, base_path, corpus_.vocab);
  run_log_.keep_metrics_up_to(0);
}

void Trainer::setup(const std::optional<Vocab>& vocab, VocabUse use) {
  configure_threads(config_.train.threads);
  device_ = resolve_device(config_.train.device, group_->local_rank());
  if (config_.train.precision == Precision::Bf16 && !device_.is_cuda())
    throw UsageError("train.precision=bf16 trains under CUDA autocast, but this run is on " + device_.str() +
                     "; set train.precision=fp32, or train.device=cuda on a machine with a GPU");
  // a checkpoint folder that cannot be made fails now, not after the first steps
  if (writes_files()) ensure_parent_directory(config_.train.checkpoint);
  load_corpus_once_per_machine(vocab, use);
  cache_note_ = charrnn::corpus_cache_note(config_.data, corpus_.cache_bytes_written);
  if (device_.is_cpu())
    require_memory(estimate_training_bytes(config_, corpus_.vocab.size()), "training this model",
                   "reduce model.hidden_size, model.num_layers, train.batch_size or train.seq_length");
  // a new run's samples start from a prime this corpus can be primed with
  if ((!vocab || use == VocabUse::kExtending) && !corpus_.vocab.unknown_chars(decode_utf8(config_.sample.prime)).empty())
    use_corpus_prime("the config's sample.prime \"" + config_.sample.prime + "\" has characters this text lacks");
  // one seed fixes the weights, dropout and the batch order; the batch
  // sampler gets its own stream so model changes don't shift the data order.
  torch::manual_seed(static_cast<uint64_t>(config_.train.seed));
  const bool sequential = config_.train.batching == Batching::Sequential;
  require_batching_fits(config_.train, corpus_.train.size(0), world_size());
  batcher_ = std::make_unique<Batcher>(corpus_.train, BatcherOptions(config_.train.batch_size, config_.train.seq_length)
                                                          .sequential(sequential)
                                                          .burn_in(config_.train.burn_in)
                                                          .seed(batch_seed()));
  // sequential ranks read their own tracks of one shared cut of the text
  if (sequential || ranks_share_one_batch_order()) batcher_->keep_part(group_->rank(), group_->size());
  carried_ = State();
  weight_average_ = WeightAverage(config_.train.ema_decay, config_.train.ema_start);  // a fine-tune's starts afresh
  if (!vocab) {  // a fresh run; a resumed one restores all of this from the checkpoint
    model_ = CharRNN(corpus_.vocab.size(), config_.model);
    model_->to(device_);
    attach_optimizer("");
  }
  // every rank built the same weights from the same seed; dropout masks differ per rank
  if (group_->rank() > 0)
    torch::manual_seed(mix_seed(static_cast<uint64_t>(config_.train.seed), static_cast<uint64_t>(group_->rank())));
}

void Trainer::load_corpus_once_per_machine(const std::optional<Vocab>& vocab, VocabUse use) {
  const std::string cache = config_.data.cache ? corpus_cache_path(config_.data) : std::string();
  const auto load = [&] { corpus_ = load_corpus(config_.data, config_.train.seq_length, vocab, cache, use); };
  if (cache.empty()) return load();
  // Every rank maps the same encoded file, so the corpus sits in memory once
  // per machine. Local rank 0 writes it; the others wait, then map it.
  const std::string wait_for_cache = "waiting for local rank 0 to encode the corpus";
  if (group_->local_rank() == 0) {
    load();
    group_->barrier(wait_for_cache);
  } else {
    group_->barrier(wait_for_cache);
    load();
  }
}

void Trainer::attach_optimizer(const std::string& optimizer_bytes) {
  optimizer_ = std::make_unique<AdamW>(model_->parameters(), config_.train.learning_rate, config_.train.weight_decay);
  if (!optimizer_bytes.empty()) optimizer_->restore(optimizer_bytes, device_);
  averager_.reset();  // its hooks belong to the previous model's parameters
  {
    // the same seed built the same weights everywhere; rank 0's copy makes
    // that a guarantee, even across machines whose libraries differ
    torch::NoGradGuard no_grad;
    for (const torch::Tensor& p : model_->parameters()) group_->broadcast(p.detach(), 0, "sharing the weights");
  }
  averager_ = std::make_unique<GradientAverager>(
      model_->parameters(), group_, static_cast<int64_t>(config_.distributed.bucket_mb * 1024 * 1024));
}

void Trainer::restore(const Checkpoint& checkpoint) {
  progress_ = checkpoint.progress;
  model_ = restore_training_model(checkpoint, device_);
  // The checkpoint's average goes on, unless this run averages no more
  // (train.ema_decay=0). One that has none starts when the progress reaches
  // train.ema_start, which may be at the next step.
  weight_average_ = WeightAverage(config_.train.ema_decay, config_.train.ema_start);
  if (!checkpoint.training_model_bytes.empty() && config_.train.ema_decay > 0)
    weight_average_.start(restore_model(checkpoint, device_)->parameters());
  attach_optimizer(checkpoint.optimizer_bytes);
  // Each rank continues its own streams. A rank the checkpoint has none for
  // (the run grew) starts fresh ones, salted with the step so that they do
  // not replay the first steps' chunks.
  const int64_t rank = group_->rank();
  const RankStreams streams = read_rank_streams(checkpoint.rng_bytes, rank);
  if (streams.batcher.defined()) batcher_->set_rng_state(streams.batcher);
  else if (rank > 0)
    batcher_->set_rng_state(make_generator(mix_seed(batch_seed(), static_cast<uint64_t>(progress_.step))).get_state());
  restore_batch_position(checkpoint, streams.carried);
  if (streams.torch_cpu.defined()) {
    set_global_cpu_rng_state(streams.torch_cpu);
  } else if (rank > 0) {
    torch::manual_seed(mix_seed(static_cast<uint64_t>(config_.train.seed) + static_cast<uint64_t>(rank),
                                static_cast<uint64_t>(progress_.step)));
  }
}

void Trainer::restore_batch_position(const Checkpoint& checkpoint, const State& carried) {
  carried_ = State();
  // a resumed run that batches otherwise (another batching, batch size or
  // chunk length) starts a fresh epoch from a zero state instead
  const TrainOptions& before = checkpoint.config.train;
  if (before.batching != config_.train.batching || before.batch_size != config_.train.batch_size ||
      before.seq_length != config_.train.seq_length)
    return;
  // checkpoints of older versions (random batching only) hold neither
  const torch::Tensor position = read_batcher_position(checkpoint.rng_bytes);
  if (position.defined()) batcher_->set_position(position);
  if (config_.train.batching != Batching::Sequential || !carried.defined()) return;
  const int64_t L = config_.model.num_layers, B = config_.train.batch_size, H = config_.model.hidden_size;
  const bool has_c = cell_facts(config_.model.cell).has_cell_state();
  if (carried.h.sizes() != torch::IntArrayRef({L, B, H}) || carried.h.scalar_type() != torch::kFloat ||
      carried.c.defined() != has_c ||
      (has_c && (carried.c.sizes() != carried.h.sizes() || carried.c.scalar_type() != torch::kFloat)))
    throw Error("checkpoint holds a carried state that does not fit this model and train.batch_size");
  carried_ = carried.to(device_);
}

Checkpoint Trainer::make_checkpoint() const {
  Checkpoint c;
  c.config = config_;
  c.vocab = corpus_.vocab;
  c.progress = progress_;
  c.lineage = lineage_;
  c.charrnn_version = CHARRNN_VERSION;
  c.model_bytes = archive_module(*model_);
  if (weight_average_.started()) {
    // the raw weights for resume, the average for everything else. (The
    // swap writes to the parameters' memory and puts it back bit for bit:
    // this stays const in what it leaves behind.)
    c.training_model_bytes = std::move(c.model_bytes);
    const ServedWeights served(model_, weight_average_);
    c.model_bytes = archive_module(*model_);
  }
  c.optimizer_bytes = optimizer_->archive();
  // every rank's streams, so that the same world size resumes exactly
  const RankStreams mine{batcher_->rng_state(), global_cpu_rng_state(), carried_};
  const std::vector<std::string> sent =
      group_->gather_bytes(serialize_rank_streams(mine), "collecting the ranks' random streams");
  std::vector<RankStreams> ranks(sent.size());
  for (size_t r = 0; r < sent.size(); ++r)
    ranks[r] = static_cast<int64_t>(r) == group_->rank() ? mine : parse_rank_streams(sent[r]);
  c.rng_bytes = archive_training_streams(ranks, batcher_->position());
  return c;
}

uint64_t Trainer::batch_seed() const {
  const uint64_t single = static_cast<uint64_t>(config_.train.seed) ^ 0x9E3779B97F4A7C15ull;
  if (group_->rank() == 0 || ranks_share_one_batch_order() || config_.train.batching == Batching::Sequential) return single;
  return mix_seed(single, static_cast<uint64_t>(group_->rank()));
}

std::string Trainer::corpus_prime() const { return first_words(corpus_); }

void Trainer::use_corpus_prime(const std::string& why) {
  config_.sample.prime = corpus_prime();
  sample_prime_note_ = why;
}

double Trainer::train_step(StepTimes* times) {
  // phase timings only when asked (charrnn bench --profile): reading the clock
  // on the CPU is cheap, but on CUDA it would need a synchronisation.
  auto mark = Clock::now();
  const auto lap = [&](double StepTimes::*field) {
    if (!times) return;
    const auto now = Clock::now();
    times->*field += std::chrono::duration<double>(now - mark).count();
    mark = now;
  };
  Batch batch = batcher_->next();
  const torch::Tensor inputs = batch.inputs.to(device_);    // (B, T)
  const torch::Tensor targets = batch.targets.to(device_);  // (B, T)
  const State initial = initial_state(batch);
  lap(&StepTimes::batch);
  double loss = 0;
  State final_state;
  if (const int64_t parts = batch_parts(inputs.size(0)); parts > 1) {
    std::tie(loss, final_state) = forward_backward_in_parts(inputs, targets, initial, parts);
  } else {
    torch::Tensor batch_loss;
    {
      const CudaBf16Autocast autocast(config_.train.precision == Precision::Bf16);
      // float even under autocast: cross_entropy runs in float
      std::tie(batch_loss, final_state) = mean_loss(model_, inputs, targets, initial);
    }
    lap(&StepTimes::forward);
    loss = backward(batch_loss);
  }
  lap(&StepTimes::backward);  // with parts, their forward and backward overlap; both count here
  if (config_.train.batching == Batching::Sequential) carried_ = final_state.detach();
  if (config_.train.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model_->parameters(), config_.train.grad_clip);
  lap(&StepTimes::clip);
  current_lr_ = scheduled_learning_rate(config_.train, progress_.step, progress_.elapsed_seconds);
  optimizer_->step(current_lr_);
  ++progress_.step;
  // every rank holds the same weights after the step, so every rank's average is the same
  weight_average_.after_step(model_->parameters(),
                             schedule_progress(config_.train, progress_.step, progress_.elapsed_seconds));
  lap(&StepTimes::optimizer);  // the average's update counts with the step
  progress_.chars_trained += inputs.numel() * world_size();
  return loss;
}

State Trainer::initial_state(const Batch& batch) {
  if (config_.train.batching == Batching::Sequential)
    // the first batch of an epoch starts the tracks afresh, elsewhere in the text
    return batch.starts_tracks || !carried_.defined() ? State() : carried_;
  if (!batch.burn_in.defined()) return State();
  // the burn-in reads like validation and generation do: no dropout, no gradient
  torch::NoGradGuard no_grad;
  model_->eval();
  const State warmed = model_->forward(batch.burn_in.to(device_)).second;
  model_->train();
  return warmed;
}

double Trainer::backward(const torch::Tensor& loss) {
  optimizer_->zero_grad();
  // the loss travels with the gradients: all ranks see the mean loss
  averager_->begin({loss.item<double>()});
  loss.backward();
  return averager_->finish()[0] / static_cast<double>(world_size());
}

int64_t Trainer::batch_parts(int64_t batch_size) const {
  // CUDA has its own parallelism. Dropout masks are drawn for the whole
  // batch before the parts start (the parts would race for the global
  // generator), which only the fused layers take. Ranks sharing a machine
  // get its threads between them (charrnn launch), so mostly one each.
  if (!device_.is_cpu() || !model_->is_training()) return 1;
  if (config_.model.dropout > 0 && config_.model.num_layers > 1 &&
      !model_->uses_fused_layers(device_))
    return 1;
  return std::max<int64_t>(1, std::min(batch_threads(), batch_size));
}

std::pair<double, State> Trainer::forward_backward_in_parts(const torch::Tensor& inputs, const torch::Tensor& targets,
                                                            const State& initial, int64_t parts) {
  const double loss = batch_split_.forward_backward(model_, inputs, targets, initial, parts, device_);
  // averaged across ranks as a single pass's are
  averager_->begin({loss});
  return {averager_->finish()[0] / static_cast<double>(world_size()), batch_split_.final_state()};
}

EvalResult Trainer::evaluate_held_out() {
  const int64_t cap = config_.train.eval_max_chars;
  const torch::Tensor held_out =
      cap > 0 && corpus_.val.size(0) > cap + 1 ? corpus_.val.narrow(0, 0, cap + 1) : corpus_.val;
  // Each rank reads its share of the streams one process with the
  // effective batch would read; the sums of their losses and counts make
  // that process's mean.
  const EvalResult part = evaluate(model_, held_out, config_.train.batch_size * world_size(),
                                   config_.train.seq_length, device_, group_->rank(), world_size());
  torch::Tensor sums = torch::tensor({part.loss_sum, static_cast<double>(part.chars)}, torch::kDouble);
  group_->sum(sums, "validating");
  return eval_result_from_sum(sums[0].item<double>(), static_cast<int64_t>(sums[1].item<double>()));
}

std::optional<std::string> Trainer::sample_on_rank_0() {
  GenerateOptions sample_options(config_.sample);
  sample_options.length = std::min<int64_t>(config_.sample.length, 200);
  sample_options.seed = std::max<int64_t>(config_.sample.seed, 0);
  std::string sample_text;
  bool outputs_not_finite = false;
  if (writes_files()) {
    try {
      sample_text = generate(model_, corpus_.vocab, sample_options, device_).front();
    } catch (const UsageError& e) {
      sample_text = std::string("(no sample: ") + e.what() + ")";  // e.g. a prime outside the vocabulary
    } catch (const Error&) {  // the sampler found non-finite logits
      outputs_not_finite = true;
    }
  }
  // rank 0 alone samples; all ranks must take its verdict
  if (group_->any_rank({outputs_not_finite}, "sharing the sample's verdict")[0]) return std::nullopt;
  return sample_text;
}

bool Trainer::evaluate_and_save(double train_loss, double chars_per_second) {
  nlohmann::json metrics = {{"step", progress_.step},
                            {"train_loss", train_loss},
                            {"train_bpc", train_loss / std::log(2.0)},
                            {"chars_per_s", chars_per_second},
                            {"lr", learning_rate()},
                            {"elapsed_s", progress_.elapsed_seconds},
                            {"chars_trained", progress_.chars_trained}};
  EvaluationReport report;
  // validation, and so the best checkpoint, judges the weights the
  // checkpoint serves; the sample is theirs too
  std::optional<EvalResult> validated;
  std::optional<std::string> sample;
  {
    const ServedWeights served(model_, weight_average_);
    if (corpus_.val.numel() >= 2) validated = evaluate_held_out();
    if (!validated || std::isfinite(validated->loss)) sample = sample_on_rank_0();
  }
  if (weight_average_.started()) metrics["ema"] = true;  // the validation and the sample are the average's
  if (validated) {
    const EvalResult& val = *validated;
    metrics["val_chars"] = val.chars;
    metrics["val_loss"] = val.loss;
    metrics["val_bpc"] = val.bpc;
    if (!std::isfinite(val.loss)) {
      on_divergence("the validation loss is " + std::string(std::isnan(val.loss) ? "NaN" : "infinite"));
      return false;
    }
    report.improved = !(val.loss >= progress_.best_val_loss);  // true while best is NaN
    if (report.improved) {
      progress_.best_val_loss = val.loss;
      progress_.best_step = progress_.step;
    }
    report.val_loss = val.loss;
    report.val_bpc = val.bpc;
    report.warning = run_log_.watch_validation_loss(val.loss, progress_.best_val_loss, progress_.best_step);
  }
  if (!sample) {
    on_divergence("the model's outputs are not finite");
    return false;
  }
  metrics["sample"] = *sample;

  // The latest checkpoint goes last: it is what --resume continues from, so
  // a kill anywhere before its rename replays these steps, and the metrics
  // line and best checkpoint they produced are written again (resume drops
  // metrics lines past the checkpoint's step).
  const Checkpoint checkpoint = make_checkpoint();
  if (!writes_files()) return true;
  const std::string bytes = serialize_checkpoint(checkpoint);
  ensure_parent_directory(config_.train.checkpoint);
  run_log_.record(metrics);
  if (report.improved) write_file_atomically(best_checkpoint_path(config_.train.checkpoint), bytes);
  write_file_atomically(config_.train.checkpoint, bytes);
  report.step_label = step_label();
  report.train_loss = train_loss;
  report.learning_rate = learning_rate();
  report.sample = *sample;
  run_log_.evaluation(report);
  return true;
}

void Trainer::on_divergence(const std::string& what) {
  const std::string diverged = "training diverged at step " + std::to_string(progress_.step) + ": " + what;
  if (rollbacks_done_ >= config_.train.divergence_rollbacks)
    throw Error(diverged + "; the last good checkpoint is untouched; lower train.learning_rate or train.grad_clip" +
                (config_.train.divergence_rollbacks > 0 ? ""
                                                        : ", or set train.divergence_rollbacks to retry automatically"));
  // rank 0 reads the checkpoint and hands it to the others, which need not see its folder
  std::string bytes;
  if (writes_files() && std::filesystem::exists(config_.train.checkpoint)) bytes = read_file(config_.train.checkpoint);
  bytes = group_->broadcast_bytes(bytes, "sharing the checkpoint to roll back to");
  if (bytes.empty())
    throw Error(diverged + " before the first checkpoint; lower train.learning_rate or train.grad_clip");
  ++rollbacks_done_;
  const Checkpoint last_good = parse_checkpoint(bytes, config_.train.checkpoint);
  // the lowered rate goes into the config, and so into later checkpoints:
  // resuming from them continues with it
  config_.train.learning_rate /= 2;
  config_.train.min_lr /= 2;  // the schedule keeps its shape, and min_lr stays below the rate
  restore(last_good);
  run_log_.keep_metrics_up_to(progress_.step);
  std::ostringstream line;
  line << diverged << "; rolled back to step " << progress_.step << " with train.learning_rate "
       << config_.train.learning_rate << " (rollback " << rollbacks_done_ << " of "
       << config_.train.divergence_rollbacks << ")";
  run_log_.say(line.str());
}

TrainSummary Trainer::run() {
  TrainSummary summary;
  const RunClock clock(progress_.step);
  const double elapsed_before = progress_.elapsed_seconds;
  const int64_t first_step = progress_.step;
  const int64_t total = config_.train.steps;
  const double max_seconds = config_.train.max_seconds;
  const int64_t chars_per_step = config_.train.batch_size * config_.train.seq_length * world_size();
  const auto rate_now = [&] {
    const double s = clock.wall_seconds();
    return s > 0 ? static_cast<double>((progress_.step - first_step) * chars_per_step) / s : 0.0;
  };

  double last_loss = progress_.last_train_loss;
  int64_t last_saved_step = -1;
  seconds_per_step_ = 0;
  model_->train();
  run_log_.restart_progress(progress_.step, chars_per_step);
  while (progress_.step < total) {
    // a Ctrl-C or the clock reaches ranks at different moments; they all act
    // on it at once. The budget is the run's: a resumed run trains what is left of it.
    const std::vector<bool> stop = group_->any_rank(
        {io_.stop_requested && io_.stop_requested->load(), max_seconds > 0 && elapsed_before + clock.seconds(progress_.step) >= max_seconds},
        "agreeing on when to stop");
    if (stop[0]) {
      summary.interrupted = true;
      break;
    }
    if (stop[1]) break;

    const double loss = train_step();
    const double trained = clock.seconds(progress_.step);
    progress_.elapsed_seconds = elapsed_before + trained;
    seconds_per_step_ = trained / static_cast<double>(std::max<int64_t>(1, progress_.step - first_step));
    if (!std::isfinite(loss)) {
      on_divergence(std::string("the loss is ") + (std::isnan(loss) ? "NaN" : "infinite"));
      last_saved_step = progress_.step;  // rolled back to a saved step
      continue;
    }
    last_loss = loss;
    progress_.last_train_loss = loss;
    if (progress_.step % config_.train.eval_every == 0 || progress_.step == total) {
      evaluate_and_save(last_loss, rate_now());  // after a rollback progress_ is at a saved step too
      last_saved_step = progress_.step;
      run_log_.restart_progress(progress_.step, chars_per_step);
    } else {
      run_log_.step_done(progress_.step, total, loss, step_label(), learning_rate(),
                         max_seconds > 0 ? max_seconds - progress_.elapsed_seconds
                                         : std::numeric_limits<double>::infinity());
    }
  }

  summary.seconds = clock.wall_seconds();
  summary.steps_done = progress_.step - first_step;
  summary.chars_per_second = rate_now();
  progress_.elapsed_seconds = elapsed_before + clock.seconds(progress_.step);

  if (summary.interrupted) {
    const Checkpoint checkpoint = make_checkpoint();  // no eval: stop quickly
    if (writes_files()) save_checkpoint(config_.train.checkpoint, checkpoint);
    run_log_.say("interrupted at step " + std::to_string(progress_.step) + "; checkpoint saved to " +
                 config_.train.checkpoint + "; continue with: charrnn train --resume " + config_.train.checkpoint);
  } else if (last_saved_step != progress_.step && summary.steps_done > 0) {
    evaluate_and_save(last_loss, summary.chars_per_second);  // stopped by max_seconds between evals
  }
  return summary;
}

}  // namespace charrnn
