// Registers the PostgresCluster controller with `petrel controller` (controller/registry.h).
// Link this library whole into `petrel`:
//   target_link_libraries(petrel PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,petrel_cluster_controller>")
#include <memory>

#include "controller/event_recorder.h"
#include "controller/manager.h"
#include "controller/registry.h"
#include "reconcilers/cluster_reconciler.h"
#include "reconcilers/http_instance_client.h"

namespace petrel {
namespace {

// Owns the reconciler's collaborators for the life of the process.
class OwningClusterReconciler : public Reconciler {
 public:
  explicit OwningClusterReconciler(Manager& mgr)
      : events_(mgr.client(), "postgrescluster", mgr.clock()),
        instances_(mgr.reader()),
        reconciler_(
            ClusterReconcilerDeps{mgr.reader(), mgr.client(), events_, instances_, mgr.clock()}) {}
  Result<ReconcileResult> Reconcile(const ObjectKey& key) override {
    return reconciler_.Reconcile(key);
  }

 private:
  KubeEventRecorder events_;
  HttpInstanceClient instances_;
  ClusterReconciler reconciler_;
};

// PVCs kept on reclaimPolicy Retain carry no owner reference: map them by label.
std::vector<ObjectKey> ClusterOfLabel(const Json& obj) {
  std::string cluster = meta::Label(obj, kClusterLabel);
  if (cluster.empty()) return {};
  return {ObjectKey{meta::Namespace(obj), cluster}};
}

}  // namespace

PETREL_REGISTER_CONTROLLER(postgrescluster, [](Manager& mgr) -> Status {
  Controller& c =
      mgr.AddController("postgrescluster", std::make_shared<OwningClusterReconciler>(mgr));
  mgr.Watch(c, resources::kPostgresCluster, EnqueueSelf());
  mgr.Watch(c, resources::kPod, EnqueueControllerOwner("PostgresCluster"));
  mgr.Watch(c, resources::kPersistentVolumeClaim, EnqueueMapped(ClusterOfLabel));
  mgr.Watch(c, resources::kService, EnqueueControllerOwner("PostgresCluster"));
  mgr.Watch(c, resources::kSecret, EnqueueControllerOwner("PostgresCluster"));
  mgr.Watch(c, resources::kPodDisruptionBudget, EnqueueControllerOwner("PostgresCluster"));
  return Status::Ok();
});

}  // namespace petrel
