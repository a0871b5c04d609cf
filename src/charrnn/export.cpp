#include "charrnn/export.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/script.h>

#include "charrnn/atomic_file.h"
#include "charrnn/error.h"
#include "charrnn/utf8.h"

namespace charrnn {

namespace {

constexpr const char* kExportFormat = "charrnn-export-1";

// "rnn.weight_ih_l0" <-> "rnn_weight_ih_l0": TorchScript attribute names cannot hold dots.
std::string script_name(const std::string& name) {
  std::string out = name;
  for (char& c : out)
    if (c == '.') c = '_';
  return out;
}

std::string recurrent_params(const CharRNNImpl& model) {
  std::string list;
  for (const auto& p : model.named_parameters()) {
    if (p.key().rfind("rnn.", 0) != 0) continue;
    list += (list.empty() ? "self." : ", self.") + script_name(p.key());
  }
  return "[" + list + "]";
}

// TorchScript source. Numbers are decimal and errors are asserts: source
// compiled by define() has no Python resolver, so names like RuntimeError
// do not exist there.
std::string script_source(const CharRNNImpl& model) {
  const ModelOptions& o = model.options();
  const std::string L = std::to_string(o.num_layers), H = std::to_string(o.hidden_size);
  std::string recur;
  switch (o.cell) {
    case CellType::LSTM:
      recur = "    out, h, c = torch.lstm(x, hx, params, True, " + L + ", 0.0, False, False, True)\n"
              "    new_state = [h, c]\n";
      break;
    case CellType::GRU:
      recur = "    out, h = torch.gru(x, hx[0], params, True, " + L + ", 0.0, False, False, True)\n"
              "    new_state = [h]\n";
      break;
    case CellType::RNN:
      recur = "    out, h = torch.rnn_tanh(x, hx[0], params, True, " + L + ", 0.0, False, False, True)\n"
              "    new_state = [h]\n";
      break;
  }
  const std::string zero_state = o.cell == CellType::LSTM ? "[h0, h0]" : "[h0]";
  return R"(
def forward(self, input_ids: Tensor, state: Optional[List[Tensor]] = None) -> Tuple[Tensor, List[Tensor]]:
    x = torch.embedding(self.embedding_weight, input_ids)
    if state is None:
        h0 = x.new_zeros([)" + L + ", input_ids.size(0), " + H + R"(])
        hx = )" + zero_state + R"(
    else:
        hx = state
    params = )" + recurrent_params(model) + "\n" + recur + R"(    logits = torch.linear(out, self.head_weight, self.head_bias)
    return logits, new_state

def encode(self, text: str) -> List[int]:
    # TorchScript strings index bytes; UTF-8 is prefix-free, so the one slice
    # of 1 to 4 bytes found in the vocabulary is the next character.
    ids: List[int] = []
    i = 0
    n = len(text)
    while i < n:
        found = False
        for k in range(1, 5):
            if not found and i + k <= n:
                piece = text[i:i + k]
                if piece in self.char_to_id:
                    ids.append(self.char_to_id[piece])
                    i += k
                    found = True
        assert found, "the text holds a character the model never saw in training"
    return ids

def decode(self, ids: List[int]) -> str:
    pieces: List[str] = []
    for i in ids:
        pieces.append(self.vocab[i])
    return "".join(pieces)

def _rng_next(self, s: List[int]) -> int:
    m = 4294967295
    x = s[0]
    t = x ^ ((x << 11) & m)
    w = s[3]
    nw = w ^ (w >> 19) ^ (t ^ (t >> 8))
    s[0] = s[1]
    s[1] = s[2]
    s[2] = w
    s[3] = nw
    return nw

def _rng_seed(self, seed: int) -> List[int]:
    m = 4294967295
    # 0x243F6A88 and 0xB7E15162, as SampleRng in sampler.cpp
    s = [seed & m, (seed >> 32) & m, 608135816, 3084996962]
    for i in range(32):
        self._rng_next(s)
    return s

def _sample(self, logits: Tensor, temperature: float, top_k: int, top_p: float, rng: List[int]) -> Tensor:
    if temperature <= 0.0 or top_k == 1:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    v = logits.size(-1)
    if top_k > 0 and top_k < v:
        sorted_probs = sorted_probs.clone()
        sorted_probs.narrow(-1, top_k, v - top_k).zero_()
    if top_p < 1.0:
        kept = sorted_probs / sorted_probs.sum(-1, keepdim=True)
        mass_before = kept.cumsum(-1) - kept
        sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    cdf = sorted_probs.cumsum(-1)
    total = cdf.select(-1, -1).unsqueeze(-1)
    us: List[float] = []
    for b in range(logits.size(0)):
        us.append(float(self._rng_next(rng) >> 8) / 16777216.0)
    u = torch.tensor(us).float()  # exact: 24-bit values
    target = u.to(cdf.device).unsqueeze(-1) * total
    position = (cdf <= target).sum(-1, keepdim=True)
    last_kept = (sorted_probs > 0).sum(-1, keepdim=True) - 1
    position = torch.min(position, last_kept)
    return order.gather(-1, position).squeeze(-1)

def generate(self, prime: str, length: int, temperature: float, top_k: int, top_p: float, seed: int) -> str:
    assert length >= 0, "length must be >= 0"
    assert top_p > 0.0, "top_p must be > 0"
    rng = self._rng_seed(seed)
    pieces: List[str] = []
    if len(prime) == 0:
        counts = torch.tensor(self.counts).double()
        if float(counts.sum()) <= 0.0:
            counts = torch.ones_like(counts)
        first = self._sample(counts.log().float().unsqueeze(0), 1.0, 0, 1.0, rng)
        pieces.append(self.vocab[int(first[0])])
        inputs = first.unsqueeze(1).to(self.head_weight.device)
    else:
        inputs = torch.tensor([self.encode(prime)]).to(self.head_weight.device)
        pieces.append(prime)
    state: Optional[List[Tensor]] = None
    for i in range(length):
        logits, new_state = self.forward(inputs, state)
        state = new_state
        nxt = self._sample(logits.select(1, -1), temperature, top_k, top_p, rng)
        pieces.append(self.vocab[int(nxt[0])])
        inputs = nxt.unsqueeze(1)
    return "".join(pieces)
)";
}

// A fixed input whose logits charrnn records, so a loader can check itself.
torch::Tensor check_input(int64_t vocab_size) {
  return torch::arange(12, torch::kLong).remainder(vocab_size).view({2, 6});
}

}  // namespace

void export_torchscript(const Checkpoint& checkpoint, const std::string& path) {
  CharRNN model = restore_model(checkpoint, torch::kCPU);
  model->eval();
  torch::NoGradGuard no_grad;

  torch::jit::Module module("charrnn_export");
  for (const auto& p : model->named_parameters())
    module.register_parameter(script_name(p.key()), p.value().detach().clone(), /*is_buffer=*/false);

  c10::List<std::string> vocab;
  c10::List<int64_t> code_points, counts;
  c10::Dict<std::string, int64_t> char_to_id;
  for (int64_t id = 0; id < checkpoint.vocab.size(); ++id) {
    std::string text;
    append_utf8(text, checkpoint.vocab.char_at(id));
    vocab.push_back(text);
    code_points.push_back(static_cast<int64_t>(checkpoint.vocab.char_at(id)));
    counts.push_back(checkpoint.vocab.counts()[static_cast<size_t>(id)]);
    char_to_id.insert(text, id);
  }
  const ModelOptions& o = checkpoint.config.model;
  const auto str = c10::StringType::get();
  const auto integer = c10::IntType::get();
  module.register_attribute("format", str, std::string(kExportFormat));
  module.register_attribute("charrnn_version", str, std::string(CHARRNN_VERSION));
  module.register_attribute("cell", str, to_string(o.cell));
  module.register_attribute("vocab_size", integer, checkpoint.vocab.size());
  module.register_attribute("embedding_dim", integer, o.embedding_dim);
  module.register_attribute("hidden_size", integer, o.hidden_size);
  module.register_attribute("num_layers", integer, o.num_layers);
  module.register_attribute("config_json", str, to_json(checkpoint.config).dump());
  module.register_attribute("trained_steps", integer, checkpoint.progress.step);
  module.register_attribute("best_val_loss", c10::FloatType::get(), checkpoint.progress.best_val_loss);
  module.register_attribute("vocab", c10::ListType::ofStrings(), vocab);
  module.register_attribute("vocab_code_points", c10::ListType::ofInts(), code_points);
  module.register_attribute("counts", c10::ListType::ofInts(), counts);
  module.register_attribute("char_to_id", c10::DictType::create(str, integer), char_to_id);
  const torch::Tensor input = check_input(checkpoint.vocab.size());
  module.register_attribute("check_input_ids", c10::TensorType::get(), input);
  module.register_attribute("check_logits", c10::TensorType::get(), model->forward(input).first.contiguous());
  try {
    module.define(script_source(*model));
  } catch (const c10::Error& e) {
    throw Error(std::string("export: TorchScript compilation failed: ") + e.what_without_backtrace());
  }
  std::ostringstream out;
  module.save(out);
  ensure_parent_directory(path);
  write_file_atomically(path, out.str());
}

bool is_torchscript_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, "PK\x03\x04", 4) == 0;
}

Checkpoint checkpoint_from_torchscript(const std::string& path) {
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, torch::kCPU);
  } catch (const c10::Error& e) {
    throw Error(path + ": cannot load TorchScript archive: " + e.what_without_backtrace());
  }
  Checkpoint c;
  try {
    if (!module.hasattr("format") || module.attr("format").toStringRef() != kExportFormat)
      throw Error(path + ": a TorchScript archive, but not a charrnn export");
    c.charrnn_version = module.attr("charrnn_version").toStringRef();
    c.config = config_from_json(nlohmann::json::parse(module.attr("config_json").toStringRef()), path);
    std::vector<char32_t> chars;
    for (const c10::IValue& v : module.attr("vocab_code_points").toListRef())
      chars.push_back(static_cast<char32_t>(v.toInt()));
    std::vector<int64_t> counts;
    for (const c10::IValue& v : module.attr("counts").toListRef()) counts.push_back(v.toInt());
    c.vocab = Vocab(std::move(chars), std::move(counts));
    c.progress.step = module.attr("trained_steps").toInt();
    c.progress.best_val_loss = module.attr("best_val_loss").toDouble();
    if (std::isfinite(c.progress.best_val_loss)) c.progress.best_step = c.progress.step;
  } catch (const c10::Error& e) {
    throw Error(path + ": malformed charrnn export: " + e.what_without_backtrace());
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed charrnn export: " + e.what());
  }
  CharRNN model(c.vocab.size(), c.config.model);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters()) {
      const std::string name = script_name(p.key());
      if (!module.hasattr(name)) throw Error(path + ": charrnn export lacks weight \"" + p.key() + "\"");
      const torch::Tensor stored = module.attr(name).toTensor();
      if (stored.sizes() != p.value().sizes())
        throw Error(path + ": weight \"" + p.key() + "\" has the wrong shape for the stored config");
      p.value().copy_(stored);
    }
  }
  c.model_bytes = archive_module(*model);
  return c;
}

Checkpoint load_model_file(const std::string& path) {
  if (is_torchscript_file(path)) return checkpoint_from_torchscript(path);
  return load_checkpoint(path);
}

}  // namespace charrnn
