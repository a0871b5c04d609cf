// charrnn: the command-line tool. It only parses arguments, calls
// charrnn_core and decides exit codes; everything testable lives in the
// library. Exit status: 0 success, 2 usage or config error, 1 anything else.
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include "charrnn/bench.h"
#include "charrnn/checkpoint.h"
#include "charrnn/config.h"
#include "charrnn/corpus.h"
#include "charrnn/error.h"
#include "charrnn/evaluate.h"
#include "charrnn/export.h"
#include "charrnn/generate.h"
#include "charrnn/runtime.h"
#include "charrnn/trainer.h"
#include "charrnn/utf8.h"

namespace {

using charrnn::UsageError;

constexpr const char* kUsage =
    "usage: charrnn <command> [options]\n"
    "\n"
    "commands:\n"
    "  train     --config FILE [--set KEY=VALUE]... [--resume CHECKPOINT]\n"
    "  generate  --checkpoint FILE [--prime TEXT] [--length N] [--temperature T]\n"
    "            [--top-k K] [--top-p P] [--seed S] [--num-samples N] [--stop TEXT]\n"
    "  eval      --checkpoint FILE --data FILE [--json]\n"
    "  info      --checkpoint FILE [--json]\n"
    "  export    --checkpoint FILE --out FILE.pt\n"
    "  bench     --config FILE [--set KEY=VALUE]... [--steps N]\n"
    "\n"
    "Run 'charrnn <command> --help' for a command's options.\n";

std::atomic<bool> g_stop_requested{false};

extern "C" void on_stop_signal(int signal) {
  if (g_stop_requested.load()) {
    // a second Ctrl-C means "now": checkpoints are written atomically, so
    // leaving mid-write costs nothing but the unsaved steps.
    std::signal(signal, SIG_DFL);
    std::raise(signal);
  }
  g_stop_requested.store(true);
}

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

cxxopts::ParseResult parse(cxxopts::Options& options, int argc, char** argv) {
  options.add_options()("h,help", "show this help");
  cxxopts::ParseResult result = options.parse(argc, argv);
  if (result.count("help")) {
    std::cout << options.help() << std::flush;
    std::exit(0);
  }
  if (!result.unmatched().empty())
    throw UsageError("unexpected argument \"" + result.unmatched().front() + "\"; see charrnn " +
                     options.program().substr(8) + " --help");
  return result;
}

std::string require(const cxxopts::ParseResult& args, const std::string& name) {
  if (!args.count(name)) throw UsageError("--" + name + " is required");
  return args[name].as<std::string>();
}

// Numbers are read here rather than by cxxopts, whose parse errors do not
// name the flag. `convert` is std::stoll or std::stod.
template <typename T, typename Convert>
T numeric_flag(const cxxopts::ParseResult& args, const std::string& name, T fallback, Convert convert,
               const char* expected) {
  if (!args.count(name)) return fallback;
  const std::string text = args[name].as<std::string>();
  size_t used = 0;
  T value{};
  try {
    value = convert(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(static_cast<double>(value)))
    throw UsageError("--" + name + " must be " + expected + ", got \"" + text + "\"");
  return value;
}

int64_t int_flag(const cxxopts::ParseResult& args, const std::string& name, int64_t fallback) {
  return numeric_flag<int64_t>(args, name, fallback, [](const std::string& t, size_t* n) { return std::stoll(t, n); },
                               "an integer");
}

double number_flag(const cxxopts::ParseResult& args, const std::string& name, double fallback) {
  return numeric_flag<double>(args, name, fallback, [](const std::string& t, size_t* n) { return std::stod(t, n); },
                              "a finite number");
}

// --stop accepts \n, \t, \r and \\ so that "stop at the end of the line" can
// be written without shell tricks.
std::string unescape(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      const char next = text[i + 1];
      if (next == 'n') { out += '\n'; ++i; continue; }
      if (next == 't') { out += '\t'; ++i; continue; }
      if (next == 'r') { out += '\r'; ++i; continue; }
      if (next == '\\') { out += '\\'; ++i; continue; }
    }
    out += text[i];
  }
  return out;
}

std::vector<std::string> set_flags(const cxxopts::ParseResult& args) {
  return args.count("set") ? args["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
}

// --config FILE then --set overrides, validated with the file named in messages.
charrnn::Config config_from_flags(const cxxopts::ParseResult& args) {
  const std::string path = require(args, "config");
  charrnn::Config config = charrnn::apply_overrides(charrnn::load_config_file(path), set_flags(args));
  charrnn::validate(config, path);
  return config;
}

int cmd_train(int argc, char** argv) {
  cxxopts::Options options("charrnn train", "Train a character-level model from a JSON config.");
  options.add_options()
      ("config", "JSON config file", cxxopts::value<std::string>())
      ("set", "override a config key, e.g. --set model.cell=gru (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("resume", "continue training from this checkpoint", cxxopts::value<std::string>());
  const auto args = parse(options, argc, argv);
  if (!args.count("config") && !args.count("resume")) throw UsageError("--config FILE is required (or --resume CHECKPOINT)");

  charrnn::TrainerIO io;
  io.log = &std::cerr;
  io.redraw = ::isatty(STDERR_FILENO) != 0;
  io.stop_requested = &g_stop_requested;

  std::unique_ptr<charrnn::Trainer> trainer;
  if (args.count("resume")) {
    const std::string path = args["resume"].as<std::string>();
    const charrnn::Checkpoint checkpoint = charrnn::load_checkpoint(path);
    // defaults < checkpoint's config < config file < --set
    charrnn::Config config = checkpoint.config;
    if (args.count("config")) config = charrnn::load_config_file(args["config"].as<std::string>(), config);
    config = charrnn::apply_overrides(config, set_flags(args));
    trainer = std::make_unique<charrnn::Trainer>(checkpoint, config, io);
    std::cerr << "resuming " << path << " at step " << checkpoint.progress.step << "\n";
  } else {
    trainer = std::make_unique<charrnn::Trainer>(config_from_flags(args), io);
  }
  const charrnn::Config& config = trainer->config();
  std::cerr << "training " << charrnn::to_string(config.model.cell) << " " << config.model.num_layers << "x"
            << config.model.hidden_size << " (" << trainer->model()->parameter_count() << " parameters) on "
            << config.data.path << ", vocabulary " << trainer->vocab().size() << ", device "
            << trainer->device().str() << ", " << charrnn::current_threads() << " thread(s)\n";
  install_stop_handlers();
  const charrnn::TrainSummary summary = trainer->run();
  const auto& progress = trainer->progress();
  std::cerr << std::fixed << std::setprecision(1) << "done: " << summary.steps_done << " steps in " << summary.seconds
            << " s, " << summary.chars_per_second << " chars/s";
  if (progress.best_step >= 0)
    std::cerr << std::setprecision(4) << ", best val loss " << progress.best_val_loss << " ("
              << progress.best_val_loss / std::log(2.0) << " bpc) at step " << progress.best_step;
  if (summary.steps_done == 0 && !summary.interrupted) {
    std::cerr << "\nnothing to train: train.steps=" << config.train.steps << "; no checkpoint written\n";
    return 0;
  }
  std::cerr << "\ncheckpoint: " << config.train.checkpoint << "\n";
  if (progress.best_step >= 0) std::cerr << "best:       " << charrnn::best_checkpoint_path(config.train.checkpoint) << "\n";
  return summary.interrupted ? 130 : 0;
}

int cmd_generate(int argc, char** argv) {
  cxxopts::Options options("charrnn generate", "Generate text from a trained checkpoint.");
  options.add_options()
      ("checkpoint", "checkpoint or exported TorchScript file", cxxopts::value<std::string>())
      ("prime", "priming text (default: the config's sample.prime)", cxxopts::value<std::string>())
      ("length", "characters to generate after the prime", cxxopts::value<std::string>())
      ("temperature", "sampling temperature; <= 0 is greedy", cxxopts::value<std::string>())
      ("top-k", "keep the K most likely characters; 0 keeps all", cxxopts::value<std::string>())
      ("top-p", "keep the smallest set with probability P; 1 keeps all", cxxopts::value<std::string>())
      ("seed", "random seed; same seed, same text; < 0 picks one", cxxopts::value<std::string>())
      ("num-samples", "samples to generate as one batch", cxxopts::value<std::string>())
      ("stop", "end a sample once it produces TEXT (\\n, \\t understood)", cxxopts::value<std::string>())
      ("device", "auto, cpu, cuda or cuda:N", cxxopts::value<std::string>()->default_value("auto"));
  const auto args = parse(options, argc, argv);
  const std::string path = require(args, "checkpoint");
  charrnn::configure_threads(0);
  const torch::Device device = charrnn::resolve_device(args["device"].as<std::string>());
  const charrnn::Checkpoint checkpoint = charrnn::load_model_file(path);
  charrnn::CharRNN model = charrnn::restore_model(checkpoint, device);

  const charrnn::SampleOptions& defaults = checkpoint.config.sample;
  charrnn::GenerateOptions gen;
  gen.prime = args.count("prime") ? args["prime"].as<std::string>() : defaults.prime;
  gen.length = int_flag(args, "length", defaults.length);
  gen.sampling.temperature = number_flag(args, "temperature", defaults.temperature);
  gen.sampling.top_k = int_flag(args, "top-k", defaults.top_k);
  gen.sampling.top_p = number_flag(args, "top-p", defaults.top_p);
  gen.num_samples = int_flag(args, "num-samples", 1);
  gen.stop = args.count("stop") ? unescape(args["stop"].as<std::string>()) : "";
  if (gen.sampling.top_p <= 0) throw UsageError("--top-p must be > 0");
  if (gen.length < 0) throw UsageError("--length must be >= 0, got " + std::to_string(gen.length));
  int64_t seed = int_flag(args, "seed", defaults.seed);
  if (seed < 0) {
    seed = static_cast<int64_t>(std::random_device{}() & 0x7FFFFFFF);
    std::cerr << "seed " << seed << "\n";
  }
  gen.seed = static_cast<uint64_t>(seed);

  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  std::string last_char_of_sample;
  if (gen.num_samples == 1) {
    // one sample streams as it is produced; memory stays flat for any length
    gen.collect = false;
    charrnn::generate(model, checkpoint.vocab, gen, device, [&](int64_t, std::string_view piece) {
      // a full disk must not turn a long run into silently lost text
      if (std::fwrite(piece.data(), 1, piece.size(), stdout) != piece.size())
        throw charrnn::Error(std::string("cannot write the generated text: ") + std::strerror(errno));
      if (tty || piece.find('\n') != std::string_view::npos) std::fflush(stdout);
      if (!piece.empty()) last_char_of_sample = std::string(1, piece.back());
    });
    if (last_char_of_sample != "\n") std::fputc('\n', stdout);
  } else {
    const auto texts = charrnn::generate(model, checkpoint.vocab, gen, device);
    for (const std::string& text : texts) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      if (text.empty() || text.back() != '\n') std::fputc('\n', stdout);
    }
  }
  if (std::fflush(stdout) != 0 || std::ferror(stdout))
    throw charrnn::Error(std::string("cannot write the generated text: ") + std::strerror(errno));
  return 0;
}

int cmd_eval(int argc, char** argv) {
  cxxopts::Options options("charrnn eval", "Measure a checkpoint's loss on a text file.");
  options.add_options()
      ("checkpoint", "checkpoint or exported TorchScript file", cxxopts::value<std::string>())
      ("data", "UTF-8 text file to evaluate on", cxxopts::value<std::string>())
      ("json", "print one JSON object")
      ("device", "auto, cpu, cuda or cuda:N", cxxopts::value<std::string>()->default_value("auto"));
  const auto args = parse(options, argc, argv);
  const std::string path = require(args, "checkpoint");
  const std::string data = require(args, "data");
  charrnn::configure_threads(0);
  const torch::Device device = charrnn::resolve_device(args["device"].as<std::string>());
  const charrnn::Checkpoint checkpoint = charrnn::load_model_file(path);
  const std::u32string text = charrnn::read_text_file(data);
  const charrnn::Vocab::Encoded encoded = checkpoint.vocab.encode_skipping_unknown(text);
  if (encoded.ids.size() < 2)
    throw UsageError(data + ": needs at least 2 characters the model knows; it has " +
                     std::to_string(encoded.ids.size()) + " (" + std::to_string(encoded.unknown) + " unknown)");
  charrnn::CharRNN model = charrnn::restore_model(checkpoint, device);
  charrnn::EvalResult result = charrnn::evaluate(model, charrnn::to_tensor(encoded.ids), checkpoint.config.train.batch_size,
                                                 checkpoint.config.train.seq_length, device);
  result.unknown_chars = encoded.unknown;
  if (args.count("json")) {
    std::cout << nlohmann::json{{"loss", result.loss},
                                {"bpc", result.bpc},
                                {"perplexity", result.perplexity},
                                {"chars", result.chars},
                                {"unknown_chars", result.unknown_chars},
                                {"checkpoint", path},
                                {"data", data}}
                     .dump()
              << "\n";
  } else {
    std::cout << std::fixed << std::setprecision(4) << "loss        " << result.loss << " nats/char\n"
              << "bpc         " << result.bpc << " bits/char\n"
              << "perplexity  " << result.perplexity << "\n"
              << "chars       " << result.chars << "\n"
              << "unknown     " << result.unknown_chars << "\n";
  }
  return 0;
}

int cmd_info(int argc, char** argv) {
  cxxopts::Options options("charrnn info", "Show what a checkpoint holds.");
  options.add_options()
      ("checkpoint", "checkpoint file", cxxopts::value<std::string>())
      ("json", "print one JSON object");
  const auto args = parse(options, argc, argv);
  const std::string path = require(args, "checkpoint");
  const charrnn::Checkpoint checkpoint = charrnn::load_model_file(path);
  const charrnn::CharRNN model(checkpoint.vocab.size(), checkpoint.config.model);
  const auto& p = checkpoint.progress;
  std::string chars;
  for (char32_t c : checkpoint.vocab.chars()) {
    if (c == '\n') chars += "\\n";
    else if (c == '\t') chars += "\\t";
    else if (c < 0x20) chars += charrnn::describe_char(c);
    else charrnn::append_utf8(chars, c);
  }
  const nlohmann::json best = p.best_step >= 0 ? nlohmann::json(p.best_val_loss) : nlohmann::json(nullptr);
  if (args.count("json")) {
    std::cout << nlohmann::json{{"checkpoint", path},
                                {"charrnn_version", checkpoint.charrnn_version},
                                {"format_version", charrnn::kCheckpointFormatVersion},
                                {"config", charrnn::to_json(checkpoint.config)},
                                {"vocab_size", checkpoint.vocab.size()},
                                {"vocab", chars},
                                {"parameters", model->parameter_count()},
                                {"step", p.step},
                                {"chars_trained", p.chars_trained},
                                {"elapsed_seconds", p.elapsed_seconds},
                                {"best_val_loss", best},
                                {"best_val_bpc", p.best_step >= 0 ? nlohmann::json(p.best_val_loss / std::log(2.0)) : nlohmann::json(nullptr)},
                                {"best_step", p.best_step}}
                     .dump()
              << "\n";
    return 0;
  }
  std::cout << "checkpoint     " << path << " (charrnn " << checkpoint.charrnn_version << ")\n"
            << "model          " << charrnn::to_string(checkpoint.config.model.cell) << ", "
            << checkpoint.config.model.num_layers << " layer(s) x " << checkpoint.config.model.hidden_size
            << " hidden, embedding " << checkpoint.config.model.embedding_dim << "\n"
            << "parameters     " << model->parameter_count() << "\n"
            << "vocabulary     " << checkpoint.vocab.size() << " characters: " << chars << "\n"
            << "step           " << p.step << " (" << p.chars_trained << " characters, " << std::fixed
            << std::setprecision(1) << p.elapsed_seconds << " s)\n";
  if (p.best_step >= 0)
    std::cout << std::setprecision(4) << "best val loss  " << p.best_val_loss << " nats/char, "
              << p.best_val_loss / std::log(2.0) << " bpc, at step " << p.best_step << "\n";
  else
    std::cout << "best val loss  (not validated yet)\n";
  std::cout << "config\n" << charrnn::to_json(checkpoint.config).dump(2) << "\n";
  return 0;
}

int cmd_export(int argc, char** argv) {
  cxxopts::Options options("charrnn export", "Export a checkpoint as a self-contained TorchScript module.");
  options.add_options()
      ("checkpoint", "checkpoint file", cxxopts::value<std::string>())
      ("out", "TorchScript file to write", cxxopts::value<std::string>());
  const auto args = parse(options, argc, argv);
  const std::string path = require(args, "checkpoint");
  const std::string out = require(args, "out");
  const charrnn::Checkpoint checkpoint = charrnn::load_model_file(path);
  charrnn::export_torchscript(checkpoint, out);
  std::cerr << "exported " << charrnn::to_string(checkpoint.config.model.cell) << " model (vocabulary "
            << checkpoint.vocab.size() << ", step " << checkpoint.progress.step << ") to " << out << "\n";
  return 0;
}

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

// LibTorch's messages can span lines (and carry a C++ backtrace); users get the first line.
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

int main(int argc, char** argv) {
  // Past a file-size limit (ulimit -f) a write should fail with EFBIG, which
  // the writers report as errors, rather than kill the process.
  std::signal(SIGXFSZ, SIG_IGN);
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string command = argv[1];
  try {
    if (command == "-h" || command == "--help" || command == "help") {
      std::cout << kUsage;
      return 0;
    }
    if (command == "--version" || command == "version") {
      std::cout << "charrnn " << CHARRNN_VERSION << "\n";
      return 0;
    }
    if (command == "train") return cmd_train(argc - 1, argv + 1);
    if (command == "generate") return cmd_generate(argc - 1, argv + 1);
    if (command == "eval") return cmd_eval(argc - 1, argv + 1);
    if (command == "info") return cmd_info(argc - 1, argv + 1);
    if (command == "export") return cmd_export(argc - 1, argv + 1);
    if (command == "bench") return cmd_bench(argc - 1, argv + 1);
    std::cerr << "error: unknown command \"" << command << "\"; commands are train, generate, eval, info, export, bench\n";
    return 2;
  } catch (const charrnn::UsageError& e) {
    std::cerr << "error: " << first_line(e.what()) << "\n";
    return 2;
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "error: " << first_line(e.what()) << "; see charrnn " << command << " --help\n";
    return 2;
  } catch (const charrnn::Error& e) {
    std::cerr << "error: " << first_line(e.what()) << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << first_line(e.what_without_backtrace()) << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "error: out of memory; use a smaller model, batch or --num-samples\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << first_line(e.what()) << "\n";
    return 1;
  }
}
