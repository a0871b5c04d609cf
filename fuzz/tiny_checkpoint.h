// The small, valid checkpoints the checkpoint fuzzer starts from, built and
// saved by the library's own code (the way tests/test_checkpoint.cpp makes
// its fixture) and kept tiny, a handful of weights, so that the fuzzer spends
// its time on structure rather than bulk. Shared by make_seed_checkpoints.cpp
// and fuzz_checkpoint.cpp.
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "charrnn/checkpoint.h"
#include "charrnn/sampler.h"
#include "charrnn/utf8.h"

namespace charrnn_fuzz {

inline charrnn::Checkpoint tiny_checkpoint(charrnn::CellType cell, int64_t layers, bool with_training_state) {
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

}  // namespace charrnn_fuzz
