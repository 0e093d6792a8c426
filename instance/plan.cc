#include "instance/plan.h"

#include <optional>

namespace petrel {

const char* ActionName(ActionKind kind) {
  switch (kind) {
    case ActionKind::kNone:
      return "none";
    case ActionKind::kWait:
      return "wait";
    case ActionKind::kInitdb:
      return "initdb";
    case ActionKind::kClone:
      return "clone";
    case ActionKind::kWriteConfig:
      return "write-config";
    case ActionKind::kStart:
      return "start";
    case ActionKind::kStop:
      return "stop";
    case ActionKind::kFence:
      return "fence";
    case ActionKind::kPromote:
      return "promote";
    case ActionKind::kRewind:
      return "rewind";
    case ActionKind::kReclone:
      return "reclone";
    case ActionKind::kSyncSlots:
      return "sync-slots";
    case ActionKind::kCheckpoint:
      return "checkpoint";
    case ActionKind::kRestore:
      return "restore";
    case ActionKind::kRekey:
      return "rekey";
    case ActionKind::kRecordUid:
      return "record-uid";
    case ActionKind::kRefuse:
      return "refuse";
  }
  return "unknown";
}

namespace {

InstanceAction Act(ActionKind kind, std::string reason) { return {kind, std::move(reason)}; }

InstanceAction PlanBootstrap(const InstanceSpec& spec) {
  switch (spec.bootstrap) {
    case BootstrapMethod::kInitdb:
      if (spec.role == InstanceRole::kReplica) {
        return Act(ActionKind::kWait,
                   "the volume is empty and a replica cannot be created with initdb; "
                   "set bootstrap to clone");
      }
      return Act(ActionKind::kInitdb, "the volume is empty: creating a new cluster with initdb");
    case BootstrapMethod::kClone:
      return Act(ActionKind::kClone, "the volume is empty: cloning from " + spec.primary->host +
                                         ":" + std::to_string(spec.primary->port));
    case BootstrapMethod::kSnapshot:
      if (!spec.snapshot_path.empty()) {
        return Act(ActionKind::kRestore,
                   "the volume is empty: restoring the snapshot in " + spec.snapshot_path);
      }
      return Act(ActionKind::kWait,
                 "the volume is empty: waiting for it to be populated from the snapshot (the "
                 "PersistentVolumeClaim's dataSource); nothing to restore otherwise");
    case BootstrapMethod::kNone:
      break;
  }
  return Act(ActionKind::kWait, "the volume is empty and the spec says bootstrap none: waiting");
}

// Whose data this is, before anything runs on it: data restored from a snapshot is re-keyed,
// data of no recorded cluster is adopted, data of another cluster is left alone.
std::optional<InstanceAction> PlanIdentity(const ObservedInstance& o, const InstanceSpec& spec) {
  if (spec.cluster_uid.empty() || o.data_cluster_uid == spec.cluster_uid) return std::nullopt;
  if (NeedsRekey(o.data_cluster_uid, spec)) {
    if (o.postgres_running) {
      return Act(ActionKind::kStop, "stopping postgres to re-key the data restored from a snapshot");
    }
    return Act(ActionKind::kRekey,
               "re-keying the data restored from a snapshot: system role passwords, replication "
               "slots and standby settings");
  }
  if (Status st = CheckDataIdentity(o.data_cluster_uid, spec); !st.ok()) {
    return Act(ActionKind::kRefuse, st.message());
  }
  return Act(ActionKind::kRecordUid, "recording cluster " + spec.cluster_uid + " on the data");
}

}  // namespace

bool NeedsRekey(const std::string& data_cluster_uid, const InstanceSpec& spec) {
  return spec.bootstrap == BootstrapMethod::kSnapshot && !spec.cluster_uid.empty() &&
         data_cluster_uid != spec.cluster_uid;
}

Status CheckDataIdentity(const std::string& data_cluster_uid, const InstanceSpec& next) {
  if (data_cluster_uid.empty() || next.cluster_uid.empty() ||
      data_cluster_uid == next.cluster_uid || next.bootstrap == BootstrapMethod::kSnapshot) {
    return Status::Ok();
  }
  return ConflictError(
      "the volume holds data of another cluster (uid " + data_cluster_uid +
      "), not of this cluster (uid " + next.cluster_uid +
      "); Petrel never takes over another cluster's data: delete the PersistentVolumeClaim to "
      "start from an empty volume, or restore that data through a snapshot");
}

bool LeaseMissing(const ObservedInstance& o, const InstanceSpec& spec) {
  return LeaseRequired(spec) && o.lease == LeaseState::kExpired;
}

InstanceAction PlanInstanceAction(const ObservedInstance& o, const InstanceSpec& spec) {
  if (!o.has_spec) return Act(ActionKind::kWait, "waiting for an instance spec (PUT /spec)");
  if (!o.has_data) {
    if (o.postgres_running) return Act(ActionKind::kStop, "the data directory disappeared");
    return PlanBootstrap(spec);
  }
  if (auto identity = PlanIdentity(o, spec)) return *identity;

  if (spec.fenced) {
    if (o.postgres_running) return Act(ActionKind::kStop, "fenced: stopping postgres");
    if (!o.config_current) return Act(ActionKind::kWriteConfig, "updating configuration");
    return Act(ActionKind::kNone, "fenced: postgres is stopped");
  }

  const bool lease_missing = LeaseMissing(o, spec);
  const std::string no_lease = "no valid leadership lease for term " + std::to_string(spec.term);
  if (lease_missing && o.postgres_running && !o.standby_signal) {
    return Act(ActionKind::kFence, no_lease + ": immediate shutdown of postgres");
  }

  const bool want_replica = spec.role == InstanceRole::kReplica;
  // A data directory without standby.signal last ran as a primary. To follow another
  // primary it must first be rewound onto that primary's timeline.
  const bool needs_rewind = want_replica && (!o.standby_signal || o.diverged);
  if (needs_rewind) {
    if (o.postgres_running) {
      return Act(ActionKind::kStop, o.standby_signal
                                        ? "stopping to rewind onto the primary's timeline"
                                        : "demoting: stopping the old primary to rewind it");
    }
    if (o.rewind_failed) {
      return Act(ActionKind::kReclone, "pg_rewind failed: cloning again from the primary");
    }
    return Act(ActionKind::kRewind, "rewinding onto the timeline of " + spec.primary->host + ":" +
                                        std::to_string(spec.primary->port));
  }

  if (spec.role == InstanceRole::kPrimary && o.accepting && o.sql_role == InstanceRole::kReplica) {
    if (lease_missing) return Act(ActionKind::kWait, no_lease + ": waiting for it to promote");
    return Act(ActionKind::kPromote, "promoting to primary");
  }
  if (!o.config_current) return Act(ActionKind::kWriteConfig, "updating configuration");
  if (spec.role == InstanceRole::kNone) {
    // No role decided yet: keep whatever runs, start nothing new.
    return Act(ActionKind::kWait, "the spec has no role yet: waiting");
  }
  if (!o.postgres_running) {
    if (lease_missing && !o.standby_signal) {
      return Act(ActionKind::kWait,
                 no_lease + ": postgres stays stopped until the controller grants one");
    }
    if (o.in_restart_backoff) {
      return Act(ActionKind::kWait, "postgres exited unexpectedly: restarting after a backoff");
    }
    return Act(ActionKind::kStart, "starting postgres");
  }
  if (!o.accepting) return Act(ActionKind::kWait, "waiting for postgres to accept connections");
  if (spec.role == InstanceRole::kPrimary && o.sql_role == InstanceRole::kPrimary &&
      o.checkpoint_predates_timeline) {
    return Act(ActionKind::kCheckpoint,
               "checkpoint on the new timeline (a member rewinding onto it needs one)");
  }
  if (o.sql_role == spec.role && !o.slots_current) {
    return Act(ActionKind::kSyncSlots, "reconciling replication slots");
  }
  return Act(ActionKind::kNone, "running as " + std::string(RoleName(spec.role)));
}

Status CheckSpecTransition(const std::optional<InstanceSpec>& current, bool has_data,
                           const InstanceSpec& next) {
  // Generations of different clusters are unrelated: a volume restored from a snapshot may
  // carry the source cluster's saved spec, whose generation says nothing about ours.
  const bool same_cluster = !current || current->cluster_uid.empty() ||
                            next.cluster_uid.empty() || current->cluster_uid == next.cluster_uid;
  const InstanceSpec* accepted = current && same_cluster ? &*current : nullptr;
  if (accepted && next.generation < accepted->generation) {
    return ConflictError("stale spec: generation " + std::to_string(next.generation) +
                         " is older than the accepted generation " +
                         std::to_string(accepted->generation));
  }
  if (accepted && next.generation == accepted->generation && next != *accepted) {
    return ConflictError("generation " + std::to_string(next.generation) +
                         " was already accepted with different content; bump the generation");
  }
  if (!has_data) {
    if (next.bootstrap == BootstrapMethod::kInitdb && next.role == InstanceRole::kReplica) {
      return ConflictError(
          "the volume is empty and a replica cannot be created with initdb; use bootstrap "
          "clone with the primary to copy");
    }
  }
  if (next.bootstrap == BootstrapMethod::kSnapshot) {
    if (next.cluster_uid.empty()) {
      return ConflictError(
          "bootstrap snapshot needs cluster_uid: the restored data is re-keyed and recorded "
          "for that cluster");
    }
    if (!has_data && next.role == InstanceRole::kReplica) {
      return ConflictError(
          "the volume is empty and a replica cannot be created from a snapshot; restore the "
          "primary from the snapshot and clone replicas from it");
    }
    if (!next.snapshot_path.empty() && next.snapshot_path[0] != '/') {
      return ConflictError("snapshot_path " + next.snapshot_path + " is not an absolute path");
    }
  }
  return Status::Ok();
}

}  // namespace petrel
