// Fly-style health checks of one instance ("vm", "pg", "role"), evaluated from facts.
//
// The facts (InstanceFacts) are gathered elsewhere (instance/monitor.h: statvfs, /proc and SQL);
// everything here is pure so that each verdict is pinned down by table-driven tests. Each
// check has a state (passing / warning / critical) and a one-line output a person can act on,
// e.g. "3 of 100 connections used, 3 reserved; replication lag 0 B".
//
// Checks only report. Nothing in Petrel fails over because a check is failing: the
// controller copies them into the cluster's status and a condition, no more.
//
// Thread-safety: pure functions and plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "api/instance.h"

namespace petrel {

// Every threshold the checks use, in one place. Percentages are of the whole (0..100).
struct CheckThresholds {
  // vm: disk space used on the data volume.
  double disk_warning_percent = 85;
  double disk_critical_percent = 95;
  // vm: 5-minute load average per CPU.
  double load_warning_per_cpu = 2;
  double load_critical_per_cpu = 4;
  // vm: share of the last 60 s some task waited for CPU, memory or IO (/proc/pressure).
  double pressure_warning_percent = 30;
  double pressure_critical_percent = 60;
  // pg: client connections used, as a share of the slots open to non-superusers.
  double connections_warning_percent = 80;
  double connections_critical_percent = 95;
  // pg: how far a standby's replay is behind (bytes of WAL, seconds).
  int64_t lag_warning_bytes = 16LL << 20;
  int64_t lag_critical_bytes = 1LL << 30;
  double lag_warning_seconds = 30;
  double lag_critical_seconds = 300;
  // role: a primary on a volume this full is reported as about to become read-only.
  double readonly_disk_percent = 95;
};

// The data volume, from statvfs.
struct VolumeFacts {
  uint64_t size_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t free_bytes = 0;  // available to unprivileged writers (f_bavail)
  // As df shows it: used / (used + available); blocks reserved for root count as neither.
  double UsedPercent() const;
};

// /proc/loadavg.
struct LoadFacts {
  double load1 = 0, load5 = 0, load15 = 0;
};

// /proc/pressure/{cpu,memory,io}: the "some" line's avg60, in percent.
struct PressureFacts {
  std::optional<double> cpu, memory, io;
};

struct VmFacts {
  std::optional<VolumeFacts> volume;  // nullopt: statvfs failed
  std::optional<LoadFacts> load;      // nullopt: /proc/loadavg unreadable
  PressureFacts pressure;             // each nullopt when the kernel has no PSI
  int cpus = 1;
};

// A standby as the primary sees it, plus its replay distance in bytes.
struct StandbyFacts {
  StandbyInfo info;
  int64_t lag_bytes = -1;  // primary's current LSN - standby's replay LSN; -1 unknown
};

// Per database (pg_stat_database + pg_database_size).
struct DatabaseFacts {
  std::string name;
  int64_t size_bytes = 0;
  int64_t xact_commit = 0;
  int64_t xact_rollback = 0;
  int64_t backends = 0;
};

// Client connections per database and state (pg_stat_activity).
struct ActivityCount {
  std::string database;
  std::string state;  // "active", "idle", "idle in transaction", ...
  int64_t count = 0;
};

// A physical replication slot the primary keeps.
struct SlotFacts {
  std::string name;
  bool active = false;
};

// What SQL tells about the local postgres. Only meaningful when `accepting`.
struct PgFacts {
  bool accepting = false;
  InstanceRole role = InstanceRole::kNone;  // pg_is_in_recovery()
  bool writable = false;                    // transaction_read_only is off
  bool default_read_only = false;           // default_transaction_read_only is on
  int64_t connections_used = 0;             // client backends
  int64_t max_connections = 0;
  int64_t reserved_connections = 0;      // superuser_reserved_connections
  std::string current_lsn;               // primary
  std::string received_lsn, replay_lsn;  // replica
  // Replica: whether a WAL receiver streams, from where ("host:port"), and how far behind.
  bool streaming = false;
  std::string receiver_status;  // pg_stat_wal_receiver.status ("" when none)
  std::string following;
  int64_t lag_bytes = -1;              // received end - replayed; -1 unknown
  double lag_seconds = -1;             // 0 when everything received is replayed; -1 unknown
  std::vector<StandbyFacts> standbys;  // primary
  std::vector<SlotFacts> slots;        // primary
  std::vector<DatabaseFacts> databases;
  std::vector<ActivityCount> activity;
  std::string version;  // server_version
};

// The instance as the converge loop sees it (from InstanceManager) and what it was told.
struct ManagerFacts {
  bool has_spec = false;
  InstanceRole desired_role = InstanceRole::kNone;
  std::optional<Endpoint> desired_primary;  // replicas: whom to follow
  bool fenced = false;                      // the spec asks postgres to stay stopped
  std::string phase;                        // "running", "cloning", ...
};

struct InstanceFacts {
  std::string name;
  std::string cluster;
  VmFacts vm;
  PgFacts pg;
  ManagerFacts manager;
};

HealthCheck EvaluateVmCheck(const VmFacts& vm, const CheckThresholds& t = {});
HealthCheck EvaluatePgCheck(const InstanceFacts& facts, const CheckThresholds& t = {});
HealthCheck EvaluateRoleCheck(const InstanceFacts& facts, const CheckThresholds& t = {});
// vm, pg, role in that order.
std::vector<HealthCheck> EvaluateChecks(const InstanceFacts& facts, const CheckThresholds& t = {});

// The worst of the states (passing when empty).
CheckState WorstState(const std::vector<HealthCheck>& checks);

// Parsers for the kernel's text; nullopt when the text is not what the kernel writes.
std::optional<LoadFacts> ParseLoadavg(const std::string& text);
// The "some" line's avg60 of a /proc/pressure/* file.
std::optional<double> ParsePressureAvg60(const std::string& text);

// "0 B", "512 B", "1.5 KiB", "16 MiB", "2.3 GiB".
std::string FormatBytes(int64_t bytes);
// "0 s", "1.2 s", "42 s", "5 min", "2.5 h".
std::string FormatSeconds(double seconds);

}  // namespace petrel
