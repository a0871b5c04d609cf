#include "charrnn/export_web.h"

#include <cmath>
#include <cstddef>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "charrnn/cell.h"
#include "charrnn/error.h"
#include "charrnn/file_io.h"
#include "charrnn/utf8.h"

namespace charrnn {

// src/web/charrnn.js and src/web/index.html, embedded by the build (cmake/embed_text.cmake)
extern const char* const kWebRuntimeSource;
extern const char* const kWebPageSource;
extern const char* const kProbabilityViewSource;
#ifdef CHARRNN_WEB_KERNEL
// charrnn.wasm, assembled from src/web/charrnn.wat (cmake/embed_binary.cmake)
extern const unsigned char kWebKernel[];
extern const std::size_t kWebKernel_size;
#endif

namespace fs = std::filesystem;

namespace {

constexpr const char* kWebFormat = "charrnn-web";
constexpr int64_t kCheckLength = 16;

struct Variable {
  std::string name;      // the manifest key (a TensorFlow-style variable name)
  torch::Tensor values;  // float32, contiguous, in the layout the name promises
};

// "rnnlm/softmax_w" -> "rnnlm_softmax_w": a plain file name inside the folder.
std::string file_name(const std::string& variable) {
  std::string out = variable;
  for (char& c : out)
    if (c == '/') c = '_';
  return out;
}

torch::Tensor parameter(const CharRNNImpl& model, const std::string& name) {
  for (const auto& p : model.named_parameters())
    if (p.key() == name) return p.value().detach().to(torch::kFloat);
  throw Error("web export: the model has no parameter \"" + name + "\"");
}

// The H-row blocks of a PyTorch gate tensor (rows or a bias) in `letters`' order.
torch::Tensor gate_blocks(const torch::Tensor& t, const CellFacts& facts, std::string_view letters) {
  const int64_t H = t.size(0) / facts.gates;
  std::vector<torch::Tensor> blocks;
  for (char letter : letters) blocks.push_back(t.narrow(0, facts.gate(letter) * H, H));
  return torch::cat(blocks, 0);
}

std::string layer_scope(int64_t layer, CellType cell) {
  const char* scope = cell == CellType::LSTM ? "basic_lstm_cell" : cell == CellType::GRU ? "gru_cell" : "rnn_cell";
  return "rnnlm/multi_rnn_cell/cell_" + std::to_string(layer) + "/" + scope + "/";
}

// The variables in manifest order, and charrnn.json's "weights" naming them by role.
std::vector<Variable> web_variables(const CharRNNImpl& model, const ModelOptions& options, nlohmann::ordered_json& roles) {
  std::vector<Variable> vars;
  vars.push_back({"embedding", parameter(model, "embedding.weight")});
  roles["embedding"] = "embedding";
  const CellFacts& facts = cell_facts(options.cell);
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (int64_t l = 0; l < options.num_layers; ++l) {
    const std::string suffix = "_l" + std::to_string(l), scope = layer_scope(l, options.cell);
    const torch::Tensor w_ih = parameter(model, "rnn.weight_ih" + suffix), w_hh = parameter(model, "rnn.weight_hh" + suffix);
    const torch::Tensor b_ih = parameter(model, "rnn.bias_ih" + suffix), b_hh = parameter(model, "rnn.bias_hh" + suffix);
    nlohmann::ordered_json layer;
    if (options.cell == CellType::LSTM) {
      // TensorFlow's BasicLSTMCell, which ml5 runs: columns i, j (PyTorch's
      // g), f, o of concat(x, h) @ kernel; one bias; forget_bias 1.0 added
      // inside the cell, so it comes out of the stored bias.
      constexpr std::string_view kTensorFlowOrder = "igfo";
      const torch::Tensor kernel = gate_blocks(torch::cat({w_ih, w_hh}, 1), facts, kTensorFlowOrder).t().contiguous();
      torch::Tensor bias = gate_blocks(b_ih + b_hh, facts, kTensorFlowOrder).clone();
      const int64_t H = options.hidden_size;
      bias.narrow(0, 2 * H, H).sub_(1.0);
      vars.push_back({scope + "kernel", kernel});
      vars.push_back({scope + "bias", bias});
      layer["kernel"] = scope + "kernel";
      layer["bias"] = scope + "bias";
    } else {
      for (const auto& [name, tensor] : {std::pair{"weight_ih", w_ih}, {"weight_hh", w_hh}, {"bias_ih", b_ih}, {"bias_hh", b_hh}}) {
        vars.push_back({scope + name, tensor.contiguous()});
        layer[name] = scope + name;
      }
    }
    layers.push_back(layer);
  }
  roles["layers"] = layers;
  vars.push_back({"rnnlm/softmax_w", parameter(model, "head.weight").t().contiguous()});
  vars.push_back({"rnnlm/softmax_b", parameter(model, "head.bias").contiguous()});
  roles["output_weight"] = "rnnlm/softmax_w";
  roles["output_bias"] = "rnnlm/softmax_b";
  return vars;
}

// Probabilities after a fixed input, so that charrnn.js can tell weights
// that load but do not reproduce this model (a file from another export of
// the same shape, a flipped byte) from good ones.
nlohmann::ordered_json load_check(CharRNNImpl& model, int64_t vocab_size) {
  const int64_t T = kCheckLength;
  const torch::Tensor ids = (torch::arange(T, torch::kLong) * 7 + 3).remainder(vocab_size).view({1, T});
  const torch::Tensor probs = torch::softmax(model.forward(ids).first[0][T - 1].to(torch::kDouble), -1).contiguous();
  nlohmann::ordered_json check;
  check["ids"] = std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + T);
  check["probabilities"] = std::vector<double>(probs.data_ptr<double>(), probs.data_ptr<double>() + vocab_size);
  return check;
}

std::string ml5_limitation(const ModelOptions& o) {
  if (o.cell != CellType::LSTM)
    return "ml5.js's charRNN runs only LSTM models, this is " + to_string(o.cell);
  if (o.num_layers != 2)
    return "ml5.js 0.12.2's charRNN reads only 2-layer LSTMs, this has " + std::to_string(o.num_layers);
  return "";
}

nlohmann::ordered_json describe(const Checkpoint& checkpoint, nlohmann::ordered_json weights, nlohmann::ordered_json check,
                                bool ml5_compatible) {
  const ModelOptions& o = checkpoint.config.model;
  const SampleOptions& s = checkpoint.config.sample;
  nlohmann::ordered_json j;
  j["format"] = kWebFormat;
  j["format_version"] = kWebFormatVersion;
  j["charrnn_version"] = CHARRNN_VERSION;
  j["cell"] = to_string(o.cell);
  j["num_layers"] = o.num_layers;
  j["embedding_dim"] = o.embedding_dim;
  j["hidden_size"] = o.hidden_size;
  j["vocab_size"] = checkpoint.vocab.size();
  std::vector<int64_t> code_points;
  for (int64_t id = 0; id < checkpoint.vocab.size(); ++id) code_points.push_back(checkpoint.vocab.char_at(id));
  j["vocab"] = code_points;
  // how often each character occurred in the training text: an empty prime
  // starts from a character drawn by these, as in `charrnn generate`
  j["counts"] = checkpoint.vocab.counts();
  j["sample"] = {{"prime", s.prime},
                 {"length", s.length},
                 {"temperature", s.sampling.temperature},
                 {"top_k", s.sampling.top_k},
                 {"top_p", s.sampling.top_p},
                 {"seed", s.seed}};
  const double best = checkpoint.progress.best_val_loss;
  j["training"] = {{"steps", checkpoint.progress.step},
                   {"best_val_loss", std::isfinite(best) ? nlohmann::ordered_json(best) : nlohmann::ordered_json()},
                   {"data", checkpoint.config.data.path}};
  j["ml5_compatible"] = ml5_compatible;
  j["weights"] = std::move(weights);
  j["check"] = std::move(check);
  return j;
}

// Removes the folder it holds unless released: a failed export leaves no
// temporary folder behind.
class FolderGuard {
 public:
  explicit FolderGuard(fs::path path) : path_(std::move(path)) {}
  ~FolderGuard() {
    std::error_code ignored;
    if (!path_.empty()) fs::remove_all(path_, ignored);
  }
  FolderGuard(const FolderGuard&) = delete;
  FolderGuard& operator=(const FolderGuard&) = delete;
  void release() { path_.clear(); }

 private:
  fs::path path_;
};

fs::path sibling(const fs::path& dir, const std::string& what) {
  return dir.parent_path() / ("." + dir.filename().string() + "." + what + "-" + std::to_string(::getpid()));
}

void rename_or_throw(const fs::path& from, const fs::path& to, const std::string& what) {
  std::error_code error;
  fs::rename(from, to, error);
  if (error) throw Error("web export: cannot " + what + " " + to.string() + ": " + error.message());
}

// Puts the finished folder `staged` at `dir`, replacing an earlier export.
void move_into_place(const fs::path& staged, const fs::path& dir) {
  std::error_code error;
  const fs::file_status status = fs::symlink_status(dir, error);
  if (!fs::exists(status)) {
    rename_or_throw(staged, dir, "create");
    return;
  }
  if (!fs::is_directory(status))
    throw Error("web export: " + dir.string() + " exists and is not a folder; not replacing it");
  if (!fs::is_empty(dir, error) && !fs::exists(dir / "charrnn.json"))
    throw Error("web export: " + dir.string() + " exists and is not a charrnn web export (it has no charrnn.json); "
                "not replacing it: choose another --out or remove it");
  const fs::path old = sibling(dir, "old");
  rename_or_throw(dir, old, "move aside the earlier");
  FolderGuard old_guard(old);
  fs::rename(staged, dir, error);
  if (error) {
    std::error_code ignored;
    fs::rename(old, dir, ignored);  // the earlier export stays
    old_guard.release();
    throw Error("web export: cannot create " + dir.string() + ": " + error.message());
  }
}

void write_text(const fs::path& path, const std::string& text) { write_file_atomically(path.string(), text); }

}  // namespace

WebExport export_web(const Checkpoint& checkpoint, const std::string& out) {
  fs::path target = fs::path(out).lexically_normal();
  if (!target.has_filename()) target = target.parent_path();  // "web/" names the folder "web"
  if (target.empty() || target.filename() == "." || target.filename() == "..")
    throw UsageError("--out must name a folder to create, got \"" + out + "\"");

  CharRNN model = restore_model(checkpoint, torch::kCPU);
  model->eval();
  torch::NoGradGuard no_grad;
  const ModelOptions& options = checkpoint.config.model;

  WebExport result;
  result.ml5_limitation = ml5_limitation(options);
  result.ml5_compatible = result.ml5_limitation.empty();
  nlohmann::ordered_json roles;
  const std::vector<Variable> variables = web_variables(*model, options, roles);

  ensure_parent_directory((target / "x").string());
  const fs::path staged = sibling(target, "partial");
  std::error_code error;
  fs::remove_all(staged, error);
  if (!fs::create_directory(staged, error))
    throw Error("web export: cannot create " + staged.string() + ": " + error.message());
  FolderGuard staged_guard(staged);

  nlohmann::ordered_json manifest;
  for (const Variable& v : variables) {
    const torch::Tensor values = v.values.contiguous();
    static_assert(sizeof(float) == 4, "float32 files");
    // x86-64 and every LibTorch target is little-endian, the files' byte order
    write_file_atomically((staged / file_name(v.name)).string(),
                          std::string(static_cast<const char*>(values.data_ptr()), values.numel() * sizeof(float)));
    manifest[v.name] = {{"filename", file_name(v.name)}, {"shape", values.sizes().vec()}};
    result.weight_bytes += values.numel() * static_cast<int64_t>(sizeof(float));
  }
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (int64_t id = 0; id < checkpoint.vocab.size(); ++id) {
    std::string character;
    append_utf8(character, checkpoint.vocab.char_at(id));
    vocab[character] = id;
  }
  const auto check = load_check(*model, checkpoint.vocab.size());
  write_text(staged / "manifest.json", manifest.dump(1) + "\n");
  write_text(staged / "vocab.json", vocab.dump() + "\n");
  write_text(staged / "charrnn.json", describe(checkpoint, roles, check, result.ml5_compatible).dump(1) + "\n");
  write_text(staged / "charrnn.js", kWebRuntimeSource);
  write_text(staged / "index.html", kWebPageSource);
  write_text(staged / "probabilities.js", kProbabilityViewSource);  // index.html's "show probabilities"
#ifdef CHARRNN_WEB_KERNEL
  write_file_atomically((staged / "charrnn.wasm").string(),
                        std::string(reinterpret_cast<const char*>(kWebKernel), kWebKernel_size));
#endif
  for (const auto& entry : fs::directory_iterator(staged)) result.folder_bytes += static_cast<int64_t>(entry.file_size());

  move_into_place(staged, target);
  staged_guard.release();
  return result;
}

}  // namespace charrnn
