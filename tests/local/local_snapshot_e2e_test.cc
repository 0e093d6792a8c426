// Snapshots and restores in `petrel local`, with real Postgres and the real controllers: the
// snapshot reconciler creates VolumeSnapshots, the node agent fulfils them through the
// instance (POST /snapshot) and restores one into the first volume of a new cluster, whose
// instance re-keys it (bootstrap snapshot).
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include <gtest/gtest.h>

#include "core/object.h"
#include "local/files.h"
#include "local/process.h"
#include "net/http.h"
#include "pg/conn.h"
#include "tests/local/local_test_util.h"
#include "tests/local/petrel_run.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;
using testing::WaitFor;

class LocalSnapshotE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/usr/lib/postgresql/15/bin/postgres", X_OK) != 0) {
      FAIL() << "PostgreSQL 15 is required: /usr/lib/postgresql/15/bin/postgres";
    }
  }
  void TearDown() override {
    if (up_) {
      auto down = Petrel({"local", "down", "--state-dir", state_.string()}, "down.log");
      EXPECT_TRUE(WaitFor([&] { return up_->Poll().has_value(); }, std::chrono::seconds(90)))
          << Log("down.log");
    }
  }
  static std::string Binary() { return testing::PetrelBinary(); }
  std::unique_ptr<Process> Petrel(const std::vector<std::string>& args, const std::string& log) {
    return testing::SpawnPetrel(dir_.path(), args, log);
  }
  std::string Log(const std::string& name) { return ReadFile(dir_.path() / name).value_or(""); }
  // A cluster as the running petrel local reports it (GET /status), or null.
  Json ClusterNamed(const std::string& name) {
    for (const Json& c : testing::LocalClusters(state_)) {
      if (c.value("name", "") == name) return c;
    }
    return nullptr;
  }
  Json SourceCluster() { return ClusterNamed("src"); }
  bool ReadyWith(const std::string& cluster, int replicas) {
    Json c = ClusterNamed(cluster);
    return c.is_object() && c.value("ready", false) && c.value("readyReplicas", 0) == replicas;
  }
  std::string PasswordOf(const std::string& cluster) {
    return ReadFile(state_ / "secrets" / "default" / (cluster + "-superuser") / "password")
        .value_or("");
  }
  // The cluster's leader endpoint (or `endpoint`: "replicas") with `password`.
  Result<PgConn> ConnectTo(const std::string& cluster, const std::string& password,
                           const std::string& endpoint = "leader") {
    Json c = ClusterNamed(cluster);
    if (!c.is_object()) return UnavailableError("no cluster " + cluster + " yet");
    std::string address = c["endpoints"].value(endpoint, "");
    auto colon = address.rfind(':');
    if (colon == std::string::npos) return UnavailableError("no " + endpoint + " endpoint yet");
    return PgConn::Connect("host=" + address.substr(0, colon) + " port=" +
                               address.substr(colon + 1) + " user=postgres dbname=postgres",
                           password);
  }
  Result<PgConn> ConnectSource() { return ConnectTo("src", PasswordOf("src")); }
  std::string QueryOn(const std::string& cluster, const std::string& sql,
                      const std::string& endpoint = "leader") {
    auto c = ConnectTo(cluster, PasswordOf(cluster), endpoint);
    if (!c.ok()) return "";
    auto r = c->Exec(sql);
    return r.ok() ? r->GetOr(0, 0) : "";
  }
  std::string SourceQuery(const std::string& sql) { return QueryOn("src", sql); }
  // Ready VolumeSnapshots of `cluster` in petrel local's store, oldest first.
  std::vector<Json> ReadySnapshotsOf(const std::string& cluster) {
    std::vector<Json> out;
    auto text = ReadFile(state_ / "store.json");
    if (!text.ok()) return out;
    Json doc = Json::parse(*text, nullptr, false);
    if (doc.is_discarded()) return out;
    for (const Json& o : doc.value("objects", Json::array())) {
      if (o.value("kind", "") != "VolumeSnapshot" || meta::Label(o, "petrel.dev/cluster") != cluster) {
        continue;
      }
      if (o.value("status", Json::object()).value("readyToUse", false)) out.push_back(o);
    }
    std::sort(out.begin(), out.end(), [](const Json& a, const Json& b) {
      return meta::Name(a) < meta::Name(b);  // <cluster>-YYYYMMDDhhmmss
    });
    return out;
  }

  testing::TempDir dir_;
  fs::path state_ = dir_.path() / "state";
  fs::path manifest_ = dir_.path() / "src.yaml";
  std::string block_ = testing::RandomLoopbackBlock();
  std::unique_ptr<Process> up_;
};

std::string ClusterDoc(const std::string& name, int replicas, const std::string& extra_spec,
                       const std::string& request = "") {
  std::string doc = "---\napiVersion: petrel.dev/v1alpha1\nkind: PostgresCluster\n"
                    "metadata:\n  name: " + name + "\n";
  if (!request.empty()) {
    doc += "  annotations: {petrel.dev/snapshot-request: \"" + request + "\"}\n";
  }
  return doc + "spec:\n  replicas: " + std::to_string(replicas) +
         "\n  image: ghcr.io/petrel-dev/postgres:15.4\n  storage: {size: 1Gi}\n" + extra_spec;
}

// On-demand snapshots of a cluster with spec.snapshots (taken from its replica); a new cluster
// with spec.bootstrap.snapshot holds exactly the rows before the snapshot, its replica cloned
// from the restored primary, its own passwords and not the source's; the source is unaffected;
// the retention count deletes the oldest snapshot together with its copy.
TEST_F(LocalSnapshotE2e, ClusterSnapshotsRestoreANewClusterAndRetentionPrunesTheOldest) {
  const std::string snapshots = "  snapshots: {retention: {count: 2}}\n";
  auto write = [&](const std::string& request, const std::string& restored) {
    std::ofstream(manifest_) << ClusterDoc("src", 2, snapshots, request) << restored;
  };
  write("", "");
  up_ = Petrel({"local", "up", "-f", manifest_.string(), "--state-dir", state_.string(),
                "--address-block", block_},
               "up.log");
  ASSERT_TRUE(up_);
  ASSERT_TRUE(WaitFor([&] { return ReadyWith("src", 2) || up_->Poll().has_value(); },
                      std::chrono::seconds(150)))
      << Log("up.log");
  {
    auto c = ConnectSource();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ASSERT_TRUE(c->ExecScript("create table t (id int primary key); "
                              "insert into t select generate_series(1, 3)").ok());
  }
  // The snapshot is taken from the replica: wait until it has the rows.
  ASSERT_TRUE(WaitFor([&] { return QueryOn("src", "select count(*) from t", "replicas") == "3"; },
                      std::chrono::seconds(30)));

  // On demand, through the cluster's annotation.
  write("first", "");
  ASSERT_TRUE(WaitFor([&] { return ReadySnapshotsOf("src").size() == 1; },
                      std::chrono::seconds(90)))
      << Log("up.log");
  const Json first = ReadySnapshotsOf("src")[0];
  const std::string first_name = meta::Name(first);
  EXPECT_EQ(meta::Label(first, "petrel.dev/instance"),
            first["spec"]["source"].value("persistentVolumeClaimName", ""));
  EXPECT_NE(meta::Label(first, "petrel.dev/instance"), SourceCluster().value("primary", ""))
      << "taken from the primary although a replica was ready: " << first.dump();
  const fs::path first_copy = state_ / "snapshots" / "default" / first_name;
  EXPECT_TRUE(fs::exists(first_copy / "snapshot.json"));

  // Listed by the plugin command in local mode (through petrel local's Kubernetes-style API).
  auto list = Petrel({"snapshots", "list", "src", "--state-dir", state_.string(), "-o", "json"},
                     "list.log");
  ASSERT_NE(list, nullptr);
  ASSERT_TRUE(WaitFor([&] { return list->Poll().has_value(); }, std::chrono::seconds(30)));
  const std::string listed = Log("list.log");
  EXPECT_NE(listed.find(first_name), std::string::npos) << listed;
  EXPECT_NE(listed.find(meta::Label(first, "petrel.dev/instance")), std::string::npos) << listed;

  ASSERT_EQ(SourceQuery("insert into t values (4), (5) returning 1"), "1");

  // A new cluster from the first snapshot.
  const std::string restored =
      ClusterDoc("new", 2, "  bootstrap: {snapshot: {name: " + first_name + "}}\n");
  write("first", restored);
  ASSERT_TRUE(WaitFor([&] { return ReadyWith("new", 2); }, std::chrono::seconds(150)))
      << ClusterNamed("new").dump() << Log("up.log");
  EXPECT_EQ(QueryOn("new", "select string_agg(id::text, ',' order by id) from t"), "1,2,3");
  EXPECT_TRUE(WaitFor([&] {
    return QueryOn("new", "select string_agg(id::text, ',' order by id) from t", "replicas") ==
           "1,2,3";
  }, std::chrono::seconds(30)));
  EXPECT_EQ(QueryOn("new", "select count(*) from pg_replication_slots where slot_type = 'logical'"),
            "0");
  auto with_old_password = ConnectTo("new", PasswordOf("src"));
  EXPECT_FALSE(with_old_password.ok());
  EXPECT_NE(with_old_password.status().message().find("password authentication failed"),
            std::string::npos)
      << with_old_password.status().message();
  EXPECT_NE(PasswordOf("new"), PasswordOf("src"));
  // The source is unaffected.
  EXPECT_EQ(SourceQuery("select count(*) from t"), "5");
  EXPECT_TRUE(ReadyWith("src", 2));

  // Two more snapshots: the retention keeps two, so the first goes, with its copy.
  write("second", restored);
  ASSERT_TRUE(WaitFor([&] { return ReadySnapshotsOf("src").size() == 2; },
                      std::chrono::seconds(90)));
  write("third", restored);
  ASSERT_TRUE(WaitFor([&] {
    auto ready = ReadySnapshotsOf("src");
    return ready.size() == 2 && meta::Name(ready[0]) != first_name;
  }, std::chrono::seconds(90))) << Log("up.log");
  EXPECT_TRUE(WaitFor([&] { return !fs::exists(first_copy); }, std::chrono::seconds(30)));
  for (const Json& kept : ReadySnapshotsOf("src")) {
    EXPECT_TRUE(fs::exists(state_ / "snapshots" / "default" / meta::Name(kept) / "snapshot.json"));
  }
  // The restored cluster does not depend on the deleted snapshot.
  EXPECT_EQ(QueryOn("new", "select count(*) from t"), "3");
}

}  // namespace
}  // namespace petrel
