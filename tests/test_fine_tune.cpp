// fine_tune and Trainer's --init-from: the base model's predictions survive
// the vocabulary's extension exactly, the new characters start unlikely and
// are learnt, and the lineage is recorded.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/checkpoint.h"
#include "charrnn/error.h"
#include "charrnn/fine_tune.h"
#include "charrnn/generate.h"
#include "charrnn/trainer.h"
#include "charrnn/utf8.h"
#include "test_helpers.h"

namespace {

using charrnn::CellType;
using charrnn::CharRNN;
using charrnn::Config;
using charrnn::Trainer;
using charrnn::Vocab;
using charrnn_test::TempDir;

Vocab vocab_of(const std::u32string& chars) { return Vocab(std::vector<char32_t>(chars.begin(), chars.end())); }

class ExtendVocabulary : public ::testing::TestWithParam<CellType> {};

TEST_P(ExtendVocabulary, OldCharactersPredictionsAreUnchangedAndNewOnesStartUnlikely) {
  torch::manual_seed(3);
  charrnn::ModelOptions options;
  options.cell = GetParam();
  options.embedding_dim = 8;
  options.hidden_size = 24;
  options.num_layers = 2;
  const Vocab base = vocab_of(U"acegz");
  const Vocab extended = vocab_of(U"abcdefgz\u00fc");  // new characters between, before and after old ones
  CharRNN model(base.size(), options);
  model->eval();
  CharRNN grown = charrnn::extend_vocabulary(model, base, extended, options);
  grown->eval();
  ASSERT_EQ(grown->vocab_size(), extended.size());

  const std::u32string old_text = U"cagezzaceg";
  const auto ids = [&](const Vocab& v) { return torch::tensor(v.encode(old_text, "test"), torch::kLong).unsqueeze(0); };
  torch::NoGradGuard no_grad;
  const auto [before, state_before] = model->forward(ids(base));    // (1, T, 5)
  const auto [after, state_after] = grown->forward(ids(extended));  // (1, T, 9)
  // everything up to the output layer is the same computation, bit for bit
  EXPECT_TRUE(torch::equal(state_after.h, state_before.h));
  if (state_before.c.defined()) EXPECT_TRUE(torch::equal(state_after.c, state_before.c));
  // the output layer's old rows are the same weights, in a product of
  // another shape, which BLAS may sum in another order: equal to rounding
  std::vector<int64_t> old_rows;
  for (char32_t c : base.chars()) old_rows.push_back(extended.id_or_negative(c));
  const torch::Tensor old_logits = after.index_select(2, torch::tensor(old_rows, torch::kLong));
  EXPECT_TRUE(torch::allclose(old_logits, before, 1e-6, 1e-6))
      << "max difference " << (old_logits - before).abs().max().item<double>();
  const torch::Tensor probabilities = torch::softmax(after, -1);
  for (char32_t c : std::u32string(U"bdf\u00fc"))
    EXPECT_LT(probabilities.select(2, extended.id_or_negative(c)).max().item<double>(), 1e-3)
        << charrnn::describe_char(c);
  // the same vocabulary is a plain copy
  CharRNN copy = charrnn::extend_vocabulary(model, base, base, options);
  copy->eval();
  EXPECT_TRUE(torch::equal(copy->forward(ids(base)).first, before));
  EXPECT_THROW(charrnn::extend_vocabulary(model, base, vocab_of(U"abc"), options), charrnn::Error);
}

INSTANTIATE_TEST_SUITE_P(AllCells, ExtendVocabulary, ::testing::Values(CellType::RNN, CellType::GRU, CellType::LSTM),
                         [](const ::testing::TestParamInfo<CellType>& info) { return charrnn::to_string(info.param); });

// A base trained on the pattern, then a corpus that brings new characters.
struct FineTuneSetup {
  TempDir dir;
  charrnn::Checkpoint base;
  std::string base_path;
  Config tuned;
};

void prepare(FineTuneSetup& s, int64_t tuned_steps) {
  Trainer base(charrnn_test::small_config(s.dir, "base", CellType::LSTM, 1, 0.0, 60, 30));
  base.run();
  s.base_path = s.dir.file("base/model.pt");
  s.base = charrnn::load_checkpoint(s.base_path);
  std::string text;
  while (text.size() < 3000) text += "hello w\xC3\xB6rld, \xC3\xBC" "ber abc ";  // ö and ü are new
  charrnn_test::write_file(s.dir.file("tuned.txt"), text);
  s.tuned = s.base.config;
  s.tuned.data.path = {s.dir.file("tuned.txt")};
  s.tuned.train.checkpoint = s.dir.file("tuned/model.pt");
  s.tuned.train.steps = tuned_steps;
  s.tuned.train.eval_every = 20;
}

TEST(FineTune, StartsFromTheBaseAtStepZeroLearnsTheNewCharactersAndGeneratesWithThem) {
  FineTuneSetup s;
  prepare(s, 80);
  Trainer tuned(s.base, s.base_path, s.tuned);
  EXPECT_EQ(tuned.progress().step, 0);
  EXPECT_EQ(tuned.vocab().size(), s.base.vocab.size() + 2);
  ASSERT_EQ(tuned.lineage().size(), 1u);
  EXPECT_EQ(tuned.lineage()[0].checkpoint, s.base_path);
  EXPECT_EQ(tuned.lineage()[0].step, 60);
  EXPECT_EQ(tuned.lineage()[0].added_chars, "\xC3\xB6\xC3\xBC");
  EXPECT_EQ(tuned.lineage()[0].data, s.base.config.data.path.front());

  std::vector<double> losses;
  for (int i = 0; i < 80; ++i) losses.push_back(tuned.train_step());
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += losses[static_cast<size_t>(i)], last += losses[losses.size() - 1 - i];
  EXPECT_LT(last, first * 0.5) << "the loss falls: " << first / 5 << " -> " << last / 5;

  charrnn::GenerateOptions greedy;
  greedy.prime = "hello w\xC3\xB6";
  greedy.length = 12;
  greedy.sampling.temperature = 0;
  const std::vector<std::string> text = charrnn::generate(tuned.model(), tuned.vocab(), greedy, torch::kCPU);
  ASSERT_EQ(text.size(), 1u);
  EXPECT_EQ(text[0].rfind("hello w\xC3\xB6", 0), 0u);
  EXPECT_NE(text[0].find("rld"), std::string::npos) << text[0];

  // the lineage survives a checkpoint, and a fine-tune of a fine-tune adds to it
  charrnn::save_checkpoint(s.tuned.train.checkpoint, tuned.make_checkpoint());
  const charrnn::Checkpoint saved = charrnn::load_checkpoint(s.tuned.train.checkpoint);
  ASSERT_EQ(saved.lineage.size(), 1u);
  EXPECT_EQ(saved.lineage[0].added_chars, "\xC3\xB6\xC3\xBC");
  EXPECT_EQ(saved.lineage[0].best_val_loss, s.base.progress.best_val_loss);
  Config again = s.tuned;
  again.train.checkpoint = s.dir.file("again/model.pt");
  Trainer second(saved, s.tuned.train.checkpoint, again);
  ASSERT_EQ(second.lineage().size(), 2u);
  EXPECT_EQ(second.lineage()[0].added_chars, "");
  EXPECT_EQ(second.lineage()[1].checkpoint, s.base_path);
}

TEST(FineTune, AnotherModelShapeOrOverwritingTheBaseIsAUsageError) {
  FineTuneSetup s;
  prepare(s, 10);
  Config bigger = s.tuned;
  bigger.model.hidden_size = 32;
  const std::string message =
      charrnn_test::thrown_message<charrnn::UsageError>([&] { Trainer(s.base, s.base_path, bigger); });
  EXPECT_CONTAINS(message, "--init-from");
  EXPECT_CONTAINS(message, "model.hidden_size");
  Config other_dropout = s.tuned;
  other_dropout.model.dropout = 0.3;  // a training choice, not a shape
  EXPECT_NO_THROW(Trainer(s.base, s.base_path, other_dropout));
  Config overwrite = s.tuned;
  overwrite.train.checkpoint = s.base_path;
  EXPECT_CONTAINS(charrnn_test::thrown_message<charrnn::UsageError>([&] { Trainer(s.base, s.base_path, overwrite); }),
                  "overwrite");
}

// A base trained with a weight average serves the average; a fine-tune
// starts from those weights, and its own average starts afresh.
TEST(FineTune, StartsFromTheBasesAveragedWeightsWithAFreshAverage) {
  TempDir dir;
  Config base_config = charrnn_test::small_config(dir, "base", CellType::GRU, 1, 0.0, 20, 20);
  base_config.train.ema_decay = 0.9;
  base_config.train.ema_start = 0.25;
  Trainer(base_config).run();
  const charrnn::Checkpoint base = charrnn::load_checkpoint(base_config.train.checkpoint);
  ASSERT_FALSE(base.training_model_bytes.empty());
  Config tuned = base.config;
  tuned.train.checkpoint = dir.file("tuned/model.pt");
  Trainer fine(base, base_config.train.checkpoint, tuned);
  EXPECT_FALSE(fine.weight_average().started());
  const auto served = charrnn::restore_model(base, torch::kCPU)->named_parameters();
  const auto raw = charrnn::restore_training_model(base, torch::kCPU)->named_parameters();
  bool differs_from_raw = false;
  for (const auto& p : fine.model()->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), served[p.key()])) << p.key();
    differs_from_raw = differs_from_raw || !torch::equal(p.value(), raw[p.key()]);
  }
  EXPECT_TRUE(differs_from_raw) << "the base's average and its raw weights should differ";
  // the fine-tune's own average begins at its own train.ema_start: step 5 of 20
  for (int i = 0; i < 4; ++i) fine.train_step();
  EXPECT_FALSE(fine.weight_average().started());
  fine.train_step();
  ASSERT_TRUE(fine.weight_average().started());
  const auto parameters = fine.model()->parameters();
  for (size_t i = 0; i < parameters.size(); ++i)
    EXPECT_TRUE(torch::equal(parameters[i], fine.weight_average().tensors()[i])) << i;
}

TEST(FineTuneResume, AResumedFineTuneIsBitIdenticalToAStraightOne) {
  FineTuneSetup s;
  prepare(s, 40);
  Trainer straight(s.base, s.base_path, s.tuned);
  straight.run();
  Config half = s.tuned;
  half.train.steps = 20;
  half.train.checkpoint = s.dir.file("half/model.pt");
  Trainer first_half(s.base, s.base_path, half);
  first_half.run();
  const charrnn::Checkpoint checkpoint = charrnn::load_checkpoint(half.train.checkpoint);
  ASSERT_EQ(checkpoint.progress.step, 20);
  Config resumed_config = checkpoint.config;
  resumed_config.train.steps = 40;
  Trainer resumed(checkpoint, resumed_config);
  resumed.run();
  EXPECT_EQ(resumed.lineage().size(), 1u);
  EXPECT_EQ(resumed.progress().last_train_loss, straight.progress().last_train_loss);
  EXPECT_EQ(resumed.progress().best_val_loss, straight.progress().best_val_loss);
  const charrnn::Checkpoint a = straight.make_checkpoint(), b = resumed.make_checkpoint();
  EXPECT_TRUE(a.model_bytes == b.model_bytes);
  EXPECT_TRUE(a.rng_bytes == b.rng_bytes);
  EXPECT_EQ(a.vocab.chars(), b.vocab.chars());
}

}  // namespace
