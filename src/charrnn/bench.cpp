#include "charrnn/bench.h"

#include <chrono>
#include <fstream>
#include <sys/resource.h>

#include "charrnn/cell.h"
#include "charrnn/evaluate.h"
#include "charrnn/generate.h"
#include "charrnn/kernels/isa.h"
#include "charrnn/kernels/packed_weight.h"
#include "charrnn/runtime.h"
#include "charrnn/trainer.h"

namespace charrnn {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void synchronize(const torch::Device& device) {
  // a CUDA figure must include the queued kernels, not just their launches;
  // a host copy of one value waits for the stream to drain.
  if (device.is_cuda()) torch::zeros({1}, torch::TensorOptions().device(device)).cpu();
}

double sgemm_gflops(int64_t n, const torch::Device& device) {
  const auto options = torch::TensorOptions().dtype(torch::kFloat).device(device);
  const torch::Tensor a = torch::randn({n, n}, options), b = torch::randn({n, n}, options);
  torch::Tensor c = torch::empty({n, n}, options);
  torch::mm_out(c, a, b);  // warm-up: thread pools, caches
  synchronize(device);
  int reps = 0;
  const auto start = Clock::now();
  do {
    torch::mm_out(c, a, b);
    ++reps;
    synchronize(device);
  } while (seconds_since(start) < 1.0);
  return 2.0 * n * n * n * reps / seconds_since(start) / 1e9;
}

// "model name" of /proc/cpuinfo: figures are only comparable on the same CPU
std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      const std::string name = line.substr(line.find(':') + 1);
      return name.substr(std::min(name.size(), name.find_first_not_of(' ')));
    }
  return "unknown";
}

double peak_rss_mb() {
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

}  // namespace

double training_step_flops(const Config& config, int64_t vocab_size) {
  const double B = config.train.batch_size, T = config.train.seq_length, E = config.model.embedding_dim,
               H = config.model.hidden_size, V = static_cast<double>(vocab_size);
  const double G = static_cast<double>(cell_facts(config.model.cell).gates);
  double forward = 0;
  for (int64_t layer = 0; layer < config.model.num_layers; ++layer) {
    const double in = layer == 0 ? E : H;
    forward += 2 * B * T * (in * G * H + H * G * H);
  }
  forward += 2 * B * T * H * V;
  return 3 * forward;  // backward: gradients of inputs and of weights, each as costly as forward
}

nlohmann::json run_bench(const Config& config, const BenchOptions& options) {
  Trainer trainer(config);  // loads the corpus, builds model and optimizer, sets threads
  const torch::Device device = trainer.device();
  const int64_t V = trainer.vocab().size();
  const double chars_per_step = static_cast<double>(config.train.batch_size * config.train.seq_length);

  for (int64_t i = 0; i < options.warmup_steps; ++i) trainer.train_step();
  synchronize(device);
  Trainer::StepTimes phases;
  auto start = Clock::now();
  for (int64_t i = 0; i < options.train_steps; ++i) trainer.train_step(options.profile ? &phases : nullptr);
  synchronize(device);
  const double train_seconds = seconds_since(start);
  const double steps_per_second = static_cast<double>(options.train_steps) / train_seconds;

  CharRNN& model = trainer.model();
  GenerateOptions gen;
  gen.prime = "";
  gen.collect = false;
  gen.length = options.gen_chars;
  start = Clock::now();
  generate(model, trainer.vocab(), gen, device, [](int64_t, std::string_view) {});
  const double gen_rate = static_cast<double>(options.gen_chars) / seconds_since(start);

  gen.num_samples = options.gen_streams;
  gen.length = options.gen_batch_chars;
  start = Clock::now();
  generate(model, trainer.vocab(), gen, device, [](int64_t, std::string_view) {});
  const double gen_batch_rate = static_cast<double>(options.gen_streams * options.gen_batch_chars) / seconds_since(start);

  const torch::Tensor& held_out = trainer.validation_ids().numel() >= 2 ? trainer.validation_ids() : trainer.training_ids();
  const torch::Tensor eval_ids = held_out.narrow(0, 0, std::min(held_out.size(0), options.eval_chars + 1));
  start = Clock::now();
  const EvalResult eval = evaluate(model, eval_ids, config.train.batch_size, config.train.seq_length, device);
  synchronize(device);
  const double eval_rate = static_cast<double>(eval.chars) / seconds_since(start);

  const double sgemm = sgemm_gflops(options.sgemm_size, device);
  // what a CPU training step's recurrent products run: the packed kernel
  // when the batch is split (single-threaded BLAS in each part)
  const int64_t parts = trainer.batch_parts(config.train.batch_size);
  const PackedWeight::Kernel train_kernel =
      device.is_cpu() ? PackedWeight::best_kernel(parts > 1 ? 1 : blas_threads()) : PackedWeight::Kernel::LibTorch;
  const double train_gflops = training_step_flops(config, V) * steps_per_second / 1e9;
  nlohmann::json result = {
      {"impl", "charrnn"},
      {"version", CHARRNN_VERSION},
      {"device", device.str()},
      {"precision", to_string(config.train.precision)},
      {"threads", current_threads()},
      {"cpu", cpu_model()},
      {"cpu_isa", to_string(cpu_isa())},
      {"isa", to_string(kernel_isa())},
      {"kernels",
       {{"train_recurrent_product", PackedWeight::describe(train_kernel)},
        {"train_batch_parts", parts},
        {"decoder_recurrent_product", PackedWeight::describe(device.is_cpu() ? PackedWeight::widest_kernel()
                                                                              : PackedWeight::Kernel::LibTorch)},
        {"element_wise", to_string(kernel_isa())},
        {"blas", blas_description()}}},
      {"cell", to_string(config.model.cell)},
      {"embedding_dim", config.model.embedding_dim},
      {"hidden_size", config.model.hidden_size},
      {"num_layers", config.model.num_layers},
      {"vocab_size", V},
      {"parameters", model->parameter_count()},
      {"batch_size", config.train.batch_size},
      {"seq_length", config.train.seq_length},
      {"train_steps", options.train_steps},
      {"train_chars_per_s", steps_per_second * chars_per_step},
      {"train_gflops", train_gflops},
      {"sgemm_gflops", sgemm},
      {"train_fraction_of_sgemm", train_gflops / sgemm},
      {"gen_chars_per_s", gen_rate},
      {"gen_batch_streams", options.gen_streams},
      {"gen_batch_chars_per_s", gen_batch_rate},
      {"eval_chars_per_s", eval_rate},
      {"peak_rss_mb", peak_rss_mb()},
  };
  if (options.profile) {
    const double n = static_cast<double>(options.train_steps);
    result["step_ms"] = {{"batch", 1e3 * phases.batch / n},       {"forward", 1e3 * phases.forward / n},
                         {"backward", 1e3 * phases.backward / n}, {"clip", 1e3 * phases.clip / n},
                         {"optimizer", 1e3 * phases.optimizer / n}, {"total", 1e3 * train_seconds / n}};
  }
  return result;
}

}  // namespace charrnn
