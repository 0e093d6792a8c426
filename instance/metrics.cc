#include "instance/metrics.h"

#include <map>

#include "core/metrics.h"

namespace petrel {
namespace {

// The states pg_stat_activity reports; each database gets a series for every one (0 when
// none), as postgres_exporter does, so that rate() and sums never see series appear.
constexpr const char* kActivityStates[] = {"active",
                                           "idle",
                                           "idle in transaction",
                                           "idle in transaction (aborted)",
                                           "fastpath function call",
                                           "disabled"};

void SetLsn(GaugeFamily& family, const std::string& kind, const std::string& lsn) {
  uint64_t pos = 0;
  if (ParseLsn(lsn, &pos)) family.WithLabels({kind}).Set(static_cast<double>(pos));
}

void RenderPg(MetricsRegistry& r, const PgFacts& pg) {
  const bool replica = pg.role == InstanceRole::kReplica;
  r.Gauge("pg_replication_is_replica", "Whether the server is a standby (in recovery).")
      .Get()
      .Set(replica ? 1 : 0);
  r.Gauge("pg_settings_max_connections", "max_connections.")
      .Get()
      .Set(static_cast<double>(pg.max_connections));
  r.Gauge("pg_settings_superuser_reserved_connections", "superuser_reserved_connections.")
      .Get()
      .Set(static_cast<double>(pg.reserved_connections));

  auto& activity =
      r.Gauge("pg_stat_activity_count",
              "Client connections by database and state (pg_stat_activity).", {"datname", "state"});
  for (const DatabaseFacts& db : pg.databases) {
    for (const char* state : kActivityStates) activity.WithLabels({db.name, state});
  }
  for (const ActivityCount& a : pg.activity) {
    activity.WithLabels({a.database, a.state}).Set(static_cast<double>(a.count));
  }

  auto& commits = r.Counter("pg_stat_database_xact_commit",
                            "Transactions committed in this database.", {"datname"});
  auto& rollbacks = r.Counter("pg_stat_database_xact_rollback",
                              "Transactions rolled back in this database.", {"datname"});
  auto& backends =
      r.Gauge("pg_stat_database_numbackends", "Backends connected to this database.", {"datname"});
  auto& sizes = r.Gauge("pg_database_size_bytes", "Disk space used by the database.", {"datname"});
  for (const DatabaseFacts& db : pg.databases) {
    // A fresh registry per exposition: Inc() from zero sets the counter to postgres's value.
    commits.WithLabels({db.name}).Inc(static_cast<double>(db.xact_commit));
    rollbacks.WithLabels({db.name}).Inc(static_cast<double>(db.xact_rollback));
    backends.WithLabels({db.name}).Set(static_cast<double>(db.backends));
    sizes.WithLabels({db.name}).Set(static_cast<double>(db.size_bytes));
  }

  auto& wal = r.Gauge("petrel_instance_wal_position_bytes",
                      "WAL position as a byte offset: current (primary), received and replayed "
                      "(replica).",
                      {"kind"});
  SetLsn(wal, "current", pg.current_lsn);
  SetLsn(wal, "received", pg.received_lsn);
  SetLsn(wal, "replayed", pg.replay_lsn);

  if (replica) {
    if (pg.lag_seconds >= 0) {
      r.Gauge("pg_replication_lag_seconds",
              "Replica: seconds since the last replayed transaction while WAL is waiting to be "
              "replayed; 0 when everything received is replayed.")
          .Get()
          .Set(pg.lag_seconds);
    }
    if (pg.lag_bytes >= 0) {
      r.Gauge("petrel_instance_replication_lag_bytes",
              "Replica: bytes of WAL received from the primary but not yet replayed.")
          .Get()
          .Set(static_cast<double>(pg.lag_bytes));
    }
    r.Gauge("petrel_instance_streaming", "Replica: whether a WAL receiver is streaming.")
        .Get()
        .Set(pg.streaming ? 1 : 0);
  }

  auto& streaming = r.Gauge("petrel_instance_standby_streaming",
                            "Primary: 1 per connected standby in state streaming, else 0.",
                            {"standby", "sync_state"});
  auto& lag_bytes = r.Gauge("petrel_instance_standby_lag_bytes",
                            "Primary: bytes of WAL a standby has not replayed yet.", {"standby"});
  auto& lag_seconds =
      r.Gauge("petrel_instance_standby_lag_seconds",
              "Primary: the standby's replay lag (pg_stat_replication.replay_lag).", {"standby"});
  for (const StandbyFacts& sb : pg.standbys) {
    streaming.WithLabels({sb.info.name, sb.info.sync_state})
        .Set(sb.info.state == "streaming" ? 1 : 0);
    if (sb.lag_bytes >= 0)
      lag_bytes.WithLabels({sb.info.name}).Set(static_cast<double>(sb.lag_bytes));
    if (sb.info.replay_lag_ms >= 0) {
      lag_seconds.WithLabels({sb.info.name}).Set(sb.info.replay_lag_ms / 1000.0);
    }
  }
}

void RenderVm(MetricsRegistry& r, const VmFacts& vm) {
  if (vm.volume) {
    r.Gauge("petrel_instance_volume_size_bytes", "Size of the data volume.")
        .Get()
        .Set(static_cast<double>(vm.volume->size_bytes));
    r.Gauge("petrel_instance_volume_free_bytes", "Space left on the data volume.")
        .Get()
        .Set(static_cast<double>(vm.volume->free_bytes));
  }
  if (vm.load) {
    r.Gauge("petrel_instance_load1", "1-minute load average.").Get().Set(vm.load->load1);
    r.Gauge("petrel_instance_load5", "5-minute load average.").Get().Set(vm.load->load5);
    r.Gauge("petrel_instance_load15", "15-minute load average.").Get().Set(vm.load->load15);
  }
  auto& pressure = r.Gauge("petrel_instance_pressure_ratio",
                           "Share of the last 60 s some task waited for the resource "
                           "(/proc/pressure, avg60).",
                           {"resource"});
  auto set = [&](const char* resource, const std::optional<double>& percent) {
    if (percent) pressure.WithLabels({resource}).Set(*percent / 100);
  };
  set("cpu", vm.pressure.cpu);
  set("memory", vm.pressure.memory);
  set("io", vm.pressure.io);
}

}  // namespace

double CheckStateValue(CheckState s) {
  switch (s) {
    case CheckState::kPassing:
      return 0;
    case CheckState::kWarning:
      return 1;
    case CheckState::kCritical:
      return 2;
  }
  return 2;
}

std::string RenderInstanceMetrics(const InstanceFacts& facts,
                                  const std::vector<HealthCheck>& checks, double age_seconds) {
  MetricsRegistry r;
  r.Gauge("pg_up", "Whether postgres accepts connections.").Get().Set(facts.pg.accepting ? 1 : 0);
  r.Gauge("petrel_instance_info", "Constant 1, labelled with the instance's identity.",
          {"name", "cluster", "version"})
      .WithLabels({facts.name, facts.cluster, facts.pg.version})
      .Set(1);
  auto& role =
      r.Gauge("petrel_instance_role", "1 for the role postgres runs in, else 0.", {"role"});
  InstanceRole observed = facts.pg.accepting ? facts.pg.role : InstanceRole::kNone;
  for (InstanceRole each : {InstanceRole::kPrimary, InstanceRole::kReplica, InstanceRole::kNone}) {
    role.WithLabels({RoleName(each)}).Set(each == observed ? 1 : 0);
  }
  r.Gauge("petrel_instance_fenced", "Whether the controller keeps postgres stopped.")
      .Get()
      .Set(facts.manager.fenced ? 1 : 0);
  auto& status = r.Gauge("petrel_instance_check_status",
                         "Health check state: 0 passing, 1 warning, 2 critical.", {"check"});
  for (const HealthCheck& c : checks) status.WithLabels({c.name}).Set(CheckStateValue(c.state));
  r.Gauge("petrel_instance_facts_age_seconds",
          "Seconds since the facts behind these metrics were gathered.")
      .Get()
      .Set(age_seconds);
  RenderVm(r, facts.vm);
  if (facts.pg.accepting) RenderPg(r, facts.pg);
  return r.Expose();
}

}  // namespace petrel
