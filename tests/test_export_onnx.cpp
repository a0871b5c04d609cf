// The ONNX export, read back with ONNX's own protobuf classes: the graph's
// interface (names, types, dynamic dims, opset), its metadata, and its
// weights run through the ONNX operators' equations as the ONNX spec writes
// them (gate order i,o,f,c for LSTM, z,r,h for GRU with linear_before_reset)
// give the C++ model's logits and state, which proves the gate reordering.
// A failed write leaves nothing under the final name. onnxruntime itself is
// run on exports by tests/onnx/check_onnx.py.
#include <sys/resource.h>

#include <csignal>
#include <filesystem>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <torch/torch.h>

#include "charrnn/checkpoint.h"
#include "charrnn/error.h"
#include "charrnn/export_onnx.h"
#include "charrnn/file_io.h"
#include "charrnn/utf8.h"
#include "test_helpers.h"

namespace {

using charrnn::CellType;
namespace fs = std::filesystem;

charrnn::Checkpoint make_checkpoint(CellType cell, int64_t layers) {
  charrnn::Checkpoint c = charrnn_test::random_checkpoint({cell, layers});
  c.config.sample.prime = "ab";
  c.config.sample.sampling.temperature = 0.5;
  c.progress.step = 23;
  return c;
}

onnx::ModelProto read_model(const std::string& path) {
  onnx::ModelProto model;
  EXPECT_TRUE(model.ParseFromString(charrnn::read_file(path))) << path;
  return model;
}

std::map<std::string, torch::Tensor> initializers(const onnx::ModelProto& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& t : model.graph().initializer()) {
    if (t.data_type() != onnx::TensorProto::FLOAT) continue;
    std::vector<int64_t> dims(t.dims().begin(), t.dims().end());
    EXPECT_EQ(t.raw_data().size(), static_cast<size_t>(torch::empty(dims).numel()) * sizeof(float)) << t.name();
    out[t.name()] = torch::from_blob(const_cast<char*>(t.raw_data().data()), dims, torch::kFloat).clone();
  }
  return out;
}

std::map<std::string, std::string> metadata(const onnx::ModelProto& model) {
  std::map<std::string, std::string> out;
  for (const auto& e : model.metadata_props()) out[e.key()] = e.value();
  return out;
}

// "batch" for a named dim, the number for a fixed one
std::vector<std::string> dims_of(const onnx::ValueInfoProto& v) {
  std::vector<std::string> out;
  for (const auto& d : v.type().tensor_type().shape().dim())
    out.push_back(d.has_dim_param() ? d.dim_param() : std::to_string(d.dim_value()));
  return out;
}

// One layer of ONNX's LSTM, GRU or RNN operator (forward, default
// activations), written from the ONNX operator documentation.
// x: (T, B, I); W: (G*H, I); R: (G*H, H); Bias: (2*G*H); h, c: (B, H).
torch::Tensor onnx_layer(CellType cell, const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& R,
                         const torch::Tensor& Bias, torch::Tensor& h, torch::Tensor& c) {
  const int64_t H = R.size(1), G = R.size(0) / H;
  const auto Wb = Bias.narrow(0, 0, G * H), Rb = Bias.narrow(0, G * H, G * H);
  std::vector<torch::Tensor> ys;
  for (int64_t t = 0; t < x.size(0); ++t) {
    const torch::Tensor xw = torch::matmul(x[t], W.t()) + Wb, hr = torch::matmul(h, R.t()) + Rb;
    if (cell == CellType::LSTM) {
      const auto g = (xw + hr).chunk(4, 1);  // i, o, f, c
      c = torch::sigmoid(g[2]) * c + torch::sigmoid(g[0]) * torch::tanh(g[3]);
      h = torch::sigmoid(g[1]) * torch::tanh(c);
    } else if (cell == CellType::GRU) {
      const auto xs = xw.chunk(3, 1), hs = hr.chunk(3, 1);  // z, r, h
      const auto z = torch::sigmoid(xs[0] + hs[0]), r = torch::sigmoid(xs[1] + hs[1]);
      const auto candidate = torch::tanh(xs[2] + r * hs[2]);  // linear_before_reset=1
      h = (1 - z) * candidate + z * h;
    } else {
      h = torch::tanh(xw + hr);
    }
    ys.push_back(h);
  }
  return torch::stack(ys);
}

struct Case {
  CellType cell;
  int64_t layers;
};

class ExportOnnx : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    checkpoint_ = make_checkpoint(GetParam().cell, GetParam().layers);
    path_ = dir_.file("model.onnx");
    charrnn::export_onnx(checkpoint_, path_);
    model_ = read_model(path_);
  }
  charrnn_test::TempDir dir_;
  charrnn::Checkpoint checkpoint_;
  std::string path_;
  onnx::ModelProto model_;
};

TEST_P(ExportOnnx, PassesOnnxsChecker) { EXPECT_NO_THROW(onnx::checker::check_model(model_)); }

TEST_P(ExportOnnx, InterfaceHasNamedDynamicDims) {
  const bool lstm = GetParam().cell == CellType::LSTM;
  const std::string L = std::to_string(GetParam().layers), V = std::to_string(checkpoint_.vocab.size());
  ASSERT_EQ(model_.opset_import_size(), 1);
  EXPECT_EQ(model_.opset_import(0).domain(), "");
  EXPECT_EQ(model_.opset_import(0).version(), charrnn::kOnnxOpset);
  EXPECT_EQ(model_.ir_version(), onnx::IR_VERSION);
  const auto& g = model_.graph();
  std::vector<std::string> inputs, outputs;
  for (const auto& v : g.input()) inputs.push_back(v.name());
  for (const auto& v : g.output()) outputs.push_back(v.name());
  using Names = std::vector<std::string>;
  EXPECT_EQ(inputs, (lstm ? Names{"ids", "h0", "c0"} : Names{"ids", "h0"}));
  EXPECT_EQ(outputs, (lstm ? Names{"logits", "hn", "cn"} : Names{"logits", "hn"}));
  EXPECT_EQ(g.input(0).type().tensor_type().elem_type(), onnx::TensorProto::INT64);
  EXPECT_EQ(dims_of(g.input(0)), (std::vector<std::string>{"batch", "time"}));
  EXPECT_EQ(dims_of(g.output(0)), (std::vector<std::string>{"batch", "time", V}));
  for (int i = 1; i < g.input_size(); ++i) {
    EXPECT_EQ(g.input(i).type().tensor_type().elem_type(), onnx::TensorProto::FLOAT);
    EXPECT_EQ(dims_of(g.input(i)), (std::vector<std::string>{L, "batch", "8"}));
    EXPECT_EQ(dims_of(g.output(i)), (std::vector<std::string>{L, "batch", "8"}));
  }
  // one recurrent node per layer, time-major, PyTorch's GRU variant
  const std::string op = lstm ? "LSTM" : GetParam().cell == CellType::GRU ? "GRU" : "RNN";
  int recurrent = 0;
  for (const auto& node : g.node()) {
    if (node.op_type() != op) continue;
    ++recurrent;
    std::map<std::string, int64_t> attributes;
    for (const auto& a : node.attribute()) attributes[a.name()] = a.i();
    EXPECT_EQ(attributes["hidden_size"], 8);
    EXPECT_EQ(attributes.count("layout") ? attributes["layout"] : 0, 0) << "onnxruntime's CPU kernels need layout 0";
    if (op == "GRU") EXPECT_EQ(attributes["linear_before_reset"], 1);
  }
  EXPECT_EQ(recurrent, GetParam().layers);
}

TEST_P(ExportOnnx, MetadataDescribesTheModel) {
  auto meta = metadata(model_);
  EXPECT_EQ(meta["charrnn.format"], "charrnn-onnx-1");
  const auto vocab = nlohmann::json::parse(meta["charrnn.vocab"]);
  ASSERT_EQ(static_cast<int64_t>(vocab.size()), checkpoint_.vocab.size());
  for (int64_t id = 0; id < checkpoint_.vocab.size(); ++id) {
    std::string text;
    charrnn::append_utf8(text, checkpoint_.vocab.char_at(id));
    EXPECT_EQ(vocab[static_cast<size_t>(id)].get<std::string>(), text) << "id " << id;
  }
  EXPECT_EQ(meta["charrnn.cell"], charrnn::to_string(GetParam().cell));
  EXPECT_EQ(meta["charrnn.vocab_size"], std::to_string(checkpoint_.vocab.size()));
  EXPECT_EQ(meta["charrnn.embedding_dim"], "6");
  EXPECT_EQ(meta["charrnn.hidden_size"], "8");
  EXPECT_EQ(meta["charrnn.num_layers"], std::to_string(GetParam().layers));
  const auto sample = nlohmann::json::parse(meta["charrnn.sample"]);
  EXPECT_EQ(sample, charrnn::to_json(checkpoint_.config).at("sample"));
  EXPECT_EQ(sample.at("prime"), "ab");
  EXPECT_EQ(sample.at("temperature"), 0.5);
  EXPECT_EQ(charrnn::config_from_json(nlohmann::json::parse(meta["charrnn.config"]), "metadata").model.hidden_size, 8);
  EXPECT_EQ(meta["charrnn.version"], CHARRNN_VERSION);
  EXPECT_EQ(meta["charrnn.trained_steps"], "23");
}

TEST_P(ExportOnnx, OnnxEquationsOnTheWeightsGiveTheModelsLogits) {
  const CellType cell = GetParam().cell;
  const int64_t L = GetParam().layers;
  auto w = initializers(model_);
  charrnn::CharRNN net = charrnn::restore_model(checkpoint_, torch::kCPU);
  net->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::randint(0, checkpoint_.vocab.size(), {3, 7}, torch::kLong);  // (B, T)
  const torch::Tensor h0 = torch::randn({L, 3, 8}), c0 = torch::randn({L, 3, 8});
  charrnn::State state{h0, cell == CellType::LSTM ? c0 : torch::Tensor()};
  const auto [logits, final_state] = net->forward(ids, state);

  torch::Tensor x = w.at("embedding.weight").index_select(0, ids.flatten()).view({3, 7, -1}).transpose(0, 1);
  std::vector<torch::Tensor> hn, cn;
  for (int64_t l = 0; l < L; ++l) {
    const std::string layer = "layer" + std::to_string(l);
    torch::Tensor h = h0[l].clone(), c = c0[l].clone();
    x = onnx_layer(cell, x, w.at(layer + ".W")[0], w.at(layer + ".R")[0], w.at(layer + ".B")[0], h, c);
    hn.push_back(h);
    cn.push_back(c);
  }
  const torch::Tensor onnx_logits = torch::matmul(x.transpose(0, 1), w.at("head.weight_t")) + w.at("head.bias");
  EXPECT_TRUE(torch::allclose(onnx_logits, logits, 1e-5, 1e-5))
      << "max difference " << (onnx_logits - logits).abs().max().item<float>();
  EXPECT_TRUE(torch::allclose(torch::stack(hn), final_state.h, 1e-5, 1e-5));
  if (cell == CellType::LSTM) EXPECT_TRUE(torch::allclose(torch::stack(cn), final_state.c, 1e-5, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(Cells, ExportOnnx,
                         ::testing::Values(Case{CellType::RNN, 1}, Case{CellType::GRU, 1}, Case{CellType::LSTM, 1},
                                           Case{CellType::RNN, 3}, Case{CellType::GRU, 2}, Case{CellType::LSTM, 3}),
                         [](const auto& info) {
                           return charrnn::to_string(info.param.cell) + std::to_string(info.param.layers) + "layers";
                         });

// RLIMIT_FSIZE makes the write itself fail (EFBIG, with SIGXFSZ ignored)
// after a few bytes: the export throws, the old file stays, nothing else is left.
TEST(ExportOnnxFile, AFailedWriteLeavesNothingUnderTheName) {
  charrnn_test::TempDir dir;
  const charrnn::Checkpoint checkpoint = make_checkpoint(CellType::LSTM, 2);
  const std::string path = dir.file("model.onnx");
  struct rlimit saved {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = saved;
  small.rlim_cur = 1000;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string message = charrnn_test::thrown_message<charrnn::Error>([&] { charrnn::export_onnx(checkpoint, path); });
  setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_NE(message.find("model.onnx"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(dir.path())) << "no temporary file is left";

  charrnn::export_onnx(checkpoint, path);
  const std::string good = charrnn::read_file(path);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  std::signal(SIGXFSZ, SIG_IGN);
  EXPECT_THROW(charrnn::export_onnx(make_checkpoint(CellType::GRU, 1), path), charrnn::Error);
  setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(charrnn::read_file(path), good) << "the previous export is untouched";
}

}  // namespace
