// charrnn: the command-line tool. It only parses arguments, calls
// charrnn_core and decides exit codes; everything testable lives in the
// library. Exit status: 0 success, 2 usage or config error, 1 anything else.
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iomanip>
#include <iostream>
#include <optional>
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
#include "charrnn/isa.h"
#include "charrnn/lr_schedule.h"
#include "charrnn/export.h"
#include "charrnn/distributed.h"
#include "charrnn/generate.h"
#include "charrnn/launch.h"
#include "charrnn/plot.h"
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
    "            (--temperature 0.2,0.5,1.0 prints a labelled sample per temperature)\n"
    "  chat      --checkpoint FILE [sampling flags]: one prompt per line, :help for settings\n"
    "  eval      --checkpoint FILE --data FILE [--json]\n"
    "  info      --checkpoint FILE [--json]\n"
    "  export    --checkpoint FILE --out FILE.pt\n"
    "  plot      METRICS_FILE... --out FILE.svg   (training also keeps NAME.loss.svg)\n"
    "  bench     --config FILE [--set KEY=VALUE]... [--steps N]\n"
    "  launch    --nproc N [--nnodes M --node-rank I --master-addr A --master-port P] -- train ...\n"
    "            (starts N workers of a distributed run; see README, Training on several machines)\n"
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

// LibTorch's messages can span lines (and carry a C++ backtrace); users get the first line.
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

std::string require(const cxxopts::ParseResult& args, const std::string& name) {
  if (!args.count(name)) throw UsageError("--" + name + " is required");
  return args[name].as<std::string>();
}

// Numbers are read here rather than by cxxopts, whose parse errors do not
// name the flag. `convert` is std::stoll or std::stod; `what` names the
// value in the error.
template <typename T, typename Convert>
T parse_numeric(const std::string& text, const std::string& what, Convert convert, const char* expected) {
  size_t used = 0;
  T value{};
  try {
    value = convert(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(static_cast<double>(value)))
    throw UsageError(what + " must be " + expected + ", got \"" + text + "\"");
  return value;
}

int64_t int_flag(const cxxopts::ParseResult& args, const std::string& name, int64_t fallback) {
  if (!args.count(name)) return fallback;
  return parse_numeric<int64_t>(args[name].as<std::string>(), "--" + name,
                                [](const std::string& t, size_t* n) { return std::stoll(t, n); }, "an integer");
}

double parse_number(const std::string& text, const std::string& what) {
  return parse_numeric<double>(text, what, [](const std::string& t, size_t* n) { return std::stod(t, n); },
                               "a finite number");
}

double number_flag(const cxxopts::ParseResult& args, const std::string& name, double fallback) {
  return args.count(name) ? parse_number(args[name].as<std::string>(), "--" + name) : fallback;
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

  std::optional<charrnn::Checkpoint> checkpoint;
  charrnn::Config config;
  if (args.count("resume")) {
    checkpoint = charrnn::load_checkpoint(args["resume"].as<std::string>());
    // defaults < checkpoint's config < config file < --set
    config = checkpoint->config;
    if (args.count("config")) config = charrnn::load_config_file(args["config"].as<std::string>(), config);
    config = charrnn::apply_overrides(config, set_flags(args));
    charrnn::validate(config);
  } else {
    config = config_from_flags(args);
  }
  // torchrun's variables make this process one rank of a distributed run;
  // rank 0 alone reports progress and writes files
  std::shared_ptr<charrnn::ProcessGroup> group;
  if (std::optional<charrnn::ProcessGroupOptions> rank = charrnn::process_group_from_environment()) {
    rank->timeout = std::chrono::milliseconds(static_cast<int64_t>(config.distributed.timeout_s * 1000));
    group = charrnn::ProcessGroup::join(*rank);
  }
  const bool reports = !group || group->rank() == 0;
  if (!reports) io.log = nullptr;
  std::unique_ptr<charrnn::Trainer> trainer =
      checkpoint ? std::make_unique<charrnn::Trainer>(*checkpoint, config, io, group)
                 : std::make_unique<charrnn::Trainer>(config, io, group);
  if (checkpoint && reports)
    std::cerr << "resuming " << args["resume"].as<std::string>() << " at step " << checkpoint->progress.step << "\n";
  if (reports) {
    std::cerr << "training " << charrnn::to_string(config.model.cell) << " " << config.model.num_layers << "x"
              << config.model.hidden_size << " (" << trainer->model()->parameter_count() << " parameters) on "
              << config.data.path << ", vocabulary " << trainer->vocab().size() << ", device "
              << trainer->device().str() << ", " << charrnn::current_threads() << " thread(s)";
    if (group)
      std::cerr << " per process, " << group->size() << " processes (effective batch " << config.train.batch_size
                << " x " << group->size() << " = " << config.train.batch_size * group->size() << ")";
    std::cerr << "\nrecipe: " << charrnn::describe_recipe(config.train) << "\n";
  }
  install_stop_handlers();
  const charrnn::TrainSummary summary = trainer->run();
  if (!reports) return summary.interrupted ? 130 : 0;
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
  std::cerr << "\nrecipe: " << charrnn::describe_recipe(trainer->config().train) << "; the last step's lr was "
            << std::defaultfloat << std::setprecision(3) << trainer->learning_rate() << "\n";
  std::cerr << "checkpoint: " << config.train.checkpoint << "\n";
  if (progress.best_step >= 0) std::cerr << "best:       " << charrnn::best_checkpoint_path(config.train.checkpoint) << "\n";
  return summary.interrupted ? 130 : 0;
}

// Sampling flags shared by generate and chat.
void add_sampling_options(cxxopts::Options& options) {
  options.add_options()
      ("checkpoint", "checkpoint or exported TorchScript file", cxxopts::value<std::string>())
      ("length", "characters to generate after the prime", cxxopts::value<std::string>())
      ("temperature", "sampling temperature; <= 0 is greedy", cxxopts::value<std::string>())
      ("top-k", "keep the K most likely characters; 0 keeps all", cxxopts::value<std::string>())
      ("top-p", "keep the smallest set with probability P; 1 keeps all", cxxopts::value<std::string>())
      ("seed", "random seed; same seed, same text; < 0 picks one", cxxopts::value<std::string>())
      ("device", "auto, cpu, cuda or cuda:N", cxxopts::value<std::string>()->default_value("auto"));
}

int64_t resolve_seed(int64_t seed) {
  if (seed >= 0) return seed;
  seed = static_cast<int64_t>(std::random_device{}() & 0x7FFFFFFF);
  std::cerr << "seed " << seed << "\n";
  return seed;
}

// The model and the generation settings the flags ask for; the checkpoint's
// sample section fills in what they leave out.
struct Generator {
  charrnn::Checkpoint checkpoint;
  torch::Device device{torch::kCPU};
  charrnn::CharRNN model{nullptr};
  charrnn::GenerateOptions options;
};

Generator load_generator(const cxxopts::ParseResult& args) {
  Generator g;
  const std::string path = require(args, "checkpoint");
  charrnn::configure_threads(0);
  g.device = charrnn::resolve_device(args["device"].as<std::string>());
  g.checkpoint = charrnn::load_model_file(path);
  g.model = charrnn::restore_model(g.checkpoint, g.device);
  const charrnn::SampleOptions& defaults = g.checkpoint.config.sample;
  g.options.prime = defaults.prime;
  g.options.length = int_flag(args, "length", defaults.length);
  g.options.sampling.temperature = defaults.temperature;
  g.options.sampling.top_k = int_flag(args, "top-k", defaults.top_k);
  g.options.sampling.top_p = number_flag(args, "top-p", defaults.top_p);
  if (g.options.sampling.top_p <= 0) throw UsageError("--top-p must be > 0");
  if (g.options.length < 0) throw UsageError("--length must be >= 0, got " + std::to_string(g.options.length));
  g.options.seed = static_cast<uint64_t>(resolve_seed(int_flag(args, "seed", defaults.seed)));
  return g;
}

// Writes generated text to stdout; a full disk must not turn a long run into
// silently lost text.
void write_out(std::string_view text) {
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size())
    throw charrnn::Error(std::string("cannot write the generated text: ") + std::strerror(errno));
}

// Streams one sample (options.num_samples == 1) to stdout, ending it with a
// newline. `keep_going` is asked between characters.
void stream_sample(Generator& g, const std::function<bool()>& keep_going = {}) {
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  char last = '\n';
  g.options.collect = false;  // memory stays flat for any length
  struct Stopped {};
  try {
    charrnn::generate(g.model, g.checkpoint.vocab, g.options, g.device, [&](int64_t, std::string_view piece) {
      if (keep_going && !keep_going()) throw Stopped{};
      write_out(piece);
      if (tty || piece.find('\n') != std::string_view::npos) std::fflush(stdout);
      if (!piece.empty()) last = piece.back();
    });
  } catch (const Stopped&) {
    last = ' ';
  }
  if (last != '\n') write_out("\n");
  std::fflush(stdout);
}

int cmd_generate(int argc, char** argv) {
  cxxopts::Options options("charrnn generate", "Generate text from a trained checkpoint.");
  add_sampling_options(options);
  options.add_options()
      ("prime", "priming text (default: the config's sample.prime)", cxxopts::value<std::string>())
      ("num-samples", "samples to generate as one batch", cxxopts::value<std::string>())
      ("stop", "end a sample once it produces TEXT (\\n, \\t understood)", cxxopts::value<std::string>());
  options.custom_help("[OPTION...]  (--temperature 0.2,0.5,1.0 prints one labelled sample per temperature)");
  const auto args = parse(options, argc, argv);
  Generator g = load_generator(args);
  if (args.count("prime")) g.options.prime = args["prime"].as<std::string>();
  g.options.num_samples = int_flag(args, "num-samples", 1);
  g.options.stop = args.count("stop") ? unescape(args["stop"].as<std::string>()) : "";

  // --temperature T or a comma-separated sweep, each from the same prime and seed
  std::vector<double> temperatures = {g.checkpoint.config.sample.temperature};
  if (args.count("temperature")) {
    temperatures.clear();
    std::stringstream list(args["temperature"].as<std::string>());
    for (std::string item; std::getline(list, item, ',');) temperatures.push_back(parse_number(item, "--temperature"));
    if (temperatures.empty()) throw UsageError("--temperature needs a value");
  }
  const bool sweep = temperatures.size() > 1;
  for (const double temperature : temperatures) {
    g.options.sampling.temperature = temperature;
    if (sweep) {
      std::ostringstream label;
      label << "=== temperature " << temperature << " ===\n";
      write_out(label.str());
    }
    if (g.options.num_samples == 1) {
      stream_sample(g);
    } else {
      g.options.collect = true;
      for (const std::string& text : charrnn::generate(g.model, g.checkpoint.vocab, g.options, g.device)) {
        write_out(text);
        if (text.empty() || text.back() != '\n') write_out("\n");
      }
    }
  }
  if (std::fflush(stdout) != 0 || std::ferror(stdout))
    throw charrnn::Error(std::string("cannot write the generated text: ") + std::strerror(errno));
  return 0;
}

constexpr const char* kChatHelp =
    "type a prompt and press Enter for its continuation; Ctrl-D quits, Ctrl-C stops a continuation\n"
    "  :temp T   temperature (<= 0 greedy)   :len N   characters per continuation\n"
    "  :seed S   seed of the next prompt     :topk K  keep the K most likely (0 all)\n"
    "  :topp P   nucleus mass (1 all)        :show    current settings   :help  this text\n";

// A ":name value" line: changes a setting. Throws UsageError on a bad one.
void apply_chat_command(const std::string& line, charrnn::GenerateOptions& o) {
  std::istringstream in(line.substr(1));
  std::string name, value, extra;
  in >> name >> value >> extra;
  if (name == "help" || name == "show") {
    std::cerr << (name == "help" ? kChatHelp : "") << "temperature " << o.sampling.temperature << ", length "
              << o.length << ", seed " << o.seed << ", top-k " << o.sampling.top_k << ", top-p " << o.sampling.top_p
              << "\n";
    return;
  }
  if (value.empty() || !extra.empty()) throw UsageError("\":" + name + "\" takes one value; :help lists the commands");
  const auto integer = [&](const std::string& what) {
    const double v = parse_number(value, what);
    if (v != std::floor(v) || std::fabs(v) > 9e15) throw UsageError(what + " must be an integer, got " + value);
    return static_cast<int64_t>(v);
  };
  if (name == "temp" || name == "temperature") {
    o.sampling.temperature = parse_number(value, ":temp");
  } else if (name == "len" || name == "length") {
    const int64_t n = integer(":len");
    if (n < 0) throw UsageError(":len must be >= 0");
    o.length = n;
  } else if (name == "seed") {
    const int64_t n = integer(":seed");
    if (n < 0) throw UsageError(":seed must be >= 0");
    o.seed = static_cast<uint64_t>(n);
  } else if (name == "topk" || name == "top-k") {
    o.sampling.top_k = integer(":topk");
  } else if (name == "topp" || name == "top-p") {
    const double p = parse_number(value, ":topp");
    if (p <= 0) throw UsageError(":topp must be > 0");
    o.sampling.top_p = p;
  } else {
    throw UsageError("unknown command \":" + name + "\"; :help lists the commands");
  }
}

// Reads a prompt per line and streams its continuation. Works on a terminal
// and under a pipe; settings change between prompts with ":name value".
int cmd_chat(int argc, char** argv) {
  cxxopts::Options options("charrnn chat", "Continue prompts read one per line; :help inside lists the settings.");
  add_sampling_options(options);
  const auto args = parse(options, argc, argv);
  Generator g = load_generator(args);
  if (args.count("temperature")) g.options.sampling.temperature = parse_number(args["temperature"].as<std::string>(), "--temperature");
  const bool interactive = ::isatty(STDIN_FILENO) != 0;
  if (interactive) std::cerr << "charrnn chat: " << kChatHelp;
  install_stop_handlers();  // Ctrl-C ends the continuation being written, not the session
  for (std::string line;;) {
    if (interactive) std::cerr << "> " << std::flush;
    g_stop_requested.store(false);
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    try {
      if (!line.empty() && line[0] == ':') {
        apply_chat_command(line, g.options);
        continue;
      }
      g.options.prime = line;
      stream_sample(g, [] { return !g_stop_requested.load(); });
      ++g.options.seed;  // the same prompt again gives another continuation
    } catch (const UsageError& e) {
      std::cerr << "error: " << first_line(e.what()) << "\n";
    }
  }
  if (interactive) std::cerr << "\n";
  return g_stop_requested.load() ? 130 : 0;
}

int cmd_plot(int argc, char** argv) {
  cxxopts::Options options("charrnn plot", "Draw the loss curves of one or more runs (their *.metrics.jsonl) as SVG.");
  options.add_options()
      ("out", "SVG file to write", cxxopts::value<std::string>())
      ("metrics", "metrics files", cxxopts::value<std::vector<std::string>>());
  options.parse_positional({"metrics"});
  options.positional_help("METRICS_FILE...");
  const auto args = parse(options, argc, argv);
  const std::string out = require(args, "out");
  if (!args.count("metrics")) throw UsageError("name at least one metrics file, e.g. models/default.metrics.jsonl");
  charrnn::write_loss_plot(args["metrics"].as<std::vector<std::string>>(), out);
  std::cerr << "wrote " << out << "\n";
  return 0;
}

int cmd_eval(int argc, char** argv) {
  cxxopts::Options options("charrnn eval", "Measure a checkpoint's loss on a text file.");
  options.add_options()
      ("checkpoint", "checkpoint or exported TorchScript file", cxxopts::value<std::string>())
      ("data", "UTF-8 text file to evaluate on", cxxopts::value<std::string>())
      ("json", "print one JSON object")
      ("streams", "the text is read as this many contiguous pieces, the state carried through each; "
                  "1 reads it as one stream, as long generation does (slower); default: the model's train.batch_size",
       cxxopts::value<int64_t>())
      ("window", "characters per forward pass, and the chunk length of loss_chunked (each chunk from a zero "
                 "state); default: the model's train.seq_length", cxxopts::value<int64_t>())
      ("device", "auto, cpu, cuda or cuda:N", cxxopts::value<std::string>()->default_value("auto"));
  const auto args = parse(options, argc, argv);
  const std::string path = require(args, "checkpoint");
  const std::string data = require(args, "data");
  const auto positive = [&](const char* name, int64_t fallback) {
    if (!args.count(name)) return fallback;
    const int64_t v = args[name].as<int64_t>();
    if (v < 1) throw UsageError(std::string("--") + name + " must be >= 1, got " + std::to_string(v));
    return v;
  };
  charrnn::configure_threads(0);
  const torch::Device device = charrnn::resolve_device(args["device"].as<std::string>());
  const charrnn::Checkpoint checkpoint = charrnn::load_model_file(path);
  const std::u32string text = charrnn::read_text_file(data);
  const charrnn::Vocab::Encoded encoded = checkpoint.vocab.encode_skipping_unknown(text);
  if (encoded.ids.size() < 2)
    throw UsageError(data + ": needs at least 2 characters the model knows; it has " +
                     std::to_string(encoded.ids.size()) + " (" + std::to_string(encoded.unknown) + " unknown)");
  charrnn::CharRNN model = charrnn::restore_model(checkpoint, device);
  const int64_t streams = positive("streams", checkpoint.config.train.batch_size);
  const int64_t window = positive("window", checkpoint.config.train.seq_length);
  const torch::Tensor ids = charrnn::to_tensor(encoded.ids);
  charrnn::EvalResult result = charrnn::evaluate(model, ids, streams, window, device);
  result.unknown_chars = encoded.unknown;
  // as many windows per pass as the carried protocol reads streams
  const charrnn::EvalResult chunked = charrnn::evaluate_chunked(model, ids, window, std::max<int64_t>(streams, 32), device);
  if (args.count("json")) {
    std::cout << nlohmann::json{{"loss", result.loss},
                                {"bpc", result.bpc},
                                {"perplexity", result.perplexity},
                                {"chars", result.chars},
                                {"unknown_chars", result.unknown_chars},
                                {"streams", result.streams},
                                {"window", window},
                                {"loss_chunked", chunked.loss},
                                {"bpc_chunked", chunked.bpc},
                                {"checkpoint", path},
                                {"data", data}}
                     .dump()
              << "\n";
  } else {
    std::cout << std::fixed << std::setprecision(4) << "loss        " << result.loss << " nats/char, the state carried through "
              << result.streams << " stream(s) of about " << result.chars / result.streams << " characters\n"
              << "bpc         " << result.bpc << " bits/char\n"
              << "chunked     " << chunked.loss << " nats/char, " << chunked.bpc << " bpc, " << window
              << "-character chunks each from a zero state\n"
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

int cmd_launch(int argc, char** argv) {
  // everything after "--" is the worker's command line
  int split = 1;
  while (split < argc && std::string(argv[split]) != "--") ++split;
  if (split >= argc - 1)
    throw UsageError("launch needs the worker's command after --, e.g. charrnn launch --nproc 2 -- train --config FILE");
  cxxopts::Options options("charrnn launch",
                           "Start the workers of a distributed run on this machine, as torchrun does.\n"
                           "  charrnn launch --nproc N -- train --config FILE [--set ...] [--resume CKPT]");
  options.add_options()
      ("nproc", "worker processes on this machine", cxxopts::value<std::string>())
      ("nnodes", "machines taking part (default 1)", cxxopts::value<std::string>())
      ("node-rank", "this machine's index, 0..nnodes-1; node 0 hosts rank 0 (default 0)", cxxopts::value<std::string>())
      ("master-addr", "address of node 0 that every node can reach (default 127.0.0.1)", cxxopts::value<std::string>())
      ("master-port", "rendezvous port on node 0 (default: a free one; required with --nnodes > 1)", cxxopts::value<std::string>())
      ("grace", "seconds the other workers get to stop after one fails (default 30)", cxxopts::value<std::string>());
  const auto args = parse(options, split, argv);
  charrnn::LaunchOptions launch;
  launch.nproc = int_flag(args, "nproc", 0);
  if (!args.count("nproc")) throw UsageError("--nproc N is required");
  launch.nnodes = int_flag(args, "nnodes", launch.nnodes);
  launch.node_rank = int_flag(args, "node-rank", launch.node_rank);
  if (args.count("master-addr")) launch.master_addr = args["master-addr"].as<std::string>();
  launch.master_port = int_flag(args, "master-port", launch.master_port);
  launch.grace_seconds = number_flag(args, "grace", launch.grace_seconds);
  const std::vector<std::string> worker(argv + split + 1, argv + argc);
  if (worker.front() != "train")
    throw UsageError("launch runs distributed training: the command after -- must be train, got \"" + worker.front() + "\"");
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) throw charrnn::Error("launch: cannot find the charrnn executable (/proc/self/exe)");
  return charrnn::launch_workers(launch, std::string(self, static_cast<size_t>(n)), worker, std::cerr);
}

}  // namespace

int main(int argc, char** argv) {
  // Past a file-size limit (ulimit -f) a write should fail with EFBIG, which
  // the writers report as errors, rather than kill the process.
  std::signal(SIGXFSZ, SIG_IGN);
  // OpenBLAS chose its kernels when it was loaded, before main; where it
  // chose SSE3 ones on a CPU with AVX2 (one it does not know yet), charrnn
  // starts again with the right ones named. A failed exec carries on.
  if (const std::string core = charrnn::openblas_core_to_force(); !core.empty()) {
    ::setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
    ::execv("/proc/self/exe", argv);
  }
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
      // what a bug report or a benchmark needs to know about the kernels
      std::cout << "charrnn " << CHARRNN_VERSION << "\nblas: " << charrnn::blas_description()
                << "\nisa: " << charrnn::to_string(charrnn::kernel_isa()) << "\n";
      return 0;
    }
    if (command == "train") return cmd_train(argc - 1, argv + 1);
    if (command == "generate") return cmd_generate(argc - 1, argv + 1);
    if (command == "chat") return cmd_chat(argc - 1, argv + 1);
    if (command == "plot") return cmd_plot(argc - 1, argv + 1);
    if (command == "eval") return cmd_eval(argc - 1, argv + 1);
    if (command == "info") return cmd_info(argc - 1, argv + 1);
    if (command == "export") return cmd_export(argc - 1, argv + 1);
    if (command == "bench") return cmd_bench(argc - 1, argv + 1);
    if (command == "launch") return cmd_launch(argc - 1, argv + 1);
    std::cerr << "error: unknown command \"" << command << "\"; commands are train, generate, chat, eval, info, export, plot, bench, launch\n";
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
