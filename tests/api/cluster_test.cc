#include "api/cluster.h"

#include <gtest/gtest.h>

namespace petrel {
namespace {

struct ByteCase {
  std::string text;
  std::optional<int64_t> bytes;  // nullopt = Invalid
};

TEST(ParseByteQuantity, AcceptsKubernetesForms) {
  const std::vector<ByteCase> cases = {
      {"0", 0},
      {"1048576", 1048576},
      {"1Ki", 1024},
      {"10Gi", 10LL * 1024 * 1024 * 1024},
      {"1.5Gi", 1610612736},
      {"2Ti", 2LL << 40},
      {"1k", 1000},
      {"500M", 500000000},
      {"1G", 1000000000},
      {"1e9", 1000000000},
      {"1E", 1000000000000000000LL},
      {"0.5", 1},  // rounded up to a whole byte
      {"+3Mi", 3 * 1024 * 1024},
      {"", std::nullopt},
      {"-1Gi", std::nullopt},
      {"10GB", std::nullopt},
      {"10 Gi", std::nullopt},
      {"500m", std::nullopt},
      {"Gi", std::nullopt},
      {"9Ei", std::nullopt},  // beyond int64
      {"1.2.3", std::nullopt},
  };
  for (const auto& c : cases) {
    auto r = ParseByteQuantity(c.text);
    if (c.bytes) {
      ASSERT_TRUE(r.ok()) << c.text << ": " << r.status().ToString();
      EXPECT_EQ(*r, *c.bytes) << c.text;
    } else {
      ASSERT_FALSE(r.ok()) << c.text << " parsed as " << *r;
      EXPECT_EQ(r.status().code(), Code::kInvalid);
      EXPECT_NE(r.status().message().find(c.text.empty() ? "quantity" : c.text), std::string::npos);
    }
  }
}

TEST(ParseMilliQuantity, CpuForms) {
  EXPECT_EQ(*ParseMilliQuantity("2"), 2000);
  EXPECT_EQ(*ParseMilliQuantity("500m"), 500);
  EXPECT_EQ(*ParseMilliQuantity("0.25"), 250);
  EXPECT_FALSE(ParseMilliQuantity("two").ok());
}

TEST(FormatByteQuantity, ShortestExactForm) {
  EXPECT_EQ(FormatByteQuantity(10LL << 30), "10Gi");
  EXPECT_EQ(FormatByteQuantity(1536LL << 20), "1536Mi");
  EXPECT_EQ(FormatByteQuantity(1500), "1500");
  EXPECT_EQ(FormatByteQuantity(0), "0");
}

TEST(MajorVersionFromImage, ReadsTheTag) {
  const std::vector<std::pair<std::string, std::optional<int>>> cases = {
      {"ghcr.io/petrel-dev/postgres:15.4", 15},
      {"postgres:16", 16},
      {"postgres:16-bookworm", 16},
      {"localhost:5000/petrel/postgres:15.2", 15},
      {"ghcr.io/petrel-dev/postgres:15.4@sha256:abcd", 15},
      {"localhost:5000/petrel/postgres", std::nullopt},
      {"postgres:latest", std::nullopt},
      {"postgres@sha256:abcd", std::nullopt},
      {"postgres:9.6", std::nullopt},
      {"postgres:15x", std::nullopt},
  };
  for (const auto& [image, major] : cases) EXPECT_EQ(MajorVersionFromImage(image), major) << image;
}

Json MinimalSpec() {
  return Json::parse(
      R"({"image": "ghcr.io/petrel-dev/postgres:15.4", "storage": {"size": "1Gi"}})");
}

TEST(ParseClusterSpec, AppliesDefaultsToTheTypedValueOnly) {
  Json spec = MinimalSpec();
  auto r = ParseClusterSpec(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->replicas, 1);
  EXPECT_EQ(r->postgres_major, 15);
  EXPECT_EQ(r->storage.size_bytes, 1LL << 30);
  EXPECT_EQ(r->storage.reclaim_policy, ReclaimPolicy::kRetain);
  EXPECT_EQ(r->primary_update_method, PrimaryUpdateMethod::kSwitchover);
  EXPECT_TRUE(r->enable_pdb);
  EXPECT_FALSE(r->postgresql.synchronous.has_value());
  EXPECT_EQ(r->initdb.database, "app");
  EXPECT_EQ(r->initdb.owner, "app");
  EXPECT_TRUE(r->initdb.data_checksums);
  EXPECT_EQ(r->failover_delay_seconds, 0);
  EXPECT_EQ(r->switchover_delay_seconds, 60);
  EXPECT_EQ(r->lease_duration_ms, 1000);
  EXPECT_FALSE(r->max_lag_on_failover_bytes.has_value());
  EXPECT_EQ(spec, MinimalSpec());  // the input is untouched
}

TEST(ParseClusterSpec, ReadsEveryField) {
  auto r = ParseClusterSpec(Json::parse(R"({
    "replicas": 3, "image": "example/pg:latest", "postgresVersion": 16,
    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    "storage": {"size": "20Gi", "storageClass": "fast", "reclaimPolicy": "Delete"},
    "postgresql": {"parameters": {"max_connections": "200"}, "pg_hba": ["host all all 10.0.0.0/8 scram-sha-256"],
                   "synchronous": {"method": "first", "number": 2, "dataDurability": "preferred"}},
    "failoverDelay": 5, "switchoverDelay": 30, "maxLagOnFailover": "16Mi",
    "leaseDurationMilliseconds": 4000,
    "primaryUpdateMethod": "restart", "enablePDB": false,
    "attachments": {"allowedNamespaces": ["apps"], "namespaceSelector": {"matchLabels": {"team": "a"}}},
    "bootstrap": {"initdb": {"database": "shop", "owner": "shop_owner", "dataChecksums": false,
                             "encoding": "UTF8", "locale": "en_US.UTF-8"}}})"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->replicas, 3);
  EXPECT_EQ(r->postgres_major, 16);
  EXPECT_EQ(r->resources.memory_bytes, 2LL << 30);
  EXPECT_EQ(r->resources.ToJson()["requests"]["cpu"], "500m");
  EXPECT_EQ(r->storage.storage_class, "fast");
  EXPECT_EQ(r->storage.reclaim_policy, ReclaimPolicy::kDelete);
  EXPECT_EQ(r->postgresql.parameters.at("max_connections"), "200");
  ASSERT_TRUE(r->postgresql.synchronous.has_value());
  EXPECT_EQ(r->postgresql.synchronous->method, SyncMethod::kFirst);
  EXPECT_EQ(r->postgresql.synchronous->number, 2);
  EXPECT_EQ(r->postgresql.synchronous->data_durability, DataDurability::kPreferred);
  EXPECT_EQ(r->failover_delay_seconds, 5);
  EXPECT_EQ(r->switchover_delay_seconds, 30);
  EXPECT_EQ(r->max_lag_on_failover_bytes, 16 << 20);
  EXPECT_EQ(r->lease_duration_ms, 4000);
  EXPECT_EQ(r->primary_update_method, PrimaryUpdateMethod::kRestart);
  EXPECT_FALSE(r->enable_pdb);
  EXPECT_TRUE(r->attachments.Allows("db", "apps", {}));
  EXPECT_TRUE(r->attachments.Allows("db", "other", {{"team", "a"}}));
  EXPECT_FALSE(r->attachments.Allows("db", "other", {{"team", "b"}}));
  EXPECT_EQ(r->initdb.owner, "shop_owner");
  EXPECT_FALSE(r->initdb.data_checksums);
}

struct InvalidCase {
  std::string name;
  std::string patch;  // merged into MinimalSpec()
  std::string field;  // the cause that must be reported
  std::string hint;   // a substring of its message
};

TEST(ParseClusterSpec, RejectsWithFieldAndAdvice) {
  const std::vector<InvalidCase> cases = {
      {"negative replicas", R"({"replicas": -1})", "spec.replicas", "between 1 and 64"},
      {"replicas not a number", R"({"replicas": "three"})", "spec.replicas", "whole number"},
      {"missing image", R"({"image": null})", "spec.image", "is required"},
      {"unknown version", R"({"image": "pg:latest"})", "spec.postgresVersion",
       "set spec.postgresVersion"},
      {"version disagrees", R"({"postgresVersion": 16})", "spec.postgresVersion",
       "make them agree"},
      {"missing storage", R"({"storage": null})", "spec.storage", "spec.storage.size"},
      {"bad size", R"({"storage": {"size": "ten gigs"}})", "spec.storage.size", "Gi"},
      {"tiny size", R"({"storage": {"size": "1Mi"}})", "spec.storage.size", "at least"},
      {"bad reclaim", R"({"storage": {"size": "1Gi", "reclaimPolicy": "Keep"}})",
       "spec.storage.reclaimPolicy", "\"Retain\", \"Delete\""},
      {"bad sync method", R"({"replicas": 2, "postgresql": {"synchronous": {"method": "all"}}})",
       "spec.postgresql.synchronous.method", "\"any\", \"first\""},
      {"sync number too high", R"({"replicas": 2, "postgresql": {"synchronous": {"number": 2}}})",
       "spec.postgresql.synchronous.number", "dataDurability: preferred"},
      {"managed parameter", R"({"postgresql": {"parameters": {"port": "5433"}}})",
       "spec.postgresql.parameters.port", "managed by Petrel"},
      {"bad cpu", R"({"resources": {"requests": {"cpu": "lots"}}})", "spec.resources.requests.cpu",
       "millicores"},
      {"request above limit",
       R"({"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}})",
       "spec.resources.requests.memory", "lower the request"},
      {"unknown field", R"({"replica": 3})", "spec.replica", "unknown field"},
      {"bad update method", R"({"primaryUpdateMethod": "rolling"})", "spec.primaryUpdateMethod",
       "\"switchover\", \"restart\""},
      {"reserved owner", R"({"bootstrap": {"initdb": {"owner": "postgres"}}})",
       "spec.bootstrap.initdb.owner", "reserved"},
      {"bad database", R"({"bootstrap": {"initdb": {"database": "My-DB"}}})",
       "spec.bootstrap.initdb.database", "lower-case"},
      {"negative delay", R"({"failoverDelay": -5})", "spec.failoverDelay", "between 0 and 86400"},
      {"lease too short", R"({"leaseDurationMilliseconds": 100})",
       "spec.leaseDurationMilliseconds", "between 500 and 60000"},
      {"lease too long", R"({"leaseDurationMilliseconds": 600000})",
       "spec.leaseDurationMilliseconds", "default of 1000"},
      {"bad lag guard", R"({"maxLagOnFailover": "lots"})", "spec.maxLagOnFailover", "Mi"},
  };
  for (const auto& c : cases) {
    Json spec = MinimalSpec();
    spec.merge_patch(Json::parse(c.patch));
    auto r = ParseClusterSpec(spec);
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.status().code(), Code::kInvalid) << c.name;
    bool found = false;
    for (const auto& cause : r.status().causes()) {
      if (cause.field == c.field) {
        found = true;
        EXPECT_NE(cause.message.find(c.hint), std::string::npos) << c.name << ": " << cause.message;
      }
    }
    EXPECT_TRUE(found) << c.name << ": " << r.status().message();
  }
}

TEST(AttachmentPolicy, CrossNamespaceAccessIsOptIn) {
  auto spec = [](const char* attachments) {
    Json j = MinimalSpec();
    j["attachments"] = Json::parse(attachments);
    return *ParseClusterSpec(j);
  };
  EXPECT_TRUE(spec("{}").attachments.Allows("db", "db", {}));
  EXPECT_FALSE(spec("{}").attachments.Allows("db", "apps", {}));
  EXPECT_FALSE(spec(R"({"namespaceSelector": {}})").attachments.Allows("db", "apps", {{"a", "b"}}));
  EXPECT_TRUE(spec(R"({"allowedNamespaces": ["*"]})").attachments.Allows("db", "apps", {}));
  EXPECT_TRUE(
      spec(
          R"({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}})")
          .attachments.Allows("db", "apps", {{"team", "x"}}));
}

TEST(ParseClusterSpec, ReportsEveryProblemAtOnce) {
  auto r = ParseClusterSpec(Json::parse(
      R"({"replicas": 0, "image": "pg:latest", "storage": {"size": "x"}, "enablePDB": "yes"})"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().causes().size(), 4u) << r.status().message();
}

TEST(ClusterStatus, JsonRoundTrip) {
  PostgresClusterStatus s;
  s.observed_generation = 3;
  s.phase = "Healthy";
  s.conditions.push_back({"Ready", "True", "ClusterIsReady", "ok", 3, "2026-11-23T00:00:00Z"});
  s.replicas = 2;
  s.ready_replicas = 2;
  s.selector = "petrel.dev/cluster=db";
  s.current_primary = "db-1";
  s.target_primary = "db-1";
  s.image = "pg:15";
  s.postgres_major_version = 15;
  s.instances.push_back({"db-1", "primary", true, "running", "0/3000060", -1, 1, "", 4, "abc"});
  s.instance_names = {"db-1", "db-2"};
  EXPECT_EQ(PostgresClusterStatus::FromJson(s.ToJson()), s);
  // High availability.
  s.term = 4;
  s.primary_change = PrimaryChange{PrimaryChangeKind::kFailover, "db-1", "db-2", "gone",
                                   "2026-11-23T00:00:00.250000Z", "0/3000060"};
  s.primary_failing_since = "2026-11-23T00:00:00.100000Z";
  s.failovers = 2;
  s.last_failover = FailoverRecord{"db-2", "db-1", "0/2000000", "2026-11-22T00:00:00Z", "crash", 1234};
  s.synchronous_standbys = {"db-2"};
  Json j = s.ToJson();
  EXPECT_EQ(j["primaryChange"]["type"], "Failover");
  EXPECT_EQ(j["lastFailover"]["durationMilliseconds"], 1234);
  EXPECT_EQ(PostgresClusterStatus::FromJson(j), s);
  s.primary_change->kind = PrimaryChangeKind::kSwitchover;
  EXPECT_EQ(PostgresClusterStatus::FromJson(s.ToJson()), s);
  EXPECT_EQ(PostgresClusterStatus::FromJson(Json()), PostgresClusterStatus());
}

TEST(Names, SlotNamesAreIdentifiers) {
  EXPECT_EQ(SlotName("db-2"), "petrel_db_2");
  EXPECT_EQ(SlotName("my-db.10"), "petrel_my_db_10");
}

}  // namespace
}  // namespace petrel
