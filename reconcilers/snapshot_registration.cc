// Registers the snapshot controller with `petrel controller` and `petrel local`
// (controller/registry.h). It is fed by PostgresCluster events and requeues itself for
// schedule slots and snapshots in progress (see snapshot_reconciler.h for why VolumeSnapshots
// are not watched). Link this library whole into `petrel`:
//   target_link_libraries(petrel PRIVATE
//   "$<LINK_LIBRARY:WHOLE_ARCHIVE,petrel_snapshot_controller>")
#include <memory>

#include "controller/event_recorder.h"
#include "controller/manager.h"
#include "controller/registry.h"
#include "reconcilers/snapshot_reconciler.h"

namespace petrel {
namespace {

// Owns the event recorder for the life of the process.
class OwningSnapshotReconciler : public Reconciler {
 public:
  explicit OwningSnapshotReconciler(Manager& mgr)
      : events_(mgr.client(), "petrel-snapshots", mgr.clock()),
        reconciler_(SnapshotReconcilerDeps{mgr.reader(), mgr.client(), events_, mgr.clock()}) {}
  Result<ReconcileResult> Reconcile(const ObjectKey& key) override {
    return reconciler_.Reconcile(key);
  }

 private:
  KubeEventRecorder events_;
  SnapshotReconciler reconciler_;
};

}  // namespace

PETREL_REGISTER_CONTROLLER(postgressnapshot, [](Manager& mgr) -> Status {
  Controller& c =
      mgr.AddController("postgressnapshot", std::make_shared<OwningSnapshotReconciler>(mgr), 1);
  mgr.Watch(c, resources::kPostgresCluster, EnqueueSelf());
  // The reconciler reads PVCs from the cache; declaring the type keeps its informer warm.
  mgr.Informers(resources::kPersistentVolumeClaim);
  return Status::Ok();
});

}  // namespace petrel
