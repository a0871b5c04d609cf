#include "charrnn/launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <thread>

#include "charrnn/error.h"

namespace charrnn {

namespace {

volatile std::sig_atomic_t g_signal_to_forward = 0;

extern "C" void remember_signal(int signal) { g_signal_to_forward = signal; }

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = ::strsignal(WTERMSIG(status));
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + (name ? std::string(" (") + name + ")" : "");
  }
  return "stopped with status " + std::to_string(status);
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

struct Worker {
  int64_t rank = 0;
  pid_t pid = -1;
  bool running = false;
};

}  // namespace

int64_t free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(std::string("launch: cannot open a socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  const int error = errno;
  ::close(fd);
  if (!ok) throw Error(std::string("launch: cannot find a free port: ") + std::strerror(error));
  return ntohs(address.sin_port);
}

void validate(const LaunchOptions& o) {
  if (o.nproc < 1 || o.nproc > 4096) throw UsageError("--nproc must be in [1, 4096], got " + std::to_string(o.nproc));
  if (o.nnodes < 1 || o.nnodes > 65536) throw UsageError("--nnodes must be in [1, 65536], got " + std::to_string(o.nnodes));
  if (o.node_rank < 0 || o.node_rank >= o.nnodes)
    throw UsageError("--node-rank must be in [0, " + std::to_string(o.nnodes - 1) + "], got " + std::to_string(o.node_rank));
  if (o.master_port < 0 || o.master_port > 65535)
    throw UsageError("--master-port must be in [0, 65535], got " + std::to_string(o.master_port));
  if (o.nnodes > 1 && o.master_port == 0)
    throw UsageError("--master-port is required with --nnodes > 1: every machine must use the same one");
  if (o.master_addr.empty()) throw UsageError("--master-addr must not be empty");
  if (!(o.grace_seconds >= 0)) throw UsageError("--grace must be >= 0 seconds");
}

int launch_workers(const LaunchOptions& options, const std::string& program, const std::vector<std::string>& args,
                   std::ostream& log) {
  validate(options);
  const int64_t port = options.master_port > 0 ? options.master_port : free_local_port();
  const int64_t world = options.nproc * options.nnodes;
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const std::string threads = std::to_string(std::max<int64_t>(1, cores / options.nproc));
  const bool threads_given = std::getenv("CHARRNN_THREADS") && *std::getenv("CHARRNN_THREADS");

  // Workers get their own process group: a Ctrl-C on the terminal reaches
  // the launcher alone, which passes it on once, so each worker sees one
  // stop request (a second Ctrl-C, passed on again, means "now").
  struct sigaction action {};
  action.sa_handler = remember_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_int {}, old_term {};
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);

  std::vector<Worker> workers(static_cast<size_t>(options.nproc));
  const pid_t launcher = ::getpid();
  for (int64_t local = 0; local < options.nproc; ++local) {
    Worker& w = workers[static_cast<size_t>(local)];
    w.rank = options.node_rank * options.nproc + local;
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int error = errno;
      for (Worker& started : workers)
        if (started.running) ::kill(started.pid, SIGKILL);
      throw Error(std::string("launch: cannot start a worker: ") + std::strerror(error));
    }
    if (pid == 0) {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a killed launcher takes its workers along
      if (::getppid() != launcher) ::_exit(1);
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      ::setenv("RANK", std::to_string(w.rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(options.nproc).c_str(), 1);
      ::setenv("GROUP_RANK", std::to_string(options.node_rank).c_str(), 1);
      ::setenv("MASTER_ADDR", options.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      if (!threads_given) ::setenv("CHARRNN_THREADS", threads.c_str(), 1);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(program.c_str()));
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(program.c_str(), argv.data());
      const std::string message = "launch: cannot run " + program + ": " + std::strerror(errno) + "\n";
      (void)!::write(STDERR_FILENO, message.data(), message.size());
      ::_exit(127);
    }
    w.pid = pid;
    w.running = true;
  }

  int result = 0;
  bool failed = false;
  bool killed = false;
  bool forwarded = false;
  auto failed_at = std::chrono::steady_clock::now();
  int64_t running = options.nproc;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (Worker& w : workers) {
        if (w.pid != pid || !w.running) continue;
        w.running = false;
        --running;
        if (exit_code(status) != 0) {
          // workers killed by the launcher itself are not news
          const bool stopped_as_asked = forwarded && exit_code(status) == 130;
          if (!killed && !stopped_as_asked) log << "charrnn launch: worker rank " << w.rank << " (pid " << pid << ") " << describe(status) << "\n" << std::flush;
          if (!failed) {
            failed = true;
            result = exit_code(status);
            failed_at = std::chrono::steady_clock::now();
          }
        }
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;  // no children left
    if (const int signal = g_signal_to_forward) {
      g_signal_to_forward = 0;
      forwarded = true;
      for (Worker& w : workers)
        if (w.running) ::kill(w.pid, signal);
    }
    if (failed && !killed &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - failed_at).count() >= options.grace_seconds) {
      log << "charrnn launch: stopping the " << running << " remaining worker(s) " << options.grace_seconds
          << " s after the first failure\n" << std::flush;
      for (Worker& w : workers)
        if (w.running) ::kill(w.pid, SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace charrnn
