#include "charrnn/trainer.h"

#include <chrono>
#include <filesystem>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <tuple>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include <ATen/CPUGeneratorImpl.h>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "charrnn/encoded_corpus.h"
#include "charrnn/error.h"
#include "charrnn/file_io.h"
#include "charrnn/fine_tune.h"
#include "charrnn/utf8.h"
#include "charrnn/generate.h"
#include "charrnn/lr_schedule.h"
#include "charrnn/plot.h"
#include "charrnn/runtime.h"
#include "charrnn/sampler.h"

namespace charrnn {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string strip_extension(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const auto dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return path;
  return path.substr(0, dot);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  std::ostringstream out;
  if (s >= 3600) out << s / 3600 << "h" << std::setw(2) << std::setfill('0') << (s % 3600) / 60 << "m";
  else if (s >= 60) out << s / 60 << "m" << std::setw(2) << std::setfill('0') << s % 60 << "s";
  else out << s << "s";
  return out.str();
}

std::string format_rate(double chars_per_second) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1);
  if (chars_per_second >= 1e6) out << chars_per_second / 1e6 << "M";
  else out << chars_per_second / 1e3 << "k";
  return out.str() + " chars/s";
}

void check_memory(const Config& config, int64_t vocab_size, const torch::Device& device) {
  if (!device.is_cpu()) return;
  require_memory(estimate_training_bytes(config, vocab_size), "training this model",
                 "reduce model.hidden_size, model.num_layers, train.batch_size or train.seq_length");
}

// One write(2) per line, so a kill leaves whole lines (or none) behind.
void append_line(const std::string& path, const std::string& line) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot write metrics to " + path + ": " + std::strerror(errno));
  const std::string text = line + "\n";
  const ssize_t n = ::write(fd, text.data(), text.size());
  const int error = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size()))
    throw Error("cannot write metrics to " + path + ": " + (n < 0 ? std::strerror(error) : "short write"));
}

// A resumed run drops the metrics of steps the checkpoint does not hold
// (written before a kill) and any torn last line, so the file reads as if the
// run had never stopped.
void drop_metrics_after(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  bool dropped = false;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= step)
      kept += line + "\n";
    else
      dropped = true;
  }
  if (dropped) write_file_atomically(path, kept);
}

// `what` is the flag that brought the stored model: --resume or --init-from
void require_same_model(const ModelOptions& stored, const ModelOptions& wanted, const std::string& what) {
  const auto differs = [&](const char* key, const std::string& a, const std::string& b) {
    throw UsageError(what + ": model." + key + " is " + a + " in the checkpoint but " + b + " in the config; " +
                     (what == "--resume" ? "a resumed run keeps the model's shape"
                                         : "a fine-tuned model keeps its base's shape (leave model." + std::string(key) +
                                               " out of the config, or set it to " + a + ")"));
  };
  if (stored.cell != wanted.cell) differs("cell", to_string(stored.cell), to_string(wanted.cell));
  if (stored.embedding_dim != wanted.embedding_dim)
    differs("embedding_dim", std::to_string(stored.embedding_dim), std::to_string(wanted.embedding_dim));
  if (stored.hidden_size != wanted.hidden_size)
    differs("hidden_size", std::to_string(stored.hidden_size), std::to_string(wanted.hidden_size));
  if (stored.num_layers != wanted.num_layers)
    differs("num_layers", std::to_string(stored.num_layers), std::to_string(wanted.num_layers));
}

// Mean cross-entropy of the model's predictions of `targets` (B, T) from
// `inputs` (B, T), starting from `initial` (zeros when undefined), and the
// state after the last input. With `dropout_masks` (this part of the
// batch's slices of masks drawn for the whole batch), the fused layers use
// them instead of drawing their own.
std::pair<torch::Tensor, State> mean_loss(CharRNN& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                          const State& initial, const std::vector<torch::Tensor>* dropout_masks = nullptr) {
  auto [logits, state] = dropout_masks ? model->forward(inputs, initial, *dropout_masks)
                                       : model->forward(inputs, initial);  // logits: (B, T, V)
  return {torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape(-1)), state};
}

// splitmix64: well-spread seeds for rank r from one base seed
uint64_t mix_seed(uint64_t base, uint64_t salt) {
  uint64_t z = base + 0x9E3779B97F4A7C15ull * (salt + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Test hook: every rank draws the chunks of one large batch and keeps its
// share, so N ranks with batch B see exactly what one process with batch N*B
// sees (the distributed equivalence test).
bool ranks_share_one_batch_order() {
  const char* value = std::getenv("CHARRNN_TEST_SHARED_BATCH_ORDER");
  return value && std::string(value) == "1";
}

std::string tensor_bytes(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous().cpu();
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.nbytes()));
}

torch::Tensor byte_tensor(const std::string& bytes) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  if (!bytes.empty()) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

std::string rank_suffix(int64_t rank) { return rank == 0 ? "" : "_rank" + std::to_string(rank); }

}  // namespace

double estimate_training_bytes(const Config& c, int64_t vocab_size) {
  const double V = static_cast<double>(vocab_size), E = c.model.embedding_dim, H = c.model.hidden_size,
               L = c.model.num_layers, B = c.train.batch_size, T = c.train.seq_length;
  const double gates = c.model.cell == CellType::LSTM ? 4 : c.model.cell == CellType::GRU ? 3 : 1;
  const double params = parameter_count(c.model, vocab_size);
  // weights, gradients and two Adam moments; activations keep every gate of every
  // step for backward, plus logits, probabilities and their gradients.
  const double activations = B * T * (L * H * (gates + 2) + E + 3 * V);
  return 4.0 * (4 * params + 2 * activations);
}

std::string best_checkpoint_path(const std::string& checkpoint) { return strip_extension(checkpoint) + ".best.pt"; }
std::string metrics_path(const std::string& checkpoint) { return strip_extension(checkpoint) + ".metrics.jsonl"; }

Trainer::Trainer(const Config& config, TrainerIO io, std::shared_ptr<ProcessGroup> group)
    : config_(config), io_(io), device_(torch::kCPU), group_(std::move(group)) {
  validate(config_);
  setup(std::nullopt);
  // a fresh run replaces the checkpoint, so it starts a fresh loss curve too
  if (writes_files()) drop_metrics_after(metrics_path(config_.train.checkpoint), 0);
}

Trainer::Trainer(const Checkpoint& checkpoint, const Config& config, TrainerIO io,
                 std::shared_ptr<ProcessGroup> group)
    : config_(config), io_(io), device_(torch::kCPU), group_(std::move(group)) {
  validate(config_);
  require_same_model(checkpoint.config.model, config_.model, "--resume");
  progress_ = checkpoint.progress;
  if (progress_.step >= config_.train.steps)
    throw UsageError("--resume: the checkpoint is already at step " + std::to_string(progress_.step) +
                     " and train.steps is " + std::to_string(config_.train.steps) +
                     "; raise it, e.g. --set train.steps=" + std::to_string(progress_.step * 2));
  if (config_.train.max_seconds > 0 && progress_.elapsed_seconds >= config_.train.max_seconds) {
    std::ostringstream message;
    message << "--resume: the checkpoint has trained " << std::fixed << std::setprecision(1) << progress_.elapsed_seconds
            << " s and train.max_seconds is " << std::defaultfloat << config_.train.max_seconds
            << " (the run's total, not this process's); raise it, e.g. --set train.max_seconds="
            << static_cast<int64_t>(std::ceil(config_.train.max_seconds * 2));
    throw UsageError(message.str());
  }
  setup(checkpoint.vocab);
  if (writes_files()) drop_metrics_after(metrics_path(config_.train.checkpoint), progress_.step);
  restore(checkpoint);
  lineage_ = checkpoint.lineage;
}

Trainer::Trainer(const Checkpoint& base, const std::string& base_path, const Config& config, TrainerIO io,
                 std::shared_ptr<ProcessGroup> group)
    : config_(config), io_(io), device_(torch::kCPU), group_(std::move(group)) {
  validate(config_);
  require_same_model(base.config.model, config_.model, "--init-from");
  if (!is_valid_utf8(base_path))
    throw UsageError("--init-from: the path must be UTF-8 text (the new checkpoint records it as JSON)");
  std::error_code ec;
  if (std::filesystem::equivalent(base_path, config_.train.checkpoint, ec))
    throw UsageError("--init-from: train.checkpoint is " + config_.train.checkpoint +
                     ", the model being fine-tuned, which the new run would overwrite; set train.checkpoint to "
                     "another file");
  setup(base.vocab, VocabUse::kExtending);
  // the base's weights on the characters it knows, new rows for the ones the text adds
  model_ = extend_vocabulary(restore_model(base, device_), base.vocab, corpus_.vocab, config_.model);
  attach_optimizer("");
  ModelOrigin origin;
  origin.checkpoint = base_path;
  origin.step = base.progress.step;
  origin.chars_trained = base.progress.chars_trained;
  origin.best_val_loss = base.progress.best_val_loss;
  origin.data = describe_paths(base.config.data.path);
  origin.added_chars = added_characters(base.vocab, corpus_.vocab);
  lineage_.push_back(std::move(origin));
  lineage_.insert(lineage_.end(), base.lineage.begin(), base.lineage.end());
  if (writes_files()) drop_metrics_after(metrics_path(config_.train.checkpoint), 0);
}

void Trainer::restore(const Checkpoint& checkpoint) {
  progress_ = checkpoint.progress;
  model_ = restore_model(checkpoint, device_);
  attach_optimizer(checkpoint.optimizer_bytes);
  // Each rank continues its own streams. A rank the checkpoint has none for
  // (the run grew) starts fresh ones, salted with the step so that they do
  // not replay the first steps' chunks.
  const int64_t rank = group_ ? group_->rank() : 0;
  const std::string suffix = rank_suffix(rank);
  const torch::Tensor batcher_state =
      checkpoint.rng_bytes.empty() ? torch::Tensor() : read_archived_tensor(checkpoint.rng_bytes, "batcher" + suffix);
  const torch::Tensor global_state =
      checkpoint.rng_bytes.empty() ? torch::Tensor() : read_archived_tensor(checkpoint.rng_bytes, "torch_cpu" + suffix);
  if (batcher_state.defined()) batcher_->set_rng_state(batcher_state);
  else if (rank > 0)
    batcher_->set_rng_state(make_generator(mix_seed(batch_seed(), static_cast<uint64_t>(progress_.step))).get_state());
  restore_batch_position(checkpoint, suffix);
  if (global_state.defined()) {
    try {
      at::Generator global = at::detail::getDefaultCPUGenerator();  // a handle to the shared generator
      global.set_state(global_state);
    } catch (const c10::Error& e) {
      throw Error(std::string("checkpoint holds an invalid random state: ") + e.what_without_backtrace());
    }
  } else if (rank > 0) {
    torch::manual_seed(mix_seed(static_cast<uint64_t>(config_.train.seed) + static_cast<uint64_t>(rank),
                                static_cast<uint64_t>(progress_.step)));
  }
}

void Trainer::restore_batch_position(const Checkpoint& checkpoint, const std::string& rank_suffix) {
  carried_ = State();
  // checkpoints of older versions (random batching only) hold neither
  const auto archived = [&](const std::string& key) {
    return checkpoint.rng_bytes.empty() ? torch::Tensor() : read_archived_tensor(checkpoint.rng_bytes, key);
  };
  // a resumed run that batches otherwise (another batching, batch size or
  // chunk length) starts a fresh epoch from a zero state instead
  const TrainOptions& before = checkpoint.config.train;
  if (before.batching != config_.train.batching || before.batch_size != config_.train.batch_size ||
      before.seq_length != config_.train.seq_length)
    return;
  const torch::Tensor position = archived("batcher_position");
  if (position.defined()) batcher_->set_position(position);
  if (config_.train.batching != "sequential") return;
  const torch::Tensor carried = archived("carried_state" + rank_suffix);
  if (!carried.defined() || carried.numel() == 0) return;
  const std::string bytes(static_cast<const char*>(carried.data_ptr()), static_cast<size_t>(carried.nbytes()));
  State state{read_archived_tensor(bytes, "h"), read_archived_tensor(bytes, "c")};
  const int64_t L = config_.model.num_layers, B = config_.train.batch_size, H = config_.model.hidden_size;
  const bool lstm = config_.model.cell == CellType::LSTM;
  if (!state.h.defined() || state.h.sizes() != torch::IntArrayRef({L, B, H}) || state.h.scalar_type() != torch::kFloat ||
      state.c.defined() != lstm || (lstm && (state.c.sizes() != state.h.sizes() || state.c.scalar_type() != torch::kFloat)))
    throw Error("checkpoint holds a carried state that does not fit this model and train.batch_size");
  carried_ = state.to(device_);
}

double Trainer::learning_rate() const {
  return current_lr_ > 0 ? current_lr_
                         : scheduled_learning_rate(config_.train, progress_.step, progress_.elapsed_seconds);
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
  if (group_) bytes = group_->broadcast_bytes(bytes, "sharing the checkpoint to roll back to");
  if (bytes.empty())
    throw Error(diverged + " before the first checkpoint; lower train.learning_rate or train.grad_clip");
  ++rollbacks_done_;
  const Checkpoint last_good = parse_checkpoint(bytes, config_.train.checkpoint);
  // the lowered rate goes into the config, and so into later checkpoints:
  // resuming from them continues with it
  config_.train.learning_rate /= 2;
  config_.train.min_lr /= 2;  // the schedule keeps its shape, and min_lr stays below the rate
  restore(last_good);
  if (writes_files()) drop_metrics_after(metrics_path(config_.train.checkpoint), progress_.step);
  if (io_.log)
    *io_.log << (io_.redraw ? "\r\033[K" : "") << diverged << "; rolled back to step " << progress_.step
             << " with train.learning_rate " << config_.train.learning_rate << " (rollback " << rollbacks_done_
             << " of " << config_.train.divergence_rollbacks << ")\n";
}

void Trainer::setup(const std::optional<Vocab>& vocab, VocabUse use) {
  configure_threads(config_.train.threads);
  device_ = resolve_device(config_.train.device);
  // torchrun's convention: on a machine with several GPUs, local rank i
  // uses GPU i (an explicit cuda:N in the config wins)
  if (group_ && device_.is_cuda() && config_.train.device.find(':') == std::string::npos)
    device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(group_->local_rank() %
                                                                         std::max<int64_t>(1, torch::cuda::device_count())));
  if (config_.train.precision == "bf16" && !device_.is_cuda())
    throw UsageError("train.precision=bf16 trains under CUDA autocast, but this run is on " + device_.str() +
                     "; set train.precision=fp32, or train.device=cuda on a machine with a GPU");
  // a checkpoint folder that cannot be made fails now, not after the first steps
  if (writes_files()) ensure_parent_directory(config_.train.checkpoint);
  load_corpus_once_per_machine(vocab, use);
  if (corpus_.cache_bytes_written > 0) {
    std::ostringstream note;
    note << "encoded the corpus once into " << corpus_cache_path(config_.data) << " (" << std::fixed << std::setprecision(1)
         << static_cast<double>(corpus_.cache_bytes_written) / 1e6
         << " MB); runs on the same text map it (data.cache=false turns this off)";
    cache_note_ = note.str();
  }
  check_memory(config_, corpus_.vocab.size(), device_);
  // a new run's samples start from a prime this corpus can be primed with
  if ((!vocab || use == VocabUse::kExtending) && !corpus_.vocab.unknown_chars(decode_utf8(config_.sample.prime)).empty())
    use_corpus_prime("the config's sample.prime \"" + config_.sample.prime + "\" has characters this text lacks");
  // one seed fixes the weights, dropout and the batch order; the batch
  // sampler gets its own stream so model changes don't shift the data order.
  torch::manual_seed(static_cast<uint64_t>(config_.train.seed));
  const bool sequential = config_.train.batching == "sequential";
  const int64_t tracks = config_.train.batch_size * world_size();
  if (sequential && corpus_.train.size(0) < Batcher::min_sequential_ids(tracks, config_.train.seq_length))
    throw UsageError("train.batching=sequential cuts the training text into " + std::to_string(tracks) +
                     " tracks of at least train.seq_length=" + std::to_string(config_.train.seq_length) +
                     " characters, but it has only " + std::to_string(corpus_.train.size(0)) +
                     "; lower train.batch_size or train.seq_length, or use train.batching=random");
  if (config_.train.burn_in > 0 && corpus_.train.size(0) < config_.train.burn_in + config_.train.seq_length + 1)
    throw UsageError("train.burn_in=" + std::to_string(config_.train.burn_in) + " plus train.seq_length needs " +
                     std::to_string(config_.train.burn_in + config_.train.seq_length + 1) +
                     " training characters, but there are only " + std::to_string(corpus_.train.size(0)));
  batcher_ = std::make_unique<Batcher>(corpus_.train, BatcherOptions(config_.train.batch_size, config_.train.seq_length)
                                                          .sequential(sequential)
                                                          .burn_in(config_.train.burn_in)
                                                          .seed(batch_seed()));
  // sequential ranks read their own tracks of one shared cut of the text
  if (group_ && (sequential || ranks_share_one_batch_order())) batcher_->keep_part(group_->rank(), group_->size());
  carried_ = State();
  if (!vocab) {  // a fresh run; a resumed one restores all of this from the checkpoint
    model_ = CharRNN(corpus_.vocab.size(), config_.model);
    model_->to(device_);
    attach_optimizer("");
  }
  // every rank built the same weights from the same seed; dropout masks differ per rank
  if (group_ && group_->rank() > 0)
    torch::manual_seed(mix_seed(static_cast<uint64_t>(config_.train.seed), static_cast<uint64_t>(group_->rank())));
}

std::string Trainer::corpus_prime() const {
  // the text's first words: up to 12 characters, finished to the end of a
  // word (24 at most), within the first line that holds any
  const int64_t n = std::min<int64_t>(corpus_.train.size(0), 400);
  const torch::Tensor head = corpus_.train.narrow(0, 0, n).to(torch::kLong).contiguous();
  std::u32string text;
  for (int64_t i = 0; i < n; ++i) text.push_back(corpus_.vocab.char_at(head[i].item<int64_t>()));
  const size_t begin = text.find_first_not_of(U" \t\n");
  if (begin == std::u32string::npos) return "";
  std::u32string prime;
  for (size_t i = begin; i < text.size() && text[i] != '\n' && prime.size() < 24; ++i) {
    if (prime.size() >= 12 && text[i] == ' ') break;
    prime.push_back(text[i]);
  }
  return encode_utf8(prime);
}

void Trainer::use_corpus_prime(const std::string& why) {
  config_.sample.prime = corpus_prime();
  sample_prime_note_ = why;
}

std::string Trainer::step_label() const {
  const std::string done = std::to_string(progress_.step) + "/";
  const double max_seconds = config_.train.max_seconds;
  if (max_seconds > 0 && seconds_per_step_ > 0) {
    // the step the clock will stop at, at the pace so far (validation included)
    const double left = std::max(0.0, max_seconds - progress_.elapsed_seconds);
    const int64_t end = progress_.step + static_cast<int64_t>(left / seconds_per_step_);
    if (end < config_.train.steps) return done + "~" + std::to_string(end);
  }
  return done + std::to_string(config_.train.steps);
}

uint64_t Trainer::batch_seed() const {
  const uint64_t single = static_cast<uint64_t>(config_.train.seed) ^ 0x9E3779B97F4A7C15ull;
  if (!group_ || group_->rank() == 0 || ranks_share_one_batch_order() || config_.train.batching == "sequential")
    return single;
  return mix_seed(single, static_cast<uint64_t>(group_->rank()));
}

void Trainer::load_corpus_once_per_machine(const std::optional<Vocab>& vocab, VocabUse use) {
  const std::string cache = config_.data.cache ? corpus_cache_path(config_.data) : std::string();
  const auto load = [&] { corpus_ = load_corpus(config_.data, config_.train.seq_length, vocab, cache, use); };
  if (!group_ || cache.empty()) return load();
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
  optimizer_ = std::make_unique<torch::optim::Adam>(model_->parameters(),
                                                    torch::optim::AdamOptions(config_.train.learning_rate));
  if (!optimizer_bytes.empty()) restore_optimizer(*optimizer_, optimizer_bytes, device_);
  for (auto& group : optimizer_->param_groups())  // --set train.learning_rate wins over the stored one
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(config_.train.learning_rate);
  if (!group_) return;
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

EvalResult Trainer::evaluate_held_out(const torch::Tensor& held_out) {
  if (!group_) return evaluate(model_, held_out, config_.train.batch_size, config_.train.seq_length, device_);
  // Each rank reads its share of the streams one process with the
  // effective batch would read; the sums of their losses and counts make
  // that process's mean.
  const EvalResult part = evaluate(model_, held_out, config_.train.batch_size * group_->size(),
                                   config_.train.seq_length, device_, group_->rank(), group_->size());
  const double loss_sum = part.loss * static_cast<double>(part.chars), chars = static_cast<double>(part.chars);
  torch::Tensor sums = torch::tensor({loss_sum, chars}, torch::kDouble);
  group_->sum(sums, "validating");
  return eval_result_from_sum(sums[0].item<double>(), static_cast<int64_t>(sums[1].item<double>()));
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
  current_lr_ = scheduled_learning_rate(config_.train, progress_.step, progress_.elapsed_seconds);
  for (auto& group : optimizer_->param_groups())
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(current_lr_);
  double loss_value = 0;
  State final_state;
  if (const int64_t parts = batch_parts(inputs.size(0)); parts > 1) {
    std::tie(loss_value, final_state) = forward_backward_in_parts(inputs, targets, initial, parts);
    lap(&StepTimes::backward);  // the parts' forward and backward overlap; both count here
  } else {
    torch::Tensor loss;
    {
      const CudaBf16Autocast autocast(config_.train.precision == "bf16");
      // float even under autocast: cross_entropy runs in float
      std::tie(loss, final_state) = mean_loss(model_, inputs, targets, initial);
    }
    lap(&StepTimes::forward);
    optimizer_->zero_grad();
    if (averager_) {
      // the loss and stop requests travel with the gradients: all ranks see
      // the mean loss and stop at the same step
      averager_->begin({loss.item<double>(), local_stop_ ? 1.0 : 0.0, local_time_up_ ? 1.0 : 0.0});
      loss.backward();
      const std::vector<double> agreed = averager_->finish();
      loss_value = agreed[0] / static_cast<double>(world_size());
      agreed_stop_ = agreed[1] > 0;
      agreed_time_up_ = agreed[2] > 0;
    } else {
      loss.backward();
      loss_value = loss.item<double>();
    }
    lap(&StepTimes::backward);
  }
  if (config_.train.batching == "sequential") carried_ = final_state.detach();
  if (config_.train.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model_->parameters(), config_.train.grad_clip);
  lap(&StepTimes::clip);
  if (config_.train.weight_decay > 0) {
    // AdamW's decoupled decay, applied before the Adam update as AdamW
    // applies it; on matrices only: biases are not pulled towards zero
    torch::NoGradGuard no_grad;
    for (const torch::Tensor& p : model_->parameters())
      if (p.dim() >= 2) p.mul_(1.0 - current_lr_ * config_.train.weight_decay);
  }
  optimizer_->step();
  lap(&StepTimes::optimizer);
  ++progress_.step;
  progress_.chars_trained += inputs.numel() * world_size();
  return loss_value;
}

State Trainer::initial_state(const Batch& batch) {
  if (config_.train.batching == "sequential")
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

int64_t Trainer::batch_parts(int64_t batch_size) const {
  // Distributed ranks already run one thread each; CUDA has its own
  // parallelism. Dropout masks are drawn for the whole batch before the
  // parts start (the parts would race for the global generator), which
  // only the fused layers take.
  if (group_ || !device_.is_cpu() || !model_->is_training()) return 1;
  if (config_.model.dropout > 0 && config_.model.num_layers > 1 &&
      !model_->uses_fused_layers(device_))
    return 1;
  return std::max<int64_t>(1, std::min(batch_threads(), batch_size));
}

// Measured on 2 cores: two threads that each run half the batch with
// single-threaded matrix products beat one pass with two-threaded ones,
// because small products hand work between OpenBLAS threads at every time
// step and the idle one spins through the element-wise work (docs/benchmarks.md).
// Each part's gradients come from autograd::grad, not .grad, and are summed
// in part order, so a step is deterministic and resumes exactly.
std::pair<double, State> Trainer::forward_backward_in_parts(const torch::Tensor& inputs, const torch::Tensor& targets,
                                                            const State& initial, int64_t parts) {
  const std::vector<torch::Tensor> params = model_->parameters();
  const int64_t batch = inputs.size(0);
  std::vector<std::vector<torch::Tensor>> grads(static_cast<size_t>(parts));
  std::vector<double> losses(static_cast<size_t>(parts), 0.0);
  std::vector<State> final_states(static_cast<size_t>(parts));
  // the masks one pass over the whole batch would draw, in the same order
  const std::vector<torch::Tensor> masks = model_->draw_dropout_masks(batch, inputs.size(1), device_);
  const auto run_part = [&](int64_t part) {
    const int64_t first = batch * part / parts, rows = batch * (part + 1) / parts - first;
    // this part's mean, weighted by its share of the batch: the parts add up to the batch mean
    std::vector<torch::Tensor> part_masks;
    for (const torch::Tensor& mask : masks) part_masks.push_back(mask.narrow(1, first, rows));  // (T, rows, H)
    auto [part_loss, part_state] = mean_loss(model_, inputs.narrow(0, first, rows), targets.narrow(0, first, rows),
                                             initial.narrow_batch(first, rows), &part_masks);
    const torch::Tensor loss = part_loss * (static_cast<double>(rows) / static_cast<double>(batch));
    final_states[static_cast<size_t>(part)] = part_state.detach();
    grads[static_cast<size_t>(part)] = torch::autograd::grad({loss}, params, /*grad_outputs=*/{},
                                                             /*retain_graph=*/c10::nullopt,
                                                             /*create_graph=*/false, /*allow_unused=*/true);
    losses[static_cast<size_t>(part)] = loss.item<double>();
  };
  if (!part_threads_ || part_threads_->parts() != parts) part_threads_ = std::make_unique<PartThreads>(parts);
  {
    const SingleThreadedBlas one_blas_thread_per_part;
    part_threads_->run(run_part);  // rethrows the first failed part's exception
  }

  // .grad is overwritten, never accumulated into, so no zero_grad(); it is
  // its own tensor, never one of autograd's results, which may be views
  torch::NoGradGuard no_grad;
  double loss = 0;
  for (int64_t part = 0; part < parts; ++part) loss += losses[static_cast<size_t>(part)];
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Tensor p = params[i];
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    torch::Tensor grad = p.grad();
    bool first = true;
    for (int64_t part = 0; part < parts; ++part) {
      const torch::Tensor& g = grads[static_cast<size_t>(part)][i];
      if (!g.defined()) continue;
      if (first) grad.copy_(g);
      else grad.add_(g);
      first = false;
    }
    if (first) grad.zero_();
  }
  return {loss, State::cat_batches(final_states)};
}

Checkpoint Trainer::make_checkpoint() const {
  Checkpoint c;
  c.config = config_;
  c.vocab = corpus_.vocab;
  c.progress = progress_;
  c.lineage = lineage_;
  c.charrnn_version = CHARRNN_VERSION;
  c.model_bytes = archive_module(*model_);
  c.optimizer_bytes = archive_optimizer(*optimizer_);
  const torch::Tensor batcher_state = batcher_->rng_state();
  const torch::Tensor global_state = at::detail::getDefaultCPUGenerator().get_state();
  std::vector<std::pair<std::string, torch::Tensor>> streams = {
      {"batcher", batcher_state}, {"torch_cpu", global_state}, {"batcher_position", batcher_->position()}};
  // sequential batching's carried state, an archive of its own per rank
  // (empty before the first batch) so that ranks can send it as bytes
  std::string carried;
  if (carried_.defined()) {  // as float: exact for a bf16 state too, and what restore checks for
    std::vector<std::pair<std::string, torch::Tensor>> parts = {{"h", carried_.h.to(torch::kCPU, torch::kFloat)}};
    if (carried_.c.defined()) parts.emplace_back("c", carried_.c.to(torch::kCPU, torch::kFloat));
    carried = archive_tensors(parts);
  }
  streams.emplace_back("carried_state", byte_tensor(carried));
  if (group_) {  // every rank's streams, so that the same world size resumes exactly
    const std::string what = "collecting the ranks' random streams";
    const std::vector<std::string> batchers = group_->gather_bytes(tensor_bytes(batcher_state), what);
    const std::vector<std::string> globals = group_->gather_bytes(tensor_bytes(global_state), what);
    const std::vector<std::string> carried_states = group_->gather_bytes(carried, what);
    for (int64_t r = 1; r < group_->size(); ++r) {
      streams.emplace_back("batcher" + rank_suffix(r), byte_tensor(batchers[static_cast<size_t>(r)]));
      streams.emplace_back("torch_cpu" + rank_suffix(r), byte_tensor(globals[static_cast<size_t>(r)]));
      streams.emplace_back("carried_state" + rank_suffix(r), byte_tensor(carried_states[static_cast<size_t>(r)]));
    }
  }
  c.rng_bytes = archive_tensors(streams);
  return c;
}

bool Trainer::evaluate_and_save(double train_loss, double chars_per_second) {
  nlohmann::json metrics = {{"step", progress_.step},
                            {"train_loss", train_loss},
                            {"train_bpc", train_loss / std::log(2.0)},
                            {"chars_per_s", chars_per_second},
                            {"lr", learning_rate()},
                            {"elapsed_s", progress_.elapsed_seconds},
                            {"chars_trained", progress_.chars_trained}};
  bool improved = false;
  std::string overfit_warning;
  if (corpus_.val.numel() >= 2) {
    const int64_t cap = config_.train.eval_max_chars;
    const torch::Tensor held_out = cap > 0 && corpus_.val.size(0) > cap + 1 ? corpus_.val.narrow(0, 0, cap + 1) : corpus_.val;
    const EvalResult val = evaluate_held_out(held_out);
    metrics["val_chars"] = val.chars;
    metrics["val_loss"] = val.loss;
    metrics["val_bpc"] = val.bpc;
    if (!std::isfinite(val.loss)) {
      on_divergence("the validation loss is " + std::string(std::isnan(val.loss) ? "NaN" : "infinite"));
      return false;
    }
    improved = !(val.loss >= progress_.best_val_loss);  // true while best is NaN
    if (improved) {
      progress_.best_val_loss = val.loss;
      progress_.best_step = progress_.step;
    }
    rising_evaluations_ = val.loss > last_val_loss_ ? rising_evaluations_ + 1 : 0;
    last_val_loss_ = val.loss;
    if (rising_evaluations_ == kRisingEvaluationsWarned) {
      std::ostringstream warning;
      warning << std::fixed << std::setprecision(4) << "warning: the validation loss has risen "
              << kRisingEvaluationsWarned << " evaluations in a row; the best, " << progress_.best_val_loss
              << " at step " << progress_.best_step << ", stays in "
              << best_checkpoint_path(config_.train.checkpoint)
              << ". The model is learning this text by heart: stop here (Ctrl-C saves), or train fewer steps, "
                 "with a lower train.learning_rate or more model.dropout\n";
      overfit_warning = warning.str();
    }
  }
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
  if (group_) {  // rank 0 alone samples; all ranks must take its verdict
    torch::Tensor verdict = torch::tensor({outputs_not_finite ? 1.0 : 0.0}, torch::kDouble);
    group_->sum(verdict, "sharing the sample's verdict");
    outputs_not_finite = verdict.item<double>() > 0;
  }
  if (outputs_not_finite) {
    on_divergence("the model's outputs are not finite");
    return false;
  }
  metrics["sample"] = sample_text;

  // The latest checkpoint goes last: it is what --resume continues from, so
  // a kill anywhere before its rename replays these steps, and the metrics
  // line and best checkpoint they produced are written again (resume drops
  // metrics lines past the checkpoint's step).
  const Checkpoint checkpoint = make_checkpoint();
  if (!writes_files()) return true;
  const std::string bytes = serialize_checkpoint(checkpoint);
  ensure_parent_directory(config_.train.checkpoint);
  append_line(metrics_path(config_.train.checkpoint), metrics.dump());
  write_loss_plot({metrics_path(config_.train.checkpoint)}, loss_plot_path(config_.train.checkpoint));
  if (improved) write_file_atomically(best_checkpoint_path(config_.train.checkpoint), bytes);
  write_file_atomically(config_.train.checkpoint, bytes);
  if (io_.log) {
    std::ostream& log = *io_.log;
    if (io_.redraw) log << "\r\033[K";
    log << "step " << step_label() << std::fixed << std::setprecision(4)
        << "  train loss " << train_loss << "  lr " << std::defaultfloat << std::setprecision(3) << learning_rate()
        << std::fixed << std::setprecision(4);
    if (metrics.contains("val_loss"))
      log << "  val loss " << metrics["val_loss"].get<double>() << "  val bpc " << std::setprecision(3)
          << metrics["val_bpc"].get<double>() << (improved ? "  (best)" : "");
    log << "\n--- sample ---\n" << sample_text << "\n--------------\n" << overfit_warning << std::flush;
  }
  return true;
}

TrainSummary Trainer::run() {
  TrainSummary summary;
  const auto start = Clock::now();
  const double elapsed_before = progress_.elapsed_seconds;
  const int64_t first_step = progress_.step;
  const int64_t total = config_.train.steps;
  const double max_seconds = config_.train.max_seconds;
  const int64_t chars_per_step = config_.train.batch_size * config_.train.seq_length * world_size();

  auto report_time = start;
  int64_t report_step = progress_.step;
  double loss_sum = 0;
  int64_t loss_count = 0;
  double last_loss = progress_.last_train_loss;
  int64_t last_saved_step = -1;
  model_->train();

  // the budget's clock: training time, validation included. A test hook
  // makes every step take a fixed time instead, so that a time-bounded
  // run's step count does not depend on the machine's speed.
  const char* fixed_step = std::getenv("CHARRNN_TEST_SECONDS_PER_STEP");
  const double seconds_per_step = fixed_step ? std::atof(fixed_step) : 0.0;
  const auto run_seconds = [&] {
    return seconds_per_step > 0 ? seconds_per_step * static_cast<double>(progress_.step - first_step)
                                : seconds_since(start);
  };
  seconds_per_step_ = 0;

  const auto rate_now = [&] {
    const double s = seconds_since(start);
    return s > 0 ? static_cast<double>((progress_.step - first_step) * chars_per_step) / s : 0.0;
  };

  agreed_stop_ = agreed_time_up_ = false;
  while (progress_.step < total) {
    const bool stop_requested = io_.stop_requested && io_.stop_requested->load();
    // the budget is the run's: a resumed run trains what is left of it
    const bool time_up = max_seconds > 0 && elapsed_before + run_seconds() >= max_seconds;
    if (group_) {
      // a Ctrl-C or the clock reaches ranks at different steps; they act on
      // the requests agreed with the last step's gradients, all at once
      local_stop_ = stop_requested;
      local_time_up_ = time_up;
      if (agreed_stop_) {
        summary.interrupted = true;
        break;
      }
      if (agreed_time_up_) break;
    } else {
      if (stop_requested) {
        summary.interrupted = true;
        break;
      }
      if (time_up) break;
    }

    const double loss = train_step();
    const double trained = run_seconds();
    progress_.elapsed_seconds = elapsed_before + trained;
    seconds_per_step_ = trained / static_cast<double>(std::max<int64_t>(1, progress_.step - first_step));
    if (!std::isfinite(loss)) {
      on_divergence(std::string("the loss is ") + (std::isnan(loss) ? "NaN" : "infinite"));
      last_saved_step = progress_.step;  // rolled back to a saved step
      continue;
    }
    loss_sum += loss;
    ++loss_count;
    last_loss = loss;
    progress_.last_train_loss = loss;

    const bool eval_now = progress_.step % config_.train.eval_every == 0 || progress_.step == total;
    const double since_report = std::chrono::duration<double>(Clock::now() - report_time).count();
    const bool report_now = io_.log && (io_.redraw ? since_report >= 0.25 : since_report >= 10.0);
    if (report_now && !eval_now) {
      const double rate = static_cast<double>((progress_.step - report_step) * chars_per_step) / since_report;
      const double per_step = since_report / static_cast<double>(progress_.step - report_step);
      double eta = per_step * static_cast<double>(total - progress_.step);
      if (max_seconds > 0) eta = std::min(eta, max_seconds - progress_.elapsed_seconds);
      std::ostream& log = *io_.log;
      if (io_.redraw) log << "\r\033[K";
      log << "step " << step_label() << std::fixed << std::setprecision(4) << "  loss "
          << loss_sum / static_cast<double>(loss_count) << "  lr " << std::defaultfloat << std::setprecision(3)
          << learning_rate() << "  " << format_rate(rate) << "  ETA "
          << format_duration(eta) << (io_.redraw ? "" : "\n") << std::flush;
      report_time = Clock::now();
      report_step = progress_.step;
      loss_sum = 0;
      loss_count = 0;
    }
    if (eval_now) {
      evaluate_and_save(last_loss, rate_now());  // after a rollback progress_ is at a saved step too
      last_saved_step = progress_.step;
      report_time = Clock::now();  // the next rate covers training, not validation
      report_step = progress_.step;
      loss_sum = 0;
      loss_count = 0;
    }
  }

  summary.seconds = seconds_since(start);
  summary.steps_done = progress_.step - first_step;
  summary.chars_per_second = rate_now();
  progress_.elapsed_seconds = elapsed_before + run_seconds();

  if (summary.interrupted) {
    const Checkpoint checkpoint = make_checkpoint();  // no eval: stop quickly
    if (writes_files()) save_checkpoint(config_.train.checkpoint, checkpoint);
    if (io_.log) {
      *io_.log << (io_.redraw ? "\r\033[K" : "") << "interrupted at step " << progress_.step
               << "; checkpoint saved to " << config_.train.checkpoint << "; continue with: charrnn train --resume "
               << config_.train.checkpoint << "\n";
    }
  } else if (last_saved_step != progress_.step && summary.steps_done > 0) {
    evaluate_and_save(last_loss, summary.chars_per_second);  // stopped by max_seconds between evals
  }
  return summary;
}

}  // namespace charrnn
