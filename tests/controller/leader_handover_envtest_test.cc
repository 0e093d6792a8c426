// Two and then three real `petrel controller` processes against a real kube-apiserver:
// exactly one leads; SIGKILL of the leader hands over once the lease expires; SIGTERM of a
// leader hands over at once because the lease is released.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "net/http.h"
#include "tests/support/envtest.h"

extern char** environ;

namespace petrel {
namespace {
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kLeaseDuration = 15s;
const char* kLeaseName = "petrel-handover-test";

// A free loopback port: bind port 0, read it, close. The controller binds it right after;
// another process grabbing it in between would make the controller fail loudly, not pass.
uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// One `petrel controller` process; killed (SIGKILL) and reaped on destruction.
class ControllerProcess {
 public:
  ControllerProcess(const std::string& name, const std::string& kubeconfig, const std::string& ns,
                    const std::string& log_dir)
      : name_(name), port_(FreePort()), log_path_(log_dir + "/" + name + ".log") {
    const char* binary = std::getenv("PETREL_BINARY");
    std::vector<std::string> args = {
        binary ? binary : "petrel",
        "controller",
        "--kubeconfig=" + kubeconfig,
        "--namespace=" + ns,
        "--leader-election-namespace=" + ns,
        std::string("--leader-election-id=") + kLeaseName,
        "--lease-duration=15s",
        "--renew-deadline=10s",
        "--retry-period=1s",
        "--metrics-bind-address=127.0.0.1:" + std::to_string(port_),
        "--health-probe-bind-address=0",
        "--log-level=debug"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) pid_ = -1;
  }
  ~ControllerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  bool started() const { return pid_ > 0; }
  const std::string& name() const { return name_; }

  // The /metrics text, or "" when unreachable.
  std::string Metrics() const {
    HttpCallOptions o;
    o.timeout = 2s;
    auto r = HttpCall("GET", "http://127.0.0.1:" + std::to_string(port_) + "/metrics", "", o);
    return r.ok() && r->status == 200 ? r->body : "";
  }
  // The leader gauge from /metrics: 1, 0, or -1 when unreachable.
  int LeaderGauge() const {
    std::string body = Metrics();
    std::string needle = std::string("leader_election_master_status{name=\"") + kLeaseName + "\"} ";
    auto at = body.find(needle);
    if (at == std::string::npos) return -1;
    return body[at + needle.size()] == '1' ? 1 : 0;
  }

  void Signal(int sig) const { kill(pid_, sig); }
  // Waits for exit up to `limit`; returns the wait status, or -1 if it is still running.
  int WaitExit(std::chrono::seconds limit) {
    auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(50ms);
    }
    return -1;
  }
  std::string Log() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  std::string name_;
  uint16_t port_;
  std::string log_path_;
  pid_t pid_ = -1;
};

template <typename Pred>
bool WaitUntil(Pred pred, std::chrono::seconds limit) {
  auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return pred();
}

class LeaderHandoverEnvtest : public EnvtestTest {
 protected:
  std::string Holder() {
    auto lease = client().Get(resources::kLease, ObjectKey{ns_, kLeaseName});
    if (!lease.ok()) return "";
    const Json& spec = (*lease)["spec"];
    return spec.contains("holderIdentity") && spec["holderIdentity"].is_string()
               ? spec["holderIdentity"].get<std::string>()
               : "";
  }
  std::string Logs(const std::vector<ControllerProcess*>& ps) {
    std::string out;
    for (auto* p : ps) out += "---- " + p->name() + " ----\n" + p->Log();
    return out;
  }
};

TEST_F(LeaderHandoverEnvtest, ExactlyOneLeadsKillHandsOverAfterExpiryTermHandsOverAtOnce) {
  ControllerProcess a("a", env().KubeconfigPath(), ns_, env().Dir());
  ControllerProcess b("b", env().KubeconfigPath(), ns_, env().Dir());
  ASSERT_TRUE(a.started() && b.started());
  std::vector<ControllerProcess*> all = {&a, &b};

  // Exactly one leads, and the Lease names a holder.
  ASSERT_TRUE(WaitUntil(
      [&] {
        int ga = a.LeaderGauge(), gb = b.LeaderGauge();
        return ga >= 0 && gb >= 0 && ga + gb == 1 && !Holder().empty();
      },
      60s))
      << Logs(all);
  std::this_thread::sleep_for(3s);  // several retry periods: still exactly one
  ASSERT_EQ(a.LeaderGauge() + b.LeaderGauge(), 1) << Logs(all);
  ControllerProcess& leader = a.LeaderGauge() == 1 ? a : b;
  ControllerProcess& standby = &leader == &a ? b : a;
  const std::string first_holder = Holder();
  // API requests are counted through the client's observer (the lease GETs at least).
  EXPECT_NE(leader.Metrics().find("rest_client_requests_total{verb=\"get\",code=\"200\"}"),
            std::string::npos)
      << leader.Metrics();

  // SIGKILL: no release, so the standby must wait for the lease to expire, then take over.
  leader.Signal(SIGKILL);
  auto killed_at = Clock::now();
  ASSERT_TRUE(WaitUntil([&] { return standby.LeaderGauge() == 1; }, kLeaseDuration + 30s))
      << Logs(all);
  auto takeover = Clock::now() - killed_at;
  EXPECT_NE(Holder(), first_holder);
  // Outcome bound: it waited for expiry (no early theft); well above noise.
  EXPECT_GE(takeover, kLeaseDuration - 5s) << "took over before the lease could have expired";

  // A third replica joins; SIGTERM the current leader: it releases the lease on the way out.
  ControllerProcess c("c", env().KubeconfigPath(), ns_, env().Dir());
  all.push_back(&c);
  ASSERT_TRUE(WaitUntil([&] { return c.LeaderGauge() == 0; }, 60s)) << Logs(all);
  const std::string second_holder = Holder();
  standby.Signal(SIGTERM);
  auto termed_at = Clock::now();
  ASSERT_TRUE(WaitUntil([&] { return c.LeaderGauge() == 1; }, kLeaseDuration + 30s)) << Logs(all);
  auto handover = Clock::now() - termed_at;
  EXPECT_LT(handover, 8s) << "a released lease must be taken well before it would expire";
  EXPECT_NE(Holder(), second_holder);
  int status = standby.WaitExit(30s);
  ASSERT_NE(status, -1) << "SIGTERM did not stop the controller\n" << Logs(all);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << Logs(all);
}

}  // namespace
}  // namespace petrel

namespace petrel {
namespace {

struct CommandResult {
  int exit_code;
  std::string output;
};

CommandResult RunPetrel(const std::string& args) {
  const char* binary = std::getenv("PETREL_BINARY");
  std::string cmd = std::string(binary ? binary : "petrel") + " " + args + " 2>&1";
  CommandResult r{-1, ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) r.output += buf;
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(ControllerCommandTest, BadSettingsExitNonZeroWithAMessageSayingWhatToFix) {
  CommandResult r = RunPetrel("controller --lease-duration=soon --kubeconfig=/nonexistent");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--lease-duration \"soon\" is not a duration"), std::string::npos)
      << r.output;

  r = RunPetrel("controller --renew-deadline=20s --kubeconfig=/nonexistent");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("lease-duration > renew-deadline > retry-period"), std::string::npos)
      << r.output;

  r = RunPetrel("controller --kubeconfig=/nonexistent/kubeconfig");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("/nonexistent/kubeconfig"), std::string::npos) << r.output;

  r = RunPetrel("controller --log-format=xml");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("xml"), std::string::npos) << r.output;
}

TEST(ControllerCommandTest, JsonLogsAreOneValidObjectPerLine) {
  CommandResult r = RunPetrel("controller --log-format=json --kubeconfig=/nonexistent/\\\"quoted\\\"");
  EXPECT_EQ(r.exit_code, 1);
  std::istringstream lines(r.output);
  std::string line;
  int parsed = 0;
  while (std::getline(lines, line)) {
    Json j = Json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
    EXPECT_TRUE(j.contains("msg") && j.contains("level") && j.contains("ts"));
    ++parsed;
  }
  EXPECT_GE(parsed, 1);
}

}  // namespace
}  // namespace petrel
