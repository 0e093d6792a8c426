// Test support for end-to-end tests of `petrel instance` as a process (PETREL_BINARY)
// against real PostgreSQL 15: one InstanceProcess per instance, each with its own loopback
// address, ports and volume under a TempDir. InstanceOptions covers what differs between
// tests (cluster name, passwords, a metrics port of its own).
//
// Thread-safety: an InstanceProcess is driven by one test thread; Call() (HTTP) is safe from
// any thread.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "api/instance.h"
#include "instance/process.h"
#include "net/http.h"
#include "pg/conn.h"

namespace petrel {
namespace e2e {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr const char* kSuperPassword = "e2e-super-pw";
constexpr const char* kReplPassword = "e2e-repl-pw";
constexpr const char* kToken = "e2e-token-0123456789";

// The cluster's secrets an instance is started with.
struct Passwords {
  std::string superuser;
  std::string replication;
};

// Whether an instance also serves GET /metrics on a port of its own (--metrics-port).
enum class MetricsPort { kApiOnly, kOwn };

// How an InstanceProcess is started beyond its name, address and volume.
struct InstanceOptions {
  std::string cluster = "e2e";
  Passwords passwords{kSuperPassword, kReplPassword};
  MetricsPort metrics_port = MetricsPort::kApiOnly;
};

inline std::string Binary() {
  const char* b = std::getenv("PETREL_BINARY");
  return b ? b : "";
}

// Polls `pred` every 200 ms until it holds or `timeout` passes.
inline bool WaitFor(const std::function<bool()>& pred, seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return pred();
}

// A free TCP port on `address` (bound and released; the address is ours alone).
inline uint16_t FreePort(const std::string& address) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  inet_pton(AF_INET, address.c_str(), &sa.sin_addr);
  sa.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    close(fd);
    return 0;
  }
  socklen_t len = sizeof(sa);
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  close(fd);
  return ntohs(sa.sin_port);
}

// A temporary directory the postgres user can traverse (0755), removed at the end unless
// PETREL_KEEP_TMP is set. `prefix` names it under /tmp, so a kept one says which test left it.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "petrel-e2e") {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    path_ = mkdtemp(tmpl.data());
    chmod(path_.c_str(), 0755);
  }
  ~TempDir() {
    if (std::getenv("PETREL_KEEP_TMP")) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// One `petrel instance` process with its own loopback address, ports and volume.
class InstanceProcess {
 public:
  InstanceProcess(std::string name, std::string address, const std::string& dir,
                  InstanceOptions options = {})
      : name_(std::move(name)), address_(std::move(address)), options_(std::move(options)) {
    volume_ = dir + "/" + name_;
    fs::create_directories(volume_);
    chmod(volume_.c_str(), 0755);
    pgdata_ = volume_ + "/pgdata";
    log_ = dir + "/" + name_ + ".log";
    pg_port_ = FreePort(address_);
    api_port_ = FreePort(address_);
    if (options_.metrics_port == MetricsPort::kOwn) metrics_port_ = FreePort(address_);
  }
  ~InstanceProcess() {
    if (proc_.running()) {
      proc_.SignalAndWait(SIGTERM, seconds(60));
    }
  }

  void Start() {
    std::ostringstream cmd;
    cmd << "exec '" << Binary() << "' instance --name " << name_ << " --cluster "
        << options_.cluster << " --pgdata " << pgdata_ << " --listen-address " << address_
        << " --port " << pg_port_ << " --api-port " << api_port_;
    if (metrics_port_ != 0) cmd << " --metrics-port " << metrics_port_;
    cmd << " >>" << log_ << " 2>&1";
    Command c;
    c.argv = {"/bin/sh", "-c", cmd.str()};
    c.env = {"PATH=/usr/bin:/bin", "PETREL_SUPERUSER_PASSWORD=" + options_.passwords.superuser,
             "PETREL_REPLICATION_PASSWORD=" + options_.passwords.replication,
             std::string("PETREL_API_TOKEN=") + kToken};
    ASSERT_TRUE(proc_.Start(c).ok());
    ASSERT_TRUE(WaitFor([&] { return Call("GET", "/healthz").status == 200; }, seconds(20)))
        << Log();
  }

  // SIGTERM; returns the exit code (-1 if it had to be killed).
  int Terminate() {
    if (!proc_.running()) return -1;
    (void)proc_.Signal(SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + seconds(90);
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto st = proc_.Poll()) return WIFEXITED(*st) ? WEXITSTATUS(*st) : -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    proc_.SignalAndWait(SIGKILL, seconds(5));
    return -1;
  }

  // A call to the API port; "" as `token` sends no authorization header.
  HttpResponse Call(const std::string& method, const std::string& path,
                    const std::string& body = "", const std::string& token = kToken,
                    seconds timeout = seconds(5)) {
    return CallPort(api_port_, method, path, body, token, timeout);
  }

  HttpResponse PutSpec(const InstanceSpec& spec) {
    return Call("PUT", "/spec", spec.ToJson().dump());
  }

  // POST /snapshot into `dir` (a copy takes a while, hence the longer timeout).
  HttpResponse Snapshot(const std::string& dir) {
    return Call("POST", "/snapshot", Json{{"dir", dir}}.dump(), kToken, seconds(120));
  }

  // GET /metrics without a token, from the metrics port (MetricsPort::kOwn only).
  std::string Metrics() { return CallPort(metrics_port_, "GET", "/metrics", "", "").body; }
  // GET /metrics without a token, from the API port.
  std::string ApiMetrics() { return Call("GET", "/metrics", "", "").body; }

  InstanceStatus Status() {
    HttpResponse r = Call("GET", "/status");
    if (r.status != 200) return InstanceStatus();
    auto s = InstanceStatus::FromJson(Json::parse(r.body, nullptr, false));
    return s.ok() ? *s : InstanceStatus();
  }

  // The health check called `name` in the status, if it reports one.
  std::optional<HealthCheck> Check(const std::string& name) {
    for (const HealthCheck& c : Status().checks) {
      if (c.name == name) return c;
    }
    return std::nullopt;
  }

  bool WaitReady(InstanceRole role, int64_t generation, seconds timeout = seconds(90)) {
    return WaitFor(
        [&] {
          InstanceStatus s = Status();
          return s.ready && s.role == role && s.spec_generation >= generation &&
                 (role == InstanceRole::kPrimary || s.streaming);
        },
        timeout);
  }

  // A connection to database postgres as `user` with `password`.
  Result<PgConn> Connect(const std::string& user, const std::string& password) {
    return PgConn::Connect(ConnInfo({{"host", address_},
                                     {"port", std::to_string(pg_port_)},
                                     {"user", user},
                                     {"dbname", "postgres"}}),
                           password);
  }

  // A connection as the superuser with the instance's own password.
  Result<PgConn> Sql() { return Connect("postgres", options_.passwords.superuser); }

  // Runs a query and returns the first column of the first row ("" on error).
  std::string Query(const std::string& sql) {
    auto c = Sql();
    if (!c.ok()) return "";
    auto r = c->Exec(sql);
    return r.ok() ? r->GetOr(0, 0) : "";
  }

  pid_t PostmasterPid() {
    std::ifstream in(pgdata_ + "/postmaster.pid");
    pid_t pid = 0;
    in >> pid;
    return pid;
  }

  // The postmaster and its children (each backend leads its own session, so a signal to
  // the postmaster's process group would not reach them).
  std::vector<pid_t> PostgresPids() {
    std::vector<pid_t> pids;
    pid_t pm = PostmasterPid();
    if (pm <= 0) return pids;
    pids.push_back(pm);
    std::ifstream in("/proc/" + std::to_string(pm) + "/task/" + std::to_string(pm) + "/children");
    pid_t child = 0;
    while (in >> child) pids.push_back(child);
    return pids;
  }

  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    return s.size() > 6000 ? s.substr(s.size() - 6000) : s;
  }

  Endpoint endpoint() const { return Endpoint{address_, pg_port_}; }
  // "address:port" of postgres, as the checks report it.
  std::string pg_address() const { return address_ + ":" + std::to_string(pg_port_); }
  Peer peer() const { return Peer{name_, address_, api_port_}; }
  // The `petrel instance` process; it leads its own process group.
  pid_t pid() const { return proc_.pid(); }
  const std::string& volume() const { return volume_; }
  const std::string& pgdata() const { return pgdata_; }

 private:
  HttpResponse CallPort(uint16_t port, const std::string& method, const std::string& path,
                        const std::string& body, const std::string& token,
                        seconds timeout = seconds(5)) {
    HttpCallOptions opts;
    opts.timeout = timeout;
    if (!token.empty()) opts.headers["authorization"] = "Bearer " + token;
    auto r = HttpCall(method, "http://" + address_ + ":" + std::to_string(port) + path, body, opts);
    if (!r.ok()) return HttpResponse{599, "", {}, r.status().ToString()};
    return *r;
  }

  std::string name_, address_, volume_, pgdata_, log_;
  InstanceOptions options_;
  uint16_t pg_port_ = 0, api_port_ = 0, metrics_port_ = 0;  // metrics: 0 = none of its own
  ChildProcess proc_;
};

// A fixture for tests of InstanceProcesses: skips when PETREL_BINARY is not set or
// PostgreSQL 15 is not installed, and gives each test its own TempDir.
class InstanceProcessTest : public testing::Test {
 protected:
  explicit InstanceProcessTest(const std::string& tmp_prefix = "petrel-e2e") : dir_(tmp_prefix) {}
  void SetUp() override {
    if (Binary().empty()) GTEST_SKIP() << "PETREL_BINARY is not set";
    if (access("/usr/lib/postgresql/15/bin/postgres", X_OK) != 0) {
      GTEST_SKIP() << "PostgreSQL 15 is not installed";
    }
  }
  TempDir dir_;
};

// Distinct 127.x.y.z addresses per test run, so concurrent runs and a local Postgres on
// 127.0.0.1:5432 never collide.
inline std::string LoopbackAddress(int host) {
  static const int subnet = [] {
    std::random_device rd;
    return 100 + static_cast<int>(rd() % 150);
  }();
  static const int net = [] {
    std::random_device rd;
    return 1 + static_cast<int>(rd() % 250);
  }();
  return "127." + std::to_string(subnet) + "." + std::to_string(net) + "." + std::to_string(host);
}

}  // namespace e2e
}  // namespace petrel
