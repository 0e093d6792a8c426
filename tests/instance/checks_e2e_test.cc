// Health checks and metrics of real `petrel instance` processes (PETREL_BINARY) on real
// PostgreSQL 15: a primary and a streaming replica report passing checks, their standbys and
// their metrics on both the API and the metrics port; when the primary stops, the replica's
// pg check turns critical and says it is not streaming from the primary any more.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <thread>

#include "api/instance.h"
#include "instance/process.h"
#include "net/http.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr const char* kToken = "checks-e2e-token-0123456789";

bool WaitFor(const std::function<bool()>& pred, seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return pred();
}

uint16_t FreePort(const std::string& address) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  inet_pton(AF_INET, address.c_str(), &sa.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    close(fd);
    return 0;
  }
  socklen_t len = sizeof(sa);
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  close(fd);
  return ntohs(sa.sin_port);
}

std::string LoopbackAddress(int host) {
  static const std::string prefix = [] {
    std::random_device rd;
    return "127." + std::to_string(100 + rd() % 150) + "." + std::to_string(1 + rd() % 250) + ".";
  }();
  return prefix + std::to_string(host);
}

class Instance {
 public:
  Instance(std::string name, std::string address, const std::string& dir)
      : name_(std::move(name)), address_(std::move(address)) {
    std::string volume = dir + "/" + name_;
    fs::create_directories(volume);
    chmod(volume.c_str(), 0755);
    pgdata_ = volume + "/pgdata";
    log_ = dir + "/" + name_ + ".log";
    pg_port_ = FreePort(address_);
    api_port_ = FreePort(address_);
    metrics_port_ = FreePort(address_);
  }
  ~Instance() { Stop(); }

  void Start() {
    std::ostringstream cmd;
    cmd << "exec '" << std::getenv("PETREL_BINARY") << "' instance --name " << name_
        << " --cluster checks --pgdata " << pgdata_ << " --listen-address " << address_
        << " --port " << pg_port_ << " --api-port " << api_port_ << " --metrics-port "
        << metrics_port_ << " >>" << log_ << " 2>&1";
    Command c;
    c.argv = {"/bin/sh", "-c", cmd.str()};
    c.env = {"PATH=/usr/bin:/bin", "PETREL_SUPERUSER_PASSWORD=checks-super",
             "PETREL_REPLICATION_PASSWORD=checks-repl", std::string("PETREL_API_TOKEN=") + kToken};
    ASSERT_TRUE(proc_.Start(c).ok());
    ASSERT_TRUE(WaitFor([&] { return Get(api_port_, "/healthz").status == 200; }, seconds(20)))
        << Log();
  }
  void Stop() {
    if (proc_.running()) proc_.SignalAndWait(SIGTERM, seconds(60));
  }

  HttpResponse Get(uint16_t port, const std::string& path) {
    HttpCallOptions opts;
    opts.timeout = std::chrono::milliseconds(5000);
    auto r = HttpCall("GET", "http://" + address_ + ":" + std::to_string(port) + path, "", opts);
    return r.ok() ? *r : HttpResponse{599, "", {}, r.status().ToString()};
  }
  HttpResponse PutSpec(const InstanceSpec& spec) {
    HttpCallOptions opts;
    opts.timeout = std::chrono::milliseconds(5000);
    opts.headers["authorization"] = std::string("Bearer ") + kToken;
    auto r = HttpCall("PUT", "http://" + address_ + ":" + std::to_string(api_port_) + "/spec",
                      spec.ToJson().dump(), opts);
    return r.ok() ? *r : HttpResponse{599, "", {}, r.status().ToString()};
  }
  InstanceStatus Status() {
    HttpResponse r = Get(api_port_, "/status");
    if (r.status != 200) return InstanceStatus();
    auto s = InstanceStatus::FromJson(Json::parse(r.body, nullptr, false));
    return s.ok() ? *s : InstanceStatus();
  }
  std::optional<HealthCheck> Check(const std::string& name) {
    for (const HealthCheck& c : Status().checks) {
      if (c.name == name) return c;
    }
    return std::nullopt;
  }
  std::string Metrics() { return Get(metrics_port_, "/metrics").body; }
  std::string ApiMetrics() { return Get(api_port_, "/metrics").body; }

  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    return s.size() > 6000 ? s.substr(s.size() - 6000) : s;
  }
  Endpoint endpoint() const { return Endpoint{address_, pg_port_}; }
  std::string pg_address() const { return address_ + ":" + std::to_string(pg_port_); }

 private:
  std::string name_, address_, pgdata_, log_;
  uint16_t pg_port_ = 0, api_port_ = 0, metrics_port_ = 0;
  ChildProcess proc_;
};

bool HasLine(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) {
    if (l == line) return true;
  }
  return false;
}

std::string Describe(const std::vector<HealthCheck>& checks) {
  std::string out;
  for (const HealthCheck& c : checks) {
    out += c.name + "=" + CheckStateName(c.state) + " (" + c.output + ")\n";
  }
  return out;
}

class ChecksE2eTest : public testing::Test {
 protected:
  void SetUp() override {
    if (!std::getenv("PETREL_BINARY")) GTEST_SKIP() << "PETREL_BINARY is not set";
    if (access("/usr/lib/postgresql/15/bin/postgres", X_OK) != 0) {
      FAIL() << "PostgreSQL 15 is required: /usr/lib/postgresql/15/bin/postgres";
    }
    char tmpl[] = "/tmp/petrel-checks-e2e-XXXXXX";
    dir_ = mkdtemp(tmpl);
    chmod(dir_.c_str(), 0755);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  std::string dir_;
};

TEST_F(ChecksE2eTest, PrimaryAndReplicaPassThenTheReplicaReportsItStoppedStreaming) {
  auto primary = std::make_unique<Instance>("db-1", LoopbackAddress(1), dir_);
  Instance replica("db-2", LoopbackAddress(2), dir_);
  primary->Start();
  replica.Start();

  // Before any spec: postgres is not running, and the checks say why without alarm.
  ASSERT_TRUE(WaitFor([&] { return primary->Check("pg").has_value(); }, seconds(20)));
  EXPECT_EQ(primary->Check("pg")->output, "waiting for a spec from the controller");
  EXPECT_TRUE(HasLine(primary->Metrics(), "pg_up 0"));

  InstanceSpec ps;
  ps.generation = 1;
  ps.role = InstanceRole::kPrimary;
  ps.bootstrap = BootstrapMethod::kInitdb;
  ps.replication_slots = {"db_2"};
  ASSERT_EQ(primary->PutSpec(ps).status, 202);
  InstanceSpec rs;
  rs.generation = 1;
  rs.role = InstanceRole::kReplica;
  rs.bootstrap = BootstrapMethod::kClone;
  rs.primary = primary->endpoint();
  rs.slot_name = "db_2";
  ASSERT_TRUE(WaitFor([&] { return primary->Status().ready; }, seconds(90))) << primary->Log();
  ASSERT_EQ(replica.PutSpec(rs).status, 202);

  // Both pass: the primary sees its standby streaming, the replica streams from it.
  auto passing = [](Instance& i, const std::string& role) {
    auto pg = i.Check("pg");
    auto r = i.Check("role");
    return pg && r && pg->state == CheckState::kPassing && r->state == CheckState::kPassing &&
           r->output == role;
  };
  ASSERT_TRUE(WaitFor([&] { return passing(*primary, "leader") && passing(replica, "replica"); },
                      seconds(120)))
      << "primary:\n"
      << Describe(primary->Status().checks) << "replica:\n"
      << Describe(replica.Status().checks) << replica.Log();
  InstanceStatus p = primary->Status();
  ASSERT_EQ(p.standbys.size(), 1u);
  EXPECT_EQ(p.standbys[0].name, "db-2");
  EXPECT_EQ(p.standbys[0].state, "streaming");
  EXPECT_EQ(p.standbys[0].sync_state, "async");
  EXPECT_NE(primary->Check("pg")->output.find("connections used"), std::string::npos);
  EXPECT_NE(primary->Check("pg")->output.find("replication lag"), std::string::npos)
      << primary->Check("pg")->output;
  EXPECT_NE(replica.Check("pg")->output.find("streaming from " + primary->pg_address()),
            std::string::npos)
      << replica.Check("pg")->output;
  // The vm check's state depends on this (shared, busy) machine; its content does not.
  std::string vm = primary->Check("vm")->output;
  EXPECT_NE(vm.find("disk "), std::string::npos) << vm;
  EXPECT_NE(vm.find("% used ("), std::string::npos) << vm;
  EXPECT_NE(vm.find("load "), std::string::npos) << vm;

  // Metrics, on the metrics port and the API alike.
  ASSERT_TRUE(WaitFor(
      [&] {
        std::string m = primary->Metrics();
        return HasLine(m, "pg_up 1") &&
               m.find("petrel_instance_standby_lag_bytes{standby=\"db-2\"}") != std::string::npos;
      },
      seconds(30)))
      << primary->Metrics();
  std::string pm = primary->Metrics();
  EXPECT_TRUE(HasLine(pm, "petrel_instance_role{role=\"primary\"} 1")) << pm;
  EXPECT_TRUE(HasLine(pm, "pg_replication_is_replica 0")) << pm;
  EXPECT_NE(pm.find("pg_stat_database_xact_commit{datname=\"postgres\"}"), std::string::npos);
  EXPECT_NE(pm.find("pg_database_size_bytes{datname=\"postgres\"}"), std::string::npos);
  EXPECT_TRUE(HasLine(pm, "petrel_instance_check_status{check=\"pg\"} 0")) << pm;
  std::string am = primary->ApiMetrics();
  EXPECT_TRUE(HasLine(am, "pg_up 1")) << am;
  std::string rm = replica.Metrics();
  EXPECT_TRUE(HasLine(rm, "pg_replication_is_replica 1")) << rm;
  EXPECT_NE(rm.find("\npg_replication_lag_seconds "), std::string::npos) << rm;
  EXPECT_TRUE(HasLine(rm, "petrel_instance_streaming 1")) << rm;

  // The primary goes away: the replica keeps running read-only, and its pg check says it no
  // longer streams from the primary it was told to follow.
  primary->Stop();
  std::string expected = "not streaming from " + primary->pg_address();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto pg = replica.Check("pg");
        return pg && pg->state == CheckState::kCritical && pg->output.rfind(expected, 0) == 0;
      },
      seconds(60)))
      << Describe(replica.Status().checks);
  EXPECT_EQ(replica.Check("role")->state, CheckState::kPassing);
  EXPECT_EQ(replica.Check("role")->output, "replica");
  EXPECT_TRUE(WaitFor(
      [&] {
        std::string m = replica.Metrics();
        return HasLine(m, "petrel_instance_check_status{check=\"pg\"} 2") &&
               HasLine(m, "petrel_instance_streaming 0") && HasLine(m, "pg_up 1");
      },
      seconds(30)))
      << replica.Metrics();
  // Reporting changed nothing: the replica is still a replica, not promoted.
  EXPECT_EQ(replica.Status().role, InstanceRole::kReplica);
}

}  // namespace
}  // namespace petrel
