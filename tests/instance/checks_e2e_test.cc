// Health checks and metrics of real `petrel instance` processes (PETREL_BINARY) on real
// PostgreSQL 15: a primary and a streaming replica report passing checks, their standbys and
// their metrics on both the API and the metrics port; when the primary stops, the replica's
// pg check turns critical and says it is not streaming from the primary any more.
#include <gtest/gtest.h>

#include "tests/instance/instance_process.h"

namespace petrel {
namespace e2e {
namespace {

// An instance of cluster "checks" that also serves its metrics on a port of their own.
InstanceOptions ChecksOptions() {
  InstanceOptions options;
  options.cluster = "checks";
  options.passwords = Passwords{"checks-super", "checks-repl"};
  options.metrics_port = MetricsPort::kOwn;
  return options;
}

bool HasLine(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) {
    if (l == line) return true;
  }
  return false;
}

std::string Describe(const std::vector<HealthCheck>& checks) {
  std::string out;
  for (const HealthCheck& c : checks) {
    out += c.name + "=" + CheckStateName(c.state) + " (" + c.output + ")\n";
  }
  return out;
}

class ChecksE2eTest : public testing::Test {
 protected:
  void SetUp() override {
    if (!std::getenv("PETREL_BINARY")) GTEST_SKIP() << "PETREL_BINARY is not set";
    if (access("/usr/lib/postgresql/15/bin/postgres", X_OK) != 0) {
      FAIL() << "PostgreSQL 15 is required: /usr/lib/postgresql/15/bin/postgres";
    }
  }
  TempDir dir_{"petrel-checks-e2e"};
};

TEST_F(ChecksE2eTest, PrimaryAndReplicaPassThenTheReplicaReportsItStoppedStreaming) {
  InstanceProcess primary("db-1", LoopbackAddress(1), dir_.path(), ChecksOptions());
  InstanceProcess replica("db-2", LoopbackAddress(2), dir_.path(), ChecksOptions());
  primary.Start();
  replica.Start();

  // Before any spec: postgres is not running, and the checks say why without alarm.
  ASSERT_TRUE(WaitFor([&] { return primary.Check("pg").has_value(); }, seconds(20)));
  EXPECT_EQ(primary.Check("pg")->output, "waiting for a spec from the controller");
  EXPECT_TRUE(HasLine(primary.Metrics(), "pg_up 0"));

  InstanceSpec ps;
  ps.generation = 1;
  ps.role = InstanceRole::kPrimary;
  ps.bootstrap = BootstrapMethod::kInitdb;
  ps.replication_slots = {"db_2"};
  ASSERT_EQ(primary.PutSpec(ps).status, 202);
  InstanceSpec rs;
  rs.generation = 1;
  rs.role = InstanceRole::kReplica;
  rs.bootstrap = BootstrapMethod::kClone;
  rs.primary = primary.endpoint();
  rs.slot_name = "db_2";
  ASSERT_TRUE(WaitFor([&] { return primary.Status().ready; }, seconds(90))) << primary.Log();
  ASSERT_EQ(replica.PutSpec(rs).status, 202);

  // Both pass: the primary sees its standby streaming, the replica streams from it.
  auto passing = [](InstanceProcess& i, const std::string& role) {
    auto pg = i.Check("pg");
    auto r = i.Check("role");
    return pg && r && pg->state == CheckState::kPassing && r->state == CheckState::kPassing &&
           r->output == role;
  };
  ASSERT_TRUE(WaitFor([&] { return passing(primary, "leader") && passing(replica, "replica"); },
                      seconds(120)))
      << "primary:\n"
      << Describe(primary.Status().checks) << "replica:\n"
      << Describe(replica.Status().checks) << replica.Log();
  InstanceStatus p = primary.Status();
  ASSERT_EQ(p.standbys.size(), 1u);
  EXPECT_EQ(p.standbys[0].name, "db-2");
  EXPECT_EQ(p.standbys[0].state, "streaming");
  EXPECT_EQ(p.standbys[0].sync_state, "async");
  EXPECT_NE(primary.Check("pg")->output.find("connections used"), std::string::npos);
  EXPECT_NE(primary.Check("pg")->output.find("replication lag"), std::string::npos)
      << primary.Check("pg")->output;
  EXPECT_NE(replica.Check("pg")->output.find("streaming from " + primary.pg_address()),
            std::string::npos)
      << replica.Check("pg")->output;
  // The vm check's state depends on this (shared, busy) machine; its content does not.
  std::string vm = primary.Check("vm")->output;
  EXPECT_NE(vm.find("disk "), std::string::npos) << vm;
  EXPECT_NE(vm.find("% used ("), std::string::npos) << vm;
  EXPECT_NE(vm.find("load "), std::string::npos) << vm;

  // Metrics, on the metrics port and the API alike.
  ASSERT_TRUE(WaitFor(
      [&] {
        std::string m = primary.Metrics();
        return HasLine(m, "pg_up 1") &&
               m.find("petrel_instance_standby_lag_bytes{standby=\"db-2\"}") != std::string::npos;
      },
      seconds(30)))
      << primary.Metrics();
  std::string pm = primary.Metrics();
  EXPECT_TRUE(HasLine(pm, "petrel_instance_role{role=\"primary\"} 1")) << pm;
  EXPECT_TRUE(HasLine(pm, "pg_replication_is_replica 0")) << pm;
  EXPECT_NE(pm.find("pg_stat_database_xact_commit{datname=\"postgres\"}"), std::string::npos);
  EXPECT_NE(pm.find("pg_database_size_bytes{datname=\"postgres\"}"), std::string::npos);
  EXPECT_TRUE(HasLine(pm, "petrel_instance_check_status{check=\"pg\"} 0")) << pm;
  std::string am = primary.ApiMetrics();
  EXPECT_TRUE(HasLine(am, "pg_up 1")) << am;
  std::string rm = replica.Metrics();
  EXPECT_TRUE(HasLine(rm, "pg_replication_is_replica 1")) << rm;
  EXPECT_NE(rm.find("\npg_replication_lag_seconds "), std::string::npos) << rm;
  EXPECT_TRUE(HasLine(rm, "petrel_instance_streaming 1")) << rm;

  // The primary goes away: the replica keeps running read-only, and its pg check says it no
  // longer streams from the primary it was told to follow.
  primary.Terminate();
  std::string expected = "not streaming from " + primary.pg_address();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto pg = replica.Check("pg");
        return pg && pg->state == CheckState::kCritical && pg->output.rfind(expected, 0) == 0;
      },
      seconds(60)))
      << Describe(replica.Status().checks);
  EXPECT_EQ(replica.Check("role")->state, CheckState::kPassing);
  EXPECT_EQ(replica.Check("role")->output, "replica");
  EXPECT_TRUE(WaitFor(
      [&] {
        std::string m = replica.Metrics();
        return HasLine(m, "petrel_instance_check_status{check=\"pg\"} 2") &&
               HasLine(m, "petrel_instance_streaming 0") && HasLine(m, "pg_up 1");
      },
      seconds(30)))
      << replica.Metrics();
  // Reporting changed nothing: the replica is still a replica, not promoted.
  EXPECT_EQ(replica.Status().role, InstanceRole::kReplica);
}

}  // namespace
}  // namespace e2e
}  // namespace petrel
