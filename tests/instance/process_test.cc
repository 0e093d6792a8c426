#include "instance/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>

namespace petrel {
namespace {

Command Sh(const std::string& script) {
  Command c;
  c.argv = {"/bin/sh", "-c", script};
  c.env = {"PATH=/usr/bin:/bin", "GREETING=hello"};
  return c;
}

TEST(RunCommandTest, CapturesOutputAndExitCode) {
  auto r = RunCommand(Sh("echo $GREETING; echo oops >&2; exit 3"), std::chrono::seconds(10));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_NE(r->output.find("hello"), std::string::npos);
  EXPECT_NE(r->output.find("oops"), std::string::npos);
}

TEST(RunCommandTest, ChildSeesOnlyTheGivenEnvironment) {
  setenv("PETREL_TEST_SECRET", "s3cret", 1);
  auto r = RunCommand(Sh("env"), std::chrono::seconds(10));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->output.find("s3cret"), std::string::npos);
  EXPECT_NE(r->output.find("GREETING=hello"), std::string::npos);
}

TEST(RunCommandTest, TimeoutKillsTheCommand) {
  auto r = RunCommand(Sh("sleep 30"), std::chrono::seconds(1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kTimeout);
}

TEST(RunCommandTest, CancelStopsTheCommand) {
  std::atomic<bool> cancel{true};
  auto r = RunCommand(Sh("sleep 30"), std::chrono::seconds(60), &cancel);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCancelled);
}

TEST(RunCommandTest, MissingProgramExits127WithMessage) {
  Command c;
  c.argv = {"/nonexistent/petrel-no-such-binary"};
  auto r = RunCommand(c, std::chrono::seconds(10));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 127);
  EXPECT_NE(r->output.find("cannot execute"), std::string::npos);
}

TEST(RunCommandTest, DropsPrivilegesWhenRoot) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to change identity";
  auto user = LookupUser("postgres");
  ASSERT_TRUE(user.ok()) << user.status().ToString();
  Command c = Sh("id -u; id -g; id -G");
  c.run_as = *user;
  auto r = RunCommand(c, std::chrono::seconds(10));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->exit_code, 0) << r->output;
  EXPECT_EQ(r->output.rfind(std::to_string(user->uid) + "\n" + std::to_string(user->gid) + "\n", 0),
            0u)
      << r->output;
  EXPECT_EQ(r->output.find(" 0 "), std::string::npos) << "root group kept: " << r->output;
}

TEST(LookupUserTest, UnknownUserIsAClearError) {
  auto u = LookupUser("petrel-no-such-user");
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.status().message().find("does not exist"), std::string::npos);
}

TEST(ChildProcessTest, StartsSignalsAndReaps) {
  ChildProcess p;
  ASSERT_TRUE(p.Start(Sh("exec sleep 30")).ok());
  EXPECT_TRUE(p.running());
  EXPECT_FALSE(p.Poll().has_value());
  EXPECT_TRUE(p.SignalAndWait(SIGTERM, std::chrono::seconds(10)));
  EXPECT_FALSE(p.running());
}

TEST(ChildProcessTest, ReportsAnUnexpectedExit) {
  ChildProcess p;
  ASSERT_TRUE(p.Start(Sh("exit 7")).ok());
  std::optional<int> st;
  for (int i = 0; i < 200 && !st; ++i) {
    st = p.Poll();
    if (!st) usleep(20000);
  }
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(DescribeWaitStatus(*st), "exit code 7");
}

// Whether `pid` is gone or a zombie (dead, waiting for its reaper).
bool Dead(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  if (stat.empty()) return true;
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

TEST(PidHandleTest, KillsTheChildrenThenSignalsTheProcess) {
  // A shell with a child of its own: the child is killed, the shell gets SIGTERM.
  char tmpl[] = "/tmp/petrel-pidhandle-XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  close(fd);
  const std::string pidfile = tmpl;
  ChildProcess child;
  ASSERT_TRUE(child.Start(Sh("sleep 60 & echo $! > " + pidfile + "; wait")).ok());
  auto handle = PidHandle::Open(child.pid());
  ASSERT_TRUE(handle.ok()) << handle.status().ToString();
  pid_t grandchild = 0;
  for (int i = 0; i < 100 && grandchild <= 0; ++i) {
    std::ifstream in(pidfile);
    in >> grandchild;
    if (grandchild <= 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  unlink(pidfile.c_str());
  ASSERT_GT(grandchild, 0);

  ASSERT_TRUE(handle->KillChildrenAndSignal(SIGTERM).ok());
  std::optional<int> st;
  for (int i = 0; i < 100 && !st; ++i) {
    st = child.Poll();
    if (!st) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(st.has_value());
  ASSERT_TRUE(WIFSIGNALED(*st));
  EXPECT_EQ(WTERMSIG(*st), SIGTERM);
  bool grandchild_dead = false;
  for (int i = 0; i < 100 && !grandchild_dead; ++i) {
    grandchild_dead = Dead(grandchild);
    if (!grandchild_dead) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(grandchild_dead) << "the child " << grandchild << " survived";
}

TEST(PidHandleTest, NeverSignalsAReapedProcess) {
  ChildProcess child;
  ASSERT_TRUE(child.Start(Sh("exec sleep 60")).ok());
  auto handle = PidHandle::Open(child.pid());
  ASSERT_TRUE(handle.ok()) << handle.status().ToString();
  ASSERT_TRUE(child.SignalAndWait(SIGKILL, std::chrono::seconds(10)));
  // Reaped: the handle reports it instead of reaching whatever reuses the PID.
  Status again = handle->KillChildrenAndSignal(SIGKILL);
  EXPECT_EQ(again.code(), Code::kNotFound) << again.ToString();
  PidHandle empty;
  EXPECT_EQ(empty.Signal(SIGKILL).code(), Code::kNotFound);
}

}  // namespace
}  // namespace petrel
