// `kubectl petrel snapshots list CLUSTER` and `kubectl petrel snapshot CLUSTER` through the real
// kubectl 1.20 and the real petrel binary, against envtest with a VolumeSnapshot CRD.
#include <gtest/gtest.h>

#include "core/clock.h"
#include "tests/cli/plugin_fixture.h"

namespace petrel {
namespace {

class SnapshotPluginEnvtest : public PluginFixture {
 protected:
  static void SetUpTestSuite() {
    SetUpPlugin(FakePsql::kNo);
    auto env = Envtest::Shared();
    ASSERT_TRUE(env.ok());
    auto r = (*env)->Kubectl(
        {"apply", "-f", SourcePath("tests/support/crds/volumesnapshots.yaml")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = (*env)->Kubectl({"wait", "--for", "condition=established", "--timeout=60s",
                         "crd/volumesnapshots.snapshot.storage.k8s.io"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  void MakeSnapshot(const std::string& name, const std::string& cluster, Json status,
                    Json annotations) {
    Json snap = {{"apiVersion", "snapshot.storage.k8s.io/v1"},
                 {"kind", "VolumeSnapshot"},
                 {"metadata",
                  {{"name", name},
                   {"namespace", ns_},
                   {"labels",
                    {{"petrel.dev/cluster", cluster},
                     {"petrel.dev/instance", cluster + "-2"},
                     {"app.kubernetes.io/managed-by", "petrel"}}},
                   {"annotations", std::move(annotations)}}},
                 {"spec", {{"source", {{"persistentVolumeClaimName", cluster + "-2"}}}}}};
    auto created = client().Create(resources::kVolumeSnapshot, snap);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    Json with_status = *created;
    with_status["status"] = std::move(status);
    auto updated = client().UpdateStatus(resources::kVolumeSnapshot, with_status);
    ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  }
};

TEST_F(SnapshotPluginEnvtest, ListsTheClustersSnapshotsNewestFirst) {
  MakeCluster("db");
  MakeSnapshot(
      "db-20261120000000", "db",
      {{"readyToUse", true}, {"restoreSize", "1Gi"}, {"creationTime", "2026-11-20T00:00:02Z"}},
      {{"petrel.dev/snapshot-slot", "2026-11-20T00:00:00Z"}});
  MakeSnapshot("db-20261121000000", "db",
               {{"readyToUse", false}, {"error", {{"message", "no space"}}}},
               {{"petrel.dev/snapshot-request", "x"}});
  MakeSnapshot("other-20261121000000", "other", {{"readyToUse", true}}, Json::object());

  PluginRun table = Petrel({"snapshots", "list", "db", "-n", ns_});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(table.out.rfind("NAME", 0), 0u) << table.out;
  EXPECT_NE(table.out.find("db-20261120000000   db-2       Ready    1Gi"), std::string::npos)
      << table.out;
  EXPECT_NE(table.out.find("Failed"), std::string::npos) << table.out;
  EXPECT_EQ(table.out.find("other-"), std::string::npos) << "another cluster's snapshot";

  PluginRun json = Petrel({"snapshots", "list", "db", "-n", ns_, "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  Json doc = Json::parse(json.out);
  ASSERT_EQ(doc["snapshots"].size(), 2u);
  EXPECT_EQ(doc["snapshots"][1]["name"], "db-20261120000000");
  EXPECT_EQ(doc["snapshots"][1]["trigger"], "scheduled");
  EXPECT_EQ(doc["snapshots"][1]["created"], "2026-11-20T00:00:02Z");
}

TEST_F(SnapshotPluginEnvtest, ListingWorksAfterTheClusterIsGoneAndSaysWhenNothingExists) {
  MakeSnapshot("gone-20261120000000", "gone", {{"readyToUse", true}}, Json::object());
  PluginRun kept = Petrel({"snapshots", "list", "gone", "-n", ns_});
  ASSERT_EQ(kept.exit_code, 0) << kept.err;
  EXPECT_NE(kept.out.find("gone-20261120000000"), std::string::npos) << kept.out;

  PluginRun typo = Petrel({"snapshots", "list", "nosuch", "-n", ns_});
  EXPECT_EQ(typo.exit_code, 1);
  EXPECT_NE(typo.err.find("nosuch"), std::string::npos) << typo.err;
}

TEST_F(SnapshotPluginEnvtest, SnapshotCommandSetsTheRequestAnnotation) {
  MakeCluster("db");
  PluginRun run = Petrel({"snapshot", "db", "-n", ns_});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("Requested a snapshot of db"), std::string::npos) << run.out;
  auto cluster = client().Get(resources::kPostgresCluster, {ns_, "db"});
  ASSERT_TRUE(cluster.ok());
  std::string first = meta::Annotation(*cluster, "petrel.dev/snapshot-request");
  SystemTime t;
  EXPECT_TRUE(ParseRfc3339(first, &t)) << first;

  PluginRun again = Petrel({"snapshot", "db", "-n", ns_});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  cluster = client().Get(resources::kPostgresCluster, {ns_, "db"});
  EXPECT_NE(meta::Annotation(*cluster, "petrel.dev/snapshot-request"), first)
      << "every request is a new value";

  PluginRun missing = Petrel({"snapshot", "nosuch", "-n", ns_});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("nosuch"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace petrel
