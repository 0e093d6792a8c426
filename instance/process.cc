#include "instance/process.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace petrel {
namespace {

constexpr size_t kMaxOutput = 64 * 1024;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// argv/envp as the char* arrays execve wants; built before fork() because the child of a
// multi-threaded process may only call async-signal-safe functions.
struct ExecArgs {
  explicit ExecArgs(const Command& c) : strings_argv(c.argv), strings_env(c.env) {
    for (auto& s : strings_argv) argv.push_back(s.data());
    argv.push_back(nullptr);
    for (auto& s : strings_env) envp.push_back(s.data());
    envp.push_back(nullptr);
  }
  std::vector<std::string> strings_argv, strings_env;
  std::vector<char*> argv, envp;
};

void WriteAll(int fd, const char* msg) {
  size_t n = std::strlen(msg);
  while (n > 0) {
    ssize_t w = write(fd, msg, n);
    if (w <= 0) return;
    msg += w;
    n -= static_cast<size_t>(w);
  }
}

[[noreturn]] void ChildFail(const char* what) {
  // strerror is not async-signal-safe; the step name is enough to diagnose.
  WriteAll(2, "petrel: child setup failed: ");
  WriteAll(2, what);
  WriteAll(2, "\n");
  _exit(127);
}

// Runs in the forked child: only async-signal-safe calls from here to execve.
[[noreturn]] void ExecChild(const Command& c, const ExecArgs& args, int output_fd, int death_signal,
                            pid_t parent) {
  sigset_t none;
  sigemptyset(&none);
  // The parent blocks SIGTERM/SIGINT for its sigwait loop; masks survive execve.
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) ChildFail("sigprocmask");
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
  }
  if (setpgid(0, 0) != 0) ChildFail("setpgid");
  if (output_fd >= 0) {
    if (dup2(output_fd, 1) < 0 || dup2(output_fd, 2) < 0) ChildFail("dup2");
  }
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull < 0 || dup2(devnull, 0) < 0) ChildFail("stdin");
  if (c.run_as) {
    const RunAs& u = *c.run_as;
    if (setgroups(u.groups.size(), u.groups.data()) != 0) ChildFail("setgroups");
    if (setgid(u.gid) != 0) ChildFail("setgid");
    if (setuid(u.uid) != 0) ChildFail("setuid");
  }
  // Set after the identity change: changing credentials clears the parent-death signal.
  if (prctl(PR_SET_PDEATHSIG, death_signal) != 0) ChildFail("prctl");
  if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
  if (chdir(c.cwd.c_str()) != 0) ChildFail("chdir");
  // Do not leak this process's sockets and files (HTTP listeners, the spec file) into
  // Postgres' process tree.
  close_range(3, ~0U, 0);
  execve(args.argv[0], args.argv.data(), args.envp.data());
  WriteAll(2, "petrel: cannot execute ");
  WriteAll(2, args.argv[0]);
  WriteAll(2, "\n");
  _exit(127);
}

void KillGroup(pid_t pid, int sig) {
  if (kill(-pid, sig) != 0) kill(pid, sig);
}

}  // namespace

Result<RunAs> LookupUser(const std::string& user) {
  long size = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size > 0 ? static_cast<size_t>(size) : 16384);
  struct passwd pw = {};
  struct passwd* found = nullptr;
  int rc = getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
  if (rc != 0 || found == nullptr) {
    return NotFoundError("system user \"" + user + "\" does not exist; create it or pass " +
                         "--run-as with an existing unprivileged user");
  }
  RunAs out;
  out.user = user;
  out.uid = pw.pw_uid;
  out.gid = pw.pw_gid;
  int ngroups = 32;
  std::vector<gid_t> groups(static_cast<size_t>(ngroups));
  while (getgrouplist(user.c_str(), pw.pw_gid, groups.data(), &ngroups) < 0) {
    groups.resize(static_cast<size_t>(ngroups) + 8);
    ngroups = static_cast<int>(groups.size());
  }
  groups.resize(static_cast<size_t>(ngroups));
  out.groups = std::move(groups);
  if (out.uid == 0) {
    return InvalidError("--run-as user \"" + user + "\" is root; Postgres refuses to run as root");
  }
  return out;
}

Result<std::optional<RunAs>> ChildIdentity(const std::string& user) {
  if (geteuid() != 0) return std::optional<RunAs>();
  PETREL_ASSIGN_OR_RETURN(RunAs u, LookupUser(user));
  return std::optional<RunAs>(std::move(u));
}

Result<CommandResult> RunCommand(const Command& command, std::chrono::seconds timeout,
                                 const std::atomic<bool>* cancel) {
  if (command.argv.empty()) return InvalidError("empty command");
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return InternalError(Errno("pipe"));
  ExecArgs args(command);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return UnavailableError(Errno("fork"));
  }
  if (pid == 0) ExecChild(command, args, fds[1], SIGTERM, parent);
  close(fds[1]);

  CommandResult result;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool pipe_open = true;
  std::optional<int> wait_status;
  std::optional<std::chrono::steady_clock::time_point> reaped_at;
  Status stopped_by = Status::Ok();
  std::optional<std::chrono::steady_clock::time_point> killed_at;
  char buf[4096];
  while (true) {
    if (pipe_open) {
      struct pollfd p = {fds[0], POLLIN, 0};
      int n = poll(&p, 1, 200);
      if (n > 0) {
        ssize_t r = read(fds[0], buf, sizeof(buf));
        if (r > 0) {
          result.output.append(buf, static_cast<size_t>(r));
          if (result.output.size() > kMaxOutput) {
            result.output.erase(0, result.output.size() - kMaxOutput);
          }
        } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
          pipe_open = false;
        }
      }
    } else if (!wait_status) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!wait_status) {
      int st = 0;
      pid_t w = waitpid(pid, &st, WNOHANG);
      if (w == pid) {
        wait_status = st;
        reaped_at = std::chrono::steady_clock::now();
      }
    }
    // A grandchild may hold the pipe after the child exited; do not wait for it long.
    if (wait_status &&
        (!pipe_open || std::chrono::steady_clock::now() - *reaped_at > std::chrono::seconds(1))) {
      break;
    }
    if (!wait_status) {
      auto now = std::chrono::steady_clock::now();
      if (stopped_by.ok() && now > deadline) {
        stopped_by = TimeoutError(command.argv[0] + " did not finish within " +
                                  std::to_string(timeout.count()) + "s");
      } else if (stopped_by.ok() && cancel && cancel->load()) {
        stopped_by = CancelledError(command.argv[0] + " was cancelled by shutdown");
      }
      if (!stopped_by.ok()) {
        if (!killed_at) {
          KillGroup(pid, SIGTERM);
          killed_at = now;
        } else if (now - *killed_at > std::chrono::seconds(5)) {
          KillGroup(pid, SIGKILL);
        }
      }
    }
  }
  close(fds[0]);
  if (!stopped_by.ok()) return stopped_by;
  if (WIFEXITED(*wait_status)) {
    result.exit_code = WEXITSTATUS(*wait_status);
  } else if (WIFSIGNALED(*wait_status)) {
    result.signal = WTERMSIG(*wait_status);
  }
  return result;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    KillGroup(pid_, SIGKILL);
    int st = 0;
    waitpid(pid_, &st, 0);
  }
}

Status ChildProcess::Start(const Command& command) {
  if (pid_ > 0)
    return InternalError("child process already running (pid " + std::to_string(pid_) + ")");
  if (command.argv.empty()) return InvalidError("empty command");
  ExecArgs args(command);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return UnavailableError(Errno("fork"));
  if (pid == 0) ExecChild(command, args, -1, SIGQUIT, parent);
  pid_ = pid;
  return Status::Ok();
}

std::optional<int> ChildProcess::Poll() {
  if (pid_ <= 0) return std::nullopt;
  int st = 0;
  pid_t w = waitpid(pid_, &st, WNOHANG);
  if (w == pid_) {
    pid_ = -1;
    return st;
  }
  return std::nullopt;
}

Status ChildProcess::Signal(int sig) {
  if (pid_ <= 0) return NotFoundError("no child process");
  if (kill(pid_, sig) != 0) return InternalError(Errno("kill"));
  return Status::Ok();
}

bool ChildProcess::SignalAndWait(int sig, std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return true;
  (void)Signal(sig);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Poll()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Poll().has_value();
}

PidHandle::PidHandle(PidHandle&& other) noexcept : fd_(other.fd_), pid_(other.pid_) {
  other.fd_ = -1;
  other.pid_ = -1;
}

PidHandle& PidHandle::operator=(PidHandle&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.fd_;
    pid_ = other.pid_;
    other.fd_ = -1;
    other.pid_ = -1;
  }
  return *this;
}

PidHandle::~PidHandle() {
  if (fd_ >= 0) close(fd_);
}

Result<PidHandle> PidHandle::Open(pid_t pid) {
  // Raw syscalls: glibc 2.36's <sys/pidfd.h> lacks C linkage for C++.
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0U));
  if (fd < 0) return UnavailableError(Errno("pidfd_open " + std::to_string(pid)));
  return PidHandle(fd, pid);
}

Status PidHandle::Signal(int sig) const {
  if (fd_ < 0) return NotFoundError("no process");
  if (syscall(SYS_pidfd_send_signal, fd_, sig, nullptr, 0U) == 0) return Status::Ok();
  if (errno == ESRCH) return NotFoundError("the process has exited");
  return InternalError(Errno("pidfd_send_signal"));
}

Status PidHandle::KillChildrenAndSignal(int sig) const {
  PETREL_RETURN_IF_ERROR(Signal(SIGSTOP));
  // The pidfd proves pid_ is still this process (not reaped), so the children file is its.
  // A fork that was under way when SIGSTOP arrived may be missed here; that child gets the
  // process's own relay of `sig`.
  const std::string path =
      "/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) + "/children";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[8192];
    std::string text;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
    close(fd);
    pid_t child = 0;
    for (char c : text) {
      if (c >= '0' && c <= '9') {
        child = child * 10 + (c - '0');
      } else if (child > 0) {
        kill(child, SIGKILL);
        child = 0;
      }
    }
    if (child > 0) kill(child, SIGKILL);
  }
  Status st = Signal(sig);
  (void)Signal(SIGCONT);
  return st;
}

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return "exit code " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) return "killed by signal " + std::to_string(WTERMSIG(wait_status));
  return "wait status " + std::to_string(wait_status);
}

}  // namespace petrel
