// The snapshot driver against a real kube-apiserver (envtest) with the VolumeSnapshot CRD
// installed (tests/support/crds/volumesnapshots.yaml): status written through the status
// subresource, a claim restored from a ready snapshot and bound, errors reported on the
// VolumeSnapshot, and copies of deleted VolumeSnapshots removed. The copy is laid out by hand
// (taking one through a real instance is covered by local_snapshot_e2e_test).
#include <gtest/gtest.h>

#include <fstream>

#include "local/files.h"
#include "local/snapshot_driver.h"
#include "tests/local/local_test_util.h"
#include "tests/support/envtest.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;

class SnapshotDriverEnvtest : public EnvtestTest {
 protected:
  void SetUp() override {
    EnvtestTest::SetUp();
    if (HasFatalFailure()) return;
    InstallOnce({"tests/support/crds/volumesnapshots.yaml"},
                {"crd/volumesnapshots.snapshot.storage.k8s.io"});
    if (HasFatalFailure()) return;
    SnapshotDriverOptions options;
    options.state_dir = dir_.path();
    driver_ = std::make_unique<SnapshotDriver>(client(), options);
    fs::create_directories(dir_.path() / "snapshots");
    fs::create_directories(dir_.path() / "volumes" / ns_ / "db-1");  // hosted here
  }

  Json Snapshot(const std::string& name) {
    return {{"apiVersion", "snapshot.storage.k8s.io/v1"},
            {"kind", "VolumeSnapshot"},
            {"metadata", {{"name", name}, {"namespace", ns_}}},
            {"spec", {{"source", {{"persistentVolumeClaimName", "db-1"}}}}}};
  }
  Json Get(const ResourceType& type, const std::string& name) {
    auto o = client().Get(type, {ns_, name});
    return o.ok() ? *o : Json::object();
  }

  testing::TempDir dir_;
  std::unique_ptr<SnapshotDriver> driver_;
};

TEST_F(SnapshotDriverEnvtest, RestoresReportsAndCleansUpOnARealApiServer) {
  // A ready snapshot with its copy on disk.
  auto created = client().Create(resources::kVolumeSnapshot, Snapshot("daily"));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  Json ready = *created;
  ready["status"] = {{"readyToUse", true}, {"restoreSize", "3"},
                     {"creationTime", "2026-11-24T03:00:00Z"}};
  ASSERT_TRUE(client().UpdateStatus(resources::kVolumeSnapshot, ready).ok());
  fs::path copy = driver_->SnapshotDir({ns_, "daily"});
  fs::create_directories(copy / "volume" / "pgdata");
  std::ofstream(copy / "volume" / "pgdata" / "PG_VERSION") << "15\n";
  std::ofstream(copy / "snapshot.json") << Json{{"uid", meta::Uid(*created)}}.dump();
  // One that cannot be taken: no Pod runs on its claim.
  ASSERT_TRUE(client().Create(resources::kVolumeSnapshot, Snapshot("now")).ok());
  // A claim restored from the ready one.
  Json pvc = {{"apiVersion", "v1"},
              {"kind", "PersistentVolumeClaim"},
              {"metadata",
               {{"name", "new-1"},
                {"namespace", ns_},
                {"labels", {{"app.kubernetes.io/managed-by", "petrel"}}}}},
              {"spec",
               {{"accessModes", {"ReadWriteOnce"}},
                {"resources", {{"requests", {{"storage", "1Gi"}}}}},
                {"dataSource",
                 {{"apiGroup", "snapshot.storage.k8s.io"},
                  {"kind", "VolumeSnapshot"},
                  {"name", "daily"}}}}}};
  auto made = client().Create(resources::kPersistentVolumeClaim, pvc);
  ASSERT_TRUE(made.ok()) << made.status().ToString();

  driver_->Reconcile();
  Json claim = Get(resources::kPersistentVolumeClaim, "new-1");
  EXPECT_EQ(claim["status"].value("phase", ""), "Bound") << claim.dump();
  EXPECT_EQ(claim["status"]["capacity"].value("storage", ""), "1Gi");
  EXPECT_EQ(ReadFile(dir_.path() / "volumes" / ns_ / "new-1" / "pgdata" / "PG_VERSION")
                .value_or(""),
            "15\n");
  Json now = Get(resources::kVolumeSnapshot, "now");
  EXPECT_EQ(now["status"].value("readyToUse", true), false) << now.dump();
  EXPECT_NE(now["status"]["error"].value("message", "").find("no running Pod"), std::string::npos)
      << now.dump();

  // Deleting the VolumeSnapshot deletes its copy on the next pass; the restored volume stays.
  ASSERT_TRUE(client().Delete(resources::kVolumeSnapshot, {ns_, "daily"}).ok());
  ASSERT_TRUE(testing::WaitFor([&] {
    return client().Get(resources::kVolumeSnapshot, {ns_, "daily"}).status().code() ==
           Code::kNotFound;
  }));
  driver_->Reconcile();
  EXPECT_FALSE(fs::exists(copy));
  EXPECT_TRUE(fs::exists(dir_.path() / "volumes" / ns_ / "new-1" / "pgdata" / "PG_VERSION"));
}

}  // namespace
}  // namespace petrel
