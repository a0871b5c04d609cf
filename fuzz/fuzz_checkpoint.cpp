// libFuzzer target for the checkpoint reader: parse_checkpoint, then on
// whatever parses restore_model, the optimizer and RNG archives (as resuming
// reads them) and one forward step.
//
// Every header and section carries a CRC-32, so nearly every mutation of a
// real checkpoint dies at a checksum and never reaches the JSON header or the
// LibTorch archives behind it. Each input is therefore tried as is (the
// framing: magic, version, lengths, checksums) and with its header checksum
// recomputed (the header: progress, sections table, the stored config and
// vocabulary, and restore_model's checks of the archives against them).
//
// With CHARRNN_FUZZ_ARCHIVES=1 the input is instead a bare model archive,
// restored into a valid checkpoint of the seeds' tiny LSTM: a malformed model
// archive inside a valid container, the dangerous case. LibTorch's loader
// compiles the TorchScript and unpickles the pickles it finds there and is
// not hardened against crafted input (PyTorch treats such archives as code),
// so this mode finds LibTorch's bugs as well as charrnn's; scripts/fuzz.sh
// runs it in fork mode and sorts the crashes by where they happen.
//
// charrnn::Error is the expected answer to bad input; anything else escaping,
// a crash, a sanitizer report, a leak or an allocation beyond libFuzzer's
// limit is a finding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include <torch/torch.h>

#include "charrnn/checkpoint.h"
#include "charrnn/error.h"
#include "tiny_checkpoint.h"

namespace {

constexpr size_t kHeaderOffset = 8 + 4 + 8;  // magic, version, header length

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_checkpoint: %s\n", what.c_str());
  std::abort();
}

uint64_t read_u64(const std::string& bytes, size_t offset) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[offset + i])) << (8 * i);
  return v;
}

void append_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// The input with its header checksum recomputed; empty when it is too broken
// to say where the header is.
std::string with_header_checksum_repaired(const std::string& in) {
  if (in.size() < kHeaderOffset) return {};
  const uint64_t header_size = read_u64(in, 12);
  if (header_size > in.size() - kHeaderOffset) return {};
  const std::string header_text = in.substr(kHeaderOffset, header_size);
  const size_t sections_at = kHeaderOffset + header_size + 4;
  std::string out = in.substr(0, 12);
  append_le(out, header_text.size(), 8);
  out += header_text;
  append_le(out, charrnn::crc32(header_text.data(), header_text.size()), 4);
  return sections_at < in.size() ? out + in.substr(sections_at) : out;
}

// Replaying an artifact with CHARRNN_FUZZ_VERBOSE=1 prints the expected
// errors too, and with CHARRNN_FUZZ_DUMP=FILE writes the checkpoint that
// reached restore_model (checksums right), ready for a regression test.
void expected(const charrnn::Error& e) {
  if (std::getenv("CHARRNN_FUZZ_VERBOSE")) std::fprintf(stderr, "expected error: %s\n", e.what());
}

void dump(const charrnn::Checkpoint& checkpoint) {
  const char* path = std::getenv("CHARRNN_FUZZ_DUMP");
  if (!path) return;
  const std::string bytes = charrnn::serialize_checkpoint(checkpoint);
  if (std::FILE* out = std::fopen(path, "wb")) {
    std::fwrite(bytes.data(), 1, bytes.size(), out);
    std::fclose(out);
  }
}

// What the CLI does with a checkpoint that parsed: restore the model, and to
// resume, the optimizer and RNG state (as trainer.cpp does); then a first step.
void try_restore(const charrnn::Checkpoint& checkpoint) {
  dump(checkpoint);
  charrnn::CharRNN model{nullptr};
  try {
    model = charrnn::restore_model(checkpoint, torch::kCPU);
  } catch (const charrnn::Error& e) {
    expected(e);
    return;
  } catch (const std::exception& e) {
    finding(std::string("restore_model threw something other than charrnn::Error: ") + e.what());
  }
  try {
    if (!checkpoint.optimizer_bytes.empty()) {
      torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(0.01));
      charrnn::restore_optimizer(adam, checkpoint.optimizer_bytes, torch::kCPU);
    }
    if (!checkpoint.rng_bytes.empty()) {
      charrnn::read_archived_tensor(checkpoint.rng_bytes, "batcher");
      charrnn::read_archived_tensor(checkpoint.rng_bytes, "torch_cpu");
    }
  } catch (const charrnn::Error& e) {
    expected(e);
  } catch (const std::exception& e) {
    finding(std::string("restoring the training state threw something other than charrnn::Error: ") + e.what());
  }
  try {
    torch::NoGradGuard no_grad;
    model->eval();
    const auto [logits, state] = model->forward(torch::zeros({1, 1}, torch::kLong));
    if (logits.size(-1) != checkpoint.vocab.size()) finding("logits do not cover the vocabulary");
  } catch (const std::exception& e) {
    finding(std::string("a restored model fails its first step: ") + e.what());
  }
}

void try_checkpoint(const std::string& bytes) {
  charrnn::Checkpoint checkpoint;
  try {
    checkpoint = charrnn::parse_checkpoint(bytes, "fuzz");
  } catch (const charrnn::Error& e) {
    expected(e);
    return;
  } catch (const std::exception& e) {
    finding(std::string("parse_checkpoint threw something other than charrnn::Error: ") + e.what());
  }
  try_restore(checkpoint);
}

bool archives_mode = false;        // CHARRNN_FUZZ_ARCHIVES=1
charrnn::Checkpoint archive_host;  // its config and vocabulary hold the fuzzed model archives

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);  // one exec at a time; a thread pool only adds noise
  const char* archives = std::getenv("CHARRNN_FUZZ_ARCHIVES");
  archives_mode = archives && std::string(archives) == "1";
  if (archives_mode) archive_host = charrnn_fuzz::tiny_checkpoint(charrnn::CellType::LSTM, 1, false);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  if (archives_mode) {
    if (bytes.empty()) return 0;  // parse_checkpoint refuses a checkpoint without weights
    charrnn::Checkpoint checkpoint = archive_host;
    checkpoint.model_bytes = bytes;
    try_restore(checkpoint);
    return 0;
  }
  try_checkpoint(bytes);
  const std::string repaired = with_header_checksum_repaired(bytes);
  if (!repaired.empty() && repaired != bytes) try_checkpoint(repaired);
  return 0;
}
