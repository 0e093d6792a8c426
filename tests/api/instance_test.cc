#include "api/instance.h"

#include <gtest/gtest.h>

namespace petrel {
namespace {

InstanceSpec FullSpec() {
  InstanceSpec s;
  s.generation = 7;
  s.role = InstanceRole::kReplica;
  s.bootstrap = BootstrapMethod::kClone;
  s.primary = Endpoint{"10.0.0.5", 5433};
  s.slot_name = "db_2";
  s.replication_slots = {"db_1", "db_3"};
  s.fenced = true;
  s.parameters = {{"max_connections", "200"}, {"work_mem", "8MB"}};
  s.memory_limit_bytes = int64_t{1} << 30;
  s.pg_hba = {"host all app 10.0.0.0/8 scram-sha-256"};
  s.synchronous_standby_names = "ANY 1 (db_2, db_3)";
  return s;
}

TEST(InstanceSpecTest, JsonRoundTripKeepsEveryField) {
  InstanceSpec s = FullSpec();
  Result<InstanceSpec> back = InstanceSpec::FromJson(Json::parse(s.ToJson().dump()));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, s);
}

TEST(InstanceSpecTest, UsesKubernetesStyleFieldNames) {
  Json j = FullSpec().ToJson();
  EXPECT_EQ(j["slotName"], "db_2");
  EXPECT_EQ(j["primary"]["port"], 5433);
  EXPECT_EQ(j["role"], "replica");
  EXPECT_EQ(j["bootstrap"], "clone");
  EXPECT_FALSE(InstanceSpec().ToJson().contains("primary"));
}

TEST(InstanceSpecTest, MissingFieldsTakeDefaultsAndUnknownFieldsAreIgnored) {
  auto s = InstanceSpec::FromJson(Json{{"role", "primary"}, {"futureField", 1}});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->role, InstanceRole::kPrimary);
  EXPECT_EQ(s->bootstrap, BootstrapMethod::kNone);
  EXPECT_FALSE(s->fenced);
  EXPECT_EQ(s->generation, 0);
}

struct BadSpecCase {
  const char* name;
  Json json;
  const char* field;     // the cause's field
  const char* contains;  // a fragment of the message
};

class InvalidSpecTest : public testing::TestWithParam<BadSpecCase> {};

TEST_P(InvalidSpecTest, IsRejectedWithFieldAndReason) {
  const BadSpecCase& c = GetParam();
  Result<InstanceSpec> s = InstanceSpec::FromJson(c.json);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kInvalid);
  EXPECT_NE(s.status().message().find(c.contains), std::string::npos) << s.status().message();
  bool found = false;
  for (const auto& cause : s.status().causes()) found |= cause.field == c.field;
  EXPECT_TRUE(found) << s.status().ToString();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, InvalidSpecTest,
    testing::Values(
        BadSpecCase{"UnknownRole", Json{{"role", "leader"}}, "role", "\"leader\""},
        BadSpecCase{"RoleNotString", Json{{"role", 1}}, "role", "must be a string"},
        BadSpecCase{"UnknownBootstrap", Json{{"bootstrap", "restore"}}, "bootstrap", "restore"},
        BadSpecCase{"ReplicaWithoutPrimary", Json{{"role", "replica"}}, "primary", "is required"},
        BadSpecCase{"CloneWithoutPrimary", Json{{"bootstrap", "clone"}}, "primary", "is required"},
        BadSpecCase{"PortOutOfRange",
                    Json{{"role", "replica"}, {"primary", {{"host", "h"}, {"port", 70000}}}},
                    "primary.port", "between 1 and 65535"},
        BadSpecCase{"PrimaryWithoutHost", Json{{"primary", {{"port", 5432}}}}, "primary.host",
                    "is required"},
        BadSpecCase{"BadSlotName", Json{{"slotName", "DB-1"}}, "slotName", "not a valid slot"},
        BadSpecCase{"BadSlotInList", Json{{"replicationSlots", {"ok", "no way"}}},
                    "replicationSlots", "no way"},
        BadSpecCase{"NumericParameter", Json{{"parameters", {{"max_connections", 100}}}},
                    "parameters", "must be a string"},
        BadSpecCase{"ManagedParameter", Json{{"parameters", {{"port", "6000"}}}}, "parameters.port",
                    "managed by Petrel"},
        BadSpecCase{"MultiLineParameter", Json{{"parameters", {{"work_mem", "4MB\nport=1"}}}},
                    "parameters.work_mem", "single line"},
        BadSpecCase{"MultiLineHba", Json{{"pgHba", {"host all all 0/0 trust\nlocal"}}}, "pgHba",
                    "single line"},
        BadSpecCase{"NegativeGeneration", Json{{"generation", -1}}, "generation", ">= 0"},
        BadSpecCase{"FencedNotBool", Json{{"fenced", "yes"}}, "fenced", "true or false"}),
    [](const testing::TestParamInfo<BadSpecCase>& info) { return info.param.name; });

TEST(InstanceSpecTest, NonObjectIsRejected) {
  auto s = InstanceSpec::FromJson(Json::array());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("JSON object"), std::string::npos);
}

TEST(InstanceStatusTest, JsonRoundTrip) {
  InstanceStatus s;
  s.name = "db-2";
  s.initialized = s.running = s.ready = s.streaming = s.pending_restart = true;
  s.role = InstanceRole::kReplica;
  s.spec_generation = 4;
  s.phase = "running";
  s.message = "following 10.0.0.5:5432";
  s.system_identifier = "7305612345678901234";
  s.timeline = 3;
  s.current_lsn = "";
  s.received_lsn = "0/3000148";
  s.replay_lsn = "0/3000060";
  s.following = "10.0.0.5:5432";
  s.lag_bytes = 232;
  s.pg_version = "15.8";
  auto back = InstanceStatus::FromJson(Json::parse(s.ToJson().dump()));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ToJson(), s.ToJson());
  EXPECT_EQ(back->role, InstanceRole::kReplica);
  EXPECT_EQ(back->lag_bytes, 232);
}

TEST(LsnTest, ParsesAndFormatsPostgresNotation) {
  uint64_t lsn = 0;
  ASSERT_TRUE(ParseLsn("0/3000060", &lsn));
  EXPECT_EQ(lsn, 0x3000060u);
  ASSERT_TRUE(ParseLsn("16/B374D848", &lsn));
  EXPECT_EQ(lsn, (uint64_t{0x16} << 32) | 0xB374D848u);
  EXPECT_EQ(FormatLsn(lsn), "16/B374D848");
  EXPECT_EQ(FormatLsn(0), "0/0");
  uint64_t big = ~uint64_t{0};
  EXPECT_EQ(FormatLsn(big), "FFFFFFFF/FFFFFFFF");
  ASSERT_TRUE(ParseLsn(FormatLsn(big), &lsn));
  EXPECT_EQ(lsn, big);
}

TEST(LsnTest, RejectsMalformedText) {
  uint64_t lsn = 42;
  for (const char* bad : {"", "0", "0/", "/1", "g/1", "0/1/2", "123456789/0", " 0/1"}) {
    EXPECT_FALSE(ParseLsn(bad, &lsn)) << bad;
  }
  EXPECT_EQ(lsn, 42u);
}

}  // namespace
}  // namespace petrel
