#include "instance/plan.h"

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
      return Act(ActionKind::kWait,
                 "bootstrap from a snapshot is not supported by this version of petrel instance");
    case BootstrapMethod::kNone:
      break;
  }
  return Act(ActionKind::kWait, "the volume is empty and the spec says bootstrap none: waiting");
}

}  // namespace

bool LeaseMissing(const ObservedInstance& o, const InstanceSpec& spec) {
  return LeaseRequired(spec) && o.lease == LeaseState::kExpired;
}

InstanceAction PlanInstanceAction(const ObservedInstance& o, const InstanceSpec& spec) {
  if (!o.has_spec) return Act(ActionKind::kWait, "waiting for an instance spec (PUT /spec)");
  if (!o.has_data) {
    if (o.postgres_running) return Act(ActionKind::kStop, "the data directory disappeared");
    return PlanBootstrap(spec);
  }

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
  if (o.sql_role == spec.role && !o.slots_current) {
    return Act(ActionKind::kSyncSlots, "reconciling replication slots");
  }
  return Act(ActionKind::kNone, "running as " + std::string(RoleName(spec.role)));
}

Status CheckSpecTransition(const std::optional<InstanceSpec>& current, bool has_data,
                           const InstanceSpec& next) {
  if (current && next.generation < current->generation) {
    return ConflictError("stale spec: generation " + std::to_string(next.generation) +
                         " is older than the accepted generation " +
                         std::to_string(current->generation));
  }
  if (current && next.generation == current->generation && next != *current) {
    return ConflictError("generation " + std::to_string(next.generation) +
                         " was already accepted with different content; bump the generation");
  }
  if (!has_data) {
    if (next.bootstrap == BootstrapMethod::kInitdb && next.role == InstanceRole::kReplica) {
      return ConflictError(
          "the volume is empty and a replica cannot be created with initdb; use bootstrap "
          "clone with the primary to copy");
    }
    if (next.bootstrap == BootstrapMethod::kSnapshot) {
      return ConflictError(
          "bootstrap from a snapshot is not supported by this version of petrel instance");
    }
  }
  return Status::Ok();
}

}  // namespace petrel
