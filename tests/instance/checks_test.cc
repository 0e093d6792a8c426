// The three health checks as pure functions of gathered facts: each verdict and its one-line
// output, the thresholds at their edges, and the kernel-text parsers.
#include "instance/checks.h"

#include <gtest/gtest.h>

namespace petrel {
namespace {

constexpr uint64_t kGiB = 1ULL << 30;

VmFacts QuietVm(double used_percent = 10) {
  VmFacts vm;
  vm.volume = VolumeFacts{10 * kGiB, static_cast<uint64_t>(used_percent / 100 * 10 * kGiB),
                          static_cast<uint64_t>((100 - used_percent) / 100 * 10 * kGiB)};
  vm.load = LoadFacts{0.5, 0.4, 0.3};
  vm.pressure = {1.0, 0.0, 0.5};
  vm.cpus = 2;
  return vm;
}

InstanceFacts Primary() {
  InstanceFacts f;
  f.name = "db-1";
  f.vm = QuietVm();
  f.pg.accepting = true;
  f.pg.role = InstanceRole::kPrimary;
  f.pg.writable = true;
  f.pg.connections_used = 3;
  f.pg.max_connections = 100;
  f.pg.reserved_connections = 3;
  f.pg.current_lsn = "0/3000060";
  f.manager.has_spec = true;
  f.manager.desired_role = InstanceRole::kPrimary;
  f.manager.phase = "running";
  return f;
}

StandbyFacts Standby(const std::string& name, int64_t lag_bytes, int64_t lag_ms,
                     const std::string& state = "streaming") {
  StandbyFacts sb;
  sb.info.name = name;
  sb.info.state = state;
  sb.info.sync_state = "async";
  sb.info.replay_lag_ms = lag_ms;
  sb.lag_bytes = lag_bytes;
  return sb;
}

InstanceFacts Replica() {
  InstanceFacts f = Primary();
  f.name = "db-2";
  f.pg.role = InstanceRole::kReplica;
  f.pg.writable = false;
  f.pg.current_lsn.clear();
  f.pg.streaming = true;
  f.pg.receiver_status = "streaming";
  f.pg.following = "10.0.0.1:5432";
  f.pg.lag_bytes = 0;
  f.pg.lag_seconds = 0;
  f.manager.desired_role = InstanceRole::kReplica;
  f.manager.desired_primary = Endpoint{"10.0.0.1", 5432};
  return f;
}

TEST(VmCheck, QuietMachinePassesWithDiskLoadAndPressure) {
  HealthCheck c = EvaluateVmCheck(QuietVm());
  EXPECT_EQ(c.name, "vm");
  EXPECT_EQ(c.state, CheckState::kPassing);
  EXPECT_EQ(c.output,
            "disk 10% used (9 GiB free of 10 GiB); load 0.50 0.40 0.30 on 2 CPUs; "
            "pressure cpu 1% memory 0% io 0.5% over 60 s");
}

TEST(VmCheck, DiskThresholdsGradeTheCheckAndLeadTheOutput) {
  struct Case {
    double used;
    CheckState want;
  } cases[] = {{84, CheckState::kPassing},
               {85, CheckState::kWarning},
               {94.9, CheckState::kWarning},
               {95, CheckState::kCritical},
               {99, CheckState::kCritical}};
  for (const auto& c : cases) {
    HealthCheck check = EvaluateVmCheck(QuietVm(c.used));
    EXPECT_EQ(check.state, c.want) << c.used << "% used: " << check.output;
    EXPECT_EQ(check.output.rfind("disk ", 0), 0u) << check.output;
  }
}

TEST(VmCheck, LoadPerCpuAndPressureWarnAndAreListedFirst) {
  VmFacts vm = QuietVm();
  vm.load = LoadFacts{5, 5, 5};  // 2.5 per CPU
  HealthCheck c = EvaluateVmCheck(vm);
  EXPECT_EQ(c.state, CheckState::kWarning);
  EXPECT_EQ(c.output.rfind("load 5.00 5.00 5.00 on 2 CPUs; disk", 0), 0u) << c.output;

  vm = QuietVm();
  vm.pressure.io = 75;
  c = EvaluateVmCheck(vm);
  EXPECT_EQ(c.state, CheckState::kCritical);
  EXPECT_EQ(c.output.rfind("pressure cpu 1% memory 0% io 75%", 0), 0u) << c.output;
}

TEST(VmCheck, MissingKernelFilesAreLeftOutAndAnUnreadableVolumeWarns) {
  VmFacts vm;
  HealthCheck c = EvaluateVmCheck(vm);
  EXPECT_EQ(c.state, CheckState::kWarning);
  EXPECT_EQ(c.output, "disk usage unknown (the data volume cannot be read)");
}

TEST(PgCheck, HealthyPrimaryWithOneStandby) {
  InstanceFacts f = Primary();
  f.pg.standbys = {Standby("db-2", 0, 0)};
  f.pg.slots = {{"db_2", true}};
  HealthCheck c = EvaluatePgCheck(f);
  EXPECT_EQ(c.name, "pg");
  EXPECT_EQ(c.state, CheckState::kPassing) << c.output;
  EXPECT_EQ(c.output, "3 of 100 connections used, 3 reserved; replication lag 0 B");
}

TEST(PgCheck, PrimaryStandbyLagIsGradedByBytesOrSeconds) {
  struct Case {
    int64_t bytes;
    int64_t ms;
    CheckState want;
    std::string output_start;
  } cases[] = {
      {1 << 20, 2500, CheckState::kPassing, "3 of 100 connections used"},
      {16 << 20, 0, CheckState::kWarning, "standby db-2 replication lag 16 MiB"},
      {0, 31000, CheckState::kWarning, "standby db-2 replication lag 0 B (31 s)"},
      {2LL << 30, 0, CheckState::kCritical, "standby db-2 replication lag 2 GiB"},
      {0, 600000, CheckState::kCritical, "standby db-2 replication lag 0 B (10 min)"},
  };
  for (const auto& tc : cases) {
    InstanceFacts f = Primary();
    f.pg.standbys = {Standby("db-2", tc.bytes, tc.ms)};
    HealthCheck c = EvaluatePgCheck(f);
    EXPECT_EQ(c.state, tc.want) << c.output;
    EXPECT_EQ(c.output.rfind(tc.output_start, 0), 0u) << c.output;
  }
}

TEST(PgCheck, PrimarySummarisesHealthyStandbysAndNamesTheOthers) {
  InstanceFacts f = Primary();
  f.pg.standbys = {Standby("db-2", 100, 1200), Standby("db-3", 2048, 0),
                   Standby("db-4", 4096, -1, "catchup")};
  f.pg.slots = {{"db_2", true}, {"db_3", true}, {"db_4", true}, {"db_5", false}};
  HealthCheck c = EvaluatePgCheck(f);
  EXPECT_EQ(c.state, CheckState::kWarning);
  EXPECT_EQ(c.output,
            "standby db-4 is catchup, replication lag 4 KiB; replication slot db_5 has no "
            "standby connected; 3 of 100 connections used, 3 reserved; 2 standbys, replication "
            "lag 2 KiB (1.2 s) at most");
}

TEST(PgCheck, ReadOnlyPrimaryIsCritical) {
  InstanceFacts f = Primary();
  f.pg.writable = false;
  f.pg.default_read_only = true;
  HealthCheck c = EvaluatePgCheck(f);
  EXPECT_EQ(c.state, CheckState::kCritical);
  EXPECT_EQ(c.output.rfind("read-only (default_transaction_read_only is on); ", 0), 0u) << c.output;
}

TEST(PgCheck, ConnectionThresholdsCountOnlyNonSuperuserSlots) {
  struct Case {
    int64_t used;
    CheckState want;
  } cases[] = {{77, CheckState::kPassing},   // 77 of 97 open = 79%
               {78, CheckState::kWarning},   // 80.4%
               {92, CheckState::kWarning},   // 94.8%
               {93, CheckState::kCritical},  // 95.9%
               {100, CheckState::kCritical}};
  for (const auto& tc : cases) {
    InstanceFacts f = Primary();
    f.pg.connections_used = tc.used;
    HealthCheck c = EvaluatePgCheck(f);
    EXPECT_EQ(c.state, tc.want) << c.output;
    EXPECT_NE(c.output.find(std::to_string(tc.used) + " of 100 connections used, 3 reserved"),
              std::string::npos);
  }
}

TEST(PgCheck, StreamingReplicaPasses) {
  HealthCheck c = EvaluatePgCheck(Replica());
  EXPECT_EQ(c.state, CheckState::kPassing) << c.output;
  EXPECT_EQ(c.output,
            "3 of 100 connections used, 3 reserved; streaming from 10.0.0.1:5432; replication "
            "lag 0 B");
}

TEST(PgCheck, ReplicaThatStoppedStreamingIsCriticalAndSaysFromWhom) {
  InstanceFacts f = Replica();
  f.pg.streaming = false;
  f.pg.receiver_status.clear();
  f.pg.following.clear();
  HealthCheck c = EvaluatePgCheck(f);
  EXPECT_EQ(c.state, CheckState::kCritical);
  EXPECT_EQ(c.output.rfind("not streaming from 10.0.0.1:5432 (no WAL receiver); ", 0), 0u)
      << c.output;

  f.pg.receiver_status = "waiting";
  c = EvaluatePgCheck(f);
  EXPECT_EQ(c.output.rfind("not streaming from 10.0.0.1:5432 (WAL receiver waiting)", 0), 0u)
      << c.output;
}

TEST(PgCheck, ReplicaStreamingFromAnOldPrimaryIsCritical) {
  InstanceFacts f = Replica();
  f.pg.following = "10.0.0.9:5432";
  HealthCheck c = EvaluatePgCheck(f);
  EXPECT_EQ(c.state, CheckState::kCritical);
  EXPECT_EQ(
      c.output.rfind("streaming from 10.0.0.9:5432, not from the current primary 10.0.0.1:5432", 0),
      0u)
      << c.output;
}

TEST(PgCheck, ReplicaLagIsGraded) {
  InstanceFacts f = Replica();
  f.pg.lag_bytes = 20 << 20;
  f.pg.lag_seconds = 4;
  HealthCheck c = EvaluatePgCheck(f);
  EXPECT_EQ(c.state, CheckState::kWarning);
  EXPECT_EQ(c.output.rfind("replication lag 20 MiB (4 s); ", 0), 0u) << c.output;
}

TEST(PgAndRoleChecks, PostgresNotAnswering) {
  struct Case {
    bool has_spec;
    bool fenced;
    CheckState want;
    std::string pg_output;
    std::string role_output;
  } cases[] = {
      {true, false, CheckState::kCritical, "postgres is not accepting connections (starting)",
       "unknown: postgres is not accepting connections (starting)"},
      {true, true, CheckState::kWarning, "fenced: postgres is stopped on purpose",
       "unknown: fenced: postgres is stopped on purpose"},
      {false, false, CheckState::kWarning, "waiting for a spec from the controller",
       "unknown: waiting for a spec from the controller"},
  };
  for (const auto& tc : cases) {
    InstanceFacts f = Primary();
    f.pg = PgFacts();
    f.manager.has_spec = tc.has_spec;
    f.manager.fenced = tc.fenced;
    f.manager.phase = "starting";
    HealthCheck pg = EvaluatePgCheck(f);
    HealthCheck role = EvaluateRoleCheck(f);
    EXPECT_EQ(pg.state, tc.want);
    EXPECT_EQ(pg.output, tc.pg_output);
    EXPECT_EQ(role.state, tc.want);
    EXPECT_EQ(role.output, tc.role_output);
  }
}

TEST(RoleCheck, LeaderReplicaAndTheirDisagreementsWithTheSpec) {
  struct Case {
    InstanceFacts facts;
    CheckState want;
    std::string output;
  };
  InstanceFacts demoting = Primary();
  demoting.manager.desired_role = InstanceRole::kReplica;
  InstanceFacts promoting = Replica();
  promoting.manager.desired_role = InstanceRole::kPrimary;
  InstanceFacts full = Primary();
  full.vm = QuietVm(97);
  InstanceFacts full_read_only = full;
  full_read_only.pg.writable = false;
  InstanceFacts read_only = Primary();
  read_only.pg.writable = false;
  read_only.pg.default_read_only = true;
  Case cases[] = {
      {Primary(), CheckState::kPassing, "leader"},
      {Replica(), CheckState::kPassing, "replica"},
      {demoting, CheckState::kCritical,
       "leader, but the controller wants a replica (demotion pending)"},
      {promoting, CheckState::kWarning, "replica (promotion pending)"},
      {full, CheckState::kWarning, "leader (disk 97% full; writes fail when it is full)"},
      {full_read_only, CheckState::kCritical, "read-only (disk 97% full)"},
      {read_only, CheckState::kCritical, "read-only (default_transaction_read_only is on)"},
  };
  for (const auto& tc : cases) {
    HealthCheck c = EvaluateRoleCheck(tc.facts);
    EXPECT_EQ(c.name, "role");
    EXPECT_EQ(c.state, tc.want) << c.output;
    EXPECT_EQ(c.output, tc.output);
  }
}

TEST(Checks, AllThreeInOrderAndTheWorstState) {
  InstanceFacts f = Replica();
  f.pg.streaming = false;
  std::vector<HealthCheck> checks = EvaluateChecks(f);
  ASSERT_EQ(checks.size(), 3u);
  EXPECT_EQ(checks[0].name, "vm");
  EXPECT_EQ(checks[1].name, "pg");
  EXPECT_EQ(checks[2].name, "role");
  EXPECT_EQ(WorstState(checks), CheckState::kCritical);
  EXPECT_EQ(WorstState({}), CheckState::kPassing);
}

TEST(Checks, ThresholdsAreTakenFromTheGivenSet) {
  CheckThresholds t;
  t.disk_warning_percent = 5;
  EXPECT_EQ(EvaluateVmCheck(QuietVm(10), t).state, CheckState::kWarning);
}

TEST(KernelText, LoadavgAndPressure) {
  auto load = ParseLoadavg("0.52 0.40 1.25 2/345 6789\n");
  ASSERT_TRUE(load);
  EXPECT_DOUBLE_EQ(load->load1, 0.52);
  EXPECT_DOUBLE_EQ(load->load5, 0.40);
  EXPECT_DOUBLE_EQ(load->load15, 1.25);
  EXPECT_FALSE(ParseLoadavg(""));
  EXPECT_FALSE(ParseLoadavg("a b c"));

  EXPECT_EQ(ParsePressureAvg60("some avg10=0.00 avg60=1.25 avg300=0.50 total=123\n"
                               "full avg10=0.00 avg60=9.00 avg300=0.00 total=1\n"),
            1.25);
  EXPECT_EQ(ParsePressureAvg60("full avg10=0.00 avg60=9.00 avg300=0.00 total=1\n"), std::nullopt);
  EXPECT_EQ(ParsePressureAvg60("some avg10=0.00\n"), std::nullopt);
  EXPECT_EQ(ParsePressureAvg60(""), std::nullopt);
}

TEST(Formatting, BytesAndSeconds) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(16LL << 20), "16 MiB");
  EXPECT_EQ(FormatBytes(150LL << 30), "150 GiB");
  EXPECT_EQ(FormatBytes(-1), "unknown");
  EXPECT_EQ(FormatSeconds(0), "0 s");
  EXPECT_EQ(FormatSeconds(1.25), "1.2 s");
  EXPECT_EQ(FormatSeconds(42), "42 s");
  EXPECT_EQ(FormatSeconds(600), "10 min");
  EXPECT_EQ(FormatSeconds(9000), "2.5 h");
  EXPECT_EQ(FormatSeconds(-1), "unknown");
}

}  // namespace
}  // namespace petrel
