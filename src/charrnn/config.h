// The run configuration: one struct per JSON section, LibTorch-options style.
// Every field has a default and a one-line comment ending in it; together the
// defaults are the measured best recipe (a 2x256 GRU, sequential batching,
// cosine decay from 0.008 with warm-up, weight decay 0.3: docs/performance.md),
// so a config names only its data and what it does differently. Precedence is
// built-in defaults < config file < --set KEY=VALUE. An unknown key is an
// error naming the key and the file; a misspelled key never goes unnoticed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace charrnn {

enum class CellType { RNN, GRU, LSTM };
std::string to_string(CellType cell);
/// Throws UsageError for anything but rnn, gru, lstm.
CellType parse_cell(const std::string& name, const std::string& where);

/// The modes a config names by word. Each is parsed here once and is an
/// enum everywhere else; to_string gives the config's word back.
enum class ValSplit { Tail, Documents };        ///< data.val_split
enum class Batching { Random, Sequential };     ///< train.batching
enum class LrSchedule { Constant, Cosine, Linear };  ///< train.lr_schedule
enum class Precision { Fp32, Bf16 };            ///< train.precision
std::string to_string(ValSplit mode);
std::string to_string(Batching mode);
std::string to_string(LrSchedule mode);
std::string to_string(Precision mode);
/// `key`'s mode named `word`; throws UsageError ("KEY must be a, b or c")
/// naming `where` for any other word.
ValSplit parse_val_split(const std::string& word, const std::string& where);
Batching parse_batching(const std::string& word, const std::string& where);
LrSchedule parse_lr_schedule(const std::string& word, const std::string& where);
Precision parse_precision(const std::string& word, const std::string& where);

struct DataOptions {
  /// The corpus: UTF-8 text files, folders (every regular file under them,
  /// recursively, in sorted path order, hidden ones skipped) or both; in
  /// JSON a string or a list of strings. Default: data/moby-dick.txt
  std::vector<std::string> path = {"data/moby-dick.txt"};
  std::string glob = "";  ///< folders: only files whose name matches, e.g. *.txt; "" takes every file. Default: ""
  std::string separator = "\n\n";  ///< written between two files' texts (documents). Default: "\n\n"
  double val_fraction = 0.1;  ///< fraction held out for validation; 0 disables it. Default: 0.1
  /// tail: the last val_fraction of the text; documents: whole documents,
  /// a seeded choice of them holding at least val_fraction of it. Default: tail
  ValSplit val_split = ValSplit::Tail;
  /// seeds val_split=documents' choice, apart from train.seed, so that runs
  /// with other seeds are scored on the same text. Default: 0
  int64_t val_seed = 0;
  bool cache = true;  ///< encode once to an id file in ~/.cache/charrnn (trainer.h) and memory-map it. Default: true
};

struct ModelOptions {
  CellType cell = CellType::GRU;   ///< rnn, gru or lstm. Default: gru
  int64_t embedding_dim = 64;      ///< Default: 64
  int64_t hidden_size = 256;       ///< Default: 256
  int64_t num_layers = 2;          ///< Default: 2
  double dropout = 0.1;            ///< between recurrent layers, in [0, 1). Default: 0.1
  /// LSTM only: initial bias of the forget gate (bias_ih's forget slice;
  /// bias_hh's is zeroed), so that early on the cell keeps its memory; 0
  /// keeps PyTorch's uniform initialisation. Default: 0
  double forget_bias = 0.0;
};

struct TrainOptions {
  int64_t batch_size = 32;       ///< chunks (random) or tracks (sequential) per step. Default: 32
  int64_t seq_length = 128;      ///< characters per chunk (backprop window). Default: 128
  double learning_rate = 0.008;  ///< Adam step size. Default: 0.008
  int64_t steps = 3000;          ///< optimizer steps. Default: 3000
  /// random: chunks drawn anywhere, each from a zero state; sequential: the
  /// text cut into batch_size tracks read in order, the state carried from
  /// one step to the next. Default: sequential
  Batching batching = Batching::Sequential;
  /// random batching: characters read without gradient before each chunk,
  /// so that it starts from a warmed-up state instead of zeros. Default: 0
  int64_t burn_in = 0;
  /// constant, cosine or linear: the decay from learning_rate to min_lr
  /// over the run's progress, the larger of steps done / steps and
  /// training time / max_seconds. Default: linear
  LrSchedule lr_schedule = LrSchedule::Linear;
  int64_t warmup_steps = 50;     ///< steps of linear warm-up from learning_rate / warmup_steps. Default: 50
  double min_lr = 0;             ///< rate the schedule ends at. Default: 0
  /// decoupled weight decay (AdamW's) on the matrices, not biases. Default: 0.3
  double weight_decay = 0.3;
  double max_seconds = 0;        ///< > 0 stops after this much wall-clock time; 0 = no limit. Default: 0
  double grad_clip = 5.0;        ///< max global gradient norm; <= 0 disables clipping. Default: 5
  int64_t eval_every = 250;      ///< steps between validation, sample and checkpoint. Default: 250
  int64_t eval_max_chars = 500000;  ///< held-out characters validated (the first ones); 0 = all. Default: 500000
  int64_t seed = 42;             ///< seeds weights, dropout and batch sampling. Default: 42
  std::string device = "auto";   ///< auto (CUDA when available), cpu, cuda or cuda:N. Default: auto
  /// fp32, or bf16: CUDA autocast runs the matrix products and cuDNN's RNNs
  /// in bfloat16 while weights, gradients and Adam's state stay float
  /// (validation and generation stay float). Default: fp32
  Precision precision = Precision::Fp32;
  std::string checkpoint = "models/charrnn.pt";  ///< latest checkpoint; best goes to *.best.pt. Default: models/charrnn.pt
  int64_t threads = 0;           ///< CPU threads; 0 = all cores. Default: 0
  /// on a NaN or infinite loss, go back to the last checkpoint with half the
  /// learning rate, at most this many times per run; 0 stops with an error. Default: 0
  int64_t divergence_rollbacks = 0;
  /// in [0, 1): after every step once averaging has started, average =
  /// ema_decay * average + (1 - ema_decay) * weights (weight_average.h);
  /// validation, the samples and the checkpoints' served weights are the
  /// average. 0 = no averaging. Default: 0
  double ema_decay = 0;
  /// in [0, 1]: the run's progress (as lr_schedule reads it) at which the
  /// average starts as a copy of the weights. Default: 0.5
  double ema_start = 0.5;
};

/// What the sampler reads at every character (sampler.h): the part of the
/// sample section that a request, a chat command or a sweep changes from
/// one text to the next.
struct SamplingParams {
  double temperature = 0.8;  ///< in [0, 2]; <= 0 samples greedily (argmax). Default: 0.8
  int64_t top_k = 0;         ///< keep the k most likely characters; <= 0 keeps all. Default: 0
  double top_p = 1.0;        ///< in (0, 1]: keep the smallest set with this much probability; >= 1 keeps all. Default: 1
};

/// The sampling settings, one struct for every way of asking for text: the
/// config's sample section, generate's and chat's flags, chat's ":"
/// commands, a server request (which starts from the model's section) and
/// the trainer's samples all fill it, and generate() takes it (its
/// GenerateOptions is this plus the knobs of one call). Each default is
/// written here and nowhere else. In JSON the sampling fields sit flat in
/// the section: {"temperature": 0.8, "top_k": 0, ...}.
struct SampleOptions {
  std::string prime = "";    ///< text that primes the state; "" starts from a sampled character. Default: ""
  int64_t length = 500;      ///< characters generated after the prime. Default: 500
  SamplingParams sampling;   ///< temperature, top_k, top_p (above)
  /// same seed, same text; < 0 picks a random seed (the commands choose it
  /// and print it; generate() takes the seed it is given). Default: 0
  int64_t seed = 0;
};

/// Training on several processes (WORLD_SIZE > 1; see docs/cli.md, "Training on
/// several machines"). Ignored by a single process.
struct DistributedOptions {
  /// seconds to wait for the other ranks at rendezvous and at every
  /// exchange; a rank that died or hangs longer stops the run with an error. Default: 300
  double timeout_s = 300;
  /// gradients are averaged in buckets of about this many MiB, each sent as
  /// soon as backward has produced it. Default: 1
  double bucket_mb = 1;
};

struct Config {
  DataOptions data;
  ModelOptions model;
  TrainOptions train;
  SampleOptions sample;
  DistributedOptions distributed;
};

/// The built-in defaults before they became the measured recipe: a
/// checkpoint or export whose stored config lacks a key (written before the
/// key existed) was trained with these values, so its config is read on top
/// of them, never on top of today's defaults.
Config stored_config_base();

nlohmann::json to_json(const Config& config);
/// Reads a (possibly partial) config on top of `base`. `source` names the file
/// in messages. Throws UsageError on unknown keys, wrong types or bad values.
Config config_from_json(const nlohmann::json& j, const std::string& source, const Config& base = {});
/// Parses the file at `path` on top of `base`.
Config load_config_file(const std::string& path, const Config& base = {});
/// Applies "section.key=value" overrides. The value is read as JSON when the
/// key holds a number or bool, and taken verbatim when it holds a string.
Config apply_overrides(const Config& config, const std::vector<std::string>& assignments);
/// A checkpoint's sample section as the rules it was written under meant
/// it: values older versions accepted, mapped to the same behaviour inside
/// today's ranges (sampler.h), so that old checkpoints still load.
SampleOptions read_legacy_sampling(SampleOptions sample);
/// data.path for messages: the one path, or "a, b (2 paths)".
std::string describe_paths(const std::vector<std::string>& paths);

/// Checks ranges and cross-field rules; throws UsageError naming the key.
void validate(const Config& config, const std::string& source = "config");

/// Throws UsageError naming the first key where the model `wanted` differs
/// in shape (cell, sizes, layers) from the `stored` one; `flag` is what
/// brought the stored model: --resume or --init-from.
void require_same_model_shape(const ModelOptions& stored, const ModelOptions& wanted, const std::string& flag);

}  // namespace charrnn
