#include "charrnn/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "charrnn/error.h"
#include "charrnn/sampler.h"
#include "charrnn/utf8.h"

namespace charrnn {

using nlohmann::json;

std::string to_string(CellType cell) {
  switch (cell) {
    case CellType::RNN: return "rnn";
    case CellType::GRU: return "gru";
    case CellType::LSTM: return "lstm";
  }
  return "?";
}

CellType parse_cell(const std::string& name, const std::string& where) {
  if (name == "rnn") return CellType::RNN;
  if (name == "gru") return CellType::GRU;
  if (name == "lstm") return CellType::LSTM;
  throw UsageError(where + ": model.cell must be one of rnn, gru, lstm; got \"" + name + "\"");
}

namespace {

[[noreturn]] void bad_value(const std::string& source, const std::string& key, const std::string& rule,
                            const std::string& got);

// Each mode's words, in the order messages list them
template <typename Mode>
using ModeWords = std::vector<std::pair<Mode, const char*>>;
const ModeWords<ValSplit> kValSplits = {{ValSplit::Tail, "tail"}, {ValSplit::Documents, "documents"}};
const ModeWords<Batching> kBatchings = {{Batching::Random, "random"}, {Batching::Sequential, "sequential"}};
const ModeWords<LrSchedule> kLrSchedules = {
    {LrSchedule::Constant, "constant"}, {LrSchedule::Cosine, "cosine"}, {LrSchedule::Linear, "linear"}};
const ModeWords<Precision> kPrecisions = {{Precision::Fp32, "fp32"}, {Precision::Bf16, "bf16"}};

template <typename Mode>
std::string word_of(const ModeWords<Mode>& words, Mode mode) {
  for (const auto& [m, word] : words)
    if (m == mode) return word;
  return "?";
}

template <typename Mode>
Mode parse_mode(const ModeWords<Mode>& words, const char* key, const std::string& word, const std::string& where) {
  std::string listed;
  for (size_t i = 0; i < words.size(); ++i) {
    if (words[i].second == word) return words[i].first;
    listed += (i == 0 ? "" : i + 1 == words.size() ? " or " : ", ") + std::string(words[i].second);
  }
  bad_value(where, key, "must be " + listed, "\"" + word + "\"");
}

std::string type_name(const json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_boolean()) return "a boolean";
  return std::string("a ") + v.type_name();
}

// Optimal string alignment distance: insertions, deletions, substitutions
// and swaps of two neighbours ("max_secnds", "max_seocnds") cost one each.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// "; did you mean \"train.max_seconds\"?" for the known key nearest to
// `wrong` ("section.key"), or "" when none is near: a key put in the wrong
// section, or one within a few typing mistakes.
std::string did_you_mean(const std::string& wrong) {
  const json defaults = to_json(Config{});
  const auto dot = wrong.find('.');
  const std::string key = dot == std::string::npos ? wrong : wrong.substr(dot + 1);
  std::string best;
  size_t best_distance = std::max<size_t>(2, wrong.size() / 4) + 1;
  for (const auto& section : defaults.items())
    for (const auto& item : section.value().items()) {
      const std::string name = section.key() + "." + item.key();
      const size_t distance = item.key() == key ? 1 : edit_distance(wrong, name);
      if (distance < best_distance) {
        best = name;
        best_distance = distance;
      }
    }
  return best.empty() ? "" : "; did you mean \"" + best + "\"?";
}

// The error for a key no section has.
[[noreturn]] void unknown_key(const std::string& source, const std::string& name) {
  throw UsageError(source + ": unknown key \"" + name + "\"" + did_you_mean(name));
}

// Reads one section, remembering which keys it consumed, so finish() can
// reject the rest by name.
class SectionReader {
 public:
  SectionReader(const json& root, const char* section, const std::string& source)
      : section_(section), source_(source) {
    if (!root.contains(section)) return;
    node_ = &root.at(section);
    if (!node_->is_object())
      throw UsageError(source_ + ": \"" + section_ + "\" must be an object, got " + type_name(*node_));
  }

  void read(const char* key, std::string& out) {
    if (const json* v = find(key)) {
      if (!v->is_string()) fail(key, "a string", *v);
      out = v->get<std::string>();
    }
  }
  void read(const char* key, int64_t& out) {
    if (const json* v = find(key)) {
      if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        // get<int64_t>() would wrap it: 2^64-1 read as -1, which for a seed
        // means "pick a random one" (a property fuzz/fuzz_config.cpp checks)
        fail(key, "an integer below 2^63", *v);
      } else if (v->is_number_integer()) {
        out = v->get<int64_t>();
      } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
                 v->get<double>() == std::floor(v->get<double>()) && std::fabs(v->get<double>()) < 9e15) {
        out = static_cast<int64_t>(v->get<double>());  // 2e3 is a fine way to write 2000
      } else {
        fail(key, "an integer", *v);
      }
    }
  }
  // a string, or a list of strings
  void read(const char* key, std::vector<std::string>& out) {
    if (const json* v = find(key)) {
      if (v->is_string()) {
        out = {v->get<std::string>()};
        return;
      }
      if (!v->is_array() || v->empty()) fail(key, "a string or a non-empty list of strings", *v);
      std::vector<std::string> items;
      for (const json& item : *v) {
        if (!item.is_string()) fail(key, "a string or a non-empty list of strings", *v);
        items.push_back(item.get<std::string>());
      }
      out = std::move(items);
    }
  }
  void read(const char* key, double& out) {
    if (const json* v = find(key)) {
      if (!v->is_number()) fail(key, "a number", *v);
      out = v->get<double>();
    }
  }
  void read(const char* key, bool& out) {
    if (const json* v = find(key)) {
      if (!v->is_boolean()) fail(key, "true or false", *v);
      out = v->get<bool>();
    }
  }
  // a word naming one of an enum's values: model.cell and the modes
  template <typename Mode>
  void read_mode(const char* key, Mode& out, Mode (*parse)(const std::string&, const std::string&)) {
    if (const json* v = find(key)) {
      if (!v->is_string()) fail(key, "a string", *v);
      out = parse(v->get<std::string>(), source_);
    }
  }

  void finish() const {
    if (!node_) return;
    for (const auto& item : node_->items())
      if (!seen_.count(item.key()))
        unknown_key(source_, section_ + "." + item.key());
  }

 private:
  const json* find(const char* key) {
    if (!node_) return nullptr;
    seen_.insert(key);
    auto it = node_->find(key);
    return it == node_->end() ? nullptr : &*it;
  }
  [[noreturn]] void fail(const char* key, const char* expected, const json& got) const {
    throw UsageError(source_ + ": " + section_ + "." + key + " must be " + expected + ", got " +
                     type_name(got) + " (" + got.dump() + ")");
  }

  const json* node_ = nullptr;
  std::string section_;
  const std::string& source_;
  std::set<std::string> seen_;
};

void bad_value(const std::string& source, const std::string& key, const std::string& rule, const std::string& got) {
  throw UsageError(source + ": " + key + " " + rule + "; got " + got);
}

std::string number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

std::string to_string(ValSplit mode) { return word_of(kValSplits, mode); }
std::string to_string(Batching mode) { return word_of(kBatchings, mode); }
std::string to_string(LrSchedule mode) { return word_of(kLrSchedules, mode); }
std::string to_string(Precision mode) { return word_of(kPrecisions, mode); }
ValSplit parse_val_split(const std::string& word, const std::string& where) {
  return parse_mode(kValSplits, "data.val_split", word, where);
}
Batching parse_batching(const std::string& word, const std::string& where) {
  return parse_mode(kBatchings, "train.batching", word, where);
}
LrSchedule parse_lr_schedule(const std::string& word, const std::string& where) {
  return parse_mode(kLrSchedules, "train.lr_schedule", word, where);
}
Precision parse_precision(const std::string& word, const std::string& where) {
  return parse_mode(kPrecisions, "train.precision", word, where);
}

Config stored_config_base() {
  Config c;
  c.model.cell = CellType::LSTM;
  c.model.dropout = 0;
  c.train.learning_rate = 0.002;
  c.train.steps = 2000;
  c.train.batching = Batching::Random;
  c.train.lr_schedule = LrSchedule::Constant;
  c.train.warmup_steps = 0;
  c.train.min_lr = 0;
  c.train.weight_decay = 0;
  c.train.eval_every = 200;
  c.train.ema_decay = 0;  // whatever the default becomes, a checkpoint from before the key was not averaged
  return c;
}

json to_json(const Config& c) {
  return {
      {"data",
       {// one path stays a plain string, as configs before lists wrote it
        {"path", c.data.path.size() == 1 ? json(c.data.path.front()) : json(c.data.path)},
        {"glob", c.data.glob},
        {"separator", c.data.separator},
        {"val_fraction", c.data.val_fraction},
        {"val_split", to_string(c.data.val_split)},
        {"val_seed", c.data.val_seed},
        {"cache", c.data.cache}}},
      {"model",
       {{"cell", to_string(c.model.cell)},
        {"embedding_dim", c.model.embedding_dim},
        {"hidden_size", c.model.hidden_size},
        {"num_layers", c.model.num_layers},
        {"dropout", c.model.dropout},
        {"forget_bias", c.model.forget_bias}}},
      {"train",
       {{"batch_size", c.train.batch_size},
        {"seq_length", c.train.seq_length},
        {"learning_rate", c.train.learning_rate},
        {"steps", c.train.steps},
        {"batching", to_string(c.train.batching)},
        {"burn_in", c.train.burn_in},
        {"lr_schedule", to_string(c.train.lr_schedule)},
        {"warmup_steps", c.train.warmup_steps},
        {"min_lr", c.train.min_lr},
        {"weight_decay", c.train.weight_decay},
        {"max_seconds", c.train.max_seconds},
        {"grad_clip", c.train.grad_clip},
        {"eval_every", c.train.eval_every},
        {"eval_max_chars", c.train.eval_max_chars},
        {"seed", c.train.seed},
        {"device", c.train.device},
        {"precision", to_string(c.train.precision)},
        {"checkpoint", c.train.checkpoint},
        {"threads", c.train.threads},
        {"divergence_rollbacks", c.train.divergence_rollbacks},
        {"ema_decay", c.train.ema_decay},
        {"ema_start", c.train.ema_start}}},
      {"sample",
       {{"prime", c.sample.prime},
        {"length", c.sample.length},
        {"temperature", c.sample.sampling.temperature},
        {"top_k", c.sample.sampling.top_k},
        {"top_p", c.sample.sampling.top_p},
        {"seed", c.sample.seed}}},
      {"distributed", {{"timeout_s", c.distributed.timeout_s}, {"bucket_mb", c.distributed.bucket_mb}}},
  };
}

Config config_from_json(const json& j, const std::string& source, const Config& base) {
  if (!j.is_object()) throw UsageError(source + ": the config must be a JSON object");
  for (const auto& item : j.items()) {
    const std::string& k = item.key();
    if (k != "data" && k != "model" && k != "train" && k != "sample" && k != "distributed") {
      std::string hint;
      for (const char* section : {"data", "model", "train", "sample", "distributed"})
        if (edit_distance(k, section) <= 2) hint = std::string("; did you mean \"") + section + "\"?";
      throw UsageError(source + ": unknown key \"" + k + "\" (sections are data, model, train, sample, distributed)" +
                       hint);
    }
  }
  Config c = base;
  SectionReader data(j, "data", source);
  data.read("path", c.data.path);
  data.read("glob", c.data.glob);
  data.read("separator", c.data.separator);
  data.read("val_fraction", c.data.val_fraction);
  data.read_mode("val_split", c.data.val_split, parse_val_split);
  data.read("val_seed", c.data.val_seed);
  data.read("cache", c.data.cache);
  data.finish();

  SectionReader model(j, "model", source);
  model.read_mode("cell", c.model.cell, parse_cell);
  model.read("embedding_dim", c.model.embedding_dim);
  model.read("hidden_size", c.model.hidden_size);
  model.read("num_layers", c.model.num_layers);
  model.read("dropout", c.model.dropout);
  model.read("forget_bias", c.model.forget_bias);
  model.finish();

  SectionReader train(j, "train", source);
  train.read("batch_size", c.train.batch_size);
  train.read("seq_length", c.train.seq_length);
  train.read("learning_rate", c.train.learning_rate);
  train.read("steps", c.train.steps);
  train.read_mode("batching", c.train.batching, parse_batching);
  train.read("burn_in", c.train.burn_in);
  train.read_mode("lr_schedule", c.train.lr_schedule, parse_lr_schedule);
  train.read("warmup_steps", c.train.warmup_steps);
  train.read("min_lr", c.train.min_lr);
  train.read("weight_decay", c.train.weight_decay);
  train.read("max_seconds", c.train.max_seconds);
  train.read("grad_clip", c.train.grad_clip);
  train.read("eval_every", c.train.eval_every);
  train.read("eval_max_chars", c.train.eval_max_chars);
  train.read("seed", c.train.seed);
  train.read("device", c.train.device);
  train.read_mode("precision", c.train.precision, parse_precision);
  train.read("checkpoint", c.train.checkpoint);
  train.read("threads", c.train.threads);
  train.read("divergence_rollbacks", c.train.divergence_rollbacks);
  train.read("ema_decay", c.train.ema_decay);
  train.read("ema_start", c.train.ema_start);
  train.finish();

  SectionReader sample(j, "sample", source);
  sample.read("prime", c.sample.prime);
  sample.read("length", c.sample.length);
  sample.read("temperature", c.sample.sampling.temperature);
  sample.read("top_k", c.sample.sampling.top_k);
  sample.read("top_p", c.sample.sampling.top_p);
  sample.read("seed", c.sample.seed);
  sample.finish();

  SectionReader distributed(j, "distributed", source);
  distributed.read("timeout_s", c.distributed.timeout_s);
  distributed.read("bucket_mb", c.distributed.bucket_mb);
  distributed.finish();
  return c;
}

Config load_config_file(const std::string& path, const Config& base) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(path + ": cannot open config file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  json j;
  try {
    j = json::parse(buffer.str());
  } catch (const json::parse_error& e) {
    // nlohmann's message already holds line and column
    std::string what = e.what();
    const auto pos = what.find("parse error");
    throw UsageError(path + ": invalid JSON: " + (pos == std::string::npos ? what : what.substr(pos)));
  }
  return config_from_json(j, path, base);
}

Config apply_overrides(const Config& config, const std::vector<std::string>& assignments) {
  Config result = config;
  const json defaults = to_json(Config{});
  for (const std::string& assignment : assignments) {
    const auto eq = assignment.find('=');
    const auto dot = assignment.find('.');
    if (eq == std::string::npos || dot == std::string::npos || dot > eq)
      throw UsageError("--set expects section.key=value, got \"" + assignment + "\"");
    const std::string section = assignment.substr(0, dot);
    const std::string key = assignment.substr(dot + 1, eq - dot - 1);
    const std::string text = assignment.substr(eq + 1);
    const std::string where = "--set " + section + "." + key;
    if (!defaults.contains(section) || !defaults[section].contains(key))
      unknown_key(where, section + "." + key);
    json value;
    if (section == "data" && key == "path" && !text.empty() && text.front() == '[') {
      // a list of paths, written as JSON: --set 'data.path=["a.txt","lyrics"]'
      try {
        value = json::parse(text);
      } catch (const json::parse_error&) {
        throw UsageError(where + ": a value starting with [ is read as a JSON list of paths; got " + text);
      }
    } else if (defaults[section][key].is_string()) {
      value = text;  // strings are taken verbatim: --set sample.prime=123 means "123"
    } else {
      try {
        value = json::parse(text);
      } catch (const json::parse_error&) {
        value = text;  // reported below as a type error with the value shown
      }
    }
    result = config_from_json(json{{section, {{key, value}}}}, where, result);
  }
  return result;
}

SampleOptions read_legacy_sampling(SampleOptions sample) {
  // before the shared ranges, a negative temperature meant greedy, a top_k
  // below 0 and a top_p above 1 meant "keep all": the same as 0, 0 and 1
  if (std::isfinite(sample.sampling.temperature) && sample.sampling.temperature < 0) sample.sampling.temperature = 0;
  if (sample.sampling.top_k < 0) sample.sampling.top_k = 0;
  if (std::isfinite(sample.sampling.top_p) && sample.sampling.top_p > 1) sample.sampling.top_p = 1;
  return sample;
}

std::string describe_paths(const std::vector<std::string>& paths) {
  if (paths.size() == 1) return paths.front();
  std::string out;
  for (size_t i = 0; i < paths.size() && i < 3; ++i) out += (i ? ", " : "") + paths[i];
  if (paths.size() > 3) out += ", ...";
  return out + " (" + std::to_string(paths.size()) + " paths)";
}

void validate(const Config& c, const std::string& source) {
  const auto at_least = [&](const char* key, int64_t v, int64_t min) {
    if (v < min) bad_value(source, key, "must be >= " + std::to_string(min), std::to_string(v));
  };
  const auto finite = [&](const char* key, double v) {
    if (!std::isfinite(v)) bad_value(source, key, "must be a finite number", number(v));
  };
  // Every checkpoint stores the config in its JSON header, and JSON holds only
  // UTF-8. A --set value with other bytes used to pass here and fail at the
  // first checkpoint save, after the training it was meant to keep (found by
  // fuzz/fuzz_config.cpp). Config files cannot hold such bytes: JSON parsing
  // rejects them.
  const auto utf8 = [&](const char* key, const std::string& v) {
    if (!is_valid_utf8(v))
      bad_value(source, key, "must be UTF-8 text (checkpoints store it as JSON)", "bytes that are not");
  };
  for (const std::string& path : c.data.path) utf8("data.path", path);
  utf8("data.glob", c.data.glob);
  utf8("data.separator", c.data.separator);
  utf8("train.device", c.train.device);
  utf8("train.checkpoint", c.train.checkpoint);
  utf8("sample.prime", c.sample.prime);
  if (c.data.path.empty()) bad_value(source, "data.path", "must name a UTF-8 text file or folder", "[]");
  for (const std::string& path : c.data.path)
    if (path.empty()) bad_value(source, "data.path", "must name a UTF-8 text file or folder", "\"\"");
  finite("data.val_fraction", c.data.val_fraction);
  if (c.data.val_fraction < 0 || c.data.val_fraction >= 1)
    bad_value(source, "data.val_fraction", "must be in [0, 1)", number(c.data.val_fraction));

  at_least("model.embedding_dim", c.model.embedding_dim, 1);
  at_least("model.hidden_size", c.model.hidden_size, 1);
  at_least("model.num_layers", c.model.num_layers, 1);
  finite("model.dropout", c.model.dropout);
  if (c.model.dropout < 0 || c.model.dropout >= 1)
    bad_value(source, "model.dropout", "must be in [0, 1)", number(c.model.dropout));
  finite("model.forget_bias", c.model.forget_bias);

  at_least("train.batch_size", c.train.batch_size, 1);
  at_least("train.seq_length", c.train.seq_length, 1);
  at_least("train.steps", c.train.steps, 0);
  at_least("train.eval_every", c.train.eval_every, 1);
  at_least("train.eval_max_chars", c.train.eval_max_chars, 0);
  at_least("train.threads", c.train.threads, 0);
  at_least("train.divergence_rollbacks", c.train.divergence_rollbacks, 0);
  finite("train.learning_rate", c.train.learning_rate);
  if (c.train.learning_rate <= 0)
    bad_value(source, "train.learning_rate", "must be > 0", number(c.train.learning_rate));
  at_least("train.burn_in", c.train.burn_in, 0);
  if (c.train.burn_in > 0 && c.train.batching != Batching::Random)
    bad_value(source, "train.burn_in", "needs train.batching=random (sequential batching carries the state instead)",
              std::to_string(c.train.burn_in));
  at_least("train.warmup_steps", c.train.warmup_steps, 0);
  finite("train.min_lr", c.train.min_lr);
  if (c.train.min_lr < 0 || c.train.min_lr > c.train.learning_rate)
    bad_value(source, "train.min_lr", "must be in [0, train.learning_rate]", number(c.train.min_lr));
  finite("train.weight_decay", c.train.weight_decay);
  if (c.train.weight_decay < 0 || c.train.weight_decay * c.train.learning_rate >= 1)
    bad_value(source, "train.weight_decay", "must be >= 0 and below 1 / train.learning_rate",
              number(c.train.weight_decay));
  finite("train.max_seconds", c.train.max_seconds);
  if (c.train.max_seconds < 0)
    bad_value(source, "train.max_seconds", "must be >= 0 (0 means no limit)", number(c.train.max_seconds));
  finite("train.grad_clip", c.train.grad_clip);
  finite("train.ema_decay", c.train.ema_decay);
  if (c.train.ema_decay < 0 || c.train.ema_decay >= 1)
    bad_value(source, "train.ema_decay", "must be in [0, 1) (0 means no averaging)", number(c.train.ema_decay));
  finite("train.ema_start", c.train.ema_start);
  if (c.train.ema_start < 0 || c.train.ema_start > 1)
    bad_value(source, "train.ema_start", "must be in [0, 1] (the part of the run done when averaging starts)",
              number(c.train.ema_start));
  if (c.train.checkpoint.empty())
    bad_value(source, "train.checkpoint", "must name the checkpoint file to write", "\"\"");
  const std::string& d = c.train.device;
  if (!(d == "auto" || d == "cpu" || d == "cuda" || d.rfind("cuda:", 0) == 0))
    bad_value(source, "train.device", "must be auto, cpu, cuda or cuda:N", "\"" + d + "\"");

  // the ranges every sampling interface shares (sampler.h)
  const auto sampling = [&](const SamplingRange& range, double v) {
    if (!in_range(range, v))
      bad_value(source, std::string("sample.") + range.setting, "must be " + range_requirement(range), number(v));
  };
  sampling(kTemperatureRange, c.sample.sampling.temperature);
  sampling(kTopKRange, static_cast<double>(c.sample.sampling.top_k));
  sampling(kTopPRange, c.sample.sampling.top_p);
  sampling(kLengthRange, static_cast<double>(c.sample.length));

  finite("distributed.timeout_s", c.distributed.timeout_s);
  if (c.distributed.timeout_s < 1 || c.distributed.timeout_s > 86400)
    bad_value(source, "distributed.timeout_s", "must be in [1, 86400] seconds", number(c.distributed.timeout_s));
  finite("distributed.bucket_mb", c.distributed.bucket_mb);
  if (c.distributed.bucket_mb <= 0 || c.distributed.bucket_mb > 4096)
    bad_value(source, "distributed.bucket_mb", "must be in (0, 4096]", number(c.distributed.bucket_mb));
}

void require_same_model_shape(const ModelOptions& stored, const ModelOptions& wanted, const std::string& flag) {
  const auto differs = [&](const char* key, const std::string& a, const std::string& b) {
    throw UsageError(flag + ": model." + key + " is " + a + " in the checkpoint but " + b + " in the config; " +
                     (flag == "--resume" ? "a resumed run keeps the model's shape"
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

}  // namespace charrnn
