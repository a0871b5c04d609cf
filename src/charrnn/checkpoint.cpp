#include "charrnn/checkpoint.h"

#include <array>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <limits>
#include <sstream>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "charrnn/error.h"
#include "charrnn/export.h"
#include "charrnn/file_io.h"

namespace charrnn {

using nlohmann::json;

namespace {

constexpr char kMagic[8] = {'C', 'H', 'A', 'R', 'R', 'N', 'N', '\n'};
constexpr uint64_t kMaxHeaderBytes = 64ull << 20;  // a vocabulary of all of Unicode fits easily

template <typename T>
void put(std::string& out, T value) {
  unsigned char bytes[sizeof(T)];
  for (size_t i = 0; i < sizeof(T); ++i) bytes[i] = static_cast<unsigned char>(value >> (8 * i));
  out.append(reinterpret_cast<const char*>(bytes), sizeof(T));
}

template <typename T>
T get(const std::string& in, size_t offset) {
  T value = 0;
  for (size_t i = 0; i < sizeof(T); ++i)
    value |= static_cast<T>(static_cast<unsigned char>(in[offset + i])) << (8 * i);
  return value;
}

// NaN is not JSON; store "no value yet" as null.
json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
double number_or_nan(const json& v) {
  return v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

[[noreturn]] void corrupt(const std::string& path, const std::string& what) {
  throw Error(path + ": corrupt or truncated checkpoint (" + what + ")");
}

// "1234" or "1.2e+20": weight counts computed in double can exceed int64.
std::string describe_count(double n) {
  std::ostringstream out;
  out << std::setprecision(n < 1e15 ? 15 : 2) << n;
  return out.str();
}

// nlohmann's get<integer>() converts a float with a plain static_cast, which
// is undefined behaviour when the value does not fit (1e300), and wraps an
// integer out of range. Header numbers are untrusted, so they are checked
// first (the same fix as Vocab::from_json's, found by fuzz/fuzz_checkpoint.cpp).
template <typename T>
T header_integer(const json& v, const std::string& path, const std::string& key) {
  bool ok = false;
  if (v.is_number_unsigned()) {
    ok = v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max());
  } else if (v.is_number_integer()) {
    const int64_t x = v.get<int64_t>();
    ok = x >= 0 ? static_cast<uint64_t>(x) <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                : std::is_signed_v<T>;
  }
  if (!ok) corrupt(path, key + " must be an integer in range; got " + v.dump());
  return v.get<T>();
}

}  // namespace

uint32_t crc32(const void* data, size_t size) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

namespace {
std::string bytes_of(torch::serialize::OutputArchive& archive) {  // save_to is not const
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}
}  // namespace

std::string archive_module(const torch::nn::Module& module) {
  torch::serialize::OutputArchive archive;
  module.save(archive);
  return bytes_of(archive);
}

std::string archive_optimizer(const torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  return bytes_of(archive);
}

void restore_optimizer(torch::optim::Optimizer& optimizer, const std::string& bytes, const torch::Device& device) {
  try {
    std::istringstream in(bytes);
    torch::serialize::InputArchive archive;
    archive.load_from(in, device);
    optimizer.load(archive);
  } catch (const c10::Error& e) {
    throw Error(std::string("checkpoint: optimizer state cannot be restored: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {  // a TorchScript ErrorReport: see restore_model
    throw Error(std::string("checkpoint: optimizer state cannot be restored: ") + e.what());
  }
}

std::string archive_tensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  torch::serialize::OutputArchive archive;
  for (const auto& [key, tensor] : tensors) archive.write(key, tensor);
  return bytes_of(archive);
}

torch::Tensor read_archived_tensor(const std::string& bytes, const std::string& key) {
  try {
    std::istringstream in(bytes);
    torch::serialize::InputArchive archive;
    archive.load_from(in);
    torch::Tensor tensor;
    if (!archive.try_read(key, tensor)) return {};
    return tensor;
  } catch (const c10::Error& e) {
    throw Error(std::string("checkpoint: cannot read \"") + key + "\": " + e.what_without_backtrace());
  } catch (const std::exception& e) {  // a TorchScript ErrorReport: see restore_model
    throw Error(std::string("checkpoint: cannot read \"") + key + "\": " + e.what());
  }
}

namespace {

std::string rank_suffix(int64_t rank) { return rank == 0 ? "" : "_rank" + std::to_string(rank); }

torch::Tensor byte_tensor(const std::string& bytes) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  if (!bytes.empty()) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

std::string bytes_of_tensor(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous().cpu();
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.nbytes()));
}

// The carried state is an archive of its own inside the section (empty
// before the first batch), so that ranks can send it as bytes
torch::Tensor carried_state_entry(const State& carried) {
  if (!carried.defined()) return byte_tensor("");
  // as float: exact for a bf16 state too, and what restoring checks for
  std::vector<std::pair<std::string, torch::Tensor>> parts = {{"h", carried.h.to(torch::kCPU, torch::kFloat)}};
  if (carried.c.defined()) parts.emplace_back("c", carried.c.to(torch::kCPU, torch::kFloat));
  return byte_tensor(archive_tensors(parts));
}

State read_carried_state(const torch::Tensor& entry) {
  if (!entry.defined() || entry.numel() == 0) return {};
  const std::string bytes = bytes_of_tensor(entry);
  return State{read_archived_tensor(bytes, "h"), read_archived_tensor(bytes, "c")};
}

}  // namespace

std::string serialize_rank_streams(const RankStreams& streams) {
  std::vector<std::pair<std::string, torch::Tensor>> entries = {{"carried_state", carried_state_entry(streams.carried)}};
  if (streams.batcher.defined()) entries.emplace_back("batcher", streams.batcher);
  if (streams.torch_cpu.defined()) entries.emplace_back("torch_cpu", streams.torch_cpu);
  return archive_tensors(entries);
}

RankStreams parse_rank_streams(const std::string& bytes) {
  return RankStreams{read_archived_tensor(bytes, "batcher"), read_archived_tensor(bytes, "torch_cpu"),
                     read_carried_state(read_archived_tensor(bytes, "carried_state"))};
}

std::string archive_training_streams(const std::vector<RankStreams>& ranks, const torch::Tensor& batcher_position) {
  if (ranks.empty()) throw Error("checkpoint: no rank's random streams to save");
  // rank 0's generator states as they are, the other ranks' as the bytes they sent
  const auto generator_entry = [](const torch::Tensor& state) {
    return state.defined() ? byte_tensor(bytes_of_tensor(state)) : byte_tensor("");
  };
  std::vector<std::pair<std::string, torch::Tensor>> entries = {{"batcher", ranks[0].batcher},
                                                                {"torch_cpu", ranks[0].torch_cpu},
                                                                {"batcher_position", batcher_position},
                                                                {"carried_state", carried_state_entry(ranks[0].carried)}};
  for (size_t r = 1; r < ranks.size(); ++r) {
    const std::string suffix = rank_suffix(static_cast<int64_t>(r));
    entries.emplace_back("batcher" + suffix, generator_entry(ranks[r].batcher));
    entries.emplace_back("torch_cpu" + suffix, generator_entry(ranks[r].torch_cpu));
    entries.emplace_back("carried_state" + suffix, carried_state_entry(ranks[r].carried));
  }
  return archive_tensors(entries);
}

RankStreams read_rank_streams(const std::string& rng_bytes, int64_t rank) {
  if (rng_bytes.empty()) return {};
  const std::string suffix = rank_suffix(rank);
  const auto generator = [&](const std::string& key) {
    torch::Tensor state = read_archived_tensor(rng_bytes, key + suffix);
    return state.defined() && state.numel() > 0 ? state : torch::Tensor();
  };
  return RankStreams{generator("batcher"), generator("torch_cpu"),
                     read_carried_state(read_archived_tensor(rng_bytes, "carried_state" + suffix))};
}

torch::Tensor read_batcher_position(const std::string& rng_bytes) {
  return rng_bytes.empty() ? torch::Tensor() : read_archived_tensor(rng_bytes, "batcher_position");
}

json to_json(const ModelOrigin& origin) {
  return {{"checkpoint", origin.checkpoint},
          {"step", origin.step},
          {"chars_trained", origin.chars_trained},
          {"best_val_loss", number_or_null(origin.best_val_loss)},
          {"data", origin.data},
          {"added_chars", origin.added_chars}};
}

std::string serialize_checkpoint(const Checkpoint& c) {
  std::vector<std::pair<std::string, const std::string*>> sections = {
      {"model", &c.model_bytes}, {"optimizer", &c.optimizer_bytes}, {"rng", &c.rng_bytes}};
  // only when a weight average runs, so that other files stay as they were
  if (!c.training_model_bytes.empty()) sections.emplace_back("training_model", &c.training_model_bytes);
  json table = json::array();
  for (const auto& [name, bytes] : sections)
    table.push_back({{"name", name}, {"size", bytes->size()}, {"crc32", crc32(bytes->data(), bytes->size())}});
  json header = {
      {"charrnn_version", CHARRNN_VERSION},
      {"config", to_json(c.config)},
      {"vocab", c.vocab.to_json()},
      {"progress",
       {{"step", c.progress.step},
        {"chars_trained", c.progress.chars_trained},
        {"elapsed_seconds", c.progress.elapsed_seconds},
        {"best_val_loss", number_or_null(c.progress.best_val_loss)},
        {"best_step", c.progress.best_step},
        {"last_train_loss", number_or_null(c.progress.last_train_loss)}}},
      {"sections", table},
  };
  if (!c.lineage.empty()) {  // only fine-tuned models carry it, so older readers see nothing new
    json lineage = json::array();
    for (const ModelOrigin& origin : c.lineage) lineage.push_back(to_json(origin));
    header["init_from"] = lineage;
  }
  const std::string header_text = header.dump();
  std::string out;
  size_t total = sizeof kMagic + 4 + 8 + header_text.size() + 4;
  for (const auto& section : sections) total += section.second->size();
  out.reserve(total);
  out.append(kMagic, sizeof kMagic);
  put<uint32_t>(out, kCheckpointFormatVersion);
  put<uint64_t>(out, header_text.size());
  out += header_text;
  put<uint32_t>(out, crc32(header_text.data(), header_text.size()));
  for (const auto& section : sections) out += *section.second;
  return out;
}

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint) {
  ensure_parent_directory(path);
  write_file_atomically(path, serialize_checkpoint(checkpoint));
}

Checkpoint load_checkpoint(const std::string& path) { return parse_checkpoint(read_file(path), path); }

Checkpoint load_model_file(const std::string& path) {
  if (is_torchscript_file(path)) return checkpoint_from_torchscript(path);
  return load_checkpoint(path);
}

namespace {

// (the JSON parser has already refused bytes that are not UTF-8)
std::string header_text(const json& value, const std::string& source, const std::string& what) {
  if (!value.is_string()) corrupt(source, what + " is not text");
  return value.get<std::string>();
}

std::vector<ModelOrigin> parse_lineage(const json& lineage, const std::string& source) {
  if (!lineage.is_array()) corrupt(source, "init_from is not a list");
  std::vector<ModelOrigin> origins;
  for (const json& entry : lineage) {
    if (!entry.is_object()) corrupt(source, "init_from holds something other than an object");
    ModelOrigin origin;
    origin.checkpoint = header_text(entry.at("checkpoint"), source, "init_from.checkpoint");
    origin.step = header_integer<int64_t>(entry.at("step"), source, "init_from.step");
    origin.chars_trained = header_integer<int64_t>(entry.at("chars_trained"), source, "init_from.chars_trained");
    origin.best_val_loss = number_or_nan(entry.at("best_val_loss"));
    origin.data = header_text(entry.at("data"), source, "init_from.data");
    origin.added_chars = header_text(entry.at("added_chars"), source, "init_from.added_chars");
    origins.push_back(std::move(origin));
  }
  return origins;
}

}  // namespace

Checkpoint parse_checkpoint(const std::string& bytes, const std::string& source) {
  if (bytes.empty()) throw Error(source + ": checkpoint file is empty");
  if (bytes.size() < sizeof kMagic || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    throw Error(source + ": not a charrnn checkpoint (missing the CHARRNN signature)");
  size_t offset = sizeof kMagic;
  if (bytes.size() < offset + 12) corrupt(source, "file ends inside the header");
  const auto version = get<uint32_t>(bytes, offset);
  offset += 4;
  if (version > kCheckpointFormatVersion)
    throw Error(source + ": checkpoint format version " + std::to_string(version) +
                " was written by a newer charrnn; this build (" CHARRNN_VERSION ") reads up to version " +
                std::to_string(kCheckpointFormatVersion) + "; upgrade charrnn");
  if (version == 0) corrupt(source, "format version 0");
  const auto header_size = get<uint64_t>(bytes, offset);
  offset += 8;
  if (header_size > kMaxHeaderBytes || header_size + 4 > bytes.size() - offset)
    corrupt(source, "header length " + std::to_string(header_size) + " exceeds the file");
  const std::string header_text = bytes.substr(offset, header_size);
  offset += header_size;
  if (get<uint32_t>(bytes, offset) != crc32(header_text.data(), header_text.size()))
    corrupt(source, "header checksum mismatch");
  offset += 4;

  Checkpoint c;
  try {
    const json header = json::parse(header_text);
    c.charrnn_version = header.at("charrnn_version").get<std::string>();
    c.config = config_from_json(header.at("config"), source, stored_config_base());
    c.config.sample = read_legacy_sampling(c.config.sample);
    try {
      c.vocab = Vocab::from_json(header.at("vocab"));
    } catch (const Error& e) {
      corrupt(source, e.what());  // Vocab's own message does not name the file
    }
    const json& p = header.at("progress");
    c.progress.step = header_integer<int64_t>(p.at("step"), source, "progress.step");
    c.progress.chars_trained = header_integer<int64_t>(p.at("chars_trained"), source, "progress.chars_trained");
    c.progress.elapsed_seconds = p.at("elapsed_seconds").get<double>();
    c.progress.best_val_loss = number_or_nan(p.at("best_val_loss"));
    c.progress.best_step = header_integer<int64_t>(p.at("best_step"), source, "progress.best_step");
    c.progress.last_train_loss = number_or_nan(p.at("last_train_loss"));
    if (header.contains("init_from")) c.lineage = parse_lineage(header["init_from"], source);
    for (const json& section : header.at("sections")) {
      const auto name = section.at("name").get<std::string>();
      const auto size = header_integer<uint64_t>(section.at("size"), source, "section \"" + name + "\" size");
      if (size > bytes.size() - offset) corrupt(source, "section \"" + name + "\" runs past the end of the file");
      std::string data = bytes.substr(offset, size);
      offset += size;
      if (crc32(data.data(), data.size()) !=
          header_integer<uint32_t>(section.at("crc32"), source, "section \"" + name + "\" crc32"))
        corrupt(source, "section \"" + name + "\" checksum mismatch");
      if (name == "model") c.model_bytes = std::move(data);
      else if (name == "optimizer") c.optimizer_bytes = std::move(data);
      else if (name == "rng") c.rng_bytes = std::move(data);
      else if (name == "training_model") c.training_model_bytes = std::move(data);
    }
  } catch (const json::exception& e) {
    corrupt(source, std::string("malformed header: ") + e.what());
  } catch (const UsageError& e) {
    corrupt(source, std::string("stored config is invalid: ") + e.what());
  }
  if (offset != bytes.size()) corrupt(source, std::to_string(bytes.size() - offset) + " unexpected trailing bytes");
  if (c.model_bytes.empty()) corrupt(source, "no model weights");
  if (c.vocab.size() == 0) corrupt(source, "empty vocabulary");
  try {
    validate(c.config, source);
  } catch (const UsageError& e) {
    corrupt(source, std::string("stored config is invalid: ") + e.what());
  }
  return c;
}

namespace {

// `bytes`: one of the checkpoint's model archives, named `what` in messages
CharRNN restore_weights(const Checkpoint& c, const std::string& bytes, const std::string& what,
                        const torch::Device& device) {
  // The sizes come from the checkpoint's header. Building the model first
  // would allocate (and initialise) whatever it claims: hidden_size 20000 in
  // a 7 KB file asked for 6.4 GB before the archive was looked at. LibTorch
  // archives store each float32 weight uncompressed, so an archive smaller
  // than 4 bytes per weight cannot hold them.
  const double weights = parameter_count(c.config.model, c.vocab.size());
  if (weights * sizeof(float) > static_cast<double>(bytes.size()))
    throw Error("checkpoint: the stored config describes " + describe_count(weights) +
                " weights, more than its " + std::to_string(bytes.size()) + "-byte " + what +
                " archive can hold; the file is corrupt");
  CharRNN model(c.vocab.size(), c.config.model);
  std::vector<std::vector<int64_t>> expected_shapes;
  for (const auto& p : model->named_parameters()) expected_shapes.push_back(p.value().sizes().vec());
  try {
    std::istringstream in(bytes);
    torch::serialize::InputArchive archive;
    archive.load_from(in, torch::kCPU);
    model->load(archive);
  } catch (const c10::Error& e) {
    throw Error("checkpoint: " + what + " weights cannot be loaded: " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    // A LibTorch archive holds TorchScript source, which load_from compiles;
    // damaged source fails in the TorchScript frontend, whose ErrorReport is
    // a std::exception but not a c10::Error (found by fuzz/fuzz_checkpoint.cpp).
    throw Error("checkpoint: " + what + " weights cannot be loaded: " + e.what());
  }
  // LibTorch's archive loader replaces tensors without checking shapes.
  size_t i = 0;
  for (const auto& p : model->named_parameters()) {
    if (p.value().sizes().vec() != expected_shapes[i++])
      throw Error("checkpoint: weight \"" + p.key() + "\" has the wrong shape for the stored config");
  }
  model->to(device);
  return model;
}

}  // namespace

CharRNN restore_model(const Checkpoint& c, const torch::Device& device) {
  return restore_weights(c, c.model_bytes, "model", device);
}

CharRNN restore_training_model(const Checkpoint& c, const torch::Device& device) {
  if (c.training_model_bytes.empty()) return restore_model(c, device);
  return restore_weights(c, c.training_model_bytes, "training_model", device);
}

void require_resumable(const TrainingProgress& progress, const TrainOptions& train) {
  if (progress.step >= train.steps)
    throw UsageError("--resume: the checkpoint is already at step " + std::to_string(progress.step) +
                     " and train.steps is " + std::to_string(train.steps) +
                     "; raise it, e.g. --set train.steps=" + std::to_string(progress.step * 2));
  if (train.max_seconds > 0 && progress.elapsed_seconds >= train.max_seconds) {
    std::ostringstream message;
    message << "--resume: the checkpoint has trained " << std::fixed << std::setprecision(1) << progress.elapsed_seconds
            << " s and train.max_seconds is " << std::defaultfloat << train.max_seconds
            << " (the run's total, not this process's); raise it, e.g. --set train.max_seconds="
            << static_cast<int64_t>(std::ceil(train.max_seconds * 2));
    throw UsageError(message.str());
  }
}

}  // namespace charrnn
