// The pure half of the snapshot reconciler (issue 7): given one PostgresCluster, the
// VolumeSnapshots Petrel took of it and the time, decide whether to take a snapshot now, which
// snapshots the retention deletes, and what status.snapshots says. No I/O and no clock: the
// same observation always gives the same plan (tests/reconcilers/snapshot_plan_test.cc).
//
// Rules:
// - Scheduled snapshots (spec.snapshots present, not suspended) are level-triggered: when the
//   latest slot of the cron schedule at or before `now` is newer than the last slot handled
//   (status.snapshots.lastScheduleTime, or a snapshot annotated with that slot) and newer than
//   the cluster itself, one snapshot is taken for it. Slots missed while the controller was
//   down collapse into that one snapshot; there is never a burst.
// - On demand: a new value of the cluster's petrel.dev/snapshot-request annotation asks for
//   one snapshot (also without spec.snapshots). A scheduled slot and a request due at the same
//   time share one snapshot.
// - Source: a ready replica when there is one (least lag first, then lowest serial), else the
//   ready primary; target: primary always takes the primary. Nothing is taken before the
//   cluster's data exists (status.systemID) or while no instance is ready.
// - Retention (only with spec.snapshots): ready snapshots beyond retention.count, or older than
//   retention.maxAge, are deleted oldest first, but the newest ready snapshot is always kept.
//   A failed snapshot is deleted once a newer one is ready or when it is older than maxAge.
//   A snapshot still in progress is never deleted.
// - Only snapshots labelled with this cluster's uid are managed: a new cluster reusing a name
//   never prunes its predecessor's snapshots.
//
// Thread-safety: pure functions on values.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "api/cluster.h"
#include "core/clock.h"
#include "core/object.h"
#include "core/status.h"
#include "reconcilers/cluster_plan.h"
#include "reconcilers/volume_snapshot.h"

namespace petrel {

struct SnapshotObservation {
  Json cluster;  // the PostgresCluster (metadata, spec, status)
  // VolumeSnapshots labelled petrel.dev/cluster=<name> in the cluster's namespace; an error
  // when they could not be listed (NotFound: the snapshot.storage.k8s.io API is not installed).
  Result<std::vector<Json>> snapshots = std::vector<Json>{};
  std::vector<Json> pvcs;  // PVCs labelled petrel.dev/cluster=<name>
  SystemTime now;
};

struct SnapshotPlan {
  std::optional<Json> create;        // a VolumeSnapshot to create
  std::vector<std::string> deletes;  // VolumeSnapshots the retention deletes
  // status.snapshots to publish (a merge patch of that field only); nullopt = unchanged.
  std::optional<SnapshotsStatus> status;
  std::vector<PlannedEvent> events;
  std::chrono::milliseconds requeue_after{0};  // 0 = nothing to wait for
};

SnapshotPlan PlanSnapshots(const SnapshotObservation& observed);

// A snapshot not ready this long after it was requested makes the schedule unhealthy.
inline constexpr std::chrono::hours kSnapshotReadyTimeout{1};
// A due slot that could not be taken (no ready instance) this long makes it unhealthy.
inline constexpr std::chrono::minutes kMissedSlotGrace{15};

}  // namespace petrel
