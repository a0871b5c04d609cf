// The TorchScript export against the C++ model: same logits (to the bit, on
// the same LibTorch), same greedy and sampled text, and a clean error for
// files that are not charrnn exports.
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "charrnn/char_fold.h"
#include "charrnn/checkpoint.h"
#include "charrnn/error.h"
#include "charrnn/export.h"
#include "charrnn/generate.h"
#include "charrnn/utf8.h"
#include "test_helpers.h"

namespace {

using charrnn::CellType;

// A small model with random weights over a vocabulary with multi-byte characters.
charrnn::Checkpoint make_checkpoint(CellType cell) {
  charrnn::Checkpoint c = charrnn_test::random_checkpoint({cell, 2, 8, 16, "ROMEO: é€😀 abcdefgh\nxyz", 3.0, 3});
  c.progress.step = 17;
  return c;
}

class Export : public ::testing::TestWithParam<CellType> {
 protected:
  void SetUp() override {
    checkpoint_ = make_checkpoint(GetParam());
    path_ = dir_.file("model.ts.pt");
    charrnn::export_torchscript(checkpoint_, path_);
    module_ = torch::jit::load(path_);
    model_ = charrnn::restore_model(checkpoint_, torch::kCPU);
    model_->eval();
  }

  std::string cpp_generate(const std::string& prime, int64_t length, double temperature, int64_t top_k,
                           double top_p, uint64_t seed) {
    charrnn::GenerateOptions o;
    o.prime = prime;
    o.length = length;
    o.sampling = {temperature, top_k, top_p};
    o.seed = seed;
    return charrnn::generate(model_, checkpoint_.vocab, o, torch::kCPU).front();
  }
  std::string script_generate(const std::string& prime, int64_t length, double temperature, int64_t top_k,
                              double top_p, int64_t seed) {
    return module_.run_method("generate", prime, length, temperature, top_k, top_p, seed).toStringRef();
  }

  charrnn_test::TempDir dir_;
  charrnn::Checkpoint checkpoint_;
  std::string path_;
  torch::jit::Module module_;
  charrnn::CharRNN model_{nullptr};
};

TEST_P(Export, ForwardMatchesTheCppModel) {
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::randint(0, checkpoint_.vocab.size(), {3, 11}, torch::kLong);
  const auto [cpp_logits, cpp_state] = model_->forward(ids);
  const auto out = module_.forward({ids}).toTuple();
  const torch::Tensor script_logits = out->elements()[0].toTensor();
  EXPECT_TRUE(torch::allclose(script_logits, cpp_logits, /*rtol=*/0, /*atol=*/1e-5));
  const auto state = out->elements()[1].toTensorList();
  ASSERT_EQ(state.size(), GetParam() == CellType::LSTM ? 2u : 1u);
  EXPECT_TRUE(torch::allclose(state.get(0), cpp_state.h, 0, 1e-5));
  if (GetParam() == CellType::LSTM) EXPECT_TRUE(torch::allclose(state.get(1), cpp_state.c, 0, 1e-5));

  // carrying the state through a second call continues the sequence
  const auto first = module_.forward({ids.narrow(1, 0, 5)}).toTuple();
  const auto second = module_.forward({ids.narrow(1, 5, 6), first->elements()[1]}).toTuple();
  EXPECT_TRUE(torch::allclose(second->elements()[0].toTensor(), cpp_logits.narrow(1, 5, 6), 0, 1e-5));

  // the logits charrnn recorded at export time
  const torch::Tensor check = module_.attr("check_logits").toTensor();
  const auto replay = module_.forward({module_.attr("check_input_ids").toTensor()}).toTuple();
  EXPECT_TRUE(torch::allclose(replay->elements()[0].toTensor(), check, 0, 1e-5));
}

TEST_P(Export, GreedyAndSampledTextMatchCharrnnGenerate) {
  EXPECT_EQ(script_generate("ROMEO:", 200, 0.0, 0, 1.0, 0), cpp_generate("ROMEO:", 200, 0.0, 0, 1.0, 0));
  EXPECT_EQ(script_generate("é€ab", 100, 1.0, 0, 1.0, 7), cpp_generate("é€ab", 100, 1.0, 0, 1.0, 7));
  EXPECT_EQ(script_generate("ROMEO:", 150, 0.8, 5, 0.9, 123456789), cpp_generate("ROMEO:", 150, 0.8, 5, 0.9, 123456789));
  EXPECT_EQ(script_generate("", 50, 1.2, 0, 0.7, 42), cpp_generate("", 50, 1.2, 0, 0.7, 42));
  EXPECT_EQ(script_generate("x", 0, 1.0, 0, 1.0, 1), "x");
}

TEST_P(Export, FoldsPrimesAsCharrnnDoes) {
  const charrnn::CharFolder folder(checkpoint_.vocab);
  // a no-break space, a decomposed é, fullwidth letters, an accent the model lacks, a Windows line break
  for (const std::string text : {"ROMEO:\u00A0ab", "cafe\u0301", "\uFF32\uFF2F\uFF2D\uFF25\uFF2F:", "h\u00E0\r\nx",
                                 "\u00E9\u20AC", "a\u2003\u2003b"}) {
    const std::string expected = charrnn::encode_utf8(folder.fold(charrnn::decode_utf8(text)).text);
    EXPECT_EQ(module_.run_method("fold_prime", text).toStringRef(), expected) << text;
  }
  // generate() reads the folded prime: the text the model's own characters give
  EXPECT_EQ(script_generate("ROMEO:\u00A0ab", 60, 0.8, 0, 1.0, 3), cpp_generate("ROMEO: ab", 60, 0.8, 0, 1.0, 3));
  EXPECT_EQ(script_generate("ROMEO:\u00A0ab", 60, 0.8, 0, 1.0, 3), cpp_generate("ROMEO:\u00A0ab", 60, 0.8, 0, 1.0, 3));
  // strict, or a character with no equivalent, is refused
  EXPECT_ANY_THROW(module_.run_method("generate", std::string("ROMEO:\u00A0"), 5, 0.8, 0, 1.0, 3, true));
  EXPECT_ANY_THROW(module_.run_method("fold_prime", std::string("Q")));
}

TEST_P(Export, CarriesVocabularyAndMetadata) {
  EXPECT_EQ(module_.attr("cell").toStringRef(), charrnn::to_string(GetParam()));
  EXPECT_EQ(module_.attr("vocab_size").toInt(), checkpoint_.vocab.size());
  EXPECT_EQ(module_.attr("num_layers").toInt(), 2);
  EXPECT_EQ(module_.attr("trained_steps").toInt(), 17);
  EXPECT_EQ(module_.attr("charrnn_version").toStringRef(), CHARRNN_VERSION);
  EXPECT_CONTAINS(module_.attr("config_json").toStringRef(), "\"hidden_size\":16");
  const auto ids = module_.run_method("encode", std::string("ROMEO: é€😀")).toIntList();
  const std::vector<int64_t> expected = checkpoint_.vocab.encode(charrnn::decode_utf8("ROMEO: é€😀"), "test");
  EXPECT_EQ(std::vector<int64_t>(ids.begin(), ids.end()), expected);
  EXPECT_EQ(module_.run_method("decode", ids).toStringRef(), "ROMEO: é€😀");
  EXPECT_ANY_THROW(module_.run_method("encode", std::string("Q")));  // Q is not in the vocabulary
}

TEST_P(Export, LoadsBackAsAModelFile) {
  ASSERT_TRUE(charrnn::is_torchscript_file(path_));
  const charrnn::Checkpoint back = charrnn::load_model_file(path_);
  EXPECT_EQ(back.vocab.chars(), checkpoint_.vocab.chars());
  EXPECT_EQ(back.vocab.counts(), checkpoint_.vocab.counts());
  EXPECT_EQ(back.progress.step, 17);
  EXPECT_EQ(back.config.model.cell, GetParam());
  charrnn::CharRNN again = charrnn::restore_model(back, torch::kCPU);
  for (const auto& p : model_->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), again->named_parameters()[p.key()])) << p.key();
}

INSTANTIATE_TEST_SUITE_P(AllCells, Export, ::testing::Values(CellType::RNN, CellType::GRU, CellType::LSTM));

TEST(ExportErrors, FilesThatAreNotCharrnnExports) {
  charrnn_test::TempDir dir;
  torch::jit::Module other("something_else");
  other.register_attribute("x", c10::IntType::get(), int64_t{1});
  other.save(dir.file("other.pt"));
  EXPECT_CONTAINS(charrnn_test::thrown_message<charrnn::Error>([&] { charrnn::load_model_file(dir.file("other.pt")); }),
                  "not a charrnn export");
  charrnn_test::write_file(dir.file("broken.pt"), std::string("PK\x03\x04", 4) + "garbage");
  EXPECT_CONTAINS(charrnn_test::thrown_message<charrnn::Error>([&] { charrnn::load_model_file(dir.file("broken.pt")); }),
                  "cannot load TorchScript archive");
}

}  // namespace
