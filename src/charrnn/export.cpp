#include "charrnn/export.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/script.h>

#include "charrnn/char_fold.h"
#include "charrnn/error.h"
#include "charrnn/file_io.h"
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
  // StepDecoder's weights and step (step_decoder.cpp), op for op, one stream.
  std::string decoder_layer_weights, decoder_cell;
  switch (o.cell) {
    case CellType::LSTM:
      decoder_layer_weights = R"(
        w = torch.cat([self._lstm_order(w_ih), self._lstm_order(w_hh)], 1)
        b = self._lstm_order(b_ih + b_hh)
)";
      decoder_cell = R"(
        gates.narrow(0, 0, 3 * H).sigmoid_()
        gates.narrow(0, 3 * H, H).tanh_()
        cl = c[l]
        cl.mul_(gates.narrow(0, H, H))
        cl.addcmul_(gates.narrow(0, 0, H), gates.narrow(0, 3 * H, H))
        x.narrow(0, E + l * H, H).copy_(gates.narrow(0, 2 * H, H) * torch.tanh(cl))
)";
      break;
    case CellType::GRU:
      decoder_layer_weights = R"(
        n_in = w_ih.size(1)
        w = torch.cat([torch.cat([w_ih.narrow(0, 0, 2 * H), w_hh.narrow(0, 0, 2 * H)], 1),
                       torch.cat([w_ih.narrow(0, 2 * H, H), torch.zeros([H, H], dtype=w_hh.dtype, device=w_hh.device)], 1),
                       torch.cat([torch.zeros([H, n_in], dtype=w_ih.dtype, device=w_ih.device), w_hh.narrow(0, 2 * H, H)], 1)], 0)
        b = torch.cat([b_ih.narrow(0, 0, 2 * H) + b_hh.narrow(0, 0, 2 * H), b_ih.narrow(0, 2 * H, H), b_hh.narrow(0, 2 * H, H)], 0)
)";
      decoder_cell = R"(
        gates.narrow(0, 0, 2 * H).sigmoid_()
        n = gates.narrow(0, 2 * H, H)
        n.addcmul_(gates.narrow(0, 0, H), gates.narrow(0, 3 * H, H)).tanh_()
        x.narrow(0, E + l * H, H).sub_(n).mul_(gates.narrow(0, H, H)).add_(n)
)";
      break;
    case CellType::RNN:
      decoder_layer_weights = R"(
        w = torch.cat([w_ih, w_hh], 1)
        b = b_ih + b_hh
)";
      decoder_cell = R"(
        x.narrow(0, E + l * H, H).copy_(torch.tanh(gates))
)";
      break;
  }
  const std::string E = std::to_string(o.embedding_dim);
  const std::string sizes = "    E = " + E + "\n    H = " + H + "\n    L = " + L + "\n";
  const std::string lstm_state = o.cell == CellType::LSTM ? "                c[l].copy_(state[1][l][0])\n" : "";
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

def _fold(self, text: str) -> Tuple[str, List[str]]:
    # char_fold.h's rule, with the tables charrnn built for this vocabulary:
    # at each position the longest sequence key, else the character itself
    # when the model knows it, else its equivalent (the opening form of a
    # quote after an opener or at the start). Byte slices, as in encode();
    # a key or a vocabulary entry is always a whole character.
    pieces: List[str] = []
    notes: List[str] = []
    i = 0
    n = len(text)
    prev = ""
    while i < n:
        matched = False
        k = min(self.fold_max_bytes, n - i)
        while k >= 2 and not matched:
            piece = text[i:i + k]
            if piece in self.fold_sequences:
                to = self.fold_sequences[piece]
                pieces.append(to)
                notes.append(piece + " -> " + to)
                prev = piece[k - 1:k]
                i += k
                matched = True
            k -= 1
        for k in range(1, 5):
            if not matched and i + k <= n:
                piece = text[i:i + k]
                if piece in self.char_to_id:
                    pieces.append(piece)
                    matched = True
                elif piece in self.fold_after_opening and (prev == "" or prev in self.fold_openers):
                    pieces.append(self.fold_after_opening[piece])
                    notes.append(piece + " -> " + self.fold_after_opening[piece])
                    matched = True
                elif piece in self.fold_single:
                    pieces.append(self.fold_single[piece])
                    notes.append(piece + " -> " + self.fold_single[piece])
                    matched = True
                if matched:
                    prev = piece
                    i += k
        assert matched, "the text holds a character the model never saw in training and knows no equivalent for"
    return "".join(pieces), notes

def fold_prime(self, text: str) -> str:
    return self._fold(text)[0]

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

def _sample(self, logits: Tensor, temperature: float, top_k: int, top_p: float, rng: List[int]) -> int:
    # sampler.h's recipe for one row; logits: (1, V)
    if temperature <= 0.0 or top_k == 1:
        return int(logits.argmax(-1)[0])
    probs = torch.softmax(logits.float() / temperature, -1)[0].cpu()
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    v = probs.size(0)
    k = v
    if top_k > 0 and top_k < v:
        k = top_k
    cdf = sorted_probs.narrow(0, 0, k).double().cumsum(0)
    kept = k
    if top_p < 1.0:
        limit = top_p * float(cdf[k - 1])
        kept = 1 + int((cdf.narrow(0, 0, k - 1) < limit).sum())
    u = float(self._rng_next(rng) >> 8) / 16777216.0  # exact: 24-bit values
    target = u * float(cdf[kept - 1])
    position = int((cdf.narrow(0, 0, kept) <= target).sum())
    if position > kept - 1:
        position = kept - 1
    return int(order[position])

def _lstm_order(self, t: Tensor) -> Tensor:
    H = )" + H + R"(
    return torch.cat([t.narrow(0, 0, 2 * H), t.narrow(0, 3 * H, H), t.narrow(0, 2 * H, H)], 0)

def _decoder_weights(self) -> List[Tensor]:
)" + sizes + R"(    params = )" + recurrent_params(model) + R"(
    ws: List[Tensor] = []
    for l in range(L):
        w_ih = params[4 * l]
        w_hh = params[4 * l + 1]
        b_ih = params[4 * l + 2]
        b_hh = params[4 * l + 3])" + decoder_layer_weights + R"(        ws.append(w.contiguous())
        ws.append(b.contiguous())
    return ws

def _step(self, token: int, x: Tensor, c: Tensor, ws: List[Tensor]) -> Tensor:
)" + sizes + R"(    x.narrow(0, 0, E).copy_(self.embedding_weight[token])
    for l in range(L):
        first = 0
        width = E + H
        if l > 0:
            first = E + (l - 1) * H
            width = 2 * H
        gates = torch.addmv(ws[2 * l + 1], ws[2 * l], x.narrow(0, first, width)))" + decoder_cell + R"(    return torch.addmv(self.head_bias, self.head_weight, x.narrow(0, E + (L - 1) * H, H)).unsqueeze(0)

def generate(self, prime: str, length: int, temperature: float, top_k: int, top_p: float, seed: int,
             strict: bool = False) -> str:
    assert length >= 0, "length must be >= 0"
    assert top_p > 0.0, "top_p must be > 0"
    if not strict:
        folded = self._fold(prime)
        prime = folded[0]
        if len(folded[1]) > 0:
            # aten::warn, a UserWarning in Python (define() knows no `warnings` module)
            torch.warn("prime: replaced characters the model never saw: " + ", ".join(folded[1]), 2)
)" + sizes + R"(    rng = self._rng_seed(seed)
    pieces: List[str] = []
    ws = self._decoder_weights()
    x = torch.zeros([E + L * H], dtype=self.head_weight.dtype, device=self.head_weight.device)
    c = torch.zeros([L, H], dtype=self.head_weight.dtype, device=self.head_weight.device)
    if len(prime) == 0:
        counts = torch.tensor(self.counts).double()
        if float(counts.sum()) <= 0.0:
            counts = torch.ones_like(counts)
        first = self._sample(counts.log().float().unsqueeze(0), 1.0, 0, 1.0, rng)
        pieces.append(self.vocab[first])
        logits = self._step(first, x, c, ws)
    else:
        # forward() over the prime in chunks of 2048, as generate.cpp does
        ids = torch.tensor([self.encode(prime)]).to(self.head_weight.device)
        pieces.append(prime)
        n = ids.size(1)
        state: Optional[List[Tensor]] = None
        logits = torch.zeros([1, self.vocab_size])
        pos = 0
        while pos < n:
            out, new_state = self.forward(ids.narrow(1, pos, min(2048, n - pos)), state)
            state = new_state
            logits = out.select(1, -1)
            pos += 2048
        if state is not None:
            for l in range(L):
                x.narrow(0, E + l * H, H).copy_(state[0][l][0])
)" + lstm_state + R"(    for i in range(length):
        token = self._sample(logits, temperature, top_k, top_p, rng)
        pieces.append(self.vocab[token])
        if i + 1 < length:
            logits = self._step(token, x, c, ws)
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
  // the prime's fold table for this vocabulary (char_fold.h), applied by _fold()
  const CharFolder::Table fold = CharFolder(checkpoint.vocab).table();
  c10::Dict<std::string, std::string> sequences, single, after_opening;
  c10::Dict<std::string, int64_t> openers;
  int64_t max_key_bytes = 0;
  for (const auto& [from, to] : fold.sequences) {
    const std::string key = encode_utf8(from);
    max_key_bytes = std::max<int64_t>(max_key_bytes, static_cast<int64_t>(key.size()));
    sequences.insert(key, encode_utf8(to));
  }
  for (const auto& [from, to] : fold.single) single.insert(encode_utf8(std::u32string(1, from)), encode_utf8(to));
  for (const auto& [from, to] : fold.after_opening)
    after_opening.insert(encode_utf8(std::u32string(1, from)), encode_utf8(to));
  for (char32_t c : fold.openers) openers.insert(encode_utf8(std::u32string(1, c)), 1);
  const auto str_dict = c10::DictType::create(str, str);
  module.register_attribute("fold_sequences", str_dict, sequences);
  module.register_attribute("fold_single", str_dict, single);
  module.register_attribute("fold_after_opening", str_dict, after_opening);
  module.register_attribute("fold_openers", c10::DictType::create(str, integer), openers);
  module.register_attribute("fold_max_bytes", integer, max_key_bytes);
  const torch::Tensor input = check_input(checkpoint.vocab.size());
  module.register_attribute("check_input_ids", c10::TensorType::get(), input);
  module.register_attribute("check_logits", c10::TensorType::get(), model->forward(input).first.contiguous());
  const std::string source = script_source(*model);
  if (std::getenv("CHARRNN_DEBUG_EXPORT")) std::cerr << source;
  try {
    module.define(source);
  } catch (const c10::Error& e) {
    throw Error(std::string("export: TorchScript compilation failed: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {  // torch::jit::ErrorReport, whose message starts on a new line
    std::string what = e.what();
    what.erase(0, what.find_first_not_of(" \n"));
    throw Error("export: TorchScript compilation failed: " + what);
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
    c.config.sample = read_legacy_sampling(c.config.sample);
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


}  // namespace charrnn
