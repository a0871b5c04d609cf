// `charrnn bench`: measures training, generation and evaluation speed for a
// config on this machine, next to the machine's own fp32 matrix-product rate,
// so a figure can be judged against what the hardware allows. Timing lives
// here and in docs/performance.md, never in tests.
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

#include "charrnn/config.h"

namespace charrnn {

struct BenchOptions {
  int64_t warmup_steps = 3;      ///< untimed training steps first. Default: 3
  int64_t train_steps = 20;      ///< timed training steps. Default: 20
  int64_t gen_chars = 2000;      ///< characters for the single-stream generation figure. Default: 2000
  int64_t gen_streams = 64;      ///< streams for the batched generation figure. Default: 64
  int64_t gen_batch_chars = 300;  ///< characters per stream in the batched figure. Default: 300
  int64_t eval_chars = 100000;   ///< held-out characters evaluated (at most). Default: 100000
  int64_t sgemm_size = 2048;     ///< n of the n x n x n fp32 product measured. Default: 2048
  bool profile = false;          ///< also report seconds per phase of a training step. Default: false
};

/// Matrix-product FLOPs of one training step (forward and backward), the
/// standard 3x-forward count: the analytic work behind train_gflops.
double training_step_flops(const Config& config, int64_t vocab_size);

/// Runs the measurements and returns one JSON object (docs/cli.md, charrnn bench).
nlohmann::json run_bench(const Config& config, const BenchOptions& options);

}  // namespace charrnn
