// Issue 8 in `petrel local` itself (its in-process store, node agent, proxy and controllers,
// as a user runs it): node loss of the primary — every process of the instance SIGSTOPped —
// is survived the same way as on Kubernetes (tests/local/ha_e2e_test.cc): another instance
// is promoted, writes through the leader endpoint resume with no client change, and once
// thawed the old primary commits nothing on its own address and comes back as a replica.
//
// The instance's processes are found as `petrel local` records them: the Pod's
// status.containerStatuses[].containerID ("petrel-local://<pid>") in the state directory's
// store.json, plus that process's descendants.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <fstream>

#include "bench/failover/ha_cluster.h"
#include "bench/failover/writer.h"
#include "core/object.h"
#include "local/files.h"
#include "local/process.h"
#include "net/http.h"
#include "tests/local/local_test_util.h"
#include "tests/local/petrel_run.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::WaitFor;

class LocalHaE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access("/usr/lib/postgresql/15/bin/postgres", X_OK), 0)
        << "PostgreSQL 15 is required: /usr/lib/postgresql/15/bin/postgres";
    std::ofstream(manifest_) << "apiVersion: petrel.dev/v1alpha1\nkind: PostgresCluster\n"
                                "metadata: {name: db}\nspec:\n  replicas: 3\n"
                                "  image: ghcr.io/petrel-dev/postgres:15.4\n"
                                "  storage: {size: 1Gi}\n";
  }
  void TearDown() override {
    for (pid_t pid : frozen_) ::kill(pid, SIGCONT);
    if (!up_) return;
    SpawnSpec down = Spec({"local", "down", "--state-dir", state_.string()}, "down.log");
    auto d = Process::Spawn(down);
    if (d.ok()) WaitFor([&] { return (*d)->Poll().has_value(); }, 120s);
    WaitFor([&] { return up_->Poll().has_value(); }, 120s);
  }
  SpawnSpec Spec(std::vector<std::string> args, const std::string& log) {
    args.insert(args.begin(), testing::PetrelBinary());
    return testing::SpecIn(dir_.path(), std::move(args), log);
  }
  // The cluster as `petrel local` reports it (GET /status), or null.
  Json Cluster() { return testing::FirstLocalCluster(state_); }
  std::string Primary() {
    Json c = Cluster();
    return c.is_object() ? c.value("primary", "") : "";
  }
  PgTarget Target(const std::string& endpoint) {
    PgTarget t;
    auto colon = endpoint.rfind(':');
    t.host = endpoint.substr(0, colon);
    t.port = static_cast<uint16_t>(std::stoi(endpoint.substr(colon + 1)));
    t.password =
        ReadFile(state_ / "secrets" / "default" / "db-superuser" / "password").value_or("");
    return t;
  }
  std::string PodIp(const std::string& instance) {
    Json c = Cluster();
    if (!c.is_object()) return "";
    for (const Json& i : c["instances"]) {
      if (i.value("name", "") == instance) return i.value("podIP", "");
    }
    return "";
  }
  // The instance's container main process, from the Pod recorded in store.json.
  std::optional<pid_t> ContainerPid(const std::string& instance) {
    Json store = Json::parse(ReadFile(state_ / "store.json").value_or("{}"), nullptr, false);
    if (store.is_discarded()) return std::nullopt;
    for (const Json& o : store.value("objects", Json::array())) {
      if (o.value("kind", "") != "Pod" || meta::Name(o) != instance) continue;
      for (const Json& c :
           o.value("status", Json::object()).value("containerStatuses", Json::array())) {
        std::string id = c.value("containerID", "");
        const std::string prefix = "petrel-local://";
        if (id.rfind(prefix, 0) == 0)
          return static_cast<pid_t>(std::stol(id.substr(prefix.size())));
      }
    }
    return std::nullopt;
  }
  bool Writable(const std::string& pod_ip) {
    PgTarget t = Target(pod_ip + ":5432");
    DeadlineConnOptions o;
    auto c = DeadlineConn::Connect(t.host, t.port, t.user, t.password, t.dbname, o);
    if (!c.ok()) return false;
    auto r = c->Exec("SELECT pg_is_in_recovery()");
    return r.ok() && r->GetOr(0, 0) == "f";
  }

  testing::TempDir dir_{"petrel-ha-local"};
  fs::path state_ = dir_.path() / "state";
  fs::path manifest_ = dir_.path() / "db.yaml";
  std::unique_ptr<Process> up_;
  std::vector<pid_t> frozen_;
};

TEST_F(LocalHaE2e, FrozenPrimaryIsReplacedAndRejoinsInPetrelLocal) {
  auto up =
      Process::Spawn(Spec({"local", "up", "-f", manifest_.string(), "--state-dir", state_.string(),
                           "--address-block", testing::RandomLoopbackBlock()},
                          "up.log"));
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  up_ = std::move(up).value();
  auto up_log = [&] { return ReadFile(dir_.path() / "up.log").value_or(""); };
  ASSERT_TRUE(WaitFor(
      [&] {
        Json c = Cluster();
        return (c.is_object() && c.value("ready", false) && c.value("readyReplicas", 0) == 3) ||
               up_->Poll().has_value();
      },
      150s))
      << up_log();
  ASSERT_FALSE(up_->Poll().has_value()) << up_log();

  const std::string old_primary = Primary();
  const std::string old_ip = PodIp(old_primary);
  PgTarget leader = Target(Cluster()["endpoints"].value("leader", ""));
  ASSERT_TRUE(CreateWritesTable(leader, "local_writes").ok());
  WriterOptions wo;
  wo.target = leader;
  wo.table = "local_writes";
  FailoverWriter writer(wo);
  writer.Start();
  ASSERT_TRUE(WaitFor([&] { return writer.acknowledged_count() > 0; }, 20s)) << writer.LastError();

  auto pid = ContainerPid(old_primary);
  ASSERT_TRUE(pid.has_value()) << "no containerID for " << old_primary << " in store.json";
  for (int round = 0; round < 20; ++round) {
    bool added = false;
    for (pid_t p : ProcessTree(*pid)) {
      if (std::find(frozen_.begin(), frozen_.end(), p) != frozen_.end()) continue;
      if (::kill(p, SIGSTOP) == 0) {
        frozen_.push_back(p);
        added = true;
      }
    }
    if (!added) break;
  }
  ASSERT_GE(frozen_.size(), 2u) << "expected petrel instance and postgres processes";

  std::string new_primary;
  EXPECT_TRUE(WaitFor(
      [&] {
        new_primary = Primary();
        return !new_primary.empty() && new_primary != old_primary && Writable(PodIp(new_primary));
      },
      60s))
      << "no replica was promoted while " << old_primary << " was frozen\n"
      << Cluster().dump();
  const int64_t at_failover = writer.acknowledged_count();
  EXPECT_TRUE(WaitFor([&] { return writer.acknowledged_count() > at_failover; }, 60s))
      << "writes through the leader endpoint did not resume: " << writer.LastError();

  for (pid_t p : frozen_) ::kill(p, SIGCONT);
  frozen_.clear();
  // The old primary never accepts a write on its own address again, and returns as a replica.
  bool old_writable = false;
  bool rejoined = WaitFor(
      [&] {
        old_writable = old_writable || (Primary() != old_primary && Writable(old_ip));
        Json c = Cluster();
        if (!c.is_object() || c.value("readyReplicas", 0) != 3) return false;
        for (const Json& i : c["instances"]) {
          if (i.value("name", "") == old_primary) return i.value("role", "") == "replica";
        }
        return false;
      },
      90s);
  writer.Stop();
  EXPECT_FALSE(old_writable) << old_primary << " accepted writes after it was replaced";
  EXPECT_TRUE(rejoined) << Cluster().dump();
  EXPECT_EQ(Primary(), new_primary);
  EXPECT_TRUE(Writable(PodIp(new_primary)));
  EXPECT_FALSE(Writable(old_ip));
}

}  // namespace
}  // namespace petrel
