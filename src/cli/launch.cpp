// charrnn launch: the workers of a distributed run on this machine.
#include "cli.h"

#include <iostream>
#include <unistd.h>

#include "charrnn/launch.h"

namespace charrnn::cli {

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

}  // namespace charrnn::cli
