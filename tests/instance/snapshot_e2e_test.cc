// End-to-end tests of snapshots and restores with `petrel instance` processes (PETREL_BINARY)
// and real PostgreSQL 15: POST /snapshot of a streaming replica, a new cluster restored from
// that copy (bootstrap snapshot) and re-keyed with its own passwords, and the refusal of
// another cluster's data. Runs as root in CI, so postgres runs as the postgres user.
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

constexpr const char* kToken = "snapshot-e2e-token-0123456789";

struct Passwords {
  std::string superuser;
  std::string replication;
};
const Passwords kSourcePasswords{"source-super-pw", "source-repl-pw"};
const Passwords kRestoredPasswords{"restored-super-pw", "restored-repl-pw"};

std::string Binary() {
  const char* b = std::getenv("PETREL_BINARY");
  return b ? b : "";
}

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

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/petrel-snap-e2e-XXXXXX";
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

// One `petrel instance` process with its own address, ports, volume and passwords.
class InstanceProcess {
 public:
  InstanceProcess(std::string name, std::string address, const std::string& dir,
                  Passwords passwords)
      : name_(std::move(name)), address_(std::move(address)), passwords_(std::move(passwords)) {
    volume_ = dir + "/" + name_;
    fs::create_directories(volume_);
    chmod(volume_.c_str(), 0755);
    pgdata_ = volume_ + "/pgdata";
    log_ = dir + "/" + name_ + ".log";
    pg_port_ = FreePort(address_);
    api_port_ = FreePort(address_);
  }
  ~InstanceProcess() {
    if (proc_.running()) proc_.SignalAndWait(SIGTERM, seconds(60));
  }

  void Start() {
    std::ostringstream cmd;
    cmd << "exec '" << Binary() << "' instance --name " << name_ << " --cluster e2e --pgdata "
        << pgdata_ << " --listen-address " << address_ << " --port " << pg_port_ << " --api-port "
        << api_port_ << " >>" << log_ << " 2>&1";
    Command c;
    c.argv = {"/bin/sh", "-c", cmd.str()};
    c.env = {"PATH=/usr/bin:/bin", "PETREL_SUPERUSER_PASSWORD=" + passwords_.superuser,
             "PETREL_REPLICATION_PASSWORD=" + passwords_.replication,
             std::string("PETREL_API_TOKEN=") + kToken};
    ASSERT_TRUE(proc_.Start(c).ok());
    ASSERT_TRUE(WaitFor([&] { return Call("GET", "/healthz").status == 200; }, seconds(20)))
        << Log();
  }

  HttpResponse Call(const std::string& method, const std::string& path,
                    const std::string& body = "", seconds timeout = seconds(5)) {
    HttpCallOptions opts;
    opts.timeout = timeout;
    opts.headers["authorization"] = std::string("Bearer ") + kToken;
    auto r =
        HttpCall(method, "http://" + address_ + ":" + std::to_string(api_port_) + path, body, opts);
    if (!r.ok()) return HttpResponse{599, "", {}, r.status().ToString()};
    return *r;
  }

  HttpResponse PutSpec(const InstanceSpec& spec) {
    return Call("PUT", "/spec", spec.ToJson().dump());
  }

  HttpResponse Snapshot(const std::string& dir) {
    return Call("POST", "/snapshot", Json{{"dir", dir}}.dump(), seconds(120));
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

  Result<PgConn> Connect(const std::string& user, const std::string& password) {
    PgConnectOptions opts;
    opts.connect_timeout = seconds(5);
    return PgConn::Connect(ConnInfo({{"host", address_},
                                     {"port", std::to_string(pg_port_)},
                                     {"user", user},
                                     {"dbname", "postgres"}}),
                           password, opts);
  }

  std::string Query(const std::string& sql) {
    auto c = Connect("postgres", passwords_.superuser);
    if (!c.ok()) return "";
    auto r = c->Exec(sql);
    return r.ok() ? r->GetOr(0, 0) : "";
  }

  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    return s.size() > 6000 ? s.substr(s.size() - 6000) : s;
  }

  Endpoint endpoint() const { return Endpoint{address_, pg_port_}; }
  const std::string& pgdata() const { return pgdata_; }

 private:
  std::string name_, address_, volume_, pgdata_, log_;
  Passwords passwords_;
  uint16_t pg_port_ = 0, api_port_ = 0;
  ChildProcess proc_;
};

class SnapshotE2eTest : public testing::Test {
 protected:
  void SetUp() override {
    if (Binary().empty()) GTEST_SKIP() << "PETREL_BINARY is not set";
    if (access("/usr/lib/postgresql/15/bin/postgres", X_OK) != 0) {
      GTEST_SKIP() << "PostgreSQL 15 is not installed";
    }
  }
  TempDir dir_;
};

TEST_F(SnapshotE2eTest, SnapshotOfAReplicaRestoresAsARekeyedNewCluster) {
  InstanceProcess a("src-1", LoopbackAddress(1), dir_.path(), kSourcePasswords);
  InstanceProcess b("src-2", LoopbackAddress(2), dir_.path(), kSourcePasswords);
  a.Start();
  b.Start();

  // The source cluster: a primary and a streaming replica, recorded as cluster "uid-source".
  InstanceSpec pa;
  pa.generation = 1;
  pa.role = InstanceRole::kPrimary;
  pa.bootstrap = BootstrapMethod::kInitdb;
  pa.replication_slots = {"src_2"};
  pa.cluster_uid = "uid-source";
  ASSERT_EQ(a.PutSpec(pa).status, 202);
  ASSERT_TRUE(a.WaitReady(InstanceRole::kPrimary, 1)) << a.Log();
  EXPECT_TRUE(WaitFor([&] { return a.Status().cluster_uid == "uid-source"; }, seconds(10)));
  {
    auto c = a.Connect("postgres", kSourcePasswords.superuser);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ASSERT_TRUE(c->ExecScript("CREATE TABLE t (id int primary key); "
                              "INSERT INTO t SELECT generate_series(1, 3);")
                    .ok());
  }
  InstanceSpec pb;
  pb.generation = 1;
  pb.role = InstanceRole::kReplica;
  pb.bootstrap = BootstrapMethod::kClone;
  pb.primary = a.endpoint();
  pb.slot_name = "src_2";
  pb.cluster_uid = "uid-source";
  ASSERT_EQ(b.PutSpec(pb).status, 202);
  ASSERT_TRUE(b.WaitReady(InstanceRole::kReplica, 1)) << b.Log();
  ASSERT_TRUE(WaitFor([&] { return b.Query("SELECT count(*) FROM t") == "3"; }, seconds(30)));

  // A snapshot of the replica, so the primary is not disturbed.
  const std::string snap = dir_.path() + "/snapshots/one";
  HttpResponse taken = b.Snapshot(snap);
  ASSERT_EQ(taken.status, 200) << taken.body << b.Log();
  auto info = SnapshotInfo::FromJson(Json::parse(taken.body, nullptr, false));
  ASSERT_TRUE(info.ok()) << taken.body;
  EXPECT_GT(info->size_bytes, 1000000);
  uint64_t lsn = 0;
  EXPECT_TRUE(ParseLsn(info->lsn, &lsn)) << info->lsn;
  EXPECT_EQ(info->pg_major, 15);
  EXPECT_EQ(info->pg_version.substr(0, 3), "15.");
  EXPECT_EQ(info->system_identifier, a.Status().system_identifier);
  EXPECT_EQ(info->timeline, 1);
  EXPECT_TRUE(fs::exists(snap + "/PG_VERSION"));
  EXPECT_TRUE(fs::exists(snap + "/petrel_cluster_uid"));

  // Bad requests change nothing.
  EXPECT_EQ(b.Snapshot(snap).status, 409);  // not empty
  EXPECT_EQ(b.Snapshot("relative/dir").status, 400);

  // Rows written after the snapshot must not appear in the restore.
  ASSERT_FALSE(a.Query("INSERT INTO t VALUES (4), (5) RETURNING 1").empty());

  // A new cluster restored from the snapshot, with its own passwords.
  InstanceProcess r("new-1", LoopbackAddress(3), dir_.path(), kRestoredPasswords);
  r.Start();
  InstanceSpec pr;
  pr.generation = 1;
  pr.role = InstanceRole::kPrimary;
  pr.bootstrap = BootstrapMethod::kSnapshot;
  pr.snapshot_path = snap;
  pr.cluster_uid = "uid-restored";
  ASSERT_EQ(r.PutSpec(pr).status, 202);
  ASSERT_TRUE(r.WaitReady(InstanceRole::kPrimary, 1, seconds(120))) << r.Log();
  EXPECT_EQ(r.Status().cluster_uid, "uid-restored");
  EXPECT_EQ(r.Query("SELECT string_agg(id::text, ',' ORDER BY id) FROM t"), "1,2,3");
  EXPECT_EQ(r.Query("SELECT count(*) FROM pg_replication_slots"), "0");
  EXPECT_EQ(r.Query("SELECT pg_is_in_recovery()"), "f");
  EXPECT_FALSE(fs::exists(r.pgdata() + "/standby.signal"));
  // The new passwords work, the source's do not.
  EXPECT_TRUE(r.Connect("postgres", kRestoredPasswords.superuser).ok());
  EXPECT_TRUE(r.Connect(kReplicationUser, kRestoredPasswords.replication).ok());
  auto old_su = r.Connect("postgres", kSourcePasswords.superuser);
  EXPECT_FALSE(old_su.ok());
  EXPECT_NE(old_su.status().message().find("password authentication failed"), std::string::npos)
      << old_su.status().message();
  EXPECT_FALSE(r.Connect(kReplicationUser, kSourcePasswords.replication).ok());

  // The source is untouched.
  EXPECT_EQ(a.Query("SELECT count(*) FROM t"), "5");
  EXPECT_EQ(a.Status().cluster_uid, "uid-source");
  EXPECT_TRUE(a.Connect("postgres", kSourcePasswords.superuser).ok());
  EXPECT_EQ(a.Query("SELECT active FROM pg_replication_slots WHERE slot_name = 'src_2'"), "t");

  // A replica of the restored cluster clones with the restored replication password.
  InstanceProcess r2("new-2", LoopbackAddress(4), dir_.path(), kRestoredPasswords);
  r2.Start();
  InstanceSpec pr2;
  pr2.generation = 1;
  pr2.role = InstanceRole::kReplica;
  pr2.bootstrap = BootstrapMethod::kClone;
  pr2.primary = r.endpoint();
  pr2.cluster_uid = "uid-restored";
  ASSERT_EQ(r2.PutSpec(pr2).status, 202);
  ASSERT_TRUE(r2.WaitReady(InstanceRole::kReplica, 1)) << r2.Log();
  EXPECT_EQ(r2.Status().cluster_uid, "uid-restored");

  // Data of one cluster is refused for another without bootstrap snapshot; nothing changes.
  InstanceSpec other = pr;
  other.generation = 2;
  other.bootstrap = BootstrapMethod::kInitdb;
  other.snapshot_path.clear();
  other.cluster_uid = "uid-other";
  HttpResponse refused = r.PutSpec(other);
  EXPECT_EQ(refused.status, 409);
  EXPECT_NE(refused.body.find("uid-restored"), std::string::npos) << refused.body;
  InstanceStatus after = r.Status();
  EXPECT_EQ(after.phase, "refused");
  EXPECT_NE(after.message.find("another cluster"), std::string::npos) << after.message;
  EXPECT_TRUE(after.running);
  EXPECT_EQ(after.cluster_uid, "uid-restored");
  HttpResponse spec = r.Call("GET", "/spec");
  EXPECT_NE(spec.body.find("uid-restored"), std::string::npos);
}

}  // namespace
}  // namespace petrel
