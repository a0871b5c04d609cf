// charrnn: the command-line tool. It only dispatches to one file per command
// (src/cli/*.cpp) and decides exit codes; everything testable lives in the
// library. Exit status: 0 success, 2 usage or config error, 1 anything else.
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <unistd.h>
#include <vector>

#include <cxxopts.hpp>

#include "charrnn/kernels/isa.h"
#include "charrnn/runtime.h"
#include "cli.h"

namespace {

using namespace charrnn::cli;

// The command table: the usage text, the dispatch and the unknown-command
// message all come from it, so a new command cannot be left out of one.
struct Command {
  const char* name;
  int (*run)(int argc, char** argv);
  const char* synopsis;  // the usage lines after the name
};

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"train", cmd_train,
       "[--config FILE] [--set KEY=VALUE]... [--resume CHECKPOINT | --init-from CHECKPOINT]\n"
       "            (without --config: the built-in defaults, e.g. --set data.path=notes.txt)"},
      {"generate", cmd_generate,
       "--checkpoint FILE [--prime TEXT | --prime-file FILE] [--length N] [--temperature T]\n"
       "            [--top-k K] [--top-p P] [--seed S] [--num-samples N] [--stop TEXT] [--strict]\n"
       "            (--temperature 0.2,0.5,1.0 prints a labelled sample per temperature)"},
      {"chat", cmd_chat, "--checkpoint FILE [sampling flags]: one prompt per line, :help for settings"},
      {"eval", cmd_eval, "--checkpoint FILE --data PATH [--data PATH]... [--glob PATTERN] [--json]"},
      {"serve", cmd_serve,
       "--checkpoint FILE [--host 127.0.0.1] [--port 8080] [--slots 64] [--api-key KEY]\n"
       "            (OpenAI-compatible /v1/completions with streaming, a playground at /)"},
      {"info", cmd_info, "--checkpoint FILE [--json]"},
      {"export", cmd_export, "--checkpoint FILE --out FILE.pt"},
      {"plot", cmd_plot, "METRICS_FILE... --out FILE.svg   (training also keeps NAME.loss.svg)"},
      {"inspect", cmd_inspect,
       "--checkpoint FILE --data PATH --out FILE.html [--max-chars N] [--top N]\n"
       "            (a page of the model's units over the text, ranked by the text features they follow)"},
      {"bench", cmd_bench, "[--config FILE] [--set KEY=VALUE]... [--steps N]"},
      {"launch", cmd_launch,
       "--nproc N [--nnodes M --node-rank I --master-addr A --master-port P] -- train ...\n"
       "            (starts N workers of a distributed run; see docs/cli.md, Training on several machines)"},
  };
  return table;
}

std::string usage() {
  std::string text = "usage: charrnn <command> [options]\n\ncommands:\n";
  for (const Command& c : commands()) {
    std::string name = c.name;
    name.resize(10, ' ');
    text += "  " + name + c.synopsis + "\n";
  }
  text += "  version\n\nRun 'charrnn <command> --help' for a command's options.\n";
  return text;
}

// unknown command "serv" (did you mean "serve"?); commands are train, ...
std::string unknown_command(const std::string& given) {
  std::string names, nearest;
  for (const Command& c : commands()) {
    names += (names.empty() ? "" : ", ") + std::string(c.name);
    const std::string name = c.name;
    const bool prefix = !given.empty() && name.rfind(given, 0) == 0;
    if (nearest.empty() && (prefix || given.rfind(name, 0) == 0)) nearest = name;
  }
  return "unknown command \"" + given + "\"" + (nearest.empty() ? "" : " (did you mean \"" + nearest + "\"?)") +
         "; commands are " + names + ", version";
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
    std::cerr << usage();
    return 2;
  }
  const std::string command = argv[1];
  try {
    if (command == "-h" || command == "--help" || command == "help") {
      std::cout << usage();
      return 0;
    }
    if (command == "--version" || command == "version") {
      // what a bug report or a benchmark needs to know about the kernels
      std::cout << "charrnn " << CHARRNN_VERSION << "\nblas: " << charrnn::blas_description()
                << "\nisa: " << charrnn::to_string(charrnn::kernel_isa()) << "\n";
      return 0;
    }
    for (const Command& c : commands())
      if (command == c.name) return c.run(argc - 1, argv + 1);
    std::cerr << "error: " << unknown_command(command) << "\n";
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
