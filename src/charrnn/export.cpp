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

#include "charrnn/cell.h"
#include "charrnn/char_fold.h"
#include "charrnn/error.h"
#include "charrnn/file_io.h"
#include "charrnn/utf8.h"

namespace charrnn {

// export_module.py's methods, embedded by the build (cmake/embed_text.cmake)
extern const char* const kExportModuleSource;

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

// The one method written per model: TorchScript reads attributes only by
// names spelled out in its source, and which rnn_* weights there are depends
// on num_layers. Everything else is export_module.py, the same for every
// model, which reads the sizes and the cell's facts from attributes.
std::string recurrent_params_source(const CharRNNImpl& model) {
  return "def _recurrent_params(self) -> List[Tensor]:\n    return " + recurrent_params(model) + "\n\n";
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
  // the cell's facts (cell.h) that forward() and the step decoder read
  const CellFacts& facts = cell_facts(o.cell);
  c10::List<int64_t> decoder_ih, decoder_hh;
  for (size_t k = 0; k < static_cast<size_t>(facts.decoder_blocks); ++k) {
    decoder_ih.push_back(facts.decoder_ih[k]);
    decoder_hh.push_back(facts.decoder_hh[k]);
  }
  module.register_attribute("state_tensors", integer, facts.state_tensors);
  module.register_attribute("decoder_ih_blocks", c10::ListType::ofInts(), decoder_ih);
  module.register_attribute("decoder_hh_blocks", c10::ListType::ofInts(), decoder_hh);
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
  const std::string source = recurrent_params_source(*model) + kExportModuleSource;
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
    c.config = config_from_json(nlohmann::json::parse(module.attr("config_json").toStringRef()), path,
                                stored_config_base());
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
