// Argument parsing and the stop signal, shared by the commands (cli.h).
#include "cli.h"

#include "charrnn/file_io.h"
#include "charrnn/utf8.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace charrnn::cli {

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

namespace {

std::string shortest(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

}  // namespace

void add_dynamic_options(cxxopts::Options& options) {
  const charrnn::DynamicEvalOptions defaults;
  options.add_options()
      ("dynamic-lr", "dynamic evaluation: the step size of the RMS-normalised update; 0 never adapts (default: " +
                         shortest(defaults.learning_rate) + ")", cxxopts::value<std::string>())
      ("dynamic-decay", "dynamic evaluation: the pull back toward the trained weights per segment, in [0, 1] "
                        "(default: " + shortest(defaults.decay) + ")", cxxopts::value<std::string>())
      ("dynamic-segment", "dynamic evaluation: characters per update (default: " +
                              std::to_string(defaults.segment) + ")", cxxopts::value<std::string>());
}

charrnn::DynamicEvalOptions dynamic_options(const cxxopts::ParseResult& args) {
  charrnn::DynamicEvalOptions options;
  options.learning_rate = number_flag(args, "dynamic-lr", options.learning_rate);
  options.decay = number_flag(args, "dynamic-decay", options.decay);
  options.segment = int_flag(args, "dynamic-segment", options.segment);
  charrnn::validate(options);
  return options;
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

std::string escape_for_display(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\\') out += "\\\\";
    else out += c;
  }
  return out;
}

std::string describe_added_chars(const std::string& added_utf8) {
  const std::u32string added = charrnn::decode_utf8(added_utf8, "added characters");
  if (added.empty()) return "the text adds no character to the vocabulary";
  std::string names;
  for (char32_t c : added) names += (names.empty() ? "" : " ") + charrnn::describe_char(c);
  return "the text adds " + std::to_string(added.size()) + " character(s) to the vocabulary: " + names;
}

std::vector<std::string> repeated_flag(const cxxopts::ParseResult& args, const std::string& name) {
  // the raw values, in order: cxxopts' own vector values are cut at every
  // comma, which would split "--set sample.prime=Hello, world" and
  // --set 'data.path=["a.txt","b.txt"]'
  std::vector<std::string> values;
  for (const cxxopts::KeyValue& argument : args.arguments())
    if (argument.key() == name) values.push_back(argument.value());
  return values;
}

std::vector<std::string> set_flags(const cxxopts::ParseResult& args) { return repeated_flag(args, "set"); }

bool sets_key(const cxxopts::ParseResult& args, const std::string& key) {
  const std::vector<std::string> sets = set_flags(args);
  return std::any_of(sets.begin(), sets.end(),
                     [&](const std::string& assignment) { return assignment.rfind(key + "=", 0) == 0; });
}

bool config_file_names(const std::string& path, const std::string& section, const std::string& key) {
  // the file was read and checked already (load_config_file); this asks only whether the key is there
  const nlohmann::json j = nlohmann::json::parse(charrnn::read_file(path), nullptr, /*allow_exceptions=*/false);
  return j.is_object() && j.contains(section) && j[section].is_object() && j[section].contains(key);
}

// --config FILE then --set overrides, validated with the file named in messages.
charrnn::Config config_from_flags(const cxxopts::ParseResult& args) {
  const bool file = args.count("config") > 0;
  const std::string path = file ? args["config"].as<std::string>() : "the built-in defaults";
  charrnn::Config config =
      charrnn::apply_overrides(file ? charrnn::load_config_file(path) : charrnn::Config{}, set_flags(args));
  charrnn::validate(config, path);
  return config;
}

}  // namespace charrnn::cli
