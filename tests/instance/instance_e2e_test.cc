// End-to-end tests of `petrel instance` as a process (PETREL_BINARY) against real
// PostgreSQL 15: bootstrap, streaming replication, promotion and rewind, fencing, crash
// recovery, shutdown, and the API's handling of bad input. Run as root in CI, so the drop of
// privileges to the postgres user is exercised. Each instance gets its own loopback address.
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
#include <random>
#include <sstream>
#include <thread>

#include "api/instance.h"
#include "instance/process.h"
#include "net/http.h"
#include "pg/conn.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr const char* kSuperPassword = "e2e-super-pw";
constexpr const char* kReplPassword = "e2e-repl-pw";
constexpr const char* kToken = "e2e-token-0123456789";

std::string Binary() {
  const char* b = std::getenv("PETREL_BINARY");
  return b ? b : "";
}

// Polls `pred` every 200 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& pred, seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return pred();
}

// A free TCP port on `address` (bound and released; the address is ours alone).
uint16_t FreePort(const std::string& address) {
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

// A temporary directory the postgres user can traverse (0755), removed at the end.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/petrel-e2e-XXXXXX";
    path_ = mkdtemp(tmpl);
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
  InstanceProcess(std::string name, std::string address, const std::string& dir)
      : name_(std::move(name)), address_(std::move(address)) {
    volume_ = dir + "/" + name_;
    fs::create_directories(volume_);
    chmod(volume_.c_str(), 0755);
    pgdata_ = volume_ + "/pgdata";
    log_ = dir + "/" + name_ + ".log";
    pg_port_ = FreePort(address_);
    api_port_ = FreePort(address_);
  }
  ~InstanceProcess() {
    if (proc_.running()) {
      proc_.SignalAndWait(SIGTERM, seconds(60));
    }
  }

  void Start() {
    std::ostringstream cmd;
    cmd << "exec '" << Binary() << "' instance --name " << name_ << " --cluster e2e --pgdata "
        << pgdata_ << " --listen-address " << address_ << " --port " << pg_port_ << " --api-port "
        << api_port_ << " >>" << log_ << " 2>&1";
    Command c;
    c.argv = {"/bin/sh", "-c", cmd.str()};
    c.env = {"PATH=/usr/bin:/bin", std::string("PETREL_SUPERUSER_PASSWORD=") + kSuperPassword,
             std::string("PETREL_REPLICATION_PASSWORD=") + kReplPassword,
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

  HttpResponse Call(const std::string& method, const std::string& path,
                    const std::string& body = "", const std::string& token = kToken) {
    HttpCallOptions opts;
    opts.timeout = std::chrono::milliseconds(5000);
    if (!token.empty()) opts.headers["authorization"] = "Bearer " + token;
    auto r =
        HttpCall(method, "http://" + address_ + ":" + std::to_string(api_port_) + path, body, opts);
    if (!r.ok()) return HttpResponse{599, "", {}, r.status().ToString()};
    return *r;
  }

  HttpResponse PutSpec(const InstanceSpec& spec) {
    return Call("PUT", "/spec", spec.ToJson().dump());
  }

  InstanceStatus Status() {
    HttpResponse r = Call("GET", "/status");
    if (r.status != 200) return InstanceStatus();
    auto s = InstanceStatus::FromJson(Json::parse(r.body, nullptr, false));
    return s.ok() ? *s : InstanceStatus();
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

  Result<PgConn> Sql() {
    return PgConn::Connect(ConnInfo({{"host", address_},
                                     {"port", std::to_string(pg_port_)},
                                     {"user", "postgres"},
                                     {"dbname", "postgres"}}),
                           kSuperPassword);
  }

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

  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    return s.size() > 6000 ? s.substr(s.size() - 6000) : s;
  }

  Endpoint endpoint() const { return Endpoint{address_, pg_port_}; }
  const std::string& volume() const { return volume_; }
  const std::string& pgdata() const { return pgdata_; }

 private:
  std::string name_, address_, volume_, pgdata_, log_;
  uint16_t pg_port_ = 0, api_port_ = 0;
  ChildProcess proc_;
};

// Distinct 127.x.y.z addresses per test run, so concurrent runs and a local Postgres on
// 127.0.0.1:5432 never collide.
std::string LoopbackAddress(int host) {
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

class InstanceE2eTest : public testing::Test {
 protected:
  void SetUp() override {
    if (Binary().empty()) GTEST_SKIP() << "PETREL_BINARY is not set";
    if (access("/usr/lib/postgresql/15/bin/postgres", X_OK) != 0) {
      GTEST_SKIP() << "PostgreSQL 15 is not installed";
    }
  }
  TempDir dir_;
};

TEST_F(InstanceE2eTest, ReplicatesPromotesRewindsFencesAndRecovers) {
  InstanceProcess a("db-1", LoopbackAddress(1), dir_.path());
  InstanceProcess b("db-2", LoopbackAddress(2), dir_.path());
  a.Start();
  b.Start();

  // Bad input changes nothing.
  InstanceSpec pa;
  pa.generation = 1;
  pa.role = InstanceRole::kPrimary;
  pa.bootstrap = BootstrapMethod::kInitdb;
  pa.replication_slots = {"db_2"};
  EXPECT_EQ(a.Call("PUT", "/spec", pa.ToJson().dump(), "").status, 401);
  EXPECT_EQ(a.Call("PUT", "/spec", pa.ToJson().dump(), "wrong-token").status, 401);
  HttpResponse bad = a.Call("PUT", "/spec", "{not json");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("not valid JSON"), std::string::npos) << bad.body;
  HttpResponse invalid = a.Call("PUT", "/spec", R"({"role":"leader"})");
  EXPECT_EQ(invalid.status, 400);
  EXPECT_NE(invalid.body.find("leader"), std::string::npos) << invalid.body;
  EXPECT_EQ(a.Call("GET", "/spec").status, 404);
  EXPECT_EQ(a.Call("GET", "/readyz").status, 503);

  // Primary from initdb.
  ASSERT_EQ(a.PutSpec(pa).status, 202);
  ASSERT_TRUE(a.WaitReady(InstanceRole::kPrimary, 1)) << a.Log();
  EXPECT_EQ(a.Call("GET", "/readyz").status, 200);
  EXPECT_EQ(a.Query("SHOW data_checksums"), "on");
  EXPECT_EQ(a.Query("SELECT rolreplication FROM pg_roles WHERE rolname = 'streaming_replica'"),
            "t");
  {
    auto c = a.Sql();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ASSERT_TRUE(
        c->ExecScript("CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1);").ok());
  }

  // Replica cloned from it, streaming through its slot.
  InstanceSpec pb;
  pb.generation = 1;
  pb.role = InstanceRole::kReplica;
  pb.bootstrap = BootstrapMethod::kClone;
  pb.primary = a.endpoint();
  pb.slot_name = "db_2";
  ASSERT_EQ(b.PutSpec(pb).status, 202);
  ASSERT_TRUE(b.WaitReady(InstanceRole::kReplica, 1)) << b.Log();
  EXPECT_TRUE(WaitFor([&] { return b.Query("SELECT count(*) FROM t") == "1"; }, seconds(30)));
  EXPECT_EQ(a.Query("SELECT state FROM pg_stat_replication WHERE application_name = 'db-2'"),
            "streaming");
  EXPECT_EQ(a.Query("SELECT active FROM pg_replication_slots WHERE slot_name = 'db_2'"), "t");
  InstanceStatus sb = b.Status();
  EXPECT_EQ(sb.system_identifier, a.Status().system_identifier);
  EXPECT_EQ(sb.following, a.endpoint().host + ":" + std::to_string(a.endpoint().port));

  // A stale generation is refused with 409 and changes nothing.
  InstanceSpec stale = pb;
  stale.generation = 0;
  EXPECT_EQ(b.PutSpec(stale).status, 409);

  // Promote the replica while the old primary still runs, then make the old primary follow:
  // its timeline has diverged, so it must be rewound.
  pb.generation = 2;
  pb.role = InstanceRole::kPrimary;
  pb.replication_slots = {"db_1"};
  ASSERT_EQ(b.PutSpec(pb).status, 202);
  ASSERT_TRUE(b.WaitReady(InstanceRole::kPrimary, 2)) << b.Log();
  EXPECT_GE(b.Status().timeline, 2);
  ASSERT_TRUE(b.Sql().ok());
  {
    auto c = b.Sql();
    ASSERT_TRUE(c->ExecScript("INSERT INTO t VALUES (2)").ok());
  }
  {
    // Written on the old primary after the promotion: it is on the abandoned timeline.
    auto c = a.Sql();
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c->ExecScript("INSERT INTO t VALUES (100)").ok());
  }

  pa.generation = 2;
  pa.role = InstanceRole::kReplica;
  pa.primary = b.endpoint();
  pa.slot_name = "db_1";
  pa.replication_slots = {};
  ASSERT_EQ(a.PutSpec(pa).status, 202);
  ASSERT_TRUE(a.WaitReady(InstanceRole::kReplica, 2)) << a.Log();
  {
    auto c = b.Sql();
    ASSERT_TRUE(c->ExecScript("INSERT INTO t VALUES (3)").ok());
  }
  EXPECT_TRUE(WaitFor(
      [&] { return a.Query("SELECT string_agg(id::text, ',' ORDER BY id) FROM t") == "1,2,3"; },
      seconds(30)))
      << a.Query("SELECT string_agg(id::text, ',' ORDER BY id) FROM t");
  EXPECT_EQ(b.Query("SELECT state FROM pg_stat_replication WHERE application_name = 'db-1'"),
            "streaming");
  EXPECT_EQ(a.Status().timeline, b.Status().timeline);
  EXPECT_EQ(b.Query("SELECT active FROM pg_replication_slots WHERE slot_name = 'db_1'"), "t");
  // The slot the old primary kept for db-2 would hold WAL on the new replica forever.
  EXPECT_TRUE(WaitFor([&] { return a.Query("SELECT count(*) FROM pg_replication_slots") == "0"; },
                      seconds(30)));
  // Rewound in place: no data directory was moved aside for a re-clone.
  for (const auto& e : fs::directory_iterator(a.volume())) {
    EXPECT_EQ(e.path().filename().string().rfind("pgdata.", 0), std::string::npos)
        << e.path() << "\n"
        << a.Status().message;
  }

  // Fence stops postgres and keeps it stopped; unfence starts it again.
  pa.generation = 3;
  pa.fenced = true;
  ASSERT_EQ(a.PutSpec(pa).status, 202);
  ASSERT_TRUE(WaitFor(
      [&] {
        InstanceStatus s = a.Status();
        return s.fenced && !s.running;
      },
      seconds(60)))
      << a.Log();
  EXPECT_FALSE(a.Sql().ok());
  EXPECT_EQ(a.Call("GET", "/readyz").status, 503);
  pa.generation = 4;
  pa.fenced = false;
  ASSERT_EQ(a.PutSpec(pa).status, 202);
  ASSERT_TRUE(a.WaitReady(InstanceRole::kReplica, 4)) << a.Log();

  // kill -9 of the postgres child: the supervisor restarts it.
  pid_t victim = b.PostmasterPid();
  ASSERT_GT(victim, 0);
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(
      [&] {
        pid_t p = b.PostmasterPid();
        return p > 0 && p != victim;
      },
      seconds(60)))
      << b.Log();
  ASSERT_TRUE(b.WaitReady(InstanceRole::kPrimary, 2)) << b.Log();
  {
    auto c = b.Sql();
    ASSERT_TRUE(c.ok());
    EXPECT_TRUE(c->ExecScript("INSERT INTO t VALUES (4)").ok());
  }
  EXPECT_TRUE(
      WaitFor([&] { return a.Query("SELECT count(*) FROM t WHERE id = 4") == "1"; }, seconds(30)));

  // SIGTERM: clean shutdown and exit 0; a restart resumes from the saved spec alone.
  EXPECT_EQ(a.Terminate(), 0);
  EXPECT_FALSE(fs::exists(a.pgdata() + "/postmaster.pid"));
  a.Start();
  ASSERT_TRUE(a.WaitReady(InstanceRole::kReplica, 4)) << a.Log();
  EXPECT_EQ(a.Terminate(), 0);
  EXPECT_EQ(b.Terminate(), 0);
  EXPECT_FALSE(fs::exists(b.pgdata() + "/postmaster.pid"));
  // Secrets never reach the logs.
  for (const std::string& log : {a.Log(), b.Log()}) {
    EXPECT_EQ(log.find(kSuperPassword), std::string::npos);
    EXPECT_EQ(log.find(kReplPassword), std::string::npos);
    EXPECT_EQ(log.find(kToken), std::string::npos);
  }
}

Result<CommandResult> RunPetrel(std::vector<std::string> args, std::vector<std::string> env) {
  Command c;
  c.argv = {Binary(), "instance"};
  for (auto& a : args) c.argv.push_back(std::move(a));
  c.env = std::move(env);
  return RunCommand(c, seconds(30));
}

// spec.initdb reaches initdb (encoding, locale, checksums) and creates the application
// database owned by a NOLOGIN role; the names are quoted, so any identifier works.
TEST_F(InstanceE2eTest, InitdbOptionsShapeTheNewCluster) {
  InstanceProcess a("db-1", LoopbackAddress(11), dir_.path());
  a.Start();
  InstanceSpec spec;
  spec.generation = 1;
  spec.role = InstanceRole::kPrimary;
  spec.bootstrap = BootstrapMethod::kInitdb;
  spec.initdb = InitdbOptions{"shop", "Shop \"Owner\"", "LATIN1", "C", false};
  ASSERT_EQ(a.PutSpec(spec).status, 202);
  ASSERT_TRUE(a.WaitReady(InstanceRole::kPrimary, 1)) << a.Log();
  EXPECT_EQ(a.Query("SHOW data_checksums"), "off");
  EXPECT_EQ(a.Query("SELECT pg_encoding_to_char(encoding) || ' ' || datcollate || ' ' || "
                    "datctype FROM pg_database WHERE datname = 'template1'"),
            "LATIN1 C C");
  EXPECT_EQ(a.Query("SELECT pg_get_userbyid(datdba) || ' ' || pg_encoding_to_char(encoding) "
                    "FROM pg_database WHERE datname = 'shop'"),
            "Shop \"Owner\" LATIN1");
  EXPECT_EQ(a.Query("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'Shop \"Owner\"'"), "f");
  // The owner owns the public schema of its database (pg_database_owner in Postgres 15).
  auto shop = PgConn::Connect(ConnInfo({{"host", a.endpoint().host},
                                        {"port", std::to_string(a.endpoint().port)},
                                        {"user", "postgres"},
                                        {"dbname", "shop"}}),
                              kSuperPassword);
  ASSERT_TRUE(shop.ok()) << shop.status().ToString();
  ASSERT_TRUE(
      shop->ExecScript("SET ROLE \"Shop \"\"Owner\"\"\"; CREATE TABLE items (id int)").ok());
  auto owner = shop->Exec("SELECT tableowner FROM pg_tables WHERE tablename = 'items'");
  ASSERT_TRUE(owner.ok());
  EXPECT_EQ(owner->GetOr(0, 0), "Shop \"Owner\"");
}

TEST_F(InstanceE2eTest, MissingBinariesAreAClearStartupError) {
  auto r = RunPetrel({"--name", "db-1", "--pgdata", dir_.path() + "/x/pgdata", "--listen-address",
                      LoopbackAddress(3), "--bin-dir", "/nonexistent/bin"},
                     {std::string("PETREL_SUPERUSER_PASSWORD=") + kSuperPassword,
                      std::string("PETREL_REPLICATION_PASSWORD=") + kReplPassword,
                      std::string("PETREL_API_TOKEN=") + kToken});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_NE(r->output.find("binaries not found in /nonexistent/bin"), std::string::npos)
      << r->output;
  EXPECT_FALSE(fs::exists(dir_.path() + "/x")) << "a failed start must change nothing";
}

TEST_F(InstanceE2eTest, MissingSecretsAndWildcardAddressAreRefused) {
  auto no_token = RunPetrel({"--name", "db-1", "--pgdata", dir_.path() + "/x/pgdata",
                             "--listen-address", LoopbackAddress(3)},
                            {std::string("PETREL_SUPERUSER_PASSWORD=") + kSuperPassword,
                             std::string("PETREL_REPLICATION_PASSWORD=") + kReplPassword});
  ASSERT_TRUE(no_token.ok());
  EXPECT_EQ(no_token->exit_code, 2);
  EXPECT_NE(no_token->output.find("PETREL_API_TOKEN is not set"), std::string::npos)
      << no_token->output;

  auto wildcard = RunPetrel(
      {"--name", "db-1", "--pgdata", dir_.path() + "/x/pgdata", "--listen-address", "0.0.0.0"},
      {std::string("PETREL_SUPERUSER_PASSWORD=") + kSuperPassword,
       std::string("PETREL_REPLICATION_PASSWORD=") + kReplPassword,
       std::string("PETREL_API_TOKEN=") + kToken});
  ASSERT_TRUE(wildcard.ok());
  EXPECT_EQ(wildcard->exit_code, 2);
  EXPECT_NE(wildcard->output.find("not the wildcard"), std::string::npos) << wildcard->output;
}

}  // namespace
}  // namespace petrel
