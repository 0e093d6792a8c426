// The snapshot driver's pure helpers, and its restore and clean-up behaviour against the
// in-process LocalStore (no Postgres needed: the copies are laid out by hand, as the driver
// would have written them). Taking snapshots through a real instance is covered by
// local_snapshot_e2e_test.
#include "local/snapshot_driver.h"

#include <gtest/gtest.h>

#include <fstream>

#include "local/files.h"
#include "local/store.h"
#include "tests/local/local_test_util.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;

Json Claim(const std::string& name, const Json& data_source = nullptr) {
  Json pvc = {{"apiVersion", "v1"},
              {"kind", "PersistentVolumeClaim"},
              {"metadata",
               {{"name", name},
                {"namespace", "default"},
                {"labels", {{"app.kubernetes.io/managed-by", "petrel"}}}}},
              {"spec",
               {{"accessModes", {"ReadWriteOnce"}},
                {"resources", {{"requests", {{"storage", "1Gi"}}}}}}}};
  if (!data_source.is_null()) pvc["spec"]["dataSource"] = data_source;
  return pvc;
}

Json FromSnapshot(const std::string& name) {
  return {{"apiGroup", "snapshot.storage.k8s.io"}, {"kind", "VolumeSnapshot"}, {"name", name}};
}

Json Pod(const Json& container_extra) {
  Json container = {{"name", "postgres"},
                    {"command", {"petrel"}},
                    {"volumeMounts", {{{"name", "pgdata"}, {"mountPath", "/var/lib/postgresql/data"}}}}};
  container.update(container_extra);
  return {{"metadata", {{"name", "db-1"}, {"namespace", "default"}}},
          {"spec",
           {{"containers", {container}},
            {"volumes", {{{"name", "pgdata"}, {"persistentVolumeClaim", {{"claimName", "db-1"}}}}}}}}};
}

TEST(SnapshotDataSourceTest, OnlyVolumeSnapshotsOfTheSnapshotGroup) {
  auto key = SnapshotDataSource(Claim("new-1", FromSnapshot("daily")));
  ASSERT_TRUE(key.has_value());
  EXPECT_EQ(key->ToString(), "default/daily");
  EXPECT_FALSE(SnapshotDataSource(Claim("db-1")).has_value());
  EXPECT_FALSE(SnapshotDataSource(Claim("x", {{"kind", "PersistentVolumeClaim"}, {"name", "db-1"}})));
  EXPECT_FALSE(SnapshotDataSource(
      Claim("x", {{"apiGroup", "example.com"}, {"kind", "VolumeSnapshot"}, {"name", "s"}})));
  EXPECT_FALSE(SnapshotDataSource(Claim("x", FromSnapshot(""))));
}

TEST(DataDirInVolumeTest, FindsPgdataRelativeToTheMount) {
  auto rel = DataDirInVolume(
      Pod({{"args", {"instance", "--pgdata=/var/lib/postgresql/data/pgdata"}}}), "db-1");
  ASSERT_TRUE(rel.ok()) << rel.status().ToString();
  EXPECT_EQ(*rel, "pgdata");
  rel = DataDirInVolume(Pod({{"args", {"--pgdata", "/var/lib/postgresql/data/a/b/"}}}), "db-1");
  ASSERT_TRUE(rel.ok());
  EXPECT_EQ(*rel, "a/b");
  rel = DataDirInVolume(
      Pod({{"env", {{{"name", "PGDATA"}, {"value", "/var/lib/postgresql/data"}}}}}), "db-1");
  ASSERT_TRUE(rel.ok());
  EXPECT_EQ(*rel, "");  // the volume's root
}

TEST(DataDirInVolumeTest, SaysWhyWhenThePodDoesNotTell) {
  struct Case {
    const char* name;
    Json pod;
    std::string claim;
    const char* want;
  } cases[] = {
      {"OtherClaim", Pod({{"args", {"--pgdata=/var/lib/postgresql/data/pgdata"}}}), "db-2",
       "does not mount"},
      {"NoPgdata", Pod({{"args", {"instance"}}}), "db-1", "names its data directory"},
      {"OutsideTheMount", Pod({{"args", {"--pgdata=/srv/pgdata"}}}), "db-1", "not inside"},
      {"SubPath",
       Pod({{"volumeMounts",
             {{{"name", "pgdata"}, {"mountPath", "/data"}, {"subPath", "x"}}}}}),
       "db-1", "subPath"},
  };
  for (const Case& c : cases) {
    auto rel = DataDirInVolume(c.pod, c.claim);
    ASSERT_FALSE(rel.ok()) << c.name;
    EXPECT_EQ(rel.status().code(), Code::kInvalid) << c.name;
    EXPECT_NE(rel.status().message().find(c.want), std::string::npos)
        << c.name << ": " << rel.status().message();
  }
}

TEST(SnapshotStatusTest, ReadyAndErrorBodies) {
  SnapshotInfo info;
  info.size_bytes = 41943040;
  Json ready = ReadyStatus(info, "2026-11-24T03:00:00Z");
  EXPECT_EQ(ready["status"]["readyToUse"], true);
  EXPECT_EQ(ready["status"]["restoreSize"], "41943040");
  EXPECT_EQ(ready["status"]["creationTime"], "2026-11-24T03:00:00Z");
  EXPECT_TRUE(ready["status"]["error"].is_null());  // merge patch: removes an earlier error
  Json error = ErrorStatus("no running Pod", "2026-11-24T03:00:00Z");
  EXPECT_EQ(error["status"]["readyToUse"], false);
  EXPECT_EQ(error["status"]["error"]["message"], "no running Pod");
}

class SnapshotDriverTest : public ::testing::Test {
 protected:
  SnapshotDriverTest() {
    LocalStoreOptions options;
    store_ = std::move(LocalStore::Open(options)).value();
    SnapshotDriverOptions driver_options;
    driver_options.state_dir = dir_.path();
    driver_ = std::make_unique<SnapshotDriver>(*store_, driver_options);
    fs::create_directories(dir_.path() / "snapshots");
  }

  // A VolumeSnapshot of claim db-1, ready, with its copy on disk as the driver lays it out.
  Json ReadySnapshot(const std::string& name) {
    Json vs = {{"apiVersion", "snapshot.storage.k8s.io/v1"},
               {"kind", "VolumeSnapshot"},
               {"metadata", {{"name", name}, {"namespace", "default"}}},
               {"spec", {{"source", {{"persistentVolumeClaimName", "db-1"}}}}}};
    vs = store_->Create(resources::kVolumeSnapshot, vs).value();
    vs["status"] = {{"readyToUse", true}, {"restoreSize", "3"}, {"creationTime", "2026-11-24T03:00:00Z"}};
    vs = store_->UpdateStatus(resources::kVolumeSnapshot, vs).value();
    fs::path copy = driver_->SnapshotDir({"default", name});
    fs::create_directories(copy / "volume" / "pgdata");
    std::ofstream(copy / "volume" / "pgdata" / "PG_VERSION") << "15\n";
    std::ofstream(copy / "snapshot.json") << Json{{"uid", meta::Uid(vs)}}.dump();
    return vs;
  }

  std::string Phase(const std::string& claim) {
    auto pvc = store_->Get(resources::kPersistentVolumeClaim, {"default", claim});
    return pvc.ok() ? pvc->value("status", Json::object()).value("phase", "") : "";
  }

  std::string WarningsAbout(const std::string& claim) {
    std::string notes;
    auto events = store_->List(resources::kEvent, "default", ListOptions{});
    for (const Json& e : events->items) {
      if (e["regarding"].value("name", "") == claim && e.value("type", "") == "Warning") {
        notes += e.value("reason", "") + ": " + e.value("note", "") + "\n";
      }
    }
    return notes;
  }

  testing::TempDir dir_;
  std::unique_ptr<LocalStore> store_;
  std::unique_ptr<SnapshotDriver> driver_;
};

TEST_F(SnapshotDriverTest, RestoresAReadySnapshotIntoANewClaimAndBindsIt) {
  ReadySnapshot("daily");
  ASSERT_TRUE(store_->Create(resources::kPersistentVolumeClaim, Claim("new-1", FromSnapshot("daily"))).ok());
  driver_->Reconcile();
  EXPECT_EQ(Phase("new-1"), "Bound") << WarningsAbout("new-1");
  fs::path volume = dir_.path() / "volumes" / "default" / "new-1";
  EXPECT_EQ(ReadFile(volume / "pgdata" / "PG_VERSION").value_or(""), "15\n");
  // The snapshot itself is kept for further restores.
  EXPECT_TRUE(fs::exists(driver_->SnapshotDir({"default", "daily"}) / "volume" / "pgdata"));
}

TEST_F(SnapshotDriverTest, MissingOrUnreadySnapshotsLeaveTheClaimPendingWithAWarning) {
  ASSERT_TRUE(store_->Create(resources::kPersistentVolumeClaim, Claim("new-1", FromSnapshot("nope"))).ok());
  Json vs = ReadySnapshot("later");
  vs["status"] = {{"readyToUse", false}};
  ASSERT_TRUE(store_->UpdateStatus(resources::kVolumeSnapshot, vs).ok());
  ASSERT_TRUE(store_->Create(resources::kPersistentVolumeClaim, Claim("new-2", FromSnapshot("later"))).ok());
  driver_->Reconcile();
  EXPECT_EQ(Phase("new-1"), "");
  EXPECT_EQ(Phase("new-2"), "");
  EXPECT_NE(WarningsAbout("new-1").find("VolumeSnapshot nope does not exist"), std::string::npos)
      << WarningsAbout("new-1");
  EXPECT_NE(WarningsAbout("new-2").find("not ready to use yet"), std::string::npos)
      << WarningsAbout("new-2");
  EXPECT_FALSE(fs::exists(dir_.path() / "volumes" / "default" / "new-1"));
}

TEST_F(SnapshotDriverTest, NeverOverwritesAVolumeThatHoldsData) {
  ReadySnapshot("daily");
  fs::path volume = dir_.path() / "volumes" / "default" / "new-1";
  fs::create_directories(volume / "pgdata");
  std::ofstream(volume / "pgdata" / "PG_VERSION") << "14\n";
  ASSERT_TRUE(store_->Create(resources::kPersistentVolumeClaim, Claim("new-1", FromSnapshot("daily"))).ok());
  driver_->Reconcile();
  EXPECT_EQ(Phase("new-1"), "");
  EXPECT_EQ(ReadFile(volume / "pgdata" / "PG_VERSION").value_or(""), "14\n");
  EXPECT_NE(WarningsAbout("new-1").find("VolumeNotEmpty: the volume directory"), std::string::npos)
      << WarningsAbout("new-1");
}

TEST_F(SnapshotDriverTest, DeletesCopiesWhoseSnapshotIsGoneRecreatedOrIncomplete) {
  fs::create_directories(dir_.path() / "volumes" / "default" / "db-1");  // hosted here
  Json kept = ReadySnapshot("kept");
  Json deleted = ReadySnapshot("deleted");
  ASSERT_TRUE(store_->Delete(resources::kVolumeSnapshot, meta::Key(deleted)).ok());
  Json recreated = ReadySnapshot("recreated");
  std::ofstream(driver_->SnapshotDir({"default", "recreated"}) / "snapshot.json")
      << Json{{"uid", "an-older-uid"}}.dump();
  fs::create_directories(driver_->SnapshotDir({"default", "partial"}) / "volume");
  fs::create_directories(driver_->SnapshotDir({"other", "orphan"}) / "volume");
  driver_->Reconcile();
  EXPECT_TRUE(fs::exists(driver_->SnapshotDir({"default", "kept"})));
  EXPECT_FALSE(fs::exists(driver_->SnapshotDir({"default", "deleted"})));
  EXPECT_FALSE(fs::exists(driver_->SnapshotDir({"default", "recreated"})));
  EXPECT_FALSE(fs::exists(driver_->SnapshotDir({"default", "partial"})));
  EXPECT_FALSE(fs::exists(driver_->SnapshotDir({"other", "orphan"})));
  // A ready snapshot whose copy is gone is not taken again (another point in time): error.
  auto vs = store_->Get(resources::kVolumeSnapshot, meta::Key(recreated));
  ASSERT_TRUE(vs.ok());
  EXPECT_EQ((*vs)["status"]["readyToUse"], false);
}

TEST_F(SnapshotDriverTest, ReportsWhyASnapshotCannotBeTaken) {
  fs::create_directories(dir_.path() / "volumes" / "default" / "db-1");  // hosted here
  Json vs = {{"apiVersion", "snapshot.storage.k8s.io/v1"},
             {"kind", "VolumeSnapshot"},
             {"metadata", {{"name", "now"}, {"namespace", "default"}}},
             {"spec", {{"source", {{"persistentVolumeClaimName", "db-1"}}}}}};
  ASSERT_TRUE(store_->Create(resources::kVolumeSnapshot, vs).ok());
  Json elsewhere = vs;
  elsewhere["metadata"]["name"] = "elsewhere";
  elsewhere["spec"]["source"]["persistentVolumeClaimName"] = "not-on-this-node";
  ASSERT_TRUE(store_->Create(resources::kVolumeSnapshot, elsewhere).ok());
  driver_->Reconcile();
  auto got = store_->Get(resources::kVolumeSnapshot, {"default", "now"});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)["status"]["readyToUse"], false);
  EXPECT_NE((*got)["status"]["error"].value("message", "").find("no running Pod"),
            std::string::npos)
      << got->dump();
  auto other = store_->Get(resources::kVolumeSnapshot, {"default", "elsewhere"});
  EXPECT_FALSE(other->contains("status") && (*other)["status"].contains("readyToUse"));
}

}  // namespace
}  // namespace petrel
