// `charrnn launch`: starts the worker processes of a distributed run on this
// machine with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), as `torchrun
// --nproc_per_node` does, and watches them: when one fails, the others are
// given a grace period to stop on their own and are then killed, so a
// launch never outlives a broken run.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace charrnn {

struct LaunchOptions {
  int64_t nproc = 1;        ///< workers on this machine. Default: 1
  int64_t nnodes = 1;       ///< machines in the run. Default: 1
  int64_t node_rank = 0;    ///< this machine, 0..nnodes-1; node 0 hosts rank 0. Default: 0
  std::string master_addr = "127.0.0.1";  ///< address of node 0, reachable from every node. Default: 127.0.0.1
  int64_t master_port = 0;  ///< 0: a free port (one machine only); several machines need one agreed port. Default: 0
  double grace_seconds = 30;  ///< after a worker fails, how long the others may take to stop. Default: 30
};

/// A TCP port on 127.0.0.1 that is free now (the kernel's pick). Another
/// program could take it before it is bound again, which makes a rendezvous
/// fail loudly, never silently.
int64_t free_local_port();

/// Checks ranges; throws UsageError naming the flag.
void validate(const LaunchOptions& options);

/// Runs `program args...` once per local worker and waits for all of them.
/// Each worker gets one machine's share of the cores (CHARRNN_THREADS,
/// unless set). A SIGINT or SIGTERM to the launcher is passed on to every
/// worker once. Returns 0 when every worker succeeded, else the first
/// failure's exit status (128 + signal for a killed one); reports failures
/// to `log`.
int launch_workers(const LaunchOptions& options, const std::string& program, const std::vector<std::string>& args,
                   std::ostream& log);

}  // namespace charrnn
