// Running Postgres' programs as child processes: one-shot commands (initdb, pg_basebackup,
// pg_rewind, pg_controldata) with captured output and a deadline, and the long-lived
// `postgres` server whose PID the supervisor keeps. When `petrel instance` runs as root,
// every child drops to an unprivileged user (setgroups + setgid + setuid before exec);
// otherwise children run as the current user.
//
// Thread-safety: RunCommand is safe from any thread. A ChildProcess is owned by one thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace petrel {

// The identity children run as.
struct RunAs {
  std::string user;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups (from the group database)
};

// Looks the user up in the passwd/group databases.
Result<RunAs> LookupUser(const std::string& user);

// The identity to run children as: `user` when this process is root, else the current user
// (nullopt: no change of identity).
Result<std::optional<RunAs>> ChildIdentity(const std::string& user);

struct Command {
  std::vector<std::string> argv;  // argv[0] is an absolute path
  // The complete environment of the child ("KEY=value"); nothing is inherited, so secrets
  // in this process's environment do not leak into children.
  std::vector<std::string> env;
  std::optional<RunAs> run_as;
  std::string cwd = "/";
};

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string output;  // stdout and stderr interleaved, the last 64 KiB
  bool ok() const { return exit_code == 0; }
};

// Runs a command to completion. Kills it (SIGTERM, then SIGKILL after 5 s) when `timeout`
// passes or `*cancel` becomes true; those return Timeout / Cancelled. A non-zero exit is not
// an error here: inspect CommandResult.
Result<CommandResult> RunCommand(const Command& command, std::chrono::seconds timeout,
                                 const std::atomic<bool>* cancel = nullptr);

// A supervised long-running child (postgres). Its stdout/stderr are inherited, so the
// server's log lines go where this process logs. It is put in its own process group so that
// a Ctrl-C on a terminal reaches only `petrel instance`, which then shuts postgres down in
// order; it also gets SIGQUIT if the thread that started it dies.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // Kills (SIGKILL) and reaps a child still running: a last resort, callers stop it first.
  ~ChildProcess();

  Status Start(const Command& command);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Reaps the child if it exited; returns its wait status then (and running() turns false).
  std::optional<int> Poll();
  Status Signal(int sig);
  // Sends `sig`, waits up to `timeout` for the exit; true when it exited.
  bool SignalAndWait(int sig, std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
};

// A reference to one process that stays valid after the process exits and is reaped (a
// pidfd): signalling through it can never reach another process that reused the PID. Lets a
// thread other than the child's owner signal it (the lease watchdog fences postgres while
// the converge loop owns and reaps the child).
//
// Thread-safety: Signal and KillChildrenAndSignal may be called concurrently;
// Open/move/destroy by one owner.
class PidHandle {
 public:
  PidHandle() = default;
  PidHandle(PidHandle&& other) noexcept;
  PidHandle& operator=(PidHandle&& other) noexcept;
  PidHandle(const PidHandle&) = delete;
  PidHandle& operator=(const PidHandle&) = delete;
  ~PidHandle();

  // `pid` must be a child not reaped yet (or any live process).
  static Result<PidHandle> Open(pid_t pid);
  bool valid() const { return fd_ >= 0; }
  // NotFound once the process has exited.
  Status Signal(int sig) const;
  // Ends the process's children at once and then signals the process: SIGSTOP to the
  // process (a stopped parent neither reaps nor forks, so the children it has keep their
  // PIDs), SIGKILL to each child, then `sig` and SIGCONT to the process. For postgres, whose
  // backends each lead their own session (they call setsid()), this is the only way that
  // no backend outlives the call by more than the kernel's signal delivery; a postmaster
  // relaying an immediate shutdown would first have to be scheduled. NotFound once the
  // process has exited.
  Status KillChildrenAndSignal(int sig) const;

 private:
  PidHandle(int fd, pid_t pid) : fd_(fd), pid_(pid) {}
  int fd_ = -1;
  pid_t pid_ = -1;
};

// "exit code 1" / "killed by signal 9"
std::string DescribeWaitStatus(int wait_status);

}  // namespace petrel
