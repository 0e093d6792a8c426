#include "cli/plugin/snapshot_views.h"

#include <gtest/gtest.h>

namespace petrel::plugin {
namespace {

SystemTime At(const std::string& rfc3339) {
  SystemTime t;
  EXPECT_TRUE(ParseRfc3339(rfc3339, &t)) << rfc3339;
  return t;
}

Json Snap(const std::string& name, const std::string& created, Json status, Json annotations) {
  return {{"metadata",
           {{"name", name},
            {"creationTimestamp", created},
            {"labels", {{"petrel.dev/cluster", "db"}, {"petrel.dev/instance", "db-2"}}},
            {"annotations", std::move(annotations)}}},
          {"spec", {{"source", {{"persistentVolumeClaimName", "db-2"}}}}},
          {"status", std::move(status)}};
}

TEST(SnapshotViews, ListsNewestFirstWithStateSizeAgeAndTrigger) {
  std::vector<Json> snaps = {
      Snap(
          "db-a", "2026-11-21T00:00:00Z",
          {{"readyToUse", true}, {"restoreSize", "10Gi"}, {"creationTime", "2026-11-21T00:00:05Z"}},
          {{"petrel.dev/snapshot-slot", "2026-11-21T00:00:00Z"}}),
      Snap("db-b", "2026-11-24T02:50:00Z", {{"readyToUse", false}},
           {{"petrel.dev/snapshot-request", "2026-11-24T02:50:00Z"}}),
      Snap("db-c", "2026-11-23T00:00:00Z",
           {{"readyToUse", false}, {"error", {{"message", "quota exceeded"}}}}, Json::object()),
  };
  Json list = SnapshotSummaries(snaps, At("2026-11-24T03:00:00Z"));
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0]["name"], "db-b");
  EXPECT_EQ(list[0]["state"], "InProgress");
  EXPECT_EQ(list[0]["age"], "10m");
  EXPECT_EQ(list[0]["trigger"], "requested");
  EXPECT_EQ(list[1]["name"], "db-c");
  EXPECT_EQ(list[1]["state"], "Failed");
  EXPECT_EQ(list[1]["error"], "quota exceeded");
  EXPECT_EQ(list[1]["trigger"], "other");
  EXPECT_EQ(list[2]["name"], "db-a");
  EXPECT_EQ(list[2]["state"], "Ready");
  EXPECT_EQ(list[2]["size"], "10Gi");
  EXPECT_EQ(list[2]["age"], "3d");
  EXPECT_EQ(list[2]["created"], "2026-11-21T00:00:05Z");
  EXPECT_EQ(list[2]["instance"], "db-2");
  EXPECT_EQ(list[2]["trigger"], "scheduled");

  std::string table = RenderTable(SnapshotListTable(list));
  EXPECT_EQ(table.substr(0, table.find('\n')),
            "NAME   INSTANCE   STATE        SIZE   AGE   TRIGGER");
  EXPECT_NE(table.find("db-a   db-2       Ready        10Gi   3d    scheduled"), std::string::npos)
      << table;
  EXPECT_NE(table.find("db-b   db-2       InProgress   -"), std::string::npos) << table;
}

TEST(SnapshotViews, RequestPatchSetsTheAnnotation) {
  EXPECT_EQ(SnapshotRequestPatch("2026-11-24T03:00:00.000001Z"),
            (Json{{"metadata",
                   {{"annotations",
                     {{"petrel.dev/snapshot-request", "2026-11-24T03:00:00.000001Z"}}}}}}));
}

TEST(SnapshotViews, ShortAge) {
  SystemTime now = At("2026-11-24T03:00:00Z");
  EXPECT_EQ(ShortAge(now, At("2026-11-24T02:59:15Z")), "45s");
  EXPECT_EQ(ShortAge(now, At("2026-11-24T02:00:00Z")), "60m");
  EXPECT_EQ(ShortAge(now, At("2026-11-23T20:00:00Z")), "7h");
  EXPECT_EQ(ShortAge(now, At("2026-11-20T03:00:00Z")), "4d");
  EXPECT_EQ(ShortAge(now, At("2026-11-24T03:00:10Z")), "0s") << "clock skew is not negative";
}

}  // namespace
}  // namespace petrel::plugin
