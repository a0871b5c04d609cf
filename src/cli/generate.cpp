// charrnn generate: one streamed sample, a batch of samples, or a temperature sweep.
#include "cli.h"

#include <cstdio>
#include <sstream>

namespace charrnn::cli {

int cmd_generate(int argc, char** argv) {
  cxxopts::Options options("charrnn generate", "Generate text from a trained checkpoint.");
  add_sampling_options(options);
  options.add_options()
      ("prime", "priming text, taken literally (default: the config's sample.prime)", cxxopts::value<std::string>())
      ("prime-file", "prime with this UTF-8 file's text, exactly as it is (a trailing newline too)",
       cxxopts::value<std::string>())
      ("num-samples", "samples to generate as one batch", cxxopts::value<std::string>())
      ("stop", "end a sample once it produces TEXT (\\n, \\t understood)", cxxopts::value<std::string>());
  options.custom_help("[OPTION...]  (--temperature 0.2,0.5,1.0 prints one labelled sample per temperature)");
  const auto args = parse(options, argc, argv);
  Generator g = load_generator(args);
  if (args.count("prime") && args.count("prime-file"))
    throw UsageError("give --prime TEXT or --prime-file FILE, not both");
  if (args.count("prime")) g.options.prime = args["prime"].as<std::string>();
  if (args.count("prime-file")) set_prime_from_file(g.options, args["prime-file"].as<std::string>(), "--prime-file ");
  g.options.num_samples = int_flag(args, "num-samples", 1);
  g.options.stop = args.count("stop") ? unescape(args["stop"].as<std::string>()) : "";

  // --temperature T or a comma-separated sweep, each from the same prime and seed
  std::vector<double> temperatures = {g.checkpoint.config.sample.temperature};
  if (args.count("temperature")) {
    temperatures.clear();
    std::stringstream list(args["temperature"].as<std::string>());
    for (std::string item; std::getline(list, item, ',');) temperatures.push_back(temperature_flag(item, "--temperature"));
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

}  // namespace charrnn::cli
