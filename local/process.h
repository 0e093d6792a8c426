// A child process in its own process group, the local stand-in for a container: started
// with an explicit argv, environment and working directory, stdout and stderr appended to a
// log file, stdin from /dev/null. The process group is the container: when the main process
// ends, whatever it started and left in its group is killed.
//
// Thread-safety: one owner thread per Process. The destructor SIGKILLs the group and reaps the
// child if it is still running: a Process never outlives its owner silently.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace petrel {

struct SpawnSpec {
  std::vector<std::string> argv;  // argv[0] absolute, or looked up on the PATH of `env`
  std::vector<std::pair<std::string, std::string>> env;
  std::string working_dir;        // must exist
  std::string log_file;           // appended to; created 0640
};

struct ExitStatus {
  int code = 0;    // exit code, or 128 + signal when killed
  int signal = 0;  // the signal that killed it, 0 when it exited
};

class Process {
 public:
  // NotFound when the program does not exist or is not executable (nothing is started).
  static Result<std::unique_ptr<Process>> Spawn(const SpawnSpec& spec);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Reaps without blocking: the exit status once the process has ended.
  std::optional<ExitStatus> Poll();
  // Sends `signal` to the whole process group.
  void SignalGroup(int signal);
  // As the kubelet stops a container: SIGTERM to the main process only (it decides how its
  // children stop), up to `grace` for it to exit, then SIGKILL to the whole group. Returns how
  // it ended. Processes left in the group are SIGKILLed once the main process has exited.
  ExitStatus Terminate(std::chrono::milliseconds grace);

 private:
  explicit Process(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  std::optional<ExitStatus> exit_;
};

// The absolute path of `program` (argv[0]) on `path` (a PATH value) if it has no '/'.
Result<std::string> ResolveExecutable(const std::string& program, const std::string& path);

}  // namespace petrel
