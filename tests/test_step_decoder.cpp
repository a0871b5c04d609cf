// StepDecoder against the module it rearranges: fed one character at a time,
// it gives forward()'s logits and state (to float rounding) for every cell,
// one or several streams, from zeros or from a given state.
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/error.h"
#include "charrnn/step_decoder.h"
#include "test_helpers.h"

namespace {

using charrnn::CellType;
using charrnn_test::thrown_message;

struct Case {
  CellType cell;
  int64_t layers;
  int64_t streams;
};

class StepDecoderTest : public ::testing::TestWithParam<Case> {
 protected:
  static constexpr int64_t kVocab = 11, kSteps = 9;

  charrnn::CharRNN make_model(const torch::Device& device) {
    torch::manual_seed(21);
    charrnn::ModelOptions o;
    o.cell = GetParam().cell;
    o.embedding_dim = 5;
    o.hidden_size = 7;
    o.num_layers = GetParam().layers;
    o.dropout = 0.3;  // must not matter: the decoder is for inference
    charrnn::CharRNN model(kVocab, o);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) p.mul_(2.0);  // sharper than the default init
    }
    model->eval();
    model->to(device);
    return model;
  }

  void check(const torch::Device& device) {
    // the same kernels on the CPU; on CUDA forward() runs cuDNN, whose tanh
    // and sigmoid differ from the element-wise kernels in the last bits
    const double tol = device.is_cuda() ? 1e-4 : 1e-5;
    const int64_t B = GetParam().streams;
    charrnn::CharRNN model = make_model(device);
    torch::NoGradGuard no_grad;
    const torch::Tensor ids = torch::randint(kVocab, {B, kSteps}, torch::kLong);
    // a random starting state, as priming would leave
    const int64_t L = GetParam().layers, H = 7;
    charrnn::State start{torch::randn({L, B, H}).to(device),
                         GetParam().cell == CellType::LSTM ? torch::randn({L, B, H}).to(device) : torch::Tensor()};
    for (const charrnn::State& initial : {charrnn::State{}, start}) {
      auto [expected, expected_state] = model->forward(ids.to(device), initial);
      charrnn::StepDecoder decoder(*model, B);
      decoder.set_state(initial);
      for (int64_t t = 0; t < kSteps; ++t) {
        const torch::Tensor column = ids.select(1, t).contiguous();
        const torch::Tensor& logits = decoder.step(column.data_ptr<int64_t>());
        ASSERT_EQ(logits.sizes(), torch::IntArrayRef({B, kVocab}));
        EXPECT_TRUE(torch::allclose(logits.cpu(), expected.select(1, t).cpu(), tol, tol)) << "step " << t;
      }
      const charrnn::State state = decoder.state();
      EXPECT_TRUE(torch::allclose(state.h.cpu(), expected_state.h.cpu(), tol, tol));
      if (GetParam().cell == CellType::LSTM)
        EXPECT_TRUE(torch::allclose(state.c.cpu(), expected_state.c.cpu(), tol, tol));
      else
        EXPECT_FALSE(state.c.defined());
    }
  }
};

TEST_P(StepDecoderTest, MatchesForwardOneStepAtATime) { check(torch::kCPU); }

TEST_P(StepDecoderTest, MatchesForwardOneStepAtATime_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "CUDA is not available";
  const charrnn_test::FullFloatCudnn full_float;  // forward() runs cuDNN, the decoder cuBLAS
  check(torch::Device(torch::kCUDA));
}

TEST_P(StepDecoderTest, RejectsIdsOutsideTheVocabulary) {
  charrnn::CharRNN model = make_model(torch::kCPU);
  charrnn::StepDecoder decoder(*model, GetParam().streams);
  std::vector<int64_t> ids(static_cast<size_t>(GetParam().streams), 0);
  ids.back() = kVocab;
  EXPECT_CONTAINS(thrown_message<charrnn::Error>([&] { decoder.step(ids.data()); }), "outside the vocabulary");
  ids.back() = -1;
  EXPECT_CONTAINS(thrown_message<charrnn::Error>([&] { decoder.step(ids.data()); }), "outside the vocabulary");
}

TEST_P(StepDecoderTest, OneRowsStateGoesInAndOutLeavingTheOthers) {
  // a server puts a new stream into a free row: the row continues exactly as
  // a decoder given the whole state would, and the other rows do not notice
  charrnn::CharRNN model = make_model(torch::kCPU);
  torch::NoGradGuard no_grad;
  const int64_t B = GetParam().streams, L = GetParam().layers, H = 7, row = B - 1;
  const bool lstm = GetParam().cell == CellType::LSTM;
  charrnn::State start{torch::randn({L, B, H}), lstm ? torch::randn({L, B, H}) : torch::Tensor()};
  charrnn::State row_start{torch::randn({L, 1, H}), lstm ? torch::randn({L, 1, H}) : torch::Tensor()};
  charrnn::State whole{start.h.clone(), lstm ? start.c.clone() : torch::Tensor()};
  whole.h.narrow(1, row, 1).copy_(row_start.h);
  if (lstm) whole.c.narrow(1, row, 1).copy_(row_start.c);

  charrnn::StepDecoder by_row(*model, B), by_whole(*model, B);
  EXPECT_EQ(by_row.streams(), B);
  by_row.set_state(start);
  by_row.set_row_state(row, row_start);
  by_whole.set_state(whole);
  const charrnn::State read_back = by_row.row_state(row);
  EXPECT_TRUE(torch::equal(read_back.h, row_start.h));
  if (lstm) EXPECT_TRUE(torch::equal(read_back.c, row_start.c));
  std::vector<int64_t> ids(static_cast<size_t>(B));
  for (int64_t t = 0; t < kSteps; ++t) {
    for (int64_t b = 0; b < B; ++b) ids[static_cast<size_t>(b)] = (3 * b + t) % kVocab;
    const torch::Tensor a = by_row.step(ids.data()).clone();
    EXPECT_TRUE(torch::equal(a, by_whole.step(ids.data()))) << "step " << t;
  }
  // an undefined state is zeros for that row alone
  by_row.set_row_state(0, {});
  const charrnn::State zero = by_row.row_state(0);
  EXPECT_EQ(zero.h.sizes(), torch::IntArrayRef({L, 1, H}));
  EXPECT_EQ(zero.h.abs().sum().item<float>(), 0.0f);
  if (B > 1) EXPECT_TRUE(torch::equal(by_row.row_state(1).h, by_whole.row_state(1).h));
  EXPECT_CONTAINS(thrown_message<charrnn::UsageError>([&] { by_row.row_state(B); }), "row");
  EXPECT_CONTAINS(thrown_message<charrnn::UsageError>([&] { by_row.set_row_state(-1, {}); }), "row");
  const charrnn::State two_rows{torch::randn({L, 2, H}), lstm ? torch::randn({L, 2, H}) : torch::Tensor()};
  EXPECT_CONTAINS(thrown_message<charrnn::UsageError>([&] { by_row.set_row_state(0, two_rows); }), "(");
}

TEST_P(StepDecoderTest, TakesTheWeightsAsTheyAreWhenBuilt) {
  // the decoder copies (rearranges) the weights; training afterwards does not reach it
  charrnn::CharRNN model = make_model(torch::kCPU);
  charrnn::StepDecoder decoder(*model, GetParam().streams);
  std::vector<int64_t> ids(static_cast<size_t>(GetParam().streams), 3);
  const torch::Tensor before = decoder.step(ids.data()).clone();
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.add_(1.0);
  }
  decoder.set_state({});
  EXPECT_TRUE(torch::equal(decoder.step(ids.data()), before));
}

// The parts tests' model, seeded: 17 characters, 2 layers, a hidden size of
// 40 (a full 32-column panel and a partial one), in eval mode.
charrnn::CharRNN two_layer_model(CellType cell, uint64_t seed) {
  torch::manual_seed(seed);
  charrnn::ModelOptions o;
  o.cell = cell;
  o.embedding_dim = 6;
  o.hidden_size = 40;
  o.num_layers = 2;
  charrnn::CharRNN model(17, o);
  model->eval();
  return model;
}

// Every step's logits for `ids` (streams, T), one column a step: (T, streams, V).
torch::Tensor step_through(charrnn::StepDecoder& decoder, const torch::Tensor& ids) {
  std::vector<torch::Tensor> steps;
  for (int64_t t = 0; t < ids.size(1); ++t) {
    const torch::Tensor column = ids.select(1, t).contiguous();
    steps.push_back(decoder.step(column.data_ptr<int64_t>()).clone());  // step() returns its own buffer
  }
  return torch::stack(steps);
}

// Several CPU streams are split into parts, one per thread, with products
// through PackedWeight. A stream's logits must not depend on how many parts
// there are: bit for bit, for every cell, with a hidden size that takes both
// the kernel's full 32-column panels and a partial one, and with more rows per
// part than PackedWeight takes at once (kMaxRows).
TEST(StepDecoderParts, EveryThreadCountGivesTheSameLogitsBitForBit) {
  for (const CellType cell : {CellType::LSTM, CellType::GRU, CellType::RNN}) {
    for (const int64_t streams : {int64_t{13}, int64_t{300}}) {
      SCOPED_TRACE(charrnn::to_string(cell) + ", " + std::to_string(streams) + " streams");
      charrnn::CharRNN model = two_layer_model(cell, 5);
      const torch::Tensor ids = torch::randint(17, {streams, 6}, torch::kLong);
      std::vector<torch::Tensor> first_logits;
      for (const int64_t threads : {1, 2, 3}) {
        charrnn::StepDecoder decoder(*model, streams, threads);
        EXPECT_EQ(decoder.parts(), threads) << "each part has at least kMinStreamsPerPart streams";
        const torch::Tensor all = step_through(decoder, ids);
        if (threads == 1) {
          // and the split-up decoder still computes forward(), to float rounding
          torch::NoGradGuard no_grad;
          auto [expected, state] = model->forward(ids, charrnn::State{});
          EXPECT_TRUE(torch::allclose(all.transpose(0, 1), expected, 1e-5, 1e-5));
          first_logits.push_back(all);
        } else {
          EXPECT_TRUE(torch::equal(all, first_logits[0])) << threads << " threads";
        }
      }
    }
  }
}

TEST(StepDecoderParts, FewStreamsStayInOnePart) {
  torch::manual_seed(5);
  charrnn::CharRNN model(5, charrnn::ModelOptions{});
  for (const int64_t streams : {1, 2, 7}) {
    charrnn::StepDecoder decoder(*model, streams, 2);
    EXPECT_EQ(decoder.parts(), streams < 2 * charrnn::StepDecoder::kMinStreamsPerPart ? 1 : 2) << streams;
  }
  EXPECT_EQ(charrnn::StepDecoder(*model, 8, 2).parts(), 2);
  EXPECT_EQ(charrnn::StepDecoder(*model, 64, 1).parts(), 1);
}

// A batch of one part splits its products by columns over several threads
// instead: its logits must be those of one thread bit for bit, for every
// cell, with hidden sizes whose gate blocks end inside a 32-column panel and
// thread counts that leave a thread no head columns.
TEST(StepDecoderParts, AColumnSplitGivesTheLogitsOfOneThreadBitForBit) {
  for (const CellType cell : {CellType::LSTM, CellType::GRU, CellType::RNN}) {
    for (const int64_t streams : {int64_t{2}, int64_t{7}}) {
      SCOPED_TRACE(charrnn::to_string(cell) + ", " + std::to_string(streams) + " streams");
      charrnn::CharRNN model = two_layer_model(cell, 6);
      const torch::Tensor ids = torch::randint(17, {streams, 8}, torch::kLong);
      torch::Tensor first;
      for (const int64_t threads : {1, 2, 3}) {
        charrnn::StepDecoder decoder(*model, streams, threads);
        EXPECT_EQ(decoder.parts(), 1);
        EXPECT_EQ(decoder.column_threads(), threads);
        const torch::Tensor all = step_through(decoder, ids);
        if (threads == 1) {
          torch::NoGradGuard no_grad;
          auto [expected, state] = model->forward(ids, charrnn::State{});
          EXPECT_TRUE(torch::allclose(all.transpose(0, 1), expected, 1e-5, 1e-5));
          first = all;
        } else {
          EXPECT_TRUE(torch::equal(all, first)) << threads << " threads";
        }
      }
    }
  }
}

TEST(StepDecoderParts, ABadIdInAnyPartChangesNoState) {
  torch::manual_seed(5);
  charrnn::ModelOptions o;
  o.cell = CellType::LSTM;  // both h and c must stay as they were
  o.hidden_size = 16;
  charrnn::CharRNN model(9, o);
  charrnn::StepDecoder decoder(*model, 8, 2);
  ASSERT_EQ(decoder.parts(), 2);
  std::vector<int64_t> ids(8, 1);
  decoder.step(ids.data());
  const charrnn::State before = decoder.state();
  ids[7] = 9;  // in the second part
  EXPECT_CONTAINS(thrown_message<charrnn::Error>([&] { decoder.step(ids.data()); }), "outside the vocabulary");
  EXPECT_TRUE(torch::equal(decoder.state().h, before.h));
  EXPECT_TRUE(torch::equal(decoder.state().c, before.c));
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return charrnn::to_string(info.param.cell) + "_" + std::to_string(info.param.layers) + "layers_" +
         std::to_string(info.param.streams) + "streams";
}

INSTANTIATE_TEST_SUITE_P(Cells, StepDecoderTest,
                         ::testing::Values(Case{CellType::LSTM, 1, 1}, Case{CellType::LSTM, 3, 1},
                                           Case{CellType::LSTM, 2, 4}, Case{CellType::GRU, 1, 1},
                                           Case{CellType::GRU, 3, 1}, Case{CellType::GRU, 2, 4},
                                           Case{CellType::RNN, 1, 1}, Case{CellType::RNN, 3, 1},
                                           Case{CellType::RNN, 2, 4}),
                         case_name);

}  // namespace
