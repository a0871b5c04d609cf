// The model and sampling settings generate and chat build from their flags,
// and the streaming of one sample to stdout (cli.h).
#include "cli.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <unistd.h>

#include "charrnn/char_fold.h"
#include "charrnn/corpus.h"
#include "charrnn/export.h"
#include "charrnn/runtime.h"
#include "charrnn/utf8.h"

namespace charrnn::cli {

void add_sampling_options(cxxopts::Options& options) {
  options.add_options()
      ("checkpoint", "checkpoint or exported TorchScript file", cxxopts::value<std::string>())
      ("length", "characters to generate after the prime", cxxopts::value<std::string>())
      ("temperature", "sampling temperature in [0, 2]; 0 is greedy", cxxopts::value<std::string>())
      ("top-k", "keep the K most likely characters; 0 keeps all", cxxopts::value<std::string>())
      ("top-p", "keep the smallest set with probability P, in (0, 1]; 1 keeps all", cxxopts::value<std::string>())
      ("seed", "random seed; same seed, same text; < 0 picks one", cxxopts::value<std::string>())
      ("strict", "a prime character the model never saw is an error, instead of being replaced by an "
                 "equivalent it knows (' for \u2019, - for \u2013, ...)")
      ("device", "auto, cpu, cuda or cuda:N", cxxopts::value<std::string>()->default_value("auto"));
}

int64_t resolve_seed(int64_t seed) {
  if (seed >= 0) return seed;
  seed = static_cast<int64_t>(std::random_device{}() & 0x7FFFFFFF);
  std::cerr << "seed " << seed << "\n";
  return seed;
}

charrnn::TextGenerator load_model(const cxxopts::ParseResult& args) {
  const std::string path = require(args, "checkpoint");
  charrnn::configure_threads(0);
  return charrnn::TextGenerator(path, args["device"].as<std::string>());
}

charrnn::GenerateOptions generate_options(const cxxopts::ParseResult& args, const charrnn::SampleOptions& sample) {
  charrnn::GenerateOptions o(sample);
  o.length = int_flag(args, "length", o.length);
  o.sampling.top_k = int_flag(args, "top-k", o.sampling.top_k);
  o.sampling.top_p = number_flag(args, "top-p", o.sampling.top_p);
  check_in_range(charrnn::kTopKRange, static_cast<double>(o.sampling.top_k), "--top-k");
  check_in_range(charrnn::kTopPRange, o.sampling.top_p, "--top-p");
  check_in_range(charrnn::kLengthRange, static_cast<double>(o.length), "--length");
  o.seed = resolve_seed(int_flag(args, "seed", o.seed));
  o.strict_prime = args.count("strict") > 0;
  o.on_fold = [](const std::string& prime_source, const std::vector<charrnn::Substitution>& substitutions) {
    std::cerr << "note: " << prime_source << ": " << charrnn::describe_substitutions(substitutions)
              << " (--strict refuses instead)\n";
  };
  return o;
}

double temperature_flag(const std::string& text, const std::string& what) {
  const double t = parse_number(text, what);
  check_in_range(charrnn::kTemperatureRange, t, what);
  return t;
}

void set_prime_from_file(charrnn::GenerateOptions& options, const std::string& path, const std::string& what) {
  // strict UTF-8 with the file and byte offset named, as for a corpus
  options.prime = charrnn::encode_utf8(charrnn::read_text_file(path));
  options.prime_source = what + path;
}

// Writes generated text to stdout; a full disk must not turn a long run into
// silently lost text.
void write_out(std::string_view text) {
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size())
    throw charrnn::Error(std::string("cannot write the generated text: ") + std::strerror(errno));
}

// Streams one sample (options.num_samples == 1) to stdout, ending it with a
// newline. `keep_going` is asked between characters.
void stream_sample(charrnn::TextGenerator& model, const charrnn::GenerateOptions& options,
                   const std::function<bool()>& keep_going) {
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  char last = '\n';
  charrnn::GenerateOptions one = options;
  one.num_samples = 1;
  one.collect = false;  // memory stays flat for any length
  struct Stopped {};
  try {
    model.generate_samples(one, [&](int64_t, std::string_view piece) {
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

}  // namespace charrnn::cli
