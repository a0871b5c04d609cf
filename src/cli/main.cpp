// charrnn: the command-line tool. It only dispatches to one file per command
// (src/cli/*.cpp) and decides exit codes; everything testable lives in the
// library. Exit status: 0 success, 2 usage or config error, 1 anything else.
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <unistd.h>

#include <cxxopts.hpp>

#include "charrnn/isa.h"
#include "charrnn/runtime.h"
#include "cli.h"

namespace {

using namespace charrnn::cli;

constexpr const char* kUsage =
    "usage: charrnn <command> [options]\n"
    "\n"
    "commands:\n"
    "  train     --config FILE [--set KEY=VALUE]... [--resume CHECKPOINT | --init-from CHECKPOINT]\n"
    "  generate  --checkpoint FILE [--prime TEXT | --prime-file FILE] [--length N] [--temperature T]\n"
    "            [--top-k K] [--top-p P] [--seed S] [--num-samples N] [--stop TEXT]\n"
    "            (--temperature 0.2,0.5,1.0 prints a labelled sample per temperature)\n"
    "  chat      --checkpoint FILE [sampling flags]: one prompt per line, :help for settings\n"
    "  eval      --checkpoint FILE --data PATH [--data PATH]... [--glob PATTERN] [--json]\n"
    "  serve     --checkpoint FILE [--host 127.0.0.1] [--port 8080] [--slots 64] [--api-key KEY]\n"
    "            (OpenAI-compatible /v1/completions with streaming, a playground at /)\n"
    "  info      --checkpoint FILE [--json]\n"
    "  export    --checkpoint FILE --out FILE.pt\n"
    "  plot      METRICS_FILE... --out FILE.svg   (training also keeps NAME.loss.svg)\n"
    "  bench     --config FILE [--set KEY=VALUE]... [--steps N]\n"
    "  launch    --nproc N [--nnodes M --node-rank I --master-addr A --master-port P] -- train ...\n"
    "            (starts N workers of a distributed run; see README, Training on several machines)\n"
    "\n"
    "Run 'charrnn <command> --help' for a command's options.\n";

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
    if (command == "serve") return cmd_serve(argc - 1, argv + 1);
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
