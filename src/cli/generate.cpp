// charrnn generate: one streamed sample, a batch of samples, or a temperature sweep;
// with --adapt, from weights that keep learning from the prime and the text.
#include "cli.h"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace charrnn::cli {

int cmd_generate(int argc, char** argv) {
  cxxopts::Options options("charrnn generate", "Generate text from a trained checkpoint.");
  add_sampling_options(options);
  options.add_options()
      ("prime", "priming text, taken literally (default: the config's sample.prime)", cxxopts::value<std::string>())
      ("prime-file", "prime with this UTF-8 file's text, exactly as it is (a trailing newline too)",
       cxxopts::value<std::string>())
      ("num-samples", "samples to generate as one batch", cxxopts::value<std::string>())
      ("stop", "end a sample once it produces TEXT (\\n, \\t understood)", cxxopts::value<std::string>())
      ("separator", "--num-samples, not on a terminal: written between samples when any spans several lines "
                    "(default: a blank line; \\n, \\t understood)", cxxopts::value<std::string>())
      ("json", "print each sample as a JSON line: {\"sample\", \"seed\", \"temperature\", \"text\"}")
      ("adapt", "sample from a copy of the weights that learns from the prime, then from the generated text, "
                "a --dynamic-segment at a time (dynamic evaluation's update); the checkpoint is never changed; "
                "one sample at a time");
  add_dynamic_options(options);
  options.custom_help("[OPTION...]  (--temperature 0.2,0.5,1.0 prints one labelled sample per temperature)");
  const auto args = parse(options, argc, argv);
  charrnn::TextGenerator model = load_model(args);
  charrnn::GenerateOptions settings = generate_options(args, model.config().sample);
  if (args.count("prime") && args.count("prime-file"))
    throw UsageError("give --prime TEXT or --prime-file FILE, not both");
  if (args.count("prime")) settings.prime = args["prime"].as<std::string>();
  if (args.count("prime-file")) set_prime_from_file(settings, args["prime-file"].as<std::string>(), "--prime-file ");
  settings.num_samples = int_flag(args, "num-samples", 1);
  settings.adapt = args.count("adapt") > 0;
  if (!settings.adapt && (args.count("dynamic-lr") || args.count("dynamic-decay") || args.count("dynamic-segment")))
    throw UsageError("--dynamic-lr, --dynamic-decay and --dynamic-segment need --adapt");
  if (settings.adapt) settings.adaptation = dynamic_options(args);
  settings.stop = args.count("stop") ? unescape(args["stop"].as<std::string>()) : "";
  const bool json_lines = args.count("json") > 0;
  const bool terminal = ::isatty(STDOUT_FILENO) != 0;
  const std::string separator = args.count("separator") ? unescape(args["separator"].as<std::string>()) : "\n";

  // --temperature T or a comma-separated sweep, each from the same prime and seed
  std::vector<double> temperatures = {model.config().sample.sampling.temperature};
  if (args.count("temperature")) {
    temperatures.clear();
    std::stringstream list(args["temperature"].as<std::string>());
    for (std::string item; std::getline(list, item, ',');) temperatures.push_back(temperature_flag(item, "--temperature"));
    if (temperatures.empty()) throw UsageError("--temperature needs a value");
  }
  const bool sweep = temperatures.size() > 1;
  for (const double temperature : temperatures) {
    settings.sampling.temperature = temperature;
    if (sweep && !json_lines) {
      std::ostringstream label;
      label << "=== temperature " << temperature << " ===\n";
      write_out(label.str());
    }
    if (json_lines) {
      settings.collect = true;
      const std::vector<std::string> texts = model.generate_samples(settings);
      for (size_t k = 0; k < texts.size(); ++k)
        write_out(nlohmann::json({{"sample", k + 1}, {"seed", settings.seed}, {"temperature", temperature},
                                  {"text", texts[k]}})
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                  "\n");
    } else if (settings.num_samples == 1) {
      stream_sample(model, settings);
    } else {
      settings.collect = true;
      const std::vector<std::string> texts = model.generate_samples(settings);
      // samples of one line each (a name, say) read best one per line;
      // longer ones need to be told apart
      const bool one_line_each = std::all_of(texts.begin(), texts.end(), [](const std::string& text) {
        const auto first = text.find_first_not_of('\n'), last = text.find_last_not_of('\n');
        return first == std::string::npos || text.find('\n', first) > last;
      });
      for (size_t k = 0; k < texts.size(); ++k) {
        if (!one_line_each) {
          if (terminal) {
            write_out((k > 0 ? "\n" : "") + std::string("--- sample ") + std::to_string(k + 1) + " of " +
                      std::to_string(texts.size()) + " (seed " + std::to_string(settings.seed) + ") ---\n");
          } else if (k > 0) {
            write_out(separator);
          }
        }
        write_out(texts[k]);
        if (texts[k].empty() || texts[k].back() != '\n') write_out("\n");
      }
    }
  }
  if (std::fflush(stdout) != 0 || std::ferror(stdout))
    throw charrnn::Error(std::string("cannot write the generated text: ") + std::strerror(errno));
  return 0;
}

}  // namespace charrnn::cli
