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
//   PUT  /lease    LeaseGrant as JSON (token required). 200 with LeaseReply when the accepted
//                  spec is role primary with the same `term`; 409 otherwise (message says
//                  why: no spec yet, not primary, other term). See "Leadership" below.
//                  503 (Retry-After) for one lease duration after the instance was frozen
//                  or starved for a quarter of it: a grant read then may be stale
//                  (instance/lease.h); use a PUT /lease timeout of at least duration / 4.
//   POST /confirm-leader  PeerConfirmRequest (token required) -> PeerConfirmReply, 200.
//   POST /snapshot SnapshotRequest (token required): a consistent copy of the running
//                  instance's data (pg_basebackup of itself, WAL included) into `dir`; 200 with
//                  SnapshotInfo when complete; 409 when postgres is not running or `dir` is
//                  not empty; 400 when `dir` is not an absolute path.
//
// Leadership (issue 8). A primary whose spec has lease_duration_ms > 0 may run writable only
// while it holds a valid lease. The controller renews it with PUT /lease every few hundred
// ms; the instance counts the lease from the moment it *received* the grant (so its expiry
// is never later than the controller's acknowledgement time + duration). When the
// controller has not renewed for half the duration, the primary asks every peer in
// spec.peers (POST /confirm-leader); if *all* of them confirm, the lease is extended by the
// duration counted from when the confirmation round *started*. A replica confirms only when
// its accepted spec is role replica with the same term. The controller therefore fails over
// by first giving the chosen replica a spec with term+1 (it stops confirming), waiting until
// the old lease has certainly expired, then promoting it with term+1. When the lease
// expires the primary fences itself at once (immediate shutdown of postgres; the instance
// stays up and reports it) and starts postgres again only after a new lease for its term
// arrives. A primary that restarts (instance or pod) does not start postgres writable until
// it holds a lease. lease_duration_ms == 0: no lease is needed (single-instance clusters).
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

// A member the primary may ask to confirm its leadership (the failsafe that keeps a primary
// up while the controller is unreachable). `host`:`port` is the peer's instance API.
struct Peer {
  std::string name;
  std::string host;
  uint16_t port = kInstanceApiPort;
  bool operator==(const Peer&) const = default;
};

// How initdb creates a new cluster's data and its first application database.
struct InitdbOptions {
  std::string database;       // created after initdb when not empty, owned by `owner`
  std::string owner;          // a NOLOGIN role created when missing ("" = database name)
  std::string encoding = "UTF8";
  std::string locale = "C";
  bool data_checksums = true;
  bool operator==(const InitdbOptions&) const = default;
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
  // For kSnapshot: a directory holding a snapshot's data to copy into the empty volume; ""
  // when the volume was already populated from the snapshot (a PVC with a dataSource).
  std::string snapshot_path;
  // The owning cluster's identity (metadata.uid). The instance records it on the volume; a
  // volume recorded for another cluster is only accepted with bootstrap kSnapshot, and is then
  // re-keyed (system role passwords from this instance's environment, replication slots and
  // standby settings of the source dropped) before it runs.
  std::string cluster_uid;
  InitdbOptions initdb;             // for kInitdb
  // Leadership (see the header comment): the term this spec belongs to, the lease the primary
  // needs (0 = none) and the peers it may ask for confirmation.
  int64_t term = 0;
  int64_t lease_duration_ms = 0;
  std::vector<Peer> peers;

  Json ToJson() const;
  static Result<InstanceSpec> FromJson(const Json& j);
  bool operator==(const InstanceSpec&) const = default;
};

struct LeaseGrant {
  int64_t term = 0;
  int64_t duration_ms = 0;
  Json ToJson() const;
  static Result<LeaseGrant> FromJson(const Json& j);
};

struct LeaseReply {
  int64_t term = 0;
  int64_t remaining_ms = 0;
  Json ToJson() const;
  static Result<LeaseReply> FromJson(const Json& j);
};

struct PeerConfirmRequest {
  int64_t term = 0;
  std::string primary;  // the asking instance's name
  Json ToJson() const;
  static Result<PeerConfirmRequest> FromJson(const Json& j);
};

struct PeerConfirmReply {
  bool confirmed = false;
  std::string reason;  // why not, for logs
  Json ToJson() const;
  static Result<PeerConfirmReply> FromJson(const Json& j);
};

struct SnapshotRequest {
  std::string dir;
  Json ToJson() const;
  static Result<SnapshotRequest> FromJson(const Json& j);
};

struct SnapshotInfo {
  int64_t size_bytes = 0;
  std::string lsn;  // the backup's end LSN
  std::string pg_version;
  int pg_major = 0;
  std::string system_identifier;
  int64_t timeline = 0;
  Json ToJson() const;
  static Result<SnapshotInfo> FromJson(const Json& j);
};

// One of Fly's three checks ("vm", "pg", "role"), evaluated by the instance.
enum class CheckState { kPassing, kWarning, kCritical };
const char* CheckStateName(CheckState s);  // "passing" | "warning" | "critical"
CheckState ParseCheckState(const std::string& s);

struct HealthCheck {
  std::string name;
  CheckState state = CheckState::kPassing;
  std::string output;  // one human line, like Fly's
  bool operator==(const HealthCheck&) const = default;
};

// A standby as the primary sees it (pg_stat_replication).
struct StandbyInfo {
  std::string name;        // application_name (the instance name)
  std::string state;       // "streaming", "catchup", ...
  std::string sync_state;  // "async" | "sync" | "quorum" | "potential"
  std::string sent_lsn;
  std::string flush_lsn;
  std::string replay_lsn;
  int64_t replay_lag_ms = -1;  // -1 unknown
  bool operator==(const StandbyInfo&) const = default;
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
  std::string cluster_uid;      // the cluster recorded on the volume
  int64_t term = 0;             // the term of the accepted spec
  int64_t lease_remaining_ms = -1;  // primary with a lease: time left (0 expired); -1 no lease
  std::vector<StandbyInfo> standbys;  // primary: connected standbys
  std::vector<HealthCheck> checks;    // vm, pg, role
  Json ToJson() const;
  static Result<InstanceStatus> FromJson(const Json& j);
};

// "0/3000060" <-> byte position. ParseLsn returns false when malformed.
bool ParseLsn(const std::string& text, uint64_t* out);
std::string FormatLsn(uint64_t lsn);

}  // namespace petrel
