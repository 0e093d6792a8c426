// The instance's /metrics text: postgres_exporter names where one exists, Petrel's own for
// the rest, one series per database / state / standby, and only pg_up while postgres is down.
#include "instance/metrics.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "core/object.h"

namespace petrel {
namespace {

bool HasLine(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) {
    if (l == line) return true;
  }
  return false;
}

InstanceFacts PrimaryFacts() {
  InstanceFacts f;
  f.name = "db-1";
  f.cluster = "db";
  f.vm.volume = VolumeFacts{1000, 250, 750};
  f.vm.load = LoadFacts{0.5, 0.25, 0.125};
  f.vm.pressure.cpu = 12.5;
  f.pg.accepting = true;
  f.pg.role = InstanceRole::kPrimary;
  f.pg.writable = true;
  f.pg.max_connections = 100;
  f.pg.reserved_connections = 3;
  f.pg.connections_used = 4;
  f.pg.current_lsn = "0/3000060";
  f.pg.version = "15.4";
  f.pg.databases = {{"app", 8000512, 42, 2, 3}, {"postgres", 7000512, 10, 0, 1}};
  f.pg.activity = {{"app", "active", 1}, {"app", "idle", 2}, {"postgres", "active", 1}};
  StandbyFacts sb;
  sb.info.name = "db-2";
  sb.info.state = "streaming";
  sb.info.sync_state = "async";
  sb.info.replay_lag_ms = 1500;
  sb.lag_bytes = 4096;
  f.pg.standbys = {sb};
  return f;
}

TEST(InstanceMetrics, PrimaryExposesPostgresExporterNamesAndPetrelSeries) {
  InstanceFacts f = PrimaryFacts();
  std::string text = RenderInstanceMetrics(f, EvaluateChecks(f), 2.5);
  for (const char* line : {
           "# TYPE pg_up gauge",
           "pg_up 1",
           "pg_replication_is_replica 0",
           "pg_settings_max_connections 100",
           "pg_settings_superuser_reserved_connections 3",
           "# TYPE pg_stat_database_xact_commit counter",
           "pg_stat_database_xact_commit{datname=\"app\"} 42",
           "pg_stat_database_xact_rollback{datname=\"app\"} 2",
           "pg_stat_database_numbackends{datname=\"postgres\"} 1",
           "pg_database_size_bytes{datname=\"app\"} 8000512",
           "pg_stat_activity_count{datname=\"app\",state=\"idle\"} 2",
           "pg_stat_activity_count{datname=\"app\",state=\"idle in transaction\"} 0",
           "pg_stat_activity_count{datname=\"postgres\",state=\"active\"} 1",
           "petrel_instance_info{name=\"db-1\",cluster=\"db\",version=\"15.4\"} 1",
           "petrel_instance_role{role=\"primary\"} 1",
           "petrel_instance_role{role=\"replica\"} 0",
           "petrel_instance_role{role=\"none\"} 0",
           "petrel_instance_wal_position_bytes{kind=\"current\"} 50331744",
           "petrel_instance_standby_streaming{standby=\"db-2\",sync_state=\"async\"} 1",
           "petrel_instance_standby_lag_bytes{standby=\"db-2\"} 4096",
           "petrel_instance_standby_lag_seconds{standby=\"db-2\"} 1.5",
           "petrel_instance_check_status{check=\"vm\"} 0",
           "petrel_instance_check_status{check=\"pg\"} 0",
           "petrel_instance_check_status{check=\"role\"} 0",
           "petrel_instance_volume_size_bytes 1000",
           "petrel_instance_volume_free_bytes 750",
           "petrel_instance_load1 0.5",
           "petrel_instance_pressure_ratio{resource=\"cpu\"} 0.125",
           "petrel_instance_facts_age_seconds 2.5",
       }) {
    EXPECT_TRUE(HasLine(text, line)) << "missing `" << line << "` in\n" << text;
  }
  // A primary has no replica-side lag series.
  EXPECT_EQ(text.find("pg_replication_lag_seconds"), std::string::npos) << text;
}

TEST(InstanceMetrics, ReplicaExposesItsOwnLagAndPositions) {
  InstanceFacts f = PrimaryFacts();
  f.pg.role = InstanceRole::kReplica;
  f.pg.current_lsn.clear();
  f.pg.received_lsn = "0/3000100";
  f.pg.replay_lsn = "0/3000060";
  f.pg.lag_bytes = 160;
  f.pg.lag_seconds = 0.75;
  f.pg.streaming = true;
  f.pg.standbys.clear();
  std::string text = RenderInstanceMetrics(f, {}, 0);
  for (const char* line : {
           "pg_replication_is_replica 1",
           "pg_replication_lag_seconds 0.75",
           "petrel_instance_replication_lag_bytes 160",
           "petrel_instance_streaming 1",
           "petrel_instance_role{role=\"replica\"} 1",
           "petrel_instance_wal_position_bytes{kind=\"received\"} 50331904",
           "petrel_instance_wal_position_bytes{kind=\"replayed\"} 50331744",
       }) {
    EXPECT_TRUE(HasLine(text, line)) << "missing `" << line << "` in\n" << text;
  }
  EXPECT_EQ(text.find("kind=\"current\""), std::string::npos) << text;
}

TEST(InstanceMetrics, PostgresDownLeavesOnlyPgUpZeroAndTheChecks) {
  InstanceFacts f = PrimaryFacts();
  f.pg = PgFacts();
  f.manager.has_spec = true;
  std::string text = RenderInstanceMetrics(f, EvaluateChecks(f), 1);
  EXPECT_TRUE(HasLine(text, "pg_up 0")) << text;
  EXPECT_TRUE(HasLine(text, "petrel_instance_role{role=\"none\"} 1")) << text;
  EXPECT_TRUE(HasLine(text, "petrel_instance_check_status{check=\"pg\"} 2")) << text;
  EXPECT_EQ(text.find("pg_stat_database_xact_commit{"), std::string::npos) << text;
  EXPECT_EQ(text.find("pg_settings_max_connections"), std::string::npos) << text;
}

TEST(InstanceMetrics, CheckStateValues) {
  EXPECT_EQ(CheckStateValue(CheckState::kPassing), 0);
  EXPECT_EQ(CheckStateValue(CheckState::kWarning), 1);
  EXPECT_EQ(CheckStateValue(CheckState::kCritical), 2);
}

// The Grafana dashboard in the chart only asks for instance series this code exposes.
TEST(InstanceMetrics, DashboardUsesExposedNames) {
  const char* source = std::getenv("PETREL_SOURCE_DIR");
  ASSERT_NE(source, nullptr);
  std::ifstream in(std::string(source) + "/charts/petrel/dashboards/petrel.json");
  ASSERT_TRUE(in) << "charts/petrel/dashboards/petrel.json is missing";
  Json dashboard = Json::parse(in, nullptr, false);
  ASSERT_FALSE(dashboard.is_discarded()) << "the dashboard is not valid JSON";

  InstanceFacts primary = PrimaryFacts();
  InstanceFacts replica = PrimaryFacts();
  replica.pg.role = InstanceRole::kReplica;
  replica.pg.lag_bytes = 0;
  replica.pg.lag_seconds = 0;
  std::string exposed = RenderInstanceMetrics(primary, EvaluateChecks(primary), 0) +
                        RenderInstanceMetrics(replica, EvaluateChecks(replica), 0);
  std::set<std::string> names;
  std::regex sample(R"(^([a-z_][a-z0-9_]*)[{ ])");
  std::istringstream lines(exposed);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, sample)) names.insert(m[1].str());
  }

  std::regex metric(R"(\b((pg|petrel_instance)_[a-z0-9_]+))");
  int used = 0;
  for (const Json& panel : dashboard["panels"]) {
    for (const Json& target : panel.value("targets", Json::array())) {
      std::string expr = target.value("expr", "");
      for (std::sregex_iterator it(expr.begin(), expr.end(), metric), end; it != end; ++it) {
        ++used;
        EXPECT_TRUE(names.count((*it)[1].str()))
            << panel.value("title", "") << ": " << (*it)[1] << " is not an exposed metric";
      }
    }
  }
  EXPECT_GT(used, 10);
}

}  // namespace
}  // namespace petrel
