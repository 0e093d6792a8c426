// What the cluster status records of its instances' checks, and the ChecksPassing condition.
#include "reconcilers/cluster_checks.h"

#include <gtest/gtest.h>

namespace petrel {
namespace {

std::vector<HealthCheck> Checks(CheckState pg, const std::string& pg_output) {
  return {{"vm", CheckState::kPassing, "disk 10% used (9 GiB free of 10 GiB); load 0.50"},
          {"pg", pg, pg_output},
          {"role", CheckState::kPassing, "replica"}};
}

InstanceState Instance(const std::string& name, std::vector<HealthCheck> checks) {
  InstanceState s;
  s.name = name;
  s.checks = std::move(checks);
  return s;
}

TEST(RecordedChecks, PassingChecksWithNewNumbersKeepTheRecordedCopy) {
  auto recorded = Checks(CheckState::kPassing, "3 of 100 connections used, 3 reserved");
  auto reported = Checks(CheckState::kPassing, "4 of 100 connections used, 3 reserved");
  reported[0].output = "disk 10% used (9 GiB free of 10 GiB); load 0.70";
  EXPECT_EQ(RecordedChecks(recorded, reported), recorded);
}

TEST(RecordedChecks, OnlyStateChangesAreRecorded) {
  auto passing = Checks(CheckState::kPassing, "replication lag 0 B");
  auto critical = Checks(CheckState::kCritical, "not streaming from 10.0.0.1:5432");
  auto critical_later = Checks(CheckState::kCritical, "not streaming from 10.0.0.3:5432");
  EXPECT_EQ(RecordedChecks(passing, critical), critical);
  // Same state, new numbers: no status write, even while failing (a busy node's vm check).
  EXPECT_EQ(RecordedChecks(critical, critical_later), critical);
  EXPECT_EQ(RecordedChecks(critical, passing), passing);
  EXPECT_EQ(RecordedChecks({}, passing), passing);
  EXPECT_EQ(RecordedChecks(passing, {}), std::vector<HealthCheck>{});
}

TEST(ChecksCondition, TrueWhenEveryInstancePasses) {
  Condition c = ChecksCondition({},
                                {Instance("db-1", Checks(CheckState::kPassing, "a")),
                                 Instance("db-2", Checks(CheckState::kPassing, "b"))},
                                4, "2026-11-24T00:00:00Z");
  EXPECT_EQ(c.type, "ChecksPassing");
  EXPECT_EQ(c.status, "True");
  EXPECT_EQ(c.reason, "AllChecksPassing");
  EXPECT_EQ(c.observed_generation, 4);
  EXPECT_EQ(c.last_transition_time, "2026-11-24T00:00:00Z");
}

TEST(ChecksCondition, FalseNamesTheFailingChecksCriticalFirst) {
  auto warning = Checks(CheckState::kWarning, "replication lag 20 MiB");
  auto critical = Checks(CheckState::kCritical, "not streaming from 10.0.0.1:5432");
  Condition c = ChecksCondition({},
                                {Instance("db-1", Checks(CheckState::kPassing, "")),
                                 Instance("db-2", warning), Instance("db-3", critical)},
                                1, "t1");
  EXPECT_EQ(c.status, "False");
  EXPECT_EQ(c.reason, "CheckCritical");
  EXPECT_EQ(c.message,
            "db-3 pg critical: not streaming from 10.0.0.1:5432; db-2 pg warning: replication "
            "lag 20 MiB. Checks are informational: nothing fails over because of them.");

  c = ChecksCondition({}, {Instance("db-2", warning)}, 1, "t1");
  EXPECT_EQ(c.reason, "CheckWarning");
}

TEST(ChecksCondition, ManyFailuresAreCountedNotAllListed) {
  std::vector<InstanceState> instances;
  for (int i = 1; i <= 5; ++i) {
    instances.push_back(Instance("db-" + std::to_string(i), Checks(CheckState::kWarning, "x")));
  }
  Condition c = ChecksCondition({}, instances, 1, "t1");
  EXPECT_NE(c.message.find("; and 2 more."), std::string::npos) << c.message;
}

TEST(ChecksCondition, UnknownUntilInstancesReport) {
  Condition none = ChecksCondition({}, {Instance("db-1", {})}, 1, "t1");
  EXPECT_EQ(none.status, "Unknown");
  EXPECT_EQ(none.reason, "NoChecksReported");
  Condition some = ChecksCondition(
      {}, {Instance("db-1", Checks(CheckState::kPassing, "")), Instance("db-2", {})}, 1, "t1");
  EXPECT_EQ(some.status, "Unknown");
  EXPECT_EQ(some.reason, "ChecksMissing");
  EXPECT_EQ(some.message, "No health checks from db-2; the others pass.");
}

TEST(ChecksCondition, TransitionTimeIsKeptWhileTheStatusIsUnchanged) {
  PostgresClusterStatus old;
  old.conditions.push_back({"ChecksPassing", "False", "CheckWarning", "old", 1, "t0"});
  auto failing = {Instance("db-1", Checks(CheckState::kCritical, "down"))};
  EXPECT_EQ(ChecksCondition(old, failing, 2, "t5").last_transition_time, "t0");
  auto passing = {Instance("db-1", Checks(CheckState::kPassing, ""))};
  EXPECT_EQ(ChecksCondition(old, passing, 2, "t5").last_transition_time, "t5");
}

TEST(InstanceStateJson, ChecksRoundTrip) {
  InstanceState s = Instance("db-2", Checks(CheckState::kCritical, "not streaming"));
  Json j = s.ToJson();
  EXPECT_EQ(j["checks"][1],
            Json({{"name", "pg"}, {"status", "critical"}, {"output", "not streaming"}}));
  EXPECT_EQ(InstanceState::FromJson(j), s);
  EXPECT_FALSE(Instance("db-1", {}).ToJson().contains("checks"));
}

}  // namespace
}  // namespace petrel
