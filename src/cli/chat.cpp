// charrnn chat: a prompt per line, each continued; ":name value" lines change the settings.
#include "cli.h"

#include <cmath>
#include <iostream>
#include <sstream>
#include <unistd.h>

namespace charrnn::cli {

constexpr const char* kChatHelp =
    "type a prompt and press Enter for its continuation; Ctrl-D quits, Ctrl-C stops a continuation\n"
    "  :temp T   temperature, 0 to 2 (0 greedy)   :len N   characters per continuation\n"
    "  :seed S   seed of the next prompt     :topk K  keep the K most likely (0 all)\n"
    "  :prime-file FILE   continue FILE's text (a prompt of many lines)\n"
    "  :topp P   nucleus mass (1 all)        :show    current settings   :help  this text\n";

// A ":name value" line: changes a setting, or (:prime-file) sets the prime
// and returns true to have it continued. Throws UsageError on a bad one.
bool apply_chat_command(const std::string& line, charrnn::GenerateOptions& o) {
  std::istringstream in(line.substr(1));
  std::string name, value, extra;
  in >> name;
  if (name == "prime-file") {
    // the rest of the line is the path, spaces and all
    std::string path = line.substr(line.find("prime-file") + std::string("prime-file").size());
    path.erase(0, path.find_first_not_of(" \t"));
    path.erase(path.find_last_not_of(" \t") + 1);
    if (path.empty()) throw UsageError("\":prime-file\" takes a file name");
    try {
      set_prime_from_file(o, path, ":prime-file ");
    } catch (const charrnn::UsageError&) {
      throw;
    } catch (const charrnn::Error& e) {
      throw UsageError(e.what());  // a file that will not read is the user's to fix; the session goes on
    }
    return true;
  }
  in >> value >> extra;
  if (name == "help" || name == "show") {
    std::cerr << (name == "help" ? kChatHelp : "") << "temperature " << o.sampling.temperature << ", length "
              << o.length << ", seed " << o.seed << ", top-k " << o.sampling.top_k << ", top-p " << o.sampling.top_p
              << "\n";
    return false;
  }
  if (value.empty() || !extra.empty()) throw UsageError("\":" + name + "\" takes one value; :help lists the commands");
  const auto integer = [&](const std::string& what) {
    const double v = parse_number(value, what);
    if (v != std::floor(v) || std::fabs(v) > 9e15) throw UsageError(what + " must be an integer, got " + value);
    return static_cast<int64_t>(v);
  };
  if (name == "temp" || name == "temperature") {
    o.sampling.temperature = temperature_flag(value, ":temp");
  } else if (name == "len" || name == "length") {
    const int64_t n = integer(":len");
    check_in_range(charrnn::kLengthRange, static_cast<double>(n), ":len");
    o.length = n;
  } else if (name == "seed") {
    const int64_t n = integer(":seed");
    if (n < 0) throw UsageError(":seed must be >= 0");
    o.seed = static_cast<uint64_t>(n);
  } else if (name == "topk" || name == "top-k") {
    o.sampling.top_k = integer(":topk");
    check_in_range(charrnn::kTopKRange, static_cast<double>(o.sampling.top_k), ":topk");
  } else if (name == "topp" || name == "top-p") {
    const double p = parse_number(value, ":topp");
    check_in_range(charrnn::kTopPRange, p, ":topp");
    o.sampling.top_p = p;
  } else {
    throw UsageError("unknown command \":" + name + "\"; :help lists the commands");
  }
  return false;
}

// Reads a prompt per line and streams its continuation. Works on a terminal
// and under a pipe; settings change between prompts with ":name value".
int cmd_chat(int argc, char** argv) {
  cxxopts::Options options("charrnn chat", "Continue prompts read one per line; :help inside lists the settings.");
  add_sampling_options(options);
  const auto args = parse(options, argc, argv);
  charrnn::TextGenerator model = load_model(args);
  charrnn::GenerateOptions settings = generate_options(args, model.config().sample);
  if (args.count("temperature"))
    settings.sampling.temperature = temperature_flag(args["temperature"].as<std::string>(), "--temperature");
  const bool interactive = ::isatty(STDIN_FILENO) != 0;
  if (interactive) std::cerr << "charrnn chat: " << kChatHelp;
  install_stop_handlers();  // Ctrl-C ends the continuation being written, not the session
  for (std::string line;;) {
    if (interactive) std::cerr << "> " << std::flush;
    g_stop_requested.store(false);
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    try {
      const bool command = !line.empty() && line[0] == ':';
      if (command && !apply_chat_command(line, settings)) continue;
      if (!command) {
        settings.prime = line;
        settings.prime_source = "the prompt";
      }
      stream_sample(model, settings, [] { return !g_stop_requested.load(); });
      ++settings.seed;  // the same prompt again gives another continuation
    } catch (const UsageError& e) {
      std::cerr << "error: " << first_line(e.what()) << "\n";
    }
  }
  if (interactive) std::cerr << "\n";
  return g_stop_requested.load() ? 130 : 0;
}

}  // namespace charrnn::cli
