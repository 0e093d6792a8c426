// Snapshots and restores in `petrel local`, with real Postgres: the node agent takes a
// VolumeSnapshot of a running cluster's volume through its instance (POST /snapshot), restores
// it into a new claim whose dataSource names it, and a `petrel instance` bootstrapped from that
// volume (bootstrap snapshot) holds exactly the rows written before the snapshot, answers to
// its own passwords and not to the source's; the source cluster is unaffected.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "api/instance.h"
#include "core/object.h"
#include "instance/process.h"
#include "local/files.h"
#include "local/process.h"
#include "net/http.h"
#include "pg/conn.h"
#include "tests/local/local_test_util.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;
using testing::WaitFor;

constexpr const char* kToken = "restored-token-0123456789";
constexpr const char* kRestoredSuperuser = "restored-super-pw";
constexpr const char* kRestoredReplication = "restored-repl-pw";

const char* kSourceCluster = R"(apiVersion: petrel.dev/v1alpha1
kind: PostgresCluster
metadata: {name: src}
spec:
  replicas: 1
  image: ghcr.io/petrel-dev/postgres:15.4
  storage: {size: 1Gi}
)";

std::string SnapshotDoc(const std::string& name) {
  return "---\napiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\n"
         "metadata: {name: " + name + ", labels: {petrel.dev/cluster: src}}\n"
         "spec:\n  source: {persistentVolumeClaimName: src-1}\n";
}

std::string RestoredClaimDoc(const std::string& name, const std::string& snapshot) {
  return "---\napiVersion: v1\nkind: PersistentVolumeClaim\n"
         "metadata: {name: " + name + ", labels: {app.kubernetes.io/managed-by: petrel}}\n"
         "spec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n"
         "  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: " +
         snapshot + "}\n";
}

class LocalSnapshotE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/usr/lib/postgresql/15/bin/postgres", X_OK) != 0) {
      FAIL() << "PostgreSQL 15 is required: /usr/lib/postgresql/15/bin/postgres";
    }
  }
  void TearDown() override {
    if (restored_.running()) restored_.SignalAndWait(SIGTERM, std::chrono::seconds(60));
    if (up_) {
      auto down = Petrel({"local", "down", "--state-dir", state_.string()}, "down.log");
      EXPECT_TRUE(WaitFor([&] { return up_->Poll().has_value(); }, std::chrono::seconds(90)))
          << Log("down.log");
    }
  }
  static std::string Binary() {
    return std::getenv("PETREL_BINARY") ? std::getenv("PETREL_BINARY") : "petrel";
  }
  std::unique_ptr<Process> Petrel(const std::vector<std::string>& args, const std::string& log) {
    SpawnSpec spec;
    spec.argv = {Binary()};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.env = {{"PATH", "/usr/bin:/bin"}, {"HOME", dir_.path().string()},
                {"TMPDIR", dir_.path().string()}};
    spec.working_dir = dir_.path().string();
    spec.log_file = (dir_.path() / log).string();
    auto p = Process::Spawn(spec);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? std::move(p).value() : nullptr;
  }
  std::string Log(const std::string& name) { return ReadFile(dir_.path() / name).value_or(""); }
  // An object as `petrel local` last saved it (store.json), or null.
  Json Stored(const std::string& kind, const std::string& name) {
    auto text = ReadFile(state_ / "store.json");
    if (!text.ok()) return nullptr;
    Json doc = Json::parse(*text, nullptr, false);
    if (doc.is_discarded()) return nullptr;
    for (const Json& o : doc.value("objects", Json::array())) {
      if (o.value("kind", "") == kind && meta::Name(o) == name) return o;
    }
    return nullptr;
  }
  Json SourceCluster() {
    auto runtime = ReadFile(state_ / "local.json");
    if (!runtime.ok()) return nullptr;
    Json r = Json::parse(*runtime, nullptr, false);
    if (r.is_discarded()) return nullptr;
    auto response = HttpCall("GET", r.value("api", "") + "/status");
    if (!response.ok() || response->status != 200) return nullptr;
    Json status = Json::parse(response->body, nullptr, false);
    if (status.is_discarded() || status["clusters"].empty()) return nullptr;
    return status["clusters"][0];
  }
  Result<PgConn> ConnectSource() {
    Json c = SourceCluster();
    if (!c.is_object()) return UnavailableError("no cluster yet");
    std::string endpoint = c["endpoints"].value("leader", "");
    auto colon = endpoint.rfind(':');
    std::string password =
        ReadFile(state_ / "secrets" / "default" / "src-superuser" / "password").value_or("");
    return PgConn::Connect("host=" + endpoint.substr(0, colon) + " port=" +
                               endpoint.substr(colon + 1) + " user=postgres dbname=postgres",
                           password);
  }
  std::string SourcePassword() {
    return ReadFile(state_ / "secrets" / "default" / "src-superuser" / "password").value_or("");
  }
  std::string SourceQuery(const std::string& sql) {
    auto c = ConnectSource();
    if (!c.ok()) return "";
    auto r = c->Exec(sql);
    return r.ok() ? r->GetOr(0, 0) : "";
  }

  // A `petrel instance` on the restored claim's volume, with the new cluster's secrets.
  void StartRestoredInstance(const fs::path& volume) {
    std::string cmd = "exec '" + Binary() + "' instance --name restored-1 --cluster restored " +
                      "--pgdata " + (volume / "pgdata").string() + " --listen-address " +
                      restored_ip_ + " --port 5432 --api-port 8000 >>" +
                      (dir_.path() / "restored-1.log").string() + " 2>&1";
    Command c;
    c.argv = {"/bin/sh", "-c", cmd};
    c.env = {"PATH=/usr/bin:/bin", std::string("PETREL_SUPERUSER_PASSWORD=") + kRestoredSuperuser,
             std::string("PETREL_REPLICATION_PASSWORD=") + kRestoredReplication,
             std::string("PETREL_API_TOKEN=") + kToken};
    ASSERT_TRUE(restored_.Start(c).ok());
  }
  HttpResponse CallRestored(const std::string& method, const std::string& path,
                            const std::string& body = "") {
    HttpCallOptions opts;
    opts.timeout = std::chrono::seconds(5);
    opts.headers["authorization"] = std::string("Bearer ") + kToken;
    auto r = HttpCall(method, "http://" + restored_ip_ + ":8000" + path, body, opts);
    if (!r.ok()) return HttpResponse{599, "", {}, r.status().ToString()};
    return *r;
  }
  Result<PgConn> ConnectRestored(const std::string& user, const std::string& password) {
    return PgConn::Connect(
        "host=" + restored_ip_ + " port=5432 user=" + user + " dbname=postgres", password);
  }

  testing::TempDir dir_;
  fs::path state_ = dir_.path() / "state";
  fs::path manifest_ = dir_.path() / "src.yaml";
  std::string block_ = testing::RandomLoopbackBlock();
  std::string restored_ip_ = testing::BlockPrefix(testing::RandomLoopbackBlock()) + "7";
  std::unique_ptr<Process> up_;
  ChildProcess restored_;
};

TEST_F(LocalSnapshotE2e, SnapshotRestoresExactlyTheRowsBeforeItIntoARekeyedCluster) {
  std::ofstream(manifest_) << kSourceCluster;
  up_ = Petrel({"local", "up", "-f", manifest_.string(), "--state-dir", state_.string(),
                "--address-block", block_},
               "up.log");
  ASSERT_TRUE(up_);
  ASSERT_TRUE(WaitFor([&] {
    Json c = SourceCluster();
    return (c.is_object() && c.value("ready", false)) || up_->Poll().has_value();
  }, std::chrono::seconds(120))) << Log("up.log");
  {
    auto c = ConnectSource();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ASSERT_TRUE(c->ExecScript("create table t (id int primary key); "
                              "insert into t select generate_series(1, 3)").ok());
  }

  // A VolumeSnapshot of the instance's claim: the node agent copies it through the instance.
  std::ofstream(manifest_) << kSourceCluster << SnapshotDoc("snap-1");
  ASSERT_TRUE(WaitFor([&] {
  Json vs = Stored("VolumeSnapshot", "snap-1");
    return vs.is_object() && vs.value("status", Json::object()).value("readyToUse", false);
  }, std::chrono::seconds(90))) << Stored("VolumeSnapshot", "snap-1").dump() << Log("up.log");
  Json vs = Stored("VolumeSnapshot", "snap-1");
  EXPECT_GT(std::stoll(vs["status"].value("restoreSize", "0")), 1000000) << vs.dump();
  EXPECT_FALSE(vs["status"].value("creationTime", "").empty());
  const fs::path copy = state_ / "snapshots" / "default" / "snap-1";
  EXPECT_TRUE(fs::exists(copy / "volume" / "pgdata" / "PG_VERSION"));

  // Written after the snapshot: must not be restored.
  ASSERT_EQ(SourceQuery("insert into t values (4), (5) returning 1"), "1");

  // A claim restored from the snapshot, then an instance of a new cluster on it.
  std::ofstream(manifest_) << kSourceCluster << SnapshotDoc("snap-1")
                           << RestoredClaimDoc("restored-1", "snap-1");
  ASSERT_TRUE(WaitFor([&] {
    Json pvc = Stored("PersistentVolumeClaim", "restored-1");
    return pvc.is_object() && pvc.value("status", Json::object()).value("phase", "") == "Bound";
  }, std::chrono::seconds(60))) << Stored("PersistentVolumeClaim", "restored-1").dump();
  const fs::path volume = state_ / "volumes" / "default" / "restored-1";
  ASSERT_TRUE(fs::exists(volume / "pgdata" / "PG_VERSION"));

  StartRestoredInstance(volume);
  ASSERT_TRUE(WaitFor([&] { return CallRestored("GET", "/healthz").status == 200; },
                      std::chrono::seconds(20))) << Log("restored-1.log");
  InstanceSpec spec;
  spec.generation = 1;
  spec.role = InstanceRole::kPrimary;
  spec.bootstrap = BootstrapMethod::kSnapshot;
  spec.cluster_uid = "restored-uid";
  ASSERT_EQ(CallRestored("PUT", "/spec", spec.ToJson().dump()).status, 202);
  ASSERT_TRUE(WaitFor([&] {
    auto s = InstanceStatus::FromJson(Json::parse(CallRestored("GET", "/status").body, nullptr, false));
    return s.ok() && s->ready && s->role == InstanceRole::kPrimary && s->cluster_uid == "restored-uid";
  }, std::chrono::seconds(120))) << Log("restored-1.log");

  {
    auto restored = ConnectRestored("postgres", kRestoredSuperuser);
    ASSERT_TRUE(restored.ok()) << restored.status().ToString();
    auto rows = restored->Exec("select string_agg(id::text, ',' order by id) from t");
    ASSERT_TRUE(rows.ok()) << rows.status().ToString();
    EXPECT_EQ(rows->GetOr(0, 0), "1,2,3");
  }
  EXPECT_TRUE(ConnectRestored("streaming_replica", kRestoredReplication).ok());
  auto old = ConnectRestored("postgres", SourcePassword());
  EXPECT_FALSE(old.ok());
  EXPECT_NE(old.status().message().find("password authentication failed"), std::string::npos)
      << old.status().message();

  // The source is unaffected: all five rows, its own password.
  EXPECT_EQ(SourceQuery("select count(*) from t"), "5");

}

}  // namespace
}  // namespace petrel
