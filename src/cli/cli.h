// What the commands share: argument parsing that names the flag in every
// error, the stop signal, and the model and sampling settings that generate
// and chat build from the same flags. Each command is one file of src/cli/;
// main.cpp only dispatches. Exit status: 0 success, 2 usage or config error,
// 1 anything else (main decides; commands throw).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <cxxopts.hpp>

#include <torch/torch.h>

#include "charrnn/charrnn.h"
#include "charrnn/checkpoint.h"
#include "charrnn/config.h"
#include "charrnn/dynamic_eval.h"
#include "charrnn/error.h"
#include "charrnn/generate.h"

namespace charrnn::cli {

using charrnn::UsageError;

/// Set by SIGINT/SIGTERM once install_stop_handlers() ran; a second signal ends the process.
extern std::atomic<bool> g_stop_requested;
void install_stop_handlers();

/// Parses with --help added (prints and exits 0); an unexpected argument is a UsageError.
cxxopts::ParseResult parse(cxxopts::Options& options, int argc, char** argv);
/// LibTorch's messages can span lines (and carry a C++ backtrace); users get the first line.
std::string first_line(const std::string& text);
/// The value of a required string flag.
std::string require(const cxxopts::ParseResult& args, const std::string& name);
int64_t int_flag(const cxxopts::ParseResult& args, const std::string& name, int64_t fallback);
/// A finite number; `what` names it in the error.
double parse_number(const std::string& text, const std::string& what);
double number_flag(const cxxopts::ParseResult& args, const std::string& name, double fallback);
/// \n, \t, \r and \\ in a flag's text.
std::string unescape(const std::string& text);
/// The inverse of unescape(): newlines and tabs as \n and \t, for one line of output.
std::string escape_for_display(const std::string& text);
/// "the text adds 2 character(s) to the vocabulary: 'ö' 'ü'" (train, info).
std::string describe_added_chars(const std::string& added_utf8);
/// Every value given to a repeatable flag, verbatim and in order.
std::vector<std::string> repeated_flag(const cxxopts::ParseResult& args, const std::string& name);
std::vector<std::string> set_flags(const cxxopts::ParseResult& args);
/// Whether a --set flag assigns `key` ("data.path").
bool sets_key(const cxxopts::ParseResult& args, const std::string& key);
/// Whether the config file at `path` sets `section`.`key` itself.
bool config_file_names(const std::string& path, const std::string& section, const std::string& key);
/// --config FILE (or, without it, the built-in defaults) then --set
/// overrides, validated with the file named in messages.
charrnn::Config config_from_flags(const cxxopts::ParseResult& args);

/// --dynamic-lr, --dynamic-decay and --dynamic-segment, shared by eval
/// --dynamic and generate --adapt.
void add_dynamic_options(cxxopts::Options& options);
/// Their values over DynamicEvalOptions's defaults, validated.
charrnn::DynamicEvalOptions dynamic_options(const cxxopts::ParseResult& args);

/// Sampling flags shared by generate and chat.
void add_sampling_options(cxxopts::Options& options);
/// The model --checkpoint names, on the --device asked for.
charrnn::TextGenerator load_model(const cxxopts::ParseResult& args);
/// The generation settings the flags ask for: `sample` (the model's sample
/// section) with the flags over it. --temperature is the command's own.
charrnn::GenerateOptions generate_options(const cxxopts::ParseResult& args, const charrnn::SampleOptions& sample);
/// A --temperature (or :temp) value, range-checked (sampler.h).
double temperature_flag(const std::string& text, const std::string& what);
/// The prime is the file's text, exactly; `what` + path names it in errors.
void set_prime_from_file(charrnn::GenerateOptions& options, const std::string& path, const std::string& what);
/// A negative seed becomes a random one, printed to stderr.
int64_t resolve_seed(int64_t seed);
/// Writes generated text to stdout; a full disk is an error, not lost text.
void write_out(std::string_view text);
/// Streams one sample to stdout, ending it with a newline. `keep_going` is asked between characters.
void stream_sample(charrnn::TextGenerator& model, const charrnn::GenerateOptions& options,
                   const std::function<bool()>& keep_going = {});

int cmd_train(int argc, char** argv);
int cmd_serve(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_chat(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_export(int argc, char** argv);
int cmd_plot(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_launch(int argc, char** argv);

}  // namespace charrnn::cli
