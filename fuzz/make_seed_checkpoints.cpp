// Writes small, valid checkpoints into a folder, as seeds for fuzz_checkpoint:
// one per cell, built and saved by the library's own code (the way
// tests/test_checkpoint.cpp makes its fixture), and kept tiny (a handful of
// weights) so that the fuzzer spends its time on structure, not on bulk.
// Usage: fuzz_seed_checkpoints DIR
#include <cstdio>
#include <string>

#include <torch/torch.h>

#include "charrnn/checkpoint.h"
#include "charrnn/error.h"
#include "charrnn/sampler.h"
#include "charrnn/utf8.h"

namespace {

charrnn::Checkpoint tiny_checkpoint(charrnn::CellType cell, int64_t layers, bool with_training_state) {
  torch::manual_seed(0);
  charrnn::Checkpoint c;
  c.config.model.cell = cell;
  c.config.model.embedding_dim = 3;
  c.config.model.hidden_size = 4;
  c.config.model.num_layers = layers;
  c.config.train.checkpoint = "seed.pt";
  c.config.sample.prime = "h\xC3\xB6";
  c.vocab = charrnn::Vocab::from_text(charrnn::decode_utf8("hello w\xC3\xB6rld \xF0\x9F\x98\x80!"));
  c.progress.step = 7;
  c.progress.chars_trained = 224;
  c.progress.elapsed_seconds = 0.5;
  c.progress.last_train_loss = 2.5;
  c.charrnn_version = CHARRNN_VERSION;
  charrnn::CharRNN model(c.vocab.size(), c.config.model);
  if (with_training_state) {
    torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(0.01));
    auto [logits, state] = model->forward(torch::zeros({1, 3}, torch::kLong));
    logits.sum().backward();
    adam.step();
    c.optimizer_bytes = charrnn::archive_optimizer(adam);
    c.rng_bytes = charrnn::archive_tensors({{"batcher", charrnn::make_generator(7).get_state()}});
  }
  c.model_bytes = charrnn::archive_module(*model);
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  try {
    charrnn::save_checkpoint(dir + "/rnn.ckpt", tiny_checkpoint(charrnn::CellType::RNN, 1, false));
    charrnn::save_checkpoint(dir + "/gru.ckpt", tiny_checkpoint(charrnn::CellType::GRU, 2, false));
    charrnn::save_checkpoint(dir + "/lstm.ckpt", tiny_checkpoint(charrnn::CellType::LSTM, 1, false));
    charrnn::save_checkpoint(dir + "/lstm-resume.ckpt", tiny_checkpoint(charrnn::CellType::LSTM, 1, true));
  } catch (const charrnn::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
