// The contract between the controller and `petrel instance`.
//
// The controller owns intent; the instance converges to it. The controller sends the whole
// desired InstanceSpec (PUT /spec, idempotent, level-triggered) and reads InstanceStatus
// (GET /status). The instance persists the last accepted spec on its volume so that a restart
// resumes without the controller. Both are plain values with JSON round-trips.
//
// Instance HTTP API (port kInstanceApiPort on the pod IP, bearer token from the cluster's
// `<cluster>-petrel` Secret on every mutating call):
//   GET  /healthz  200 while the instance process is alive
//   GET  /readyz   200 when postgres accepts connections and matches the spec's role
//   GET  /status   InstanceStatus as JSON
//   PUT  /spec     InstanceSpec as JSON; 202 accepted (work proceeds asynchronously),
//                  400 with a message if the spec is invalid, 401 without the token,
//                  409 if it asks for an impossible transition (message says why)
//   GET  /metrics  Prometheus text format (port kMetricsPort also serves it)
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/object.h"
#include "core/status.h"

namespace petrel {

inline constexpr uint16_t kPostgresPort = 5432;
inline constexpr uint16_t kInstanceApiPort = 8000;
inline constexpr uint16_t kMetricsPort = 9187;

// Well-known names inside a cluster.
inline constexpr const char* kSuperuser = "postgres";
inline constexpr const char* kReplicationUser = "streaming_replica";

enum class InstanceRole { kNone, kPrimary, kReplica };
const char* RoleName(InstanceRole role);  // "none" | "primary" | "replica"
InstanceRole ParseRole(const std::string& s);

// How an instance with an empty volume gets its data.
enum class BootstrapMethod {
  kNone,      // never initialise (wait for data; e.g. a volume expected to hold data)
  kInitdb,    // a brand-new cluster: initdb (SCRAM, data checksums), then start as primary
  kClone,     // pg_basebackup from `primary`, using the replication slot, start as replica
  kSnapshot,  // data restored from a snapshot directory, then re-keyed (issue 7)
};
const char* BootstrapName(BootstrapMethod m);
BootstrapMethod ParseBootstrap(const std::string& s);

struct Endpoint {
  std::string host;
  uint16_t port = kPostgresPort;
  bool operator==(const Endpoint&) const = default;
};

struct InstanceSpec {
  int64_t generation = 0;           // bumps on every change the controller makes
  InstanceRole role = InstanceRole::kNone;
  BootstrapMethod bootstrap = BootstrapMethod::kNone;
  std::optional<Endpoint> primary;  // required for replicas and for kClone
  std::string slot_name;            // this instance's slot on the primary (replicas)
  std::vector<std::string> replication_slots;  // slots the primary keeps (primary only)
  bool fenced = false;              // true: postgres stopped and kept stopped
  // User parameters (spec.postgresql.parameters); they win over memory-derived defaults.
  std::map<std::string, std::string> parameters;
  int64_t memory_limit_bytes = 0;   // for memory-aware defaults; 0 = unknown
  std::vector<std::string> pg_hba;  // extra lines placed before Petrel's defaults
  // synchronous_standby_names the primary should use ("" = asynchronous).
  std::string synchronous_standby_names;
  std::string snapshot_path;        // for kSnapshot

  Json ToJson() const;
  static Result<InstanceSpec> FromJson(const Json& j);
  bool operator==(const InstanceSpec&) const = default;
};

struct InstanceStatus {
  std::string name;
  bool initialized = false;     // the volume holds a data directory
  bool running = false;         // postgres accepts connections
  bool ready = false;           // running and matches the spec's role
  InstanceRole role = InstanceRole::kNone;  // observed: pg_is_in_recovery()
  bool fenced = false;
  int64_t spec_generation = 0;  // last spec generation fully applied
  std::string phase;            // human: "initdb", "cloning", "running", "promoting", ...
  std::string message;          // last error or progress, for conditions/events
  std::string system_identifier;
  int64_t timeline = 0;
  std::string current_lsn;      // primary: pg_current_wal_lsn()
  std::string received_lsn;     // replica: pg_last_wal_receive_lsn()
  std::string replay_lsn;       // replica: pg_last_wal_replay_lsn()
  bool streaming = false;       // replica: a WAL receiver is connected
  std::string following;        // replica: host:port it streams from
  int64_t lag_bytes = -1;       // replica: primary LSN - replay LSN as last known; -1 unknown
  std::string pg_version;       // server_version
  bool pending_restart = false; // a changed parameter needs a restart
  Json ToJson() const;
  static Result<InstanceStatus> FromJson(const Json& j);
};

// "0/3000060" <-> byte position. ParseLsn returns false when malformed.
bool ParseLsn(const std::string& text, uint64_t* out);
std::string FormatLsn(uint64_t lsn);

}  // namespace petrel
