// charrnn train: a fresh run, or --resume from a checkpoint.
#include "cli.h"

#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <unistd.h>

#include "charrnn/distributed.h"
#include "charrnn/fine_tune.h"
#include "charrnn/lr_schedule.h"
#include "charrnn/runtime.h"
#include "charrnn/trainer.h"
#include "charrnn/utf8.h"
#include "charrnn/export.h"

namespace charrnn::cli {

int cmd_train(int argc, char** argv) {
  cxxopts::Options options("charrnn train", "Train a character-level model from a JSON config.");
  options.add_options()
      ("config", "JSON config file (default: the built-in defaults, docs/config.md)", cxxopts::value<std::string>())
      ("set", "override a config key, e.g. --set model.cell=gru (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("resume", "continue training from this checkpoint", cxxopts::value<std::string>())
      ("init-from", "fine-tune: start from this checkpoint's (or export's) weights, on the config's data, with a "
                    "fresh optimizer at step 0; characters the text adds join the vocabulary",
       cxxopts::value<std::string>())
      ("print-config", "print the config this run would train with (JSON, every key) and exit");
  const auto args = parse(options, argc, argv);
  if (args.count("resume") && args.count("init-from"))
    throw UsageError("--resume continues a run and --init-from starts a new one from a model; give one of them "
                     "(a fine-tuned run is resumed with --resume alone)");

  charrnn::TrainerIO io;
  io.log = &std::cerr;
  io.redraw = ::isatty(STDERR_FILENO) != 0;
  io.stop_requested = &g_stop_requested;

  std::optional<charrnn::Checkpoint> checkpoint;  // --resume
  std::optional<charrnn::Checkpoint> base;        // --init-from
  charrnn::Config config;
  bool fine_tune_rate_lowered = false;
  if (args.count("resume")) {
    checkpoint = charrnn::load_checkpoint(args["resume"].as<std::string>());
    // defaults < checkpoint's config < config file < --set
    config = checkpoint->config;
    if (args.count("config")) config = charrnn::load_config_file(args["config"].as<std::string>(), config);
    config = charrnn::apply_overrides(config, set_flags(args));
    charrnn::validate(config);
  } else if (args.count("init-from")) {
    base = charrnn::load_model_file(args["init-from"].as<std::string>());
    // defaults with the base's model < config file < --set; without a
    // config file, the base's own config
    if (args.count("config")) {
      charrnn::Config defaults;
      defaults.model = base->config.model;
      config = charrnn::load_config_file(args["config"].as<std::string>(), defaults);
    } else {
      config = base->config;
    }
    config = charrnn::apply_overrides(config, set_flags(args));
    // a fine-tune learns a small text quickly and forgets the base at a
    // from-scratch rate: unless the user names a rate, it takes a lower one
    fine_tune_rate_lowered =
        !sets_key(args, "train.learning_rate") &&
        !(args.count("config") && config_file_names(args["config"].as<std::string>(), "train", "learning_rate"));
    if (fine_tune_rate_lowered) config.train = charrnn::fine_tune_rate(config.train);
    charrnn::validate(config, args.count("config") ? args["config"].as<std::string>() : "config");
  } else {
    // without --config, the built-in defaults (docs/config.md) and --set
    config = config_from_flags(args);
    if (!args.count("config") && !sets_key(args, "data.path") && !args.count("print-config") &&
        !std::filesystem::exists(config.data.path.front()))
      throw UsageError("nothing to train on: give --config FILE, or --set data.path=TEXT (a file or folder); the "
                       "built-in default, " + config.data.path.front() + ", is not there (scripts/get-data.sh "
                       "fetches it)");
  }
  if (args.count("print-config")) {
    std::cout << charrnn::to_json(config).dump(2) << "\n";
    return 0;
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
      : base     ? std::make_unique<charrnn::Trainer>(*base, args["init-from"].as<std::string>(), config, io, group)
                 : std::make_unique<charrnn::Trainer>(config, io, group);
  base.reset();  // its weights are in the trainer now
  // a prime written for the config's own text does not fit another one
  if (!checkpoint && sets_key(args, "data.path") && !sets_key(args, "sample.prime") && !config.sample.prime.empty() &&
      trainer->config().sample.prime == config.sample.prime)
    trainer->use_corpus_prime("--set data.path chose another text than the one the config's sample.prime \"" +
                              config.sample.prime + "\" was written for");
  if (checkpoint && reports)
    std::cerr << "resuming " << args["resume"].as<std::string>() << " at step " << checkpoint->progress.step << "\n";
  if (args.count("init-from") && reports) {
    const charrnn::ModelOrigin& origin = trainer->lineage().front();
    std::cerr << "fine-tuning " << origin.checkpoint << " (step " << origin.step << ", trained on " << origin.data
              << "); " << describe_added_chars(origin.added_chars) << "\n";
    const charrnn::TrainOptions& t = config.train;
    std::cerr << "fine-tuning with " << (args.count("config") ? args["config"].as<std::string>() : "the base's config")
              << "'s recipe and length"
              << (fine_tune_rate_lowered ? " at 1/" + std::to_string(static_cast<int>(charrnn::kFineTuneRateDivisor)) +
                                               " of its rate (--set train.learning_rate=R chooses one)"
                                         : "")
              << ": " << charrnn::describe_recipe(t) << "; " << t.steps << " steps"
              << (t.max_seconds > 0 ? " or " + std::to_string(static_cast<int64_t>(t.max_seconds)) + " s" : "")
              << "\n";
  }
  if (reports) {
    std::cerr << "training " << charrnn::to_string(config.model.cell) << " " << config.model.num_layers << "x"
              << config.model.hidden_size << " (" << trainer->model()->parameter_count() << " parameters) on "
              << charrnn::describe_paths(config.data.path);
    if (trainer->documents() > 1) {
      std::cerr << " (" << trainer->documents() << " files";
      if (trainer->validation_documents() > 0) std::cerr << ", " << trainer->validation_documents() << " held out";
      std::cerr << ")";
    }
    std::cerr << ", vocabulary " << trainer->vocab().size() << ", device "
              << trainer->device().str() << ", " << charrnn::current_threads() << " thread(s)";
    if (group)
      std::cerr << " per process, " << group->size() << " processes (effective batch " << config.train.batch_size
                << " x " << group->size() << " = " << config.train.batch_size * group->size() << ")";
    std::cerr << "\nrecipe: " << charrnn::describe_recipe(config.train) << "\n";
    if (!trainer->corpus_cache_note().empty()) std::cerr << trainer->corpus_cache_note() << "\n";
    if (!checkpoint) {
      const std::string& prime = trainer->config().sample.prime;
      if (prime.empty())
        std::cerr << "samples: each starts from a character drawn by frequency (sample.prime is empty)\n";
      else
        std::cerr << "samples: prime \"" << escape_for_display(prime) << "\""
                  << (trainer->sample_prime_note().empty()
                          ? " (sample.prime)"
                          : " (the text's first words: " + trainer->sample_prime_note() +
                                "; --set sample.prime=TEXT chooses another)")
                  << "\n";
    }
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

}  // namespace charrnn::cli
