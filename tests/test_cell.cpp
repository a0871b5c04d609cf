// cell: the facts cell.h states against what LibTorch's modules and the
// model actually do, for every cell: weight blocks per gate, the forget
// gate's place, the state's tensors, the parameter count, and a step decoder
// layout that uses each block of W_ih and W_hh exactly once.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "charrnn/cell.h"
#include "charrnn/model.h"

namespace {

using charrnn::CellFacts;
using charrnn::CellType;
using charrnn::cell_facts;

constexpr int64_t V = 7, E = 5, H = 6, B = 2, T = 3;

class CellTest : public ::testing::TestWithParam<CellType> {
 protected:
  void SetUp() override { torch::manual_seed(0); }
  charrnn::ModelOptions options(int64_t layers) const {
    charrnn::ModelOptions o;
    o.cell = GetParam();
    o.embedding_dim = E;
    o.hidden_size = H;
    o.num_layers = layers;
    return o;
  }
};

TEST_P(CellTest, GatesAreTheBlocksOfPyTorchsWeights) {
  const CellFacts& facts = cell_facts(GetParam());
  EXPECT_EQ(static_cast<int64_t>(facts.gate_order.size()), facts.gates);
  charrnn::CharRNN model(V, options(2));
  for (const auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    if (name.rfind("rnn.", 0) != 0) continue;
    EXPECT_EQ(p.value().size(0), facts.gates * H) << name;
  }
}

TEST_P(CellTest, StateHoldsStateTensors) {
  const CellFacts& facts = cell_facts(GetParam());
  charrnn::CharRNN model(V, options(2));
  const charrnn::State state = model->forward(torch::zeros({B, T}, torch::kLong)).second;
  EXPECT_TRUE(state.h.defined());
  EXPECT_EQ(state.c.defined(), facts.has_cell_state());
  EXPECT_EQ(facts.state_tensors, facts.has_cell_state() ? 2 : 1);
}

TEST_P(CellTest, ParameterCountFollowsTheGates) {
  for (int64_t layers : {1, 3}) {
    charrnn::CharRNN model(V, options(layers));
    EXPECT_EQ(charrnn::parameter_count(options(layers), V), static_cast<double>(model->parameter_count()));
  }
}

TEST_P(CellTest, DecoderLayoutTakesEachBlockOnce) {
  const CellFacts& facts = cell_facts(GetParam());
  ASSERT_GE(facts.decoder_blocks, facts.gates);
  ASSERT_LE(facts.decoder_blocks, static_cast<int64_t>(facts.decoder_ih.size()));
  EXPECT_LE(facts.decoder_sigmoid_blocks, facts.decoder_blocks);
  std::vector<int> ih_uses(static_cast<size_t>(facts.gates)), hh_uses(static_cast<size_t>(facts.gates));
  for (size_t k = 0; k < static_cast<size_t>(facts.decoder_blocks); ++k) {
    const int64_t ih = facts.decoder_ih[k], hh = facts.decoder_hh[k];
    EXPECT_TRUE(ih >= 0 || hh >= 0) << "block " << k << " takes nothing";
    ASSERT_LT(ih, facts.gates);
    ASSERT_LT(hh, facts.gates);
    if (ih >= 0) ++ih_uses[static_cast<size_t>(ih)];
    if (hh >= 0) ++hh_uses[static_cast<size_t>(hh)];
  }
  for (int64_t g = 0; g < facts.gates; ++g) {
    EXPECT_EQ(ih_uses[static_cast<size_t>(g)], 1) << "w_ih block " << g;
    EXPECT_EQ(hh_uses[static_cast<size_t>(g)], 1) << "w_hh block " << g;
  }
}

INSTANTIATE_TEST_SUITE_P(AllCells, CellTest, ::testing::Values(CellType::RNN, CellType::GRU, CellType::LSTM),
                         [](const ::testing::TestParamInfo<CellType>& info) { return charrnn::to_string(info.param); });

// PyTorch's LSTM order is (i, f, g, o), its GRU's (r, z, n); model.forget_bias
// lands in the block named 'f'.
TEST(Cell, ForgetGateIsTheBlockNamedF) {
  const CellFacts& lstm = cell_facts(CellType::LSTM);
  EXPECT_EQ(lstm.gate('i'), 0);
  EXPECT_EQ(lstm.gate('f'), 1);
  EXPECT_EQ(lstm.gate('g'), 2);
  EXPECT_EQ(lstm.gate('o'), 3);
  charrnn::ModelOptions o;
  o.cell = CellType::LSTM;
  o.embedding_dim = E;
  o.hidden_size = H;
  o.num_layers = 1;
  o.forget_bias = 3.0;
  charrnn::CharRNN model(V, o);
  const torch::Tensor bias = model->named_parameters()["rnn.bias_ih_l0"];
  EXPECT_TRUE(torch::equal(bias.narrow(0, lstm.gate('f') * H, H), torch::full({H}, 3.0)));
  EXPECT_EQ(cell_facts(CellType::GRU).gate('n'), 2);
}

}  // namespace
