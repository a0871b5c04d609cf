// The web export's folder against the model it came from: every weight file
// holds the bytes its manifest entry promises, the LSTM's TensorFlow layout
// (the one ml5.js runs) computes the model's own logits, the load check is
// the model's own probabilities, and the folder appears atomically, never
// over something that is not an earlier export. charrnn.js, the page and ml5
// read these folders in tests/web.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "charrnn/checkpoint.h"
#include "charrnn/error.h"
#include "charrnn/export_web.h"
#include "charrnn/file_io.h"
#include "charrnn/utf8.h"
#include "test_helpers.h"

namespace {

namespace fs = std::filesystem;
using charrnn::CellType;

charrnn::Checkpoint make_checkpoint(CellType cell, int64_t layers) {
  charrnn::Checkpoint c = charrnn_test::random_checkpoint({cell, layers, 6, 10, "héllo wörld\n\"quoted\" 😀"});
  c.config.sample.prime = "ab";
  c.config.sample.seed = 9;
  c.progress.step = 12;
  return c;
}

nlohmann::json read_json(const fs::path& path) { return nlohmann::json::parse(charrnn::read_file(path.string())); }

// A manifest variable as a tensor, checking its file's size against its shape.
torch::Tensor read_variable(const fs::path& dir, const nlohmann::json& manifest, const std::string& name) {
  const nlohmann::json& entry = manifest.at(name);
  const std::vector<int64_t> shape = entry.at("shape").get<std::vector<int64_t>>();
  const std::string bytes = charrnn::read_file((dir / entry.at("filename").get<std::string>()).string());
  torch::Tensor t = torch::empty(shape, torch::kFloat);
  EXPECT_EQ(bytes.size(), static_cast<size_t>(t.numel()) * sizeof(float)) << name;
  std::memcpy(t.data_ptr<float>(), bytes.data(), std::min(bytes.size(), t.numel() * sizeof(float)));
  return t.to(torch::kDouble);
}

// The model's logits after `ids`, computed from the folder's files alone in
// double precision, the way charrnn.js and ml5 read them.
torch::Tensor folder_logits(const fs::path& dir, const std::vector<int64_t>& ids) {
  const nlohmann::json manifest = read_json(dir / "manifest.json"), info = read_json(dir / "charrnn.json");
  const nlohmann::json& roles = info.at("weights");
  const int64_t H = info.at("hidden_size"), L = info.at("num_layers");
  const std::string cell = info.at("cell");
  std::vector<torch::Tensor> h(L, torch::zeros({H}, torch::kDouble)), c = h;
  const torch::Tensor embedding = read_variable(dir, manifest, roles.at("embedding"));
  torch::Tensor x;
  for (int64_t id : ids) {
    x = embedding[id];
    for (int64_t l = 0; l < L; ++l) {
      const nlohmann::json& r = roles.at("layers")[l];
      if (cell == "lstm") {
        const torch::Tensor gates = torch::matmul(torch::cat({x, h[l]}), read_variable(dir, manifest, r.at("kernel"))) +
                                    read_variable(dir, manifest, r.at("bias"));
        const auto g = gates.chunk(4);  // TensorFlow's i, j, f, o; forget bias 1.0 added inside
        c[l] = torch::sigmoid(g[2] + 1.0) * c[l] + torch::sigmoid(g[0]) * torch::tanh(g[1]);
        h[l] = torch::sigmoid(g[3]) * torch::tanh(c[l]);
      } else {
        const torch::Tensor gi = torch::matmul(read_variable(dir, manifest, r.at("weight_ih")), x) +
                                 read_variable(dir, manifest, r.at("bias_ih"));
        const torch::Tensor gh = torch::matmul(read_variable(dir, manifest, r.at("weight_hh")), h[l]) +
                                 read_variable(dir, manifest, r.at("bias_hh"));
        if (cell == "gru") {
          const auto i = gi.chunk(3), hh = gh.chunk(3);  // r, z, n
          const torch::Tensor r_gate = torch::sigmoid(i[0] + hh[0]), z = torch::sigmoid(i[1] + hh[1]);
          h[l] = (1 - z) * torch::tanh(i[2] + r_gate * hh[2]) + z * h[l];
        } else {
          h[l] = torch::tanh(gi + gh);
        }
      }
      x = h[l];
    }
  }
  return torch::matmul(x, read_variable(dir, manifest, roles.at("output_weight"))) +
         read_variable(dir, manifest, roles.at("output_bias"));
}

struct Case {
  CellType cell;
  int64_t layers;
};

class WebExport : public ::testing::TestWithParam<Case> {};

TEST_P(WebExport, FolderComputesTheModelsLogitsAndCarriesItsFacts) {
  const auto [cell, layers] = GetParam();
  charrnn_test::TempDir dir;
  const charrnn::Checkpoint checkpoint = make_checkpoint(cell, layers);
  const fs::path out = dir.path() / "web";
  const charrnn::WebExport written = charrnn::export_web(checkpoint, out.string());

  for (const char* file : {"manifest.json", "vocab.json", "charrnn.json", "charrnn.js", "index.html", "probabilities.js"})
    EXPECT_TRUE(fs::exists(out / file)) << file;
#ifdef CHARRNN_WEB_KERNEL
  // the build assembled src/web/charrnn.wat: the folder carries the module
  const std::string wasm = charrnn::read_file((out / "charrnn.wasm").string());
  EXPECT_EQ(wasm.substr(0, 4), std::string("\0asm", 4)) << "charrnn.wasm starts with WebAssembly's magic";
#else
  EXPECT_FALSE(fs::exists(out / "charrnn.wasm")) << "a build without wat2wasm writes no kernel";
#endif
  const nlohmann::json manifest = read_json(out / "manifest.json"), info = read_json(out / "charrnn.json");
  int64_t weight_bytes = 0;
  for (const auto& [name, entry] : manifest.items()) {
    EXPECT_EQ(entry.size(), 2u) << "ml5 reads exactly filename and shape: " << name;
    const std::string file = entry.at("filename");
    EXPECT_EQ(file.find('/'), std::string::npos) << file;
    weight_bytes += static_cast<int64_t>(fs::file_size(out / file));
  }
  EXPECT_EQ(written.weight_bytes, weight_bytes);
  EXPECT_GT(written.folder_bytes, weight_bytes);

  EXPECT_EQ(info.at("format"), "charrnn-web");
  EXPECT_EQ(info.at("format_version"), charrnn::kWebFormatVersion);
  EXPECT_EQ(info.at("cell"), charrnn::to_string(cell));
  EXPECT_EQ(info.at("num_layers"), layers);
  EXPECT_EQ(info.at("sample").at("prime"), "ab");
  EXPECT_EQ(info.at("sample").at("seed"), 9);
  EXPECT_EQ(info.at("training").at("steps"), 12);
  EXPECT_TRUE(info.at("training").at("best_val_loss").is_null());
  const bool ml5 = cell == CellType::LSTM && layers == 2;
  EXPECT_EQ(info.at("ml5_compatible"), ml5);
  EXPECT_EQ(written.ml5_compatible, ml5);
  EXPECT_EQ(written.ml5_limitation.empty(), ml5);

  // the vocabulary, both ways: code points in id order and ml5's {char: id}
  const nlohmann::json vocab = read_json(out / "vocab.json");
  ASSERT_EQ(vocab.size(), static_cast<size_t>(checkpoint.vocab.size()));
  for (int64_t id = 0; id < checkpoint.vocab.size(); ++id) {
    EXPECT_EQ(info.at("vocab")[id], static_cast<int64_t>(checkpoint.vocab.char_at(id)));
    EXPECT_EQ(info.at("counts")[id], checkpoint.vocab.counts()[static_cast<size_t>(id)]);
    std::string ch;
    charrnn::append_utf8(ch, checkpoint.vocab.char_at(id));
    EXPECT_EQ(vocab.at(ch), id);
  }

  // the files alone give the model's logits, and the load check its probabilities
  charrnn::CharRNN model = charrnn::restore_model(checkpoint, torch::kCPU);
  model->eval();
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> ids = info.at("check").at("ids");
  const torch::Tensor expected =
      model->forward(torch::tensor(ids, torch::kLong).view({1, -1})).first[0][-1].to(torch::kDouble);
  EXPECT_TRUE(torch::allclose(folder_logits(out, ids), expected, 0, 1e-5))
      << folder_logits(out, ids) << "\n" << expected;
  const torch::Tensor check = torch::tensor(info.at("check").at("probabilities").get<std::vector<double>>(), torch::kDouble);
  EXPECT_TRUE(torch::allclose(check, torch::softmax(expected, -1), 0, 1e-7));
}

INSTANTIATE_TEST_SUITE_P(Cells, WebExport,
                         ::testing::Values(Case{CellType::LSTM, 1}, Case{CellType::LSTM, 2}, Case{CellType::LSTM, 3},
                                           Case{CellType::GRU, 1}, Case{CellType::GRU, 2}, Case{CellType::RNN, 2}),
                         [](const auto& info) {
                           return charrnn::to_string(info.param.cell) + std::to_string(info.param.layers) + "Layers";
                         });

TEST(WebExportFolder, ReplacesAnEarlierExportButNeverAnotherFolder) {
  charrnn_test::TempDir dir;
  const fs::path out = dir.path() / "web";
  charrnn::export_web(make_checkpoint(CellType::GRU, 1), out.string());
  charrnn::export_web(make_checkpoint(CellType::LSTM, 2), out.string() + "/");  // "web/" is the folder "web"
  EXPECT_EQ(read_json(out / "charrnn.json").at("cell"), "lstm");
  EXPECT_FALSE(fs::exists(out / "rnnlm_multi_rnn_cell_cell_0_gru_cell_weight_ih")) << "the earlier files went";

  const fs::path other = dir.path() / "photos";
  fs::create_directories(other);
  std::ofstream(other / "cat.jpg") << "meow";
  EXPECT_THROW(charrnn::export_web(make_checkpoint(CellType::LSTM, 1), other.string()), charrnn::Error);
  EXPECT_EQ(charrnn::read_file((other / "cat.jpg").string()), "meow");
  EXPECT_FALSE(fs::exists(other / "charrnn.json"));

  // nothing but the two folders: no temporary or set-aside folder stays
  int64_t entries = 0;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    ++entries;
    EXPECT_TRUE(entry.path() == out || entry.path() == other) << entry.path();
  }
  EXPECT_EQ(entries, 2);
}

TEST(WebExportFolder, AFailedExportLeavesNothingUnderTheName) {
  charrnn_test::TempDir dir;
  const fs::path blocker = dir.path() / "file";
  std::ofstream(blocker) << "x";
  EXPECT_THROW(charrnn::export_web(make_checkpoint(CellType::RNN, 1), (blocker / "web").string()), charrnn::Error);
  EXPECT_THROW(charrnn::export_web(make_checkpoint(CellType::RNN, 1), blocker.string()), charrnn::Error);
  EXPECT_EQ(charrnn::read_file(blocker.string()), "x");
  int64_t entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1) << "no partial folder is left beside it";
}

}  // namespace
