// config: defaults < file < --set, unknown keys named with their file,
// validation that names the key, and the shipped configs in configs/.
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "charrnn/config.h"
#include "charrnn/error.h"
#include "test_helpers.h"

namespace {

using charrnn::CellType;
using charrnn::Config;
using charrnn::UsageError;
using charrnn_test::thrown_message;
using nlohmann::json;

// Field-by-field equality, so a field that to_json forgets still fails.
void expect_same_config(const Config& a, const Config& b) {
  EXPECT_EQ(a.data.path, b.data.path);
  EXPECT_EQ(a.data.glob, b.data.glob);
  EXPECT_EQ(a.data.separator, b.data.separator);
  EXPECT_EQ(a.data.val_fraction, b.data.val_fraction);
  EXPECT_EQ(a.data.val_split, b.data.val_split);
  EXPECT_EQ(a.data.val_seed, b.data.val_seed);
  EXPECT_EQ(a.model.cell, b.model.cell);
  EXPECT_EQ(a.model.embedding_dim, b.model.embedding_dim);
  EXPECT_EQ(a.model.hidden_size, b.model.hidden_size);
  EXPECT_EQ(a.model.num_layers, b.model.num_layers);
  EXPECT_EQ(a.model.dropout, b.model.dropout);
  EXPECT_EQ(a.train.batch_size, b.train.batch_size);
  EXPECT_EQ(a.train.seq_length, b.train.seq_length);
  EXPECT_EQ(a.train.learning_rate, b.train.learning_rate);
  EXPECT_EQ(a.train.steps, b.train.steps);
  EXPECT_EQ(a.train.max_seconds, b.train.max_seconds);
  EXPECT_EQ(a.train.grad_clip, b.train.grad_clip);
  EXPECT_EQ(a.train.eval_every, b.train.eval_every);
  EXPECT_EQ(a.train.seed, b.train.seed);
  EXPECT_EQ(a.train.device, b.train.device);
  EXPECT_EQ(a.train.precision, b.train.precision);
  EXPECT_EQ(a.train.checkpoint, b.train.checkpoint);
  EXPECT_EQ(a.train.threads, b.train.threads);
  EXPECT_EQ(a.train.ema_decay, b.train.ema_decay);
  EXPECT_EQ(a.train.ema_start, b.train.ema_start);
  EXPECT_EQ(a.sample.prime, b.sample.prime);
  EXPECT_EQ(a.sample.length, b.sample.length);
  EXPECT_EQ(a.sample.sampling.temperature, b.sample.sampling.temperature);
  EXPECT_EQ(a.sample.sampling.top_k, b.sample.sampling.top_k);
  EXPECT_EQ(a.sample.sampling.top_p, b.sample.sampling.top_p);
  EXPECT_EQ(a.sample.seed, b.sample.seed);
  EXPECT_EQ(a.distributed.timeout_s, b.distributed.timeout_s);
  EXPECT_EQ(a.distributed.bucket_mb, b.distributed.bucket_mb);
}

// A config with every field moved off its default.
Config everything_changed() {
  Config c;
  c.data.path = {"corpus/other \xC3\xA9.txt", "lyrics"};
  c.data.glob = "*.txt";
  c.data.separator = "\n---\n";
  c.data.val_fraction = 0.25;
  c.data.val_split = charrnn::ValSplit::Documents;
  c.data.val_seed = 7;
  c.model.cell = CellType::RNN;
  c.model.embedding_dim = 7;
  c.model.hidden_size = 33;
  c.model.num_layers = 3;
  c.model.dropout = 0.125;
  c.train.batch_size = 5;
  c.train.seq_length = 17;
  c.train.learning_rate = 0.0031;
  c.train.steps = 123;
  c.train.max_seconds = 9.5;
  c.train.grad_clip = 0;
  c.train.eval_every = 11;
  c.train.seed = 99;
  c.train.device = "cpu";
  c.train.precision = charrnn::Precision::Bf16;
  c.train.checkpoint = "out/x.pt";
  c.train.threads = 3;
  c.train.ema_decay = 0.995;
  c.train.ema_start = 0.75;
  c.sample.prime = "The \"quoted\"\n";
  c.sample.length = 77;
  c.sample.sampling.temperature = 0;
  c.sample.sampling.top_k = 4;
  c.sample.sampling.top_p = 0.9;
  c.sample.seed = -1;
  c.distributed.timeout_s = 42.5;
  c.distributed.bucket_mb = 0.25;
  return c;
}

TEST(Config, Defaults) {
  const Config c;
  EXPECT_EQ(c.data.path, std::vector<std::string>{"data/moby-dick.txt"});
  EXPECT_EQ(c.data.glob, "");
  EXPECT_EQ(c.data.separator, "\n\n");
  EXPECT_EQ(c.data.val_split, charrnn::ValSplit::Tail);
  EXPECT_EQ(c.data.val_seed, 0);
  EXPECT_DOUBLE_EQ(c.data.val_fraction, 0.1);
  EXPECT_EQ(c.model.cell, CellType::GRU);
  EXPECT_EQ(c.model.embedding_dim, 64);
  EXPECT_EQ(c.model.hidden_size, 256);
  EXPECT_EQ(c.model.num_layers, 2);
  EXPECT_DOUBLE_EQ(c.model.dropout, 0.1);
  EXPECT_EQ(c.train.batch_size, 32);
  EXPECT_EQ(c.train.seq_length, 128);
  EXPECT_DOUBLE_EQ(c.train.learning_rate, 0.008);
  EXPECT_EQ(c.train.steps, 3000);
  EXPECT_EQ(c.train.batching, charrnn::Batching::Sequential);
  EXPECT_EQ(c.train.lr_schedule, charrnn::LrSchedule::Linear);
  EXPECT_EQ(c.train.warmup_steps, 50);
  EXPECT_EQ(c.train.min_lr, 0.0);
  EXPECT_DOUBLE_EQ(c.train.weight_decay, 0.3);
  EXPECT_EQ(c.train.max_seconds, 0.0);
  EXPECT_DOUBLE_EQ(c.train.grad_clip, 5.0);
  EXPECT_EQ(c.train.eval_every, 250);
  EXPECT_EQ(c.train.seed, 42);
  EXPECT_EQ(c.train.device, "auto");
  EXPECT_EQ(c.train.precision, charrnn::Precision::Fp32);
  EXPECT_EQ(c.train.checkpoint, "models/charrnn.pt");
  EXPECT_EQ(c.train.threads, 0);
  EXPECT_EQ(c.train.ema_decay, 0.0);  // no weight average
  EXPECT_EQ(c.train.ema_start, 0.5);
  EXPECT_EQ(c.sample.prime, "");
  EXPECT_EQ(c.sample.length, 500);
  EXPECT_DOUBLE_EQ(c.sample.sampling.temperature, 0.8);
  EXPECT_EQ(c.sample.sampling.top_k, 0);
  EXPECT_DOUBLE_EQ(c.sample.sampling.top_p, 1.0);
  EXPECT_EQ(c.sample.seed, 0);
  EXPECT_NO_THROW(charrnn::validate(c));
}

TEST(Config, CellNames) {
  EXPECT_EQ(charrnn::parse_cell("rnn", "x"), CellType::RNN);
  EXPECT_EQ(charrnn::parse_cell("gru", "x"), CellType::GRU);
  EXPECT_EQ(charrnn::parse_cell("lstm", "x"), CellType::LSTM);
  for (CellType cell : {CellType::RNN, CellType::GRU, CellType::LSTM})
    EXPECT_EQ(charrnn::parse_cell(charrnn::to_string(cell), "x"), cell);
  const std::string message = thrown_message<UsageError>([] { charrnn::parse_cell("lstn", "my.json"); });
  EXPECT_CONTAINS(message, "my.json");
  EXPECT_CONTAINS(message, "model.cell");
  EXPECT_CONTAINS(message, "\"lstn\"");
  EXPECT_THROW(charrnn::parse_cell("LSTM", "x"), UsageError);  // names are lower case
  EXPECT_THROW(charrnn::parse_cell("", "x"), UsageError);
}

TEST(Config, PartialJsonKeepsDefaults) {
  const Config c = charrnn::config_from_json(
      json::parse(R"({"model": {"hidden_size": 32, "cell": "gru"}, "sample": {"prime": "Call me"}})"), "p.json");
  Config expected;
  expected.model.hidden_size = 32;
  expected.model.cell = CellType::GRU;
  expected.sample.prime = "Call me";
  expect_same_config(c, expected);
}

TEST(Config, PartialJsonKeepsTheGivenBase) {
  const Config base = everything_changed();
  const Config c = charrnn::config_from_json(json::parse(R"({"train": {"steps": 5}})"), "p.json", base);
  Config expected = base;
  expected.train.steps = 5;
  expect_same_config(c, expected);
  expect_same_config(charrnn::config_from_json(json::object(), "empty.json", base), base);
}

TEST(Config, IntegerWrittenAsWholeFloatIsAccepted) {
  const Config c = charrnn::config_from_json(json::parse(R"({"train": {"steps": 2e3}})"), "p.json");
  EXPECT_EQ(c.train.steps, 2000);
  const Config d = charrnn::config_from_json(json::parse(R"({"train": {"learning_rate": 1}})"), "p.json");
  EXPECT_EQ(d.train.learning_rate, 1.0);  // an integer is a fine number
}

TEST(Config, UnknownKeyInSectionNamesDottedKeyAndSource) {
  const std::string message = thrown_message<UsageError>(
      [] { charrnn::config_from_json(json::parse(R"({"model": {"hiden_size": 32}})"), "configs/my.json"); });
  EXPECT_CONTAINS(message, "model.hiden_size");
  EXPECT_CONTAINS(message, "configs/my.json");
  for (const char* section : {"data", "model", "train", "sample"}) {
    SCOPED_TRACE(section);
    const json j = {{section, {{"bogus", 1}}}};
    const std::string m = thrown_message<UsageError>([&] { charrnn::config_from_json(j, "s.json"); });
    EXPECT_CONTAINS(m, std::string(section) + ".bogus");
    EXPECT_CONTAINS(m, "s.json");
  }
}

TEST(Config, UnknownSectionNamesKeyAndSource) {
  const std::string message = thrown_message<UsageError>(
      [] { charrnn::config_from_json(json::parse(R"({"modle": {"hidden_size": 32}})"), "configs/my.json"); });
  EXPECT_CONTAINS(message, "\"modle\"");
  EXPECT_CONTAINS(message, "configs/my.json");
}

TEST(Config, NonObjectsAreRejected) {
  EXPECT_THROW(charrnn::config_from_json(json::array(), "a.json"), UsageError);
  EXPECT_THROW(charrnn::config_from_json(json(3), "a.json"), UsageError);
  const std::string message =
      thrown_message<UsageError>([] { charrnn::config_from_json(json::parse(R"({"model": 3})"), "a.json"); });
  EXPECT_CONTAINS(message, "\"model\"");
  EXPECT_CONTAINS(message, "a.json");
}

TEST(Config, WrongTypesNameTheKey) {
  struct Case {
    const char* json_text;
    const char* key;
  };
  const Case cases[] = {
      {R"({"train": {"steps": "abc"}})", "train.steps"},
      {R"({"train": {"steps": 2.5}})", "train.steps"},
      {R"({"train": {"batch_size": true}})", "train.batch_size"},
      {R"({"train": {"learning_rate": "fast"}})", "train.learning_rate"},
      {R"({"train": {"device": 0}})", "train.device"},
      {R"({"train": {"precision": 16}})", "train.precision"},
      {R"({"data": {"path": 5}})", "data.path"},
      {R"({"data": {"path": []}})", "data.path"},
      {R"({"data": {"path": ["a.txt", 5]}})", "data.path"},
      {R"({"data": {"glob": ["*.txt"]}})", "data.glob"},
      {R"({"data": {"val_seed": "x"}})", "data.val_seed"},
      {R"({"data": {"val_fraction": null}})", "data.val_fraction"},
      {R"({"model": {"cell": 1}})", "model.cell"},
      {R"({"model": {"hidden_size": [32]}})", "model.hidden_size"},
      {R"({"sample": {"prime": 123}})", "sample.prime"},
      {R"({"sample": {"top_k": 1.5}})", "sample.top_k"},
      {R"({"train": {"seed": 18446744073709551615}})", "train.seed"},  // would wrap to -1
      {R"({"sample": {"seed": 9223372036854775808}})", "sample.seed"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.json_text);
    const std::string message =
        thrown_message<UsageError>([&] { charrnn::config_from_json(json::parse(c.json_text), "t.json"); });
    EXPECT_CONTAINS(message, c.key);
    EXPECT_CONTAINS(message, "t.json");
  }
}

TEST(Config, BadCellInJsonNamesTheValue) {
  const std::string message = thrown_message<UsageError>(
      [] { charrnn::config_from_json(json::parse(R"({"model": {"cell": "lstn"}})"), "t.json"); });
  EXPECT_CONTAINS(message, "\"lstn\"");
  EXPECT_CONTAINS(message, "t.json");
}

TEST(Config, OverridesTakePrecedenceOverFile) {
  Config file = charrnn::config_from_json(
      json::parse(R"({"model": {"hidden_size": 32}, "train": {"steps": 10}})"), "f.json");
  const Config c = charrnn::apply_overrides(file, {"model.hidden_size=64", "train.learning_rate=0.5",
                                                   "model.cell=rnn", "train.steps=7", "train.steps=8"});
  EXPECT_EQ(c.model.hidden_size, 64);           // --set beats the file
  EXPECT_EQ(c.train.learning_rate, 0.5);        // numbers parsed
  EXPECT_EQ(c.model.cell, CellType::RNN);       // strings taken verbatim
  EXPECT_EQ(c.train.steps, 8);                  // the last --set wins
  EXPECT_EQ(c.model.embedding_dim, 64);         // untouched: default
  EXPECT_EQ(charrnn::apply_overrides(file, {}).train.steps, 10);  // untouched: file
}

TEST(Config, OverrideStringsAreVerbatim) {
  const Config c = charrnn::apply_overrides(Config{}, {"sample.prime=123"});
  EXPECT_EQ(c.sample.prime, "123");
  EXPECT_EQ(charrnn::apply_overrides(Config{}, {"sample.prime=a=b.c"}).sample.prime, "a=b.c");
  EXPECT_EQ(charrnn::apply_overrides(Config{}, {"sample.prime=\"x\""}).sample.prime, "\"x\"");
  EXPECT_EQ(charrnn::apply_overrides(Config{}, {"sample.prime="}).sample.prime, "");
  EXPECT_EQ(charrnn::apply_overrides(Config{}, {"data.path=my file.txt"}).data.path,
            std::vector<std::string>{"my file.txt"});
  // a list of paths is written as JSON; a comma inside a path stays in it
  EXPECT_EQ(charrnn::apply_overrides(Config{}, {R"(data.path=["a, b.txt","lyrics"])"}).data.path,
            (std::vector<std::string>{"a, b.txt", "lyrics"}));
  EXPECT_CONTAINS(thrown_message<UsageError>([] { charrnn::apply_overrides(Config{}, {"data.path=[a.txt"}); }),
                  "JSON list of paths");
}

TEST(Config, OverrideNumbersAreParsed) {
  const Config c = charrnn::apply_overrides(
      Config{}, {"train.batch_size=3", "sample.temperature=1.5", "sample.seed=-4", "data.val_fraction=0"});
  EXPECT_EQ(c.train.batch_size, 3);
  EXPECT_EQ(c.sample.sampling.temperature, 1.5);
  EXPECT_EQ(c.sample.seed, -4);
  EXPECT_EQ(c.data.val_fraction, 0.0);
  const std::string message =
      thrown_message<UsageError>([] { charrnn::apply_overrides(Config{}, {"train.steps=abc"}); });
  EXPECT_CONTAINS(message, "train.steps");
  EXPECT_CONTAINS(message, "abc");
}

TEST(Config, WeightAverageKeysAreSetAndCheckedByName) {
  const Config c = charrnn::apply_overrides(Config{}, {"train.ema_decay=0.999", "train.ema_start=0.8"});
  EXPECT_EQ(c.train.ema_decay, 0.999);
  EXPECT_EQ(c.train.ema_start, 0.8);
  EXPECT_NO_THROW(charrnn::validate(c));
  EXPECT_CONTAINS(thrown_message<UsageError>([] { charrnn::apply_overrides(Config{}, {"train.ema_decay=high"}); }),
                  "train.ema_decay must be a number");
  const Config one = charrnn::apply_overrides(Config{}, {"train.ema_decay=1"});
  EXPECT_EQ(thrown_message<UsageError>([&] { charrnn::validate(one, "--set"); }),
            "--set: train.ema_decay must be in [0, 1) (0 means no averaging); got 1");
  const Config late = charrnn::config_from_json(json::parse(R"({"train": {"ema_start": 2}})"), "e.json");
  EXPECT_EQ(thrown_message<UsageError>([&] { charrnn::validate(late, "e.json"); }),
            "e.json: train.ema_start must be in [0, 1] (the part of the run done when averaging starts); got 2");
}

TEST(Config, UnknownOverrideKeyIsRejected) {
  const std::string message =
      thrown_message<UsageError>([] { charrnn::apply_overrides(Config{}, {"model.hiden_size=3"}); });
  EXPECT_CONTAINS(message, "model.hiden_size");
  EXPECT_CONTAINS(thrown_message<UsageError>([] { charrnn::apply_overrides(Config{}, {"modle.hidden_size=3"}); }),
                  "modle.hidden_size");
}

TEST(Config, MalformedOverrideIsRejected) {
  for (const char* bad : {"model.hidden_size", "hidden_size=3", "a=b.c", "", "=", ".="}) {
    SCOPED_TRACE(bad);
    const std::string message = thrown_message<UsageError>([&] { charrnn::apply_overrides(Config{}, {bad}); });
    EXPECT_FALSE(message.empty());
  }
  EXPECT_CONTAINS(thrown_message<UsageError>([] { charrnn::apply_overrides(Config{}, {"hidden_size=3"}); }),
                  "section.key=value");
}

// Modes are words in the config and enums everywhere else: each word
// reads as its mode and back, and any other word names the key and the choices.
// The built-in defaults are the measured recipe; a stored config written
// before a key existed was trained with the old built-in value, which is
// what it reads as on top of stored_config_base().
TEST(Config, StoredConfigsLackingAKeyReadItAsTheOldBuiltInDefault) {
  const Config old = charrnn::config_from_json(json::parse(R"({"model": {"hidden_size": 8}})"), "checkpoint",
                                               charrnn::stored_config_base());
  EXPECT_EQ(old.model.hidden_size, 8);
  EXPECT_EQ(old.model.cell, CellType::LSTM);
  EXPECT_DOUBLE_EQ(old.train.learning_rate, 0.002);
  EXPECT_EQ(old.train.steps, 2000);
  EXPECT_EQ(old.train.batching, charrnn::Batching::Random);
  EXPECT_EQ(old.train.lr_schedule, charrnn::LrSchedule::Constant);
  EXPECT_EQ(old.train.warmup_steps, 0);
  EXPECT_EQ(old.train.min_lr, 0.0);
  EXPECT_EQ(old.train.weight_decay, 0.0);
  EXPECT_EQ(old.train.eval_every, 200);
  EXPECT_EQ(old.train.ema_decay, 0.0);
  // and a config file today gets the recipe for what it leaves out
  const Config today = charrnn::config_from_json(json::parse(R"({"model": {"hidden_size": 8}})"), "a.json");
  EXPECT_EQ(today.model.cell, CellType::GRU);
  EXPECT_EQ(today.train.batching, charrnn::Batching::Sequential);
  EXPECT_DOUBLE_EQ(today.train.weight_decay, 0.3);
}

TEST(Config, ModesAreParsedOnceFromTheirWords) {
  struct Case {
    const char* json_text;
    const char* message;
  };
  const Case bad[] = {
      {R"({"train": {"precision": "fp16"}})", "train.precision must be fp32 or bf16; got \"fp16\""},
      {R"({"data": {"val_split": "random"}})", "data.val_split must be tail or documents; got \"random\""},
      {R"({"train": {"batching": "shuffled"}})", "train.batching must be random or sequential; got \"shuffled\""},
      {R"({"train": {"lr_schedule": "exponential"}})",
       "train.lr_schedule must be constant, cosine or linear; got \"exponential\""},
  };
  for (const auto& c : bad) {
    SCOPED_TRACE(c.json_text);
    const std::string message =
        thrown_message<UsageError>([&] { charrnn::config_from_json(json::parse(c.json_text), "m.json"); });
    EXPECT_EQ(message, std::string("m.json: ") + c.message);
  }
  const Config c = charrnn::config_from_json(
      json::parse(R"({"data": {"val_split": "documents"}, "train": {"batching": "sequential", "lr_schedule": "linear",
                      "precision": "bf16"}})"),
      "m.json");
  EXPECT_EQ(c.data.val_split, charrnn::ValSplit::Documents);
  EXPECT_EQ(c.train.batching, charrnn::Batching::Sequential);
  EXPECT_EQ(c.train.lr_schedule, charrnn::LrSchedule::Linear);
  EXPECT_EQ(c.train.precision, charrnn::Precision::Bf16);
  const json back = charrnn::to_json(c);
  EXPECT_EQ(back["data"]["val_split"], "documents");
  EXPECT_EQ(back["train"]["batching"], "sequential");
  EXPECT_EQ(back["train"]["lr_schedule"], "linear");
  EXPECT_EQ(back["train"]["precision"], "bf16");
  EXPECT_EQ(charrnn::to_string(charrnn::LrSchedule::Cosine), "cosine");
  EXPECT_EQ(charrnn::parse_batching("random", "x"), charrnn::Batching::Random);
}

TEST(Config, ValidateRejectsBadValuesNamingTheKey) {
  struct Case {
    const char* key;
    void (*change)(Config&);
  };
  const Case cases[] = {
      {"model.embedding_dim", [](Config& c) { c.model.embedding_dim = 0; }},
      {"distributed.timeout_s", [](Config& c) { c.distributed.timeout_s = 0.5; }},
      {"distributed.timeout_s", [](Config& c) { c.distributed.timeout_s = std::nan(""); }},
      {"distributed.bucket_mb", [](Config& c) { c.distributed.bucket_mb = 0; }},
      {"model.hidden_size", [](Config& c) { c.model.hidden_size = 0; }},
      {"model.hidden_size", [](Config& c) { c.model.hidden_size = -5; }},
      {"model.num_layers", [](Config& c) { c.model.num_layers = 0; }},
      {"model.dropout", [](Config& c) { c.model.dropout = 1.0; }},
      {"model.dropout", [](Config& c) { c.model.dropout = -0.1; }},
      {"train.batch_size", [](Config& c) { c.train.batch_size = 0; }},
      {"train.seq_length", [](Config& c) { c.train.seq_length = -1; }},
      {"train.steps", [](Config& c) { c.train.steps = -1; }},
      {"train.eval_every", [](Config& c) { c.train.eval_every = 0; }},
      {"train.threads", [](Config& c) { c.train.threads = -1; }},
      {"train.learning_rate",
       [](Config& c) { c.train.learning_rate = std::numeric_limits<double>::quiet_NaN(); }},
      {"train.learning_rate",
       [](Config& c) { c.train.learning_rate = std::numeric_limits<double>::infinity(); }},
      {"train.learning_rate", [](Config& c) { c.train.learning_rate = 0; }},
      {"train.learning_rate", [](Config& c) { c.train.learning_rate = -0.01; }},
      {"train.max_seconds", [](Config& c) { c.train.max_seconds = -1; }},
      {"train.grad_clip", [](Config& c) { c.train.grad_clip = std::numeric_limits<double>::quiet_NaN(); }},
      {"train.device", [](Config& c) { c.train.device = "gpu"; }},
      {"train.device", [](Config& c) { c.train.device = ""; }},
      {"train.checkpoint", [](Config& c) { c.train.checkpoint = ""; }},
      {"data.path", [](Config& c) { c.data.path = {""}; }},
      {"data.path", [](Config& c) { c.data.path = {"a.txt", ""}; }},
      {"data.path", [](Config& c) { c.data.path = {}; }},
      {"sample.temperature", [](Config& c) { c.sample.sampling.temperature = -1; }},
      {"sample.temperature", [](Config& c) { c.sample.sampling.temperature = 2.5; }},
      {"sample.top_p", [](Config& c) { c.sample.sampling.top_p = 7; }},
      {"sample.top_k", [](Config& c) { c.sample.sampling.top_k = -1; }},
      {"data.val_fraction", [](Config& c) { c.data.val_fraction = 1.0; }},
      {"data.val_fraction", [](Config& c) { c.data.val_fraction = -0.1; }},
      {"data.val_fraction", [](Config& c) { c.data.val_fraction = std::numeric_limits<double>::quiet_NaN(); }},
      {"sample.length", [](Config& c) { c.sample.length = -1; }},
      {"sample.temperature", [](Config& c) { c.sample.sampling.temperature = std::numeric_limits<double>::infinity(); }},
      {"sample.top_p", [](Config& c) { c.sample.sampling.top_p = 0; }},
      {"model.forget_bias", [](Config& c) { c.model.forget_bias = std::numeric_limits<double>::infinity(); }},
      {"train.burn_in", [](Config& c) { c.train.burn_in = -1; }},
      {"train.burn_in", [](Config& c) { c.train.batching = charrnn::Batching::Sequential; c.train.burn_in = 16; }},
      {"train.warmup_steps", [](Config& c) { c.train.warmup_steps = -1; }},
      {"train.min_lr", [](Config& c) { c.train.min_lr = -1e-4; }},
      {"train.min_lr", [](Config& c) { c.train.min_lr = c.train.learning_rate * 2; }},
      {"train.weight_decay", [](Config& c) { c.train.weight_decay = -0.1; }},
      {"train.weight_decay", [](Config& c) { c.train.weight_decay = 1 / c.train.learning_rate; }},
      {"train.weight_decay", [](Config& c) { c.train.weight_decay = std::numeric_limits<double>::quiet_NaN(); }},
      {"train.ema_decay", [](Config& c) { c.train.ema_decay = 1.0; }},
      {"train.ema_decay", [](Config& c) { c.train.ema_decay = -0.1; }},
      {"train.ema_decay", [](Config& c) { c.train.ema_decay = std::numeric_limits<double>::quiet_NaN(); }},
      {"train.ema_start", [](Config& c) { c.train.ema_start = 1.5; }},
      {"train.ema_start", [](Config& c) { c.train.ema_start = -0.01; }},
      {"train.ema_start", [](Config& c) { c.train.ema_start = std::numeric_limits<double>::infinity(); }},
  };
  for (const auto& c : cases) {
    Config config;
    c.change(config);
    SCOPED_TRACE(charrnn::to_json(config).dump());
    const std::string message = thrown_message<UsageError>([&] { charrnn::validate(config, "v.json"); });
    EXPECT_CONTAINS(message, c.key);
    EXPECT_CONTAINS(message, "v.json");
  }
}

TEST(Config, ValidateAcceptsBoundaryValues) {
  Config c;
  c.data.val_fraction = 0;       // no validation
  c.train.steps = 0;
  c.train.grad_clip = 0;         // no clipping
  c.train.device = "cuda:1";     // checked when resolved, not here
  c.sample.sampling.temperature = 0;      // greedy
  c.sample.sampling.top_p = 1;            // keeps all
  c.sample.length = 0;
  EXPECT_NO_THROW(charrnn::validate(c));
  c.sample.sampling.temperature = 2;      // the top of the shared range
  c.sample.sampling.top_p = 1e-9;
  c.model.dropout = 0.999;
  c.model.forget_bias = -3;
  c.train.batching = charrnn::Batching::Sequential;
  c.train.lr_schedule = charrnn::LrSchedule::Linear;
  c.train.min_lr = c.train.learning_rate;  // a schedule that stays put
  c.train.weight_decay = 0.5 / c.train.learning_rate;
  EXPECT_NO_THROW(charrnn::validate(c));
  c.train.lr_schedule = charrnn::LrSchedule::Cosine;
  c.train.min_lr = 0;
  EXPECT_NO_THROW(charrnn::validate(c));
  c.train.ema_decay = 0.9999;  // the average's ends: [0, 1) and [0, 1]
  c.train.ema_start = 0;
  EXPECT_NO_THROW(charrnn::validate(c));
  c.train.ema_start = 1;
  EXPECT_NO_THROW(charrnn::validate(c));
  c.train.device = "cpu";
  EXPECT_NO_THROW(charrnn::validate(c));
  c.train.device = "cuda";
  EXPECT_NO_THROW(charrnn::validate(c));
}

TEST(Config, JsonRoundTrip) {
  for (const Config& original : {Config{}, everything_changed()}) {
    const json j = charrnn::to_json(original);
    const Config back = charrnn::config_from_json(json::parse(j.dump()), "roundtrip");
    expect_same_config(back, original);
    EXPECT_EQ(charrnn::to_json(back), j);
  }
  // every key to_json writes is one config_from_json reads, and vice versa
  const json j = charrnn::to_json(Config{});
  EXPECT_EQ(j.size(), 5u);
  for (const char* section : {"data", "model", "train", "sample", "distributed"}) EXPECT_TRUE(j.contains(section)) << section;
}

TEST(Config, LoadConfigFileErrors) {
  charrnn_test::TempDir dir;
  const std::string missing = dir.file("missing.json");
  std::string message = thrown_message<UsageError>([&] { charrnn::load_config_file(missing); });
  EXPECT_CONTAINS(message, missing);

  const std::string invalid = dir.file("invalid.json");
  charrnn_test::write_file(invalid, "{\"model\": {\"hidden_size\": 32,}\n");
  message = thrown_message<UsageError>([&] { charrnn::load_config_file(invalid); });
  EXPECT_CONTAINS(message, invalid);
  EXPECT_CONTAINS(message, "invalid JSON");

  const std::string empty = dir.file("empty.json");
  charrnn_test::write_file(empty, "");
  EXPECT_CONTAINS(thrown_message<UsageError>([&] { charrnn::load_config_file(empty); }), empty);

  const std::string unknown = dir.file("unknown.json");
  charrnn_test::write_file(unknown, R"({"train": {"stesp": 3}})");
  message = thrown_message<UsageError>([&] { charrnn::load_config_file(unknown); });
  EXPECT_CONTAINS(message, unknown);
  EXPECT_CONTAINS(message, "train.stesp");

  // a folder is not a config file
  EXPECT_THROW(charrnn::load_config_file(dir.path().string()), charrnn::Error);
}

TEST(Config, LoadConfigFileReadsOnTopOfBase) {
  charrnn_test::TempDir dir;
  const std::string path = dir.file("ok.json");
  charrnn_test::write_file(path, R"({"train": {"steps": 3}, "model": {"cell": "rnn"}})");
  Config base;
  base.model.hidden_size = 12;
  const Config c = charrnn::load_config_file(path, base);
  EXPECT_EQ(c.train.steps, 3);
  EXPECT_EQ(c.model.cell, CellType::RNN);
  EXPECT_EQ(c.model.hidden_size, 12);
}

TEST(Config, ShippedConfigsParseAndValidate) {
  const std::filesystem::path folder = std::filesystem::path(CHARRNN_SOURCE_DIR) / "configs";
  ASSERT_TRUE(std::filesystem::exists(folder / "tiny.json")) << folder;
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    EXPECT_NO_THROW({
      const Config c = charrnn::load_config_file(entry.path().string());
      charrnn::validate(c, entry.path().string());
    });
    ++checked;
  }
  EXPECT_GE(checked, 1);
}

}  // namespace
