// The snapshot reconciler (issue 7): for each PostgresCluster that uses snapshots
// (spec.snapshots, a petrel.dev/snapshot-request annotation, or an existing status.snapshots)
// observe its VolumeSnapshots, plan (reconcilers/snapshot_plan.h, pure), then execute: create
// the snapshot, delete what the retention drops, merge-patch status.snapshots (that field
// only, so it never races the cluster reconciler's status), record events.
//
// VolumeSnapshots are listed through the KubeClient, not a watch cache: the
// snapshot.storage.k8s.io API is an add-on that may be missing, and a cache of a missing type
// would never sync. The reconciler requeues itself while snapshots are in progress and until
// the next schedule slot, so it needs no watch on them.
//
// Thread-safety: Reconcile() may run concurrently for different keys; the manager never runs
// it concurrently for the same key.
#pragma once

#include <memory>

#include "controller/event_recorder.h"
#include "controller/kube_client.h"
#include "controller/object_reader.h"
#include "controller/reconciler.h"
#include "core/clock.h"
#include "reconcilers/snapshot_plan.h"

namespace petrel {

struct SnapshotReconcilerDeps {
  ObjectReader& reader;  // PostgresClusters and PVCs (cached)
  KubeClient& client;    // VolumeSnapshots (list, create, delete) and the status patch
  EventRecorder& events;
  Clock& clock;
};

class SnapshotReconciler : public Reconciler {
 public:
  explicit SnapshotReconciler(SnapshotReconcilerDeps deps) : deps_(deps) {}
  Result<ReconcileResult> Reconcile(const ObjectKey& key) override;

  // The observation Reconcile() plans from (exposed for tests).
  SnapshotObservation Observe(const Json& cluster);

 private:
  Status Execute(const Json& cluster, const SnapshotPlan& plan);

  SnapshotReconcilerDeps deps_;
};

// True when `cluster` asks for anything the snapshot reconciler does; false lets it skip
// listing VolumeSnapshots for clusters that never use them.
bool UsesSnapshots(const Json& cluster);

}  // namespace petrel
