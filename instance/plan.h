// The instance's decision logic, kept pure: given what was observed about the local Postgres
// and the desired InstanceSpec, choose the single next action. The converge loop observes,
// calls PlanInstanceAction, executes the action, and repeats (level-triggered: a restart of
// `petrel instance` at any point just observes again and carries on).
//
// CheckSpecTransition decides whether a newly PUT spec can be accepted at all (409 if not).
//
// Thread-safety: pure functions on values.
#pragma once

#include <optional>
#include <string>

#include "api/instance.h"
#include "core/status.h"
#include "instance/lease.h"

namespace petrel {

// What the converge loop saw on one pass. Every field is a plain fact; no decisions.
struct ObservedInstance {
  bool has_spec = false;          // a spec was accepted (PUT or loaded from the volume)
  bool has_data = false;          // PGDATA holds a data directory (PG_VERSION)
  bool standby_signal = false;    // PGDATA/standby.signal exists
  bool postgres_running = false;  // the supervised postgres process is alive
  bool accepting = false;         // the admin connection answered
  InstanceRole sql_role = InstanceRole::kNone;  // pg_is_in_recovery(), when accepting
  bool config_current = false;      // petrel.conf, pg_hba.conf and the include match the spec
  bool in_restart_backoff = false;  // postgres exited unexpectedly and the backoff runs
  bool slots_current = true;        // physical slots match the spec (none on a replica)
  // Primary: its last checkpoint predates its current timeline (promoted, the end-of-recovery
  // checkpoint not written yet). pg_rewind reads the source's timeline from that checkpoint
  // and would rewind nothing onto it.
  bool checkpoint_predates_timeline = false;
  bool diverged = false;            // replica: cannot follow its primary's timeline
  bool rewind_failed = false;       // the last pg_rewind failed: re-clone instead
  // The cluster uid recorded in PGDATA ("" when none is recorded or there is no data).
  std::string data_cluster_uid;
  LeaseState lease = LeaseState::kNotRequired;  // the leadership lease (instance/lease.h)
};

enum class ActionKind {
  kNone,         // in sync with the spec
  kWait,         // nothing can be done now (reason says why); observe again later
  kInitdb,       // create a new cluster, then start it as primary
  kClone,        // pg_basebackup from spec.primary, then start as replica
  kWriteConfig,  // rewrite petrel.conf / pg_hba.conf; reload if running
  kStart,        // start postgres
  kStop,         // fast shutdown (fence, or before a rewind)
  kFence,        // immediate shutdown: a primary without a valid leadership lease
  kPromote,      // pg_promote()
  kRewind,       // pg_rewind from spec.primary, write standby.signal
  kReclone,      // move PGDATA aside (kept, renamed) and clone again
  kSyncSlots,    // create missing / drop inactive unlisted physical slots (replicas keep none)
  kCheckpoint,   // CHECKPOINT on the timeline a promotion started
  // Snapshots and cluster identity (issue 7).
  kRestore,      // copy spec.snapshot_path into the empty volume
  kRekey,        // data of another cluster (bootstrap snapshot): re-key it, record our uid
  kRecordUid,    // data without a recorded cluster: adopt it for spec.cluster_uid
  kRefuse,       // the data belongs to another cluster: touch nothing (reason says why)
};
const char* ActionName(ActionKind kind);

struct InstanceAction {
  ActionKind kind = ActionKind::kNone;
  std::string reason;  // human-readable, ends up in status.message
};

// A primary that needs a lease (LeaseRequired) and holds none never runs writable: a
// writable postgres is shut down at once (kFence), a stopped one is not started, a standby
// is not promoted. A standby may start without a lease: it cannot commit.
InstanceAction PlanInstanceAction(const ObservedInstance& observed, const InstanceSpec& spec);

// Whether the spec needs a lease that the observation says is not held.
bool LeaseMissing(const ObservedInstance& observed, const InstanceSpec& spec);

// Whether `next` may replace `current` (the accepted spec, if any) given whether the volume
// holds data. Returns a Conflict status whose message says why when it may not.
Status CheckSpecTransition(const std::optional<InstanceSpec>& current, bool has_data,
                           const InstanceSpec& next);

// Whether `next` may be used with the data on the volume, recorded for `data_cluster_uid`
// ("" = nothing recorded, or no data). Data of another cluster is only accepted with bootstrap
// snapshot (it is then re-keyed); otherwise Conflict, saying whose data it is and what to do.
Status CheckDataIdentity(const std::string& data_cluster_uid, const InstanceSpec& next);

// True when the data (recorded for `data_cluster_uid`) must be re-keyed for `spec`: it came
// from a snapshot (bootstrap snapshot) and is not yet recorded as this cluster's.
bool NeedsRekey(const std::string& data_cluster_uid, const InstanceSpec& spec);

}  // namespace petrel
