// The whole of `petrel local` with real Postgres: a 3-instance cluster comes up from a
// manifest, serves writes on the leader endpoint and reads on the replicas endpoint, streams
// to every replica, scales up and down when the file is edited (keeping its primary), stops
// cleanly, and comes back with its data.
#include <unistd.h>

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

class LocalClusterE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/usr/lib/postgresql/15/bin/postgres", X_OK) != 0) {
      FAIL() << "PostgreSQL 15 is required: /usr/lib/postgresql/15/bin/postgres";
    }
  }
  std::unique_ptr<Process> Petrel(const std::vector<std::string>& args, const std::string& log) {
    return testing::SpawnPetrel(dir_.path(), args, log);
  }
  std::unique_ptr<Process> Up() {
    return Petrel({"local", "up", "-f", manifest_.string(), "--state-dir", state_.string(),
                   "--address-block", block_},
                  "up-" + std::to_string(++ups_) + ".log");
  }
  std::string UpLog() { return ReadFile(dir_.path() / ("up-" + std::to_string(ups_) + ".log")).value_or(""); }
  void WriteManifest(int replicas) {
    std::ofstream(manifest_)
        << "apiVersion: petrel.dev/v1alpha1\nkind: PostgresCluster\n"
           "metadata: {name: db}\nspec:\n  replicas: "
        << replicas
        << "\n  image: ghcr.io/petrel-dev/postgres:15.4\n  storage: {size: 1Gi}\n"
           "  bootstrap:\n    initdb: {database: shop, owner: shop_owner, "
           "encoding: UTF8, locale: C}\n";
  }
  // The cluster as the running petrel local reports it (GET /status), or null.
  Json Cluster() { return testing::FirstLocalCluster(state_); }
  bool ReadyWith(int replicas) {
    Json c = Cluster();
    return !c.is_null() && c.value("ready", false) && c.value("readyReplicas", 0) == replicas &&
           static_cast<int>(c["instances"].size()) == replicas;
  }
  Result<PgConn> Connect(const std::string& endpoint) {
    auto colon = endpoint.rfind(':');
    std::string password = ReadFile(state_ / "secrets" / "default" / "db-superuser" / "password")
                               .value_or("");
    return PgConn::Connect("host=" + endpoint.substr(0, colon) + " port=" +
                               endpoint.substr(colon + 1) + " user=postgres dbname=postgres",
                           password);
  }
  // An instance's own address as `petrel local status` reports it: its per-instance Service,
  // else the Pod IP on the Postgres port.
  static std::string InstanceEndpoint(const Json& instance) {
    std::string address = instance.value("address", "");
    return address.empty() ? instance.value("podIP", "") + ":5432" : address;
  }
  // The reported primary instance's own address, or "" while there is none.
  std::string PrimaryEndpoint(const Json& cluster) {
    if (!cluster.is_object()) return "";
    for (const Json& i : cluster.value("instances", Json::array())) {
      if (i.value("name", "") == cluster.value("primary", "")) return InstanceEndpoint(i);
    }
    return "";
  }
  // Replicas streaming from the instance at `endpoint`, or -1 when it cannot be asked.
  int StreamingReplicas(const std::string& endpoint) {
    auto conn = Connect(endpoint);
    if (!conn.ok()) return -1;
    auto r = conn->Exec(
        "select pg_is_in_recovery(), "
        "(select count(*) from pg_stat_replication where state = 'streaming')");
    if (!r.ok() || r->GetOr(0, 0) != "f") return -1;
    return std::stoi(r->GetOr(0, 1, "-1"));
  }
  // Whether the standby at `endpoint` has replayed the row written on the leader.
  bool StandbyHasTheRow(const std::string& endpoint) {
    auto conn = Connect(endpoint);
    if (!conn.ok()) return false;
    auto r = conn->Exec("select pg_is_in_recovery(), (select v from kept)");
    return r.ok() && r->GetOr(0, 0) == "t" && r->GetOr(0, 1) == "hello";
  }
  // Waits until every non-primary instance, each on its own address, has the row; on failure
  // the message names the instances that still lack it.
  ::testing::AssertionResult EveryReplicaHasTheRow(int expected_replicas) {
    Json cluster = Cluster();
    std::vector<std::string> missing;
    bool all = WaitFor([&] {
      cluster = Cluster();
      if (!cluster.is_object()) return false;
      missing.clear();
      int replicas = 0;
      for (const Json& i : cluster["instances"]) {
        if (i.value("name", "") == cluster.value("primary", "")) continue;
        ++replicas;
        if (!StandbyHasTheRow(InstanceEndpoint(i))) missing.push_back(i.value("name", ""));
      }
      return replicas == expected_replicas && missing.empty();
    }, std::chrono::seconds(60));
    if (all) return ::testing::AssertionSuccess();
    std::string names;
    for (const std::string& m : missing) names += m + " ";
    return ::testing::AssertionFailure()
           << "replicas without the row: " << names << "in " << cluster.dump();
  }
  // Waits until the primary (on its own address) has `expected` streaming replicas.
  ::testing::AssertionResult PrimaryStreamsTo(int expected) {
    int streaming = -1;
    auto streams = [&] {
      streaming = StreamingReplicas(PrimaryEndpoint(Cluster()));
      return streaming == expected;
    };
    if (WaitFor(streams, std::chrono::seconds(60))) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "primary streams to " << streaming
                                         << " replicas, not " << expected << "; "
                                         << Cluster().dump();
  }
  bool Stop(std::unique_ptr<Process>& up) {
    auto down = Petrel({"local", "down", "--state-dir", state_.string()}, "down.log");
    std::optional<ExitStatus> exit;
    bool stopped = WaitFor([&] { return (exit = up->Poll()).has_value(); }, std::chrono::seconds(90));
    return stopped && exit->code == 0;
  }

  testing::TempDir dir_;
  fs::path state_ = dir_.path() / "state";
  fs::path manifest_ = dir_.path() / "db.yaml";
  std::string block_ = testing::RandomLoopbackBlock();
  int ups_ = 0;
};

TEST_F(LocalClusterE2e, ThreeInstanceClusterComesUpScalesStopsAndKeepsItsData) {
  WriteManifest(3);
  auto up = Up();
  ASSERT_TRUE(up);
  ASSERT_TRUE(WaitFor([&] { return ReadyWith(3) || up->Poll().has_value(); },
                      std::chrono::seconds(150)))
      << UpLog();
  ASSERT_FALSE(up->Poll().has_value()) << UpLog();
  Json cluster = Cluster();
  std::string leader = cluster["endpoints"].value("leader", "");
  std::string replicas = cluster["endpoints"].value("replicas", "");
  // The progress printer announces the endpoints (within its one-second tick).
  EXPECT_TRUE(WaitFor([&] {
    return UpLog().find("leader (read-write):  " + leader) != std::string::npos;
  })) << UpLog();

  {
    auto primary = Connect(leader);
    ASSERT_TRUE(primary.ok()) << primary.status().ToString();
    auto in_recovery = primary->Exec("select pg_is_in_recovery()");
    ASSERT_TRUE(in_recovery.ok());
    EXPECT_EQ(in_recovery->GetOr(0, 0), "f");
    // spec.bootstrap.initdb: the application database, owned by a role that cannot log in.
    auto shop = primary->Exec(
        "select pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, "
        "d.datctype, r.rolcanlogin from pg_database d join pg_roles r on r.oid = d.datdba "
        "where d.datname = 'shop'");
    ASSERT_TRUE(shop.ok()) << shop.status().ToString();
    ASSERT_EQ(shop->size(), 1) << "database shop was not created";
    EXPECT_EQ(shop->GetOr(0, 0), "shop_owner");
    EXPECT_EQ(shop->GetOr(0, 1), "UTF8");
    EXPECT_EQ(shop->GetOr(0, 2), "C");
    EXPECT_EQ(shop->GetOr(0, 3), "C");
    EXPECT_EQ(shop->GetOr(0, 4), "f");
    ASSERT_TRUE(primary->ExecScript("create table kept (v text); insert into kept values ('hello')").ok());
  }
  // The replicas endpoint reaches a standby that has the row.
  EXPECT_TRUE(WaitFor([&] {
    auto replica = Connect(replicas);
    if (!replica.ok()) return false;
    auto r = replica->Exec("select pg_is_in_recovery(), (select v from kept)");
    return r.ok() && r->GetOr(0, 0) == "t" && r->GetOr(0, 1) == "hello";
  }, std::chrono::seconds(30)));

  // Every replica, asked on its own address, has the row, and the primary streams to both.
  EXPECT_TRUE(EveryReplicaHasTheRow(2));
  EXPECT_TRUE(PrimaryStreamsTo(2));
  Json three = Cluster();
  ASSERT_TRUE(three.is_object());
  const std::string primary = three.value("primary", "");
  ASSERT_FALSE(primary.empty()) << three.dump();

  // Editing the file scales the running cluster up: the new instances are cloned, stream from
  // the primary and have the row.
  WriteManifest(5);
  ASSERT_TRUE(WaitFor([&] { return ReadyWith(5); }, std::chrono::seconds(180)))
      << Cluster().dump();
  EXPECT_TRUE(PrimaryStreamsTo(4));
  EXPECT_TRUE(EveryReplicaHasTheRow(4));
  Json five = Cluster();
  ASSERT_TRUE(five.is_object());
  EXPECT_EQ(five.value("primary", ""), primary) << five.dump();

  // ... and down: the primary survives and keeps streaming to the one replica left.
  WriteManifest(2);
  ASSERT_TRUE(WaitFor([&] { return ReadyWith(2); }, std::chrono::seconds(120)))
      << Cluster().dump();
  Json scaled_down = Cluster();
  ASSERT_TRUE(scaled_down.is_object());
  EXPECT_EQ(scaled_down.value("primary", ""), primary) << scaled_down.dump();
  bool primary_kept = false;
  for (const Json& i : scaled_down["instances"]) primary_kept |= i.value("name", "") == primary;
  EXPECT_TRUE(primary_kept) << scaled_down.dump();
  EXPECT_TRUE(PrimaryStreamsTo(1));
  EXPECT_TRUE(EveryReplicaHasTheRow(1));

  ASSERT_TRUE(Stop(up)) << UpLog();
  EXPECT_NE(UpLog().find("petrel local: stopped"), std::string::npos);
  auto db1_log = ReadFile(state_ / "logs" / "default" / "db-1.log").value_or("");
  EXPECT_NE(db1_log.find("database system is shut down"), std::string::npos);

  // Started again on the same state directory: same cluster, same data.
  up = Up();
  ASSERT_TRUE(WaitFor([&] { return ReadyWith(2) || up->Poll().has_value(); },
                      std::chrono::seconds(120)))
      << UpLog();
  {
    auto primary = Connect(Cluster()["endpoints"].value("leader", ""));
    ASSERT_TRUE(primary.ok()) << primary.status().ToString();
    auto r = primary->Exec("select v from kept");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->GetOr(0, 0), "hello");
  }
  ASSERT_TRUE(Stop(up)) << UpLog();
}

}  // namespace
}  // namespace petrel
