// trainer: each cell must overfit a short repeated string within a fixed step
// budget, write its checkpoint, best checkpoint and metrics, and a run
// resumed from a checkpoint must end bit-identical to an uninterrupted one.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "charrnn/checkpoint.h"
#include "charrnn/config.h"
#include "charrnn/error.h"
#include "charrnn/evaluate.h"
#include "charrnn/generate.h"
#include "charrnn/lr_schedule.h"
#include "charrnn/run_log.h"
#include "charrnn/trainer.h"
#include "test_helpers.h"

namespace {

using charrnn::CellType;
using charrnn::Config;
using charrnn::Trainer;

using charrnn_test::kPattern;
using charrnn_test::small_config;

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// Weights, Adam's moments and every random stream (with the batch position
// and the carried state) of two trainers, byte for byte.
void expect_same_checkpoint(const Trainer& a, const Trainer& b) {
  const charrnn::Checkpoint end_a = a.make_checkpoint();
  const charrnn::Checkpoint end_b = b.make_checkpoint();
  EXPECT_TRUE(end_a.model_bytes == end_b.model_bytes);
  EXPECT_TRUE(end_a.training_model_bytes == end_b.training_model_bytes);  // the raw weights, under a weight average
  charrnn_test::expect_same_adam_state(end_a.optimizer_bytes, end_b.optimizer_bytes, a.vocab().size(),
                                       a.config().model);
  EXPECT_TRUE(end_a.rng_bytes == end_b.rng_bytes);
}

class ConvergenceTest : public ::testing::TestWithParam<CellType> {};

TEST_P(ConvergenceTest, OverfitsARepeatedString) {
  charrnn_test::TempDir dir;
  const Config config = small_config(dir, "run", GetParam(), 1, 0.0, 150, 50);
  Trainer trainer(config);
  const charrnn::TrainSummary summary = trainer.run();

  EXPECT_EQ(summary.steps_done, 150);
  EXPECT_FALSE(summary.interrupted);
  EXPECT_EQ(trainer.progress().step, 150);
  EXPECT_EQ(trainer.progress().chars_trained, 150 * 16 * 32);
  RecordProperty("final_train_loss", std::to_string(trainer.progress().last_train_loss));
  RecordProperty("best_val_loss", std::to_string(trainer.progress().best_val_loss));
  EXPECT_LT(trainer.progress().last_train_loss, 0.3);
  EXPECT_LT(trainer.progress().best_val_loss, 0.5);
  EXPECT_GT(trainer.progress().best_step, 0);

  const std::string checkpoint = config.train.checkpoint;
  ASSERT_TRUE(std::filesystem::exists(checkpoint));
  ASSERT_TRUE(std::filesystem::exists(charrnn::best_checkpoint_path(checkpoint)));
  ASSERT_TRUE(std::filesystem::exists(charrnn::metrics_path(checkpoint)));
  EXPECT_EQ(charrnn::best_checkpoint_path(checkpoint), dir.file("run/model.best.pt"));
  EXPECT_EQ(charrnn::metrics_path(checkpoint), dir.file("run/model.metrics.jsonl"));

  // one metrics line per evaluation, at steps 50, 100, 150
  const auto metrics = read_metrics(charrnn::metrics_path(checkpoint));
  ASSERT_EQ(metrics.size(), 3u);
  for (size_t i = 0; i < metrics.size(); ++i) {
    EXPECT_EQ(metrics[i].at("step").get<int64_t>(), 50 * static_cast<int64_t>(i + 1));
    EXPECT_TRUE(metrics[i].contains("val_loss"));
    EXPECT_TRUE(metrics[i].contains("sample"));
  }
  EXPECT_DOUBLE_EQ(metrics.back().at("train_loss").get<double>(), trainer.progress().last_train_loss);

  // the saved checkpoints describe this run
  const charrnn::Checkpoint latest = charrnn::load_checkpoint(checkpoint);
  EXPECT_EQ(latest.progress.step, 150);
  EXPECT_EQ(latest.vocab.chars(), trainer.vocab().chars());
  const charrnn::Checkpoint best = charrnn::load_checkpoint(charrnn::best_checkpoint_path(checkpoint));
  EXPECT_EQ(best.progress.step, trainer.progress().best_step);
  EXPECT_EQ(best.progress.best_val_loss, trainer.progress().best_val_loss);

  // the model has learnt the pattern: greedy decoding continues it
  charrnn::GenerateOptions greedy;
  greedy.prime = "hello world, ";
  greedy.length = static_cast<int64_t>(kPattern.size());
  greedy.sampling.temperature = 0;
  const auto texts = charrnn::generate(trainer.model(), trainer.vocab(), greedy, torch::kCPU);
  EXPECT_EQ(texts.at(0), "hello world, abc hello world, ");
}

// With two threads a CPU step runs each half of the batch on its own thread
// (Trainer::forward_backward_in_parts). It must take the step one pass
// takes, up to rounding, and take it the same way every time: the parts'
// gradients are summed in a fixed order, so resumes stay exact. With dropout
// the parts use the masks one pass would draw.
class BatchSplitTest : public ::testing::TestWithParam<std::tuple<CellType, double>> {};

TEST_P(BatchSplitTest, AcrossThreadsMatchesOnePassAndIsDeterministic) {
  const auto [cell, dropout] = GetParam();
  charrnn_test::TempDir dir;
  const auto weights_after_steps = [&, cell = cell, dropout = dropout](const std::string& name,
                                                                       const char* batch_threads) {
    if (batch_threads) ::setenv("CHARRNN_BATCH_THREADS", batch_threads, 1);
    else ::unsetenv("CHARRNN_BATCH_THREADS");
    Config config = small_config(dir, name, cell, 2, dropout, 5, 1000);
    config.train.threads = 2;
    Trainer trainer(config);
    std::vector<double> losses;
    for (int i = 0; i < 5; ++i) losses.push_back(trainer.train_step());
    ::unsetenv("CHARRNN_BATCH_THREADS");
    std::vector<torch::Tensor> weights;
    for (const auto& p : trainer.model()->parameters()) weights.push_back(p.detach().clone());
    return std::make_pair(losses, weights);
  };
  const auto one_pass = weights_after_steps("one", "1");
  const auto split = weights_after_steps("split", nullptr);
  const auto again = weights_after_steps("again", nullptr);
  ASSERT_EQ(split.second.size(), one_pass.second.size());
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_NEAR(split.first[i], one_pass.first[i], 1e-5) << "step " << i;
    EXPECT_EQ(split.first[i], again.first[i]) << "step " << i;
  }
  // The one pass runs its recurrent products on two BLAS threads (LibTorch),
  // the parts on one (PackedWeight's kernel): the sums are rounded in another
  // order. Adam divides each gradient by its own running size, so for a
  // gradient near zero that rounding moves the weight by a visible share of
  // the learning rate; 1e-4 is 1% of one step at this config's rate 0.01.
  for (size_t i = 0; i < split.second.size(); ++i) {
    EXPECT_TRUE(torch::allclose(split.second[i], one_pass.second[i], 1e-4, 1e-4))
        << "parameter " << i << ": max difference "
        << (split.second[i] - one_pass.second[i]).abs().max().item<double>();
    EXPECT_TRUE(torch::equal(split.second[i], again.second[i])) << "parameter " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(CellsAndDropout, BatchSplitTest,
                         ::testing::Combine(::testing::Values(CellType::RNN, CellType::GRU, CellType::LSTM),
                                            ::testing::Values(0.0, 0.3)),
                         [](const ::testing::TestParamInfo<std::tuple<CellType, double>>& info) {
                           return charrnn::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) > 0 ? "_dropout" : "");
                         });

INSTANTIATE_TEST_SUITE_P(AllCells, ConvergenceTest,
                         ::testing::Values(CellType::RNN, CellType::GRU, CellType::LSTM),
                         [](const ::testing::TestParamInfo<CellType>& info) { return charrnn::to_string(info.param); });

using ResumeParam = std::tuple<CellType, int64_t, double, int64_t>;  // cell, layers, dropout, threads
class ResumeTest : public ::testing::TestWithParam<ResumeParam> {};

TEST_P(ResumeTest, ResumedRunIsBitIdenticalToAStraightRun) {
  // named variables, not a structured binding: C++17 lets no lambda capture
  // those, which GCC accepts and Clang refuses
  const CellType cell = std::get<0>(GetParam());
  const int64_t layers = std::get<1>(GetParam());
  const double dropout = std::get<2>(GetParam());
  const int64_t threads = std::get<3>(GetParam());
  charrnn_test::TempDir dir;
  // two threads split each batch between them, dropout masks included
  const auto config = [&](const std::string& name, int64_t steps) {
    Config c = small_config(dir, name, cell, layers, dropout, steps, 20);
    c.train.threads = threads;
    return c;
  };

  Trainer straight(config("straight", 40));
  straight.run();

  Trainer first_half(config("half", 20));
  first_half.run();
  const std::string saved = dir.file("half/resume.pt");
  charrnn::save_checkpoint(saved, first_half.make_checkpoint());
  const charrnn::Checkpoint checkpoint = charrnn::load_checkpoint(saved);
  EXPECT_EQ(checkpoint.progress.step, 20);
  Config resumed_config = checkpoint.config;
  resumed_config.train.steps = 40;
  Trainer resumed(checkpoint, resumed_config);
  const charrnn::TrainSummary summary = resumed.run();
  EXPECT_EQ(summary.steps_done, 20);

  EXPECT_EQ(resumed.progress().step, 40);
  EXPECT_EQ(resumed.progress().chars_trained, straight.progress().chars_trained);
  EXPECT_EQ(resumed.progress().last_train_loss, straight.progress().last_train_loss);
  EXPECT_EQ(resumed.progress().best_val_loss, straight.progress().best_val_loss);
  const auto a = straight.model()->named_parameters();
  const auto b = resumed.model()->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : a) EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();
  // Adam's moments and the generators, too
  expect_same_checkpoint(straight, resumed);
}

TEST(Resume, ChangedModelShapeOrFinishedRunIsAUsageError) {
  charrnn_test::TempDir dir;
  Trainer trainer(small_config(dir, "run", CellType::GRU, 1, 0.0, 2, 2));
  trainer.run();
  const charrnn::Checkpoint checkpoint = trainer.make_checkpoint();
  Config bigger = checkpoint.config;
  bigger.train.steps = 4;
  bigger.model.hidden_size = 32;
  const std::string message =
      charrnn_test::thrown_message<charrnn::UsageError>([&] { Trainer(checkpoint, bigger); });
  EXPECT_CONTAINS(message, "model.hidden_size");
  const std::string done =
      charrnn_test::thrown_message<charrnn::UsageError>([&] { Trainer(checkpoint, checkpoint.config); });
  EXPECT_CONTAINS(done, "train.steps");
}

std::string resume_name(const ::testing::TestParamInfo<ResumeParam>& info) {
  const auto [cell, layers, dropout, threads] = info.param;
  return charrnn::to_string(cell) + "_" + std::to_string(layers) + "layers" + (dropout > 0 ? "_dropout" : "") +
         (threads > 1 ? "_split" : "");
}

// The recipe options (train.batching, burn_in, lr_schedule, warmup_steps,
// min_lr, weight_decay, model.forget_bias, ema_decay, ema_start) together,
// for a cell and a thread count: a run stopped mid-epoch and mid-schedule and
// resumed from its checkpoint ends bit-identical to one that never stopped,
// carried state, batch position, learning rate and weight average included.
enum class Recipe { Sequential, BurnIn };
using RecipeParam = std::tuple<CellType, Recipe, int64_t>;  // cell, recipe, threads

Config recipe_config(const charrnn_test::TempDir& dir, const std::string& name, CellType cell, Recipe recipe,
                     int64_t threads, int64_t steps) {
  Config c = small_config(dir, name, cell, 2, 0.2, steps, 1000);
  c.train.threads = threads;
  c.train.lr_schedule = recipe == Recipe::Sequential ? charrnn::LrSchedule::Cosine : charrnn::LrSchedule::Linear;
  c.train.warmup_steps = 5;
  c.train.min_lr = 0.001;
  c.train.weight_decay = 0.1;
  c.model.forget_bias = 1.0;
  // the weight average starts before the stop at step 13 (sequential: step
  // 9 of 30) or after it (burn-in: step 18), so a resume meets both cases
  c.train.ema_decay = 0.9;
  c.train.ema_start = recipe == Recipe::Sequential ? 0.3 : 0.6;
  if (recipe == Recipe::Sequential) c.train.batching = charrnn::Batching::Sequential;
  else c.train.burn_in = 24;
  return c;
}

class RecipeResumeTest : public ::testing::TestWithParam<RecipeParam> {};

TEST_P(RecipeResumeTest, ResumedMidEpochAndMidScheduleIsBitIdentical) {
  const CellType cell = std::get<0>(GetParam());
  const Recipe recipe = std::get<1>(GetParam());
  const int64_t threads = std::get<2>(GetParam());
  charrnn_test::TempDir dir;
  // 2700 training characters in 16 tracks of 32: 5 batches an epoch, so
  // step 13 is mid-epoch, after the warm-up, early in the decay
  const int64_t total = 30, stop = 13;
  Trainer straight(recipe_config(dir, "straight", cell, recipe, threads, total));
  std::vector<double> straight_lrs, straight_losses;
  for (int64_t i = 0; i < total; ++i) {
    straight_losses.push_back(straight.train_step());
    straight_lrs.push_back(straight.learning_rate());
  }
  Trainer first(recipe_config(dir, "first", cell, recipe, threads, total));
  for (int64_t i = 0; i < stop; ++i) first.train_step();
  const std::string saved = dir.file("first/resume.pt");
  charrnn::save_checkpoint(saved, first.make_checkpoint());
  const charrnn::Checkpoint checkpoint = charrnn::load_checkpoint(saved);
  Trainer resumed(checkpoint, checkpoint.config);
  for (int64_t i = stop; i < total; ++i) {
    EXPECT_EQ(resumed.train_step(), straight_losses[static_cast<size_t>(i)]) << "step " << i;
    EXPECT_EQ(resumed.learning_rate(), straight_lrs[static_cast<size_t>(i)]) << "step " << i;
  }
  // the generators' bytes hold the batch position and the carried state too
  expect_same_checkpoint(straight, resumed);
  ASSERT_TRUE(resumed.weight_average().started());
  for (size_t i = 0; i < resumed.weight_average().tensors().size(); ++i)
    EXPECT_TRUE(torch::equal(straight.weight_average().tensors()[i], resumed.weight_average().tensors()[i])) << i;
  // the schedule went where it was asked to: warm-up, then down towards min_lr
  EXPECT_LT(straight_lrs[0], straight_lrs[4]);
  EXPECT_GT(straight_lrs[5], straight_lrs[total - 1]);
  EXPECT_GT(straight_lrs[total - 1], 0.001);
}

INSTANTIATE_TEST_SUITE_P(Recipes, RecipeResumeTest,
                         ::testing::Values(RecipeParam{CellType::LSTM, Recipe::Sequential, 1},
                                           RecipeParam{CellType::LSTM, Recipe::Sequential, 2},
                                           RecipeParam{CellType::GRU, Recipe::Sequential, 2},
                                           RecipeParam{CellType::RNN, Recipe::Sequential, 1},
                                           RecipeParam{CellType::LSTM, Recipe::BurnIn, 2},
                                           RecipeParam{CellType::GRU, Recipe::BurnIn, 1}),
                         [](const ::testing::TestParamInfo<RecipeParam>& info) {
                           return charrnn::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) == Recipe::Sequential ? "_sequential" : "_burn_in") +
                                  (std::get<2>(info.param) > 1 ? "_split" : "");
                         });

// Sequential batching and burn-in through the batch split: the parts take
// the step one pass takes (up to rounding), every time the same way.
class RecipeBatchSplitTest : public ::testing::TestWithParam<std::tuple<CellType, Recipe>> {};

TEST_P(RecipeBatchSplitTest, MatchesOnePassAndIsDeterministic) {
  const CellType cell = std::get<0>(GetParam());
  const Recipe recipe = std::get<1>(GetParam());
  charrnn_test::TempDir dir;
  const auto run = [&](const std::string& name, const char* batch_threads) {
    ::setenv("CHARRNN_BATCH_THREADS", batch_threads, 1);
    Trainer trainer(recipe_config(dir, name, cell, recipe, 2, 30));
    std::vector<double> losses;
    for (int i = 0; i < 8; ++i) losses.push_back(trainer.train_step());  // across an epoch boundary
    ::unsetenv("CHARRNN_BATCH_THREADS");
    return std::make_pair(losses, trainer.make_checkpoint().model_bytes);
  };
  const auto one_pass = run("one", "1"), split = run("split", "2"), again = run("again", "2");
  for (size_t i = 0; i < one_pass.first.size(); ++i) {
    EXPECT_NEAR(split.first[i], one_pass.first[i], 1e-4) << "step " << i;
    EXPECT_EQ(split.first[i], again.first[i]) << "step " << i;
  }
  EXPECT_TRUE(split.second == again.second);
}

INSTANTIATE_TEST_SUITE_P(Recipes, RecipeBatchSplitTest,
                         ::testing::Values(std::make_tuple(CellType::LSTM, Recipe::Sequential),
                                           std::make_tuple(CellType::GRU, Recipe::Sequential),
                                           std::make_tuple(CellType::LSTM, Recipe::BurnIn)),
                         [](const ::testing::TestParamInfo<std::tuple<CellType, Recipe>>& info) {
                           return charrnn::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) == Recipe::Sequential ? "_sequential" : "_burn_in");
                         });

TEST(SequentialBatching, CarriesTheStateAndLearnsTheText) {
  charrnn_test::TempDir dir;
  Config config = small_config(dir, "run", CellType::LSTM, 1, 0.0, 150, 50);
  config.train.batching = charrnn::Batching::Sequential;
  config.train.lr_schedule = charrnn::LrSchedule::Cosine;
  config.train.min_lr = 0.001;
  Trainer trainer(config);
  trainer.run();
  EXPECT_LT(trainer.progress().last_train_loss, 0.3);
  EXPECT_LT(trainer.progress().best_val_loss, 0.5);
  const auto metrics = read_metrics(charrnn::metrics_path(config.train.checkpoint));
  ASSERT_EQ(metrics.size(), 3u);
  // the last step (149 of 150 done) runs a hair above min_lr, on its way down
  EXPECT_DOUBLE_EQ(metrics.back().at("lr").get<double>(), charrnn::scheduled_learning_rate(config.train, 149, 0));
  EXPECT_NEAR(metrics.back().at("lr").get<double>(), 0.001, 1e-6);
  EXPECT_GT(metrics[1].at("lr").get<double>(), metrics[2].at("lr").get<double>());
}

TEST(SequentialBatching, TooShortATextForTheTracksIsAUsageError) {
  charrnn_test::TempDir dir;
  Config config = small_config(dir, "run", CellType::GRU, 1, 0.0, 10, 10);
  config.train.batching = charrnn::Batching::Sequential;
  config.train.batch_size = 100;  // 100 tracks of 32 characters need 3201; there are 2700
  const std::string message = charrnn_test::thrown_message<charrnn::UsageError>([&] { Trainer trainer(config); });
  EXPECT_CONTAINS(message, "train.batching=sequential");
  EXPECT_CONTAINS(message, "train.batch_size");
}

// AdamW's decoupled decay: after the first step, a matrix differs from the
// same step without decay by exactly lr * weight_decay * its old value, and
// a bias not at all (Adam's update does not depend on the decay).
TEST(WeightDecay, IsDecoupledAndSparesBiases) {
  charrnn_test::TempDir dir;
  const auto after_one_step = [&](const std::string& name, double weight_decay) {
    Config c = small_config(dir, name, CellType::LSTM, 1, 0.0, 10, 10);
    c.train.weight_decay = weight_decay;
    c.train.threads = 1;
    Trainer trainer(c);
    std::map<std::string, torch::Tensor> before, after;
    for (const auto& p : trainer.model()->named_parameters()) before[p.key()] = p.value().detach().clone();
    trainer.train_step();
    for (const auto& p : trainer.model()->named_parameters()) after[p.key()] = p.value().detach().clone();
    return std::make_pair(before, after);
  };
  const auto plain = after_one_step("plain", 0), decayed = after_one_step("decayed", 0.5);
  int matrices = 0;
  for (const auto& [key, value] : plain.second) {
    const torch::Tensor& old = plain.first.at(key);
    const torch::Tensor expected = old.dim() >= 2 ? value - 0.01 * 0.5 * old : value;
    // relative too: the embedding's N(0, 1) weights round at a few 1e-7
    EXPECT_TRUE(torch::allclose(decayed.second.at(key), expected, 1e-6, 1e-7))
        << key << ": max difference " << (decayed.second.at(key) - expected).abs().max().item<double>();
    matrices += old.dim() >= 2;
  }
  EXPECT_EQ(matrices, 4);  // embedding, weight_ih, weight_hh, head
}

INSTANTIATE_TEST_SUITE_P(Cells, ResumeTest,
                         ::testing::Values(ResumeParam{CellType::RNN, 1, 0.0, 1}, ResumeParam{CellType::GRU, 1, 0.0, 1},
                                           ResumeParam{CellType::LSTM, 1, 0.0, 1},
                                           ResumeParam{CellType::LSTM, 2, 0.2, 1},
                                           ResumeParam{CellType::GRU, 2, 0.2, 2},
                                           ResumeParam{CellType::LSTM, 2, 0.2, 2}),
                         resume_name);

// The weight average (train.ema_decay, weight_average.h) in the trainer.
Config averaged_config(const charrnn_test::TempDir& dir, const std::string& name, int64_t steps, int64_t eval_every,
                       double start) {
  Config c = small_config(dir, name, CellType::GRU, 2, 0.2, steps, eval_every);
  c.train.ema_decay = 0.9;
  c.train.ema_start = start;
  return c;
}

std::vector<torch::Tensor> parameters_of(const charrnn::CharRNN& model) {
  std::vector<torch::Tensor> out;
  for (const torch::Tensor& p : model->parameters()) out.push_back(p.detach().clone());
  return out;
}

bool all_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!torch::equal(a[i], b[i])) return false;
  return true;
}

TEST(WeightAverage, StartsAtEmaStartAsACopyThenFollowsTheWeights) {
  charrnn_test::TempDir dir;
  Trainer trainer(averaged_config(dir, "run", 20, 20, 0.5));
  for (int i = 0; i < 9; ++i) trainer.train_step();
  EXPECT_FALSE(trainer.weight_average().started()) << "progress 9 / 20 is before train.ema_start 0.5";
  trainer.train_step();
  ASSERT_TRUE(trainer.weight_average().started());
  const std::vector<torch::Tensor> at_start = parameters_of(trainer.model());
  EXPECT_TRUE(all_equal(trainer.weight_average().tensors(), at_start));
  trainer.train_step();
  const std::vector<torch::Tensor> now = parameters_of(trainer.model());
  EXPECT_FALSE(all_equal(trainer.weight_average().tensors(), now));
  for (size_t i = 0; i < now.size(); ++i)
    EXPECT_TRUE(torch::allclose(trainer.weight_average().tensors()[i], 0.9 * at_start[i] + 0.1 * now[i], 1e-5, 1e-7))
        << i;
}

TEST(WeightAverage, ValidationTheBestCheckpointAndTheSamplesAreTheAverages) {
  charrnn_test::TempDir dir;
  // validation at steps 10 and 20, the average from step 5
  const Config config = averaged_config(dir, "run", 20, 10, 0.25);
  Trainer trainer(config);
  trainer.run();
  const charrnn::Checkpoint latest = charrnn::load_checkpoint(config.train.checkpoint);
  ASSERT_FALSE(latest.training_model_bytes.empty());
  charrnn::CharRNN served = charrnn::restore_model(latest, torch::kCPU);
  charrnn::CharRNN raw = charrnn::restore_training_model(latest, torch::kCPU);
  // what generate, eval, export and serve load is the average; resume's weights are the raw ones
  EXPECT_TRUE(all_equal(parameters_of(served), trainer.weight_average().tensors()));
  EXPECT_TRUE(all_equal(parameters_of(raw), parameters_of(trainer.model())));
  EXPECT_FALSE(all_equal(parameters_of(served), parameters_of(raw)));

  // the metrics judged the average: its loss on the held-out text, not the raw weights'
  const auto metrics = read_metrics(charrnn::metrics_path(config.train.checkpoint));
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_TRUE(metrics[0].value("ema", false)) << metrics[0];
  const int64_t streams = config.train.batch_size, window = config.train.seq_length;
  const double served_loss = charrnn::evaluate(served, trainer.validation_ids(), streams, window, torch::kCPU).loss;
  const double raw_loss = charrnn::evaluate(raw, trainer.validation_ids(), streams, window, torch::kCPU).loss;
  EXPECT_NEAR(metrics.back().at("val_loss").get<double>(), served_loss, 1e-9);
  EXPECT_NE(served_loss, raw_loss);
  // and so did the choice of the best checkpoint, which holds the average of its step
  const charrnn::Checkpoint best = charrnn::load_checkpoint(charrnn::best_checkpoint_path(config.train.checkpoint));
  EXPECT_FALSE(best.training_model_bytes.empty());
  if (best.progress.step == 20) EXPECT_TRUE(best.model_bytes == latest.model_bytes);
  EXPECT_EQ(trainer.progress().best_val_loss,
            std::min(metrics[0].at("val_loss").get<double>(), metrics[1].at("val_loss").get<double>()));
  // the sample is the average's
  charrnn::GenerateOptions options(config.sample);
  options.length = std::min<int64_t>(config.sample.length, 200);
  options.seed = std::max<int64_t>(config.sample.seed, 0);
  EXPECT_EQ(metrics.back().at("sample").get<std::string>(),
            charrnn::generate(served, trainer.vocab(), options, torch::kCPU).front());
}

// N steps in one run and N/2, a checkpoint, a resume and N/2 more end with
// the same raw weights, average and Adam state, bit for bit. The resumed
// run validates every 5 steps (averaged weights swapped in and out, samples
// drawn) and the straight one only at its end: validation leaves training
// as it was. Two threads and dropout: the batch split and the dropout
// stream must not notice either.
TEST(WeightAverage, ResumedRunWithValidationMidRunIsBitIdentical) {
  charrnn_test::TempDir dir;
  const auto config = [&](const std::string& name, int64_t steps, int64_t eval_every, double start) {
    Config c = averaged_config(dir, name, steps, eval_every, start);
    c.train.threads = 2;
    return c;
  };
  Trainer straight(config("straight", 40, 40, 0.25));  // the average from step 10
  straight.run();
  Trainer first_half(config("half", 20, 5, 0.5));  // from step 10 of its 20 too
  first_half.run();
  const charrnn::Checkpoint checkpoint = charrnn::load_checkpoint(dir.file("half/model.pt"));
  ASSERT_EQ(checkpoint.progress.step, 20);
  ASSERT_FALSE(checkpoint.training_model_bytes.empty());
  Config resumed_config = checkpoint.config;
  resumed_config.train.steps = 40;
  resumed_config.train.ema_start = 0.25;
  Trainer resumed(checkpoint, resumed_config);
  ASSERT_TRUE(resumed.weight_average().started());
  resumed.run();
  EXPECT_TRUE(all_equal(parameters_of(straight.model()), parameters_of(resumed.model())));
  EXPECT_TRUE(all_equal(straight.weight_average().tensors(), resumed.weight_average().tensors()));
  EXPECT_EQ(resumed.progress().last_train_loss, straight.progress().last_train_loss);
  expect_same_checkpoint(straight, resumed);
}

// A checkpoint without an average (written with averaging off, or by a
// version before it) resumes with one: it starts at the next step once the
// progress is past train.ema_start. And a resume that turns averaging off
// continues the raw weights, not the average.
TEST(WeightAverage, ResumeStartsOrDropsTheAverageAsTheConfigSays) {
  charrnn_test::TempDir dir;
  Config plain = small_config(dir, "plain", CellType::GRU, 1, 0.0, 10, 10);
  Trainer(plain).run();
  const charrnn::Checkpoint unaveraged = charrnn::load_checkpoint(plain.train.checkpoint);
  EXPECT_TRUE(unaveraged.training_model_bytes.empty());
  Config averaging = unaveraged.config;
  averaging.train.steps = 20;
  averaging.train.ema_decay = 0.9;
  averaging.train.ema_start = 0.25;
  Trainer resumed(unaveraged, averaging);
  EXPECT_FALSE(resumed.weight_average().started());
  resumed.train_step();
  ASSERT_TRUE(resumed.weight_average().started());
  EXPECT_TRUE(all_equal(resumed.weight_average().tensors(), parameters_of(resumed.model())));

  resumed.train_step();
  const charrnn::Checkpoint averaged = resumed.make_checkpoint();
  ASSERT_FALSE(averaged.training_model_bytes.empty());
  Config off = averaged.config;
  off.train.ema_decay = 0;
  Trainer unaveraging(averaged, off);
  EXPECT_FALSE(unaveraging.weight_average().started());
  EXPECT_TRUE(all_equal(parameters_of(unaveraging.model()), parameters_of(resumed.model())));
  EXPECT_TRUE(unaveraging.make_checkpoint().training_model_bytes.empty());
}

TEST(Trainer, EstimateTrainingBytesGrowsWithTheModel) {
  charrnn::Config small;
  small.model.hidden_size = 32;
  Config big = small;
  big.model.hidden_size = 64;
  const double a = charrnn::estimate_training_bytes(small, 50);
  const double b = charrnn::estimate_training_bytes(big, 50);
  EXPECT_GT(a, 0);
  EXPECT_GT(b, a);
  // at least the fp32 weights: 4 bytes per parameter
  EXPECT_GT(a, 4.0 * 50 * 64);
}

}  // namespace
