#include "local/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <thread>

namespace petrel {

Result<std::string> ResolveExecutable(const std::string& program, const std::string& path) {
  if (program.empty()) return InvalidError("empty command");
  if (program.find('/') != std::string::npos) {
    if (::access(program.c_str(), X_OK) != 0) {
      return NotFoundError("executable " + program + " not found or not executable");
    }
    return program;
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t colon = path.find(':', start);
    std::string_view dir(path.data() + start,
                         (colon == std::string::npos ? path.size() : colon) - start);
    std::filesystem::path candidate = std::filesystem::path(dir.empty() ? "." : dir) / program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return NotFoundError("executable \"" + program + "\" not found on PATH " + path);
}

Result<std::unique_ptr<Process>> Process::Spawn(const SpawnSpec& spec) {
  if (spec.argv.empty()) return InvalidError("no command to run");
  std::string path_value = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& [k, v] : spec.env) {
    if (k == "PATH") path_value = v;
  }
  PETREL_ASSIGN_OR_RETURN(std::string program, ResolveExecutable(spec.argv[0], path_value));

  // Everything the child needs is built before fork(): after it only async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : spec.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int log_fd = ::open(spec.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (log_fd < 0) {
    return InternalError("cannot open log file " + spec.log_file + ": " + std::strerror(errno));
  }
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const char* cwd = spec.working_dir.empty() ? nullptr : spec.working_dir.c_str();

  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    return InternalError(std::string("fork failed: ") + std::strerror(err));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    // Restore default dispositions and an empty mask: the parent may block or ignore signals.
    sigset_t all;
    sigemptyset(&all);
    ::sigprocmask(SIG_SETMASK, &all, nullptr);
    for (int s : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) ::signal(s, SIG_DFL);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::syscall(SYS_close_range, 3u, ~0u, 0u);
    if (cwd != nullptr && ::chdir(cwd) != 0) {
      const char msg[] = "petrel node agent: cannot enter the working directory\n";
      (void)!::write(2, msg, sizeof(msg) - 1);
      ::_exit(126);
    }
    ::execve(program.c_str(), argv.data(), envp.data());
    const char msg[] = "petrel node agent: exec failed\n";
    (void)!::write(2, msg, sizeof(msg) - 1);
    ::_exit(127);
  }
  // Also from the parent, so a signal sent right after Spawn() reaches the group.
  ::setpgid(pid, pid);
  ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
  return std::unique_ptr<Process>(new Process(pid));
}

Process::~Process() {
  if (exit_) return;
  SignalGroup(SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

std::optional<ExitStatus> Process::Poll() {
  if (exit_) return exit_;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return std::nullopt;
  ExitStatus e;
  if (WIFEXITED(status)) {
    e.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    e.signal = WTERMSIG(status);
    e.code = 128 + e.signal;
  }
  exit_ = e;
  // The container is its process group: nothing of it may outlive its main process.
  ::kill(-pid_, SIGKILL);
  return exit_;
}

void Process::SignalGroup(int signal) {
  if (::kill(-pid_, signal) != 0 && !exit_) ::kill(pid_, signal);
}

ExitStatus Process::Terminate(std::chrono::milliseconds grace) {
  if (auto e = Poll()) return *e;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto e = Poll()) return *e;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  SignalGroup(SIGKILL);
  while (true) {
    if (auto e = Poll()) return *e;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace petrel
