// Writes the seeds for fuzz_checkpoint: small, valid checkpoints (one per
// cell, and one with the optimizer and RNG state that resuming reads) into
// CHECKPOINT_DIR, and their bare model archives, the input of the fuzzer's
// CHARRNN_FUZZ_ARCHIVES=1 mode, into ARCHIVE_DIR.
// Usage: fuzz_seed_checkpoints CHECKPOINT_DIR ARCHIVE_DIR
#include <cstdio>
#include <fstream>
#include <string>

#include "charrnn/checkpoint.h"
#include "charrnn/error.h"
#include "tiny_checkpoint.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s CHECKPOINT_DIR ARCHIVE_DIR\n", argv[0]);
    return 2;
  }
  const std::string checkpoints = argv[1], archives = argv[2];
  using charrnn::CellType;
  const struct {
    const char* name;
    CellType cell;
    int64_t layers;
    bool with_training_state;
  } seeds[] = {{"rnn", CellType::RNN, 1, false},
               {"gru", CellType::GRU, 2, false},
               {"lstm", CellType::LSTM, 1, false},
               {"lstm-resume", CellType::LSTM, 1, true}};
  try {
    for (const auto& s : seeds) {
      const charrnn::Checkpoint c = charrnn_fuzz::tiny_checkpoint(s.cell, s.layers, s.with_training_state);
      charrnn::save_checkpoint(checkpoints + "/" + s.name + ".ckpt", c);
      std::ofstream(archives + "/" + s.name + ".model", std::ios::binary) << c.model_bytes;
    }
  } catch (const charrnn::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
