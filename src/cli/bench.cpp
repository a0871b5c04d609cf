// charrnn bench: training, generation and evaluation speed as one JSON line.
#include "cli.h"

#include <iostream>

#include "charrnn/bench.h"

namespace charrnn::cli {

int cmd_bench(int argc, char** argv) {
  cxxopts::Options options("charrnn bench", "Measure training, generation and evaluation speed; prints one JSON line.");
  options.add_options()
      ("config", "JSON config file", cxxopts::value<std::string>())
      ("set", "override a config key (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("steps", "timed training steps", cxxopts::value<std::string>())
      ("warmup", "untimed training steps first", cxxopts::value<std::string>())
      ("gen-chars", "characters for the single-stream generation figure", cxxopts::value<std::string>())
      ("profile", "also report milliseconds per phase of a training step");
  const auto args = parse(options, argc, argv);
  const charrnn::Config config = config_from_flags(args);
  charrnn::BenchOptions bench;
  bench.train_steps = int_flag(args, "steps", bench.train_steps);
  bench.warmup_steps = int_flag(args, "warmup", bench.warmup_steps);
  bench.gen_chars = int_flag(args, "gen-chars", bench.gen_chars);
  bench.profile = args.count("profile") > 0;
  if (bench.train_steps < 1 || bench.warmup_steps < 0 || bench.gen_chars < 1)
    throw UsageError("--steps and --gen-chars must be >= 1, --warmup >= 0");
  std::cout << charrnn::run_bench(config, bench).dump() << std::endl;
  return 0;
}

}  // namespace charrnn::cli
