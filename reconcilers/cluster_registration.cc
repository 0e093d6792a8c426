// Registers the PostgresCluster controller with `petrel controller` (controller/registry.h).
// Link this library whole into `petrel`:
//   target_link_libraries(petrel PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,petrel_cluster_controller>")
#include <spdlog/spdlog.h>

#include <memory>

#include "controller/event_recorder.h"
#include "controller/manager.h"
#include "controller/registry.h"
#include "reconcilers/cluster_reconciler.h"
#include "reconcilers/http_instance_client.h"
#include "reconcilers/pdb_api.h"

namespace petrel {
namespace {

// Owns the reconciler's collaborators for the life of the process.
class OwningClusterReconciler : public Reconciler {
 public:
  OwningClusterReconciler(Manager& mgr, const ResourceType& pdb_type)
      : events_(mgr.client(), "postgrescluster", mgr.clock()),
        instances_(mgr.reader()),
        reconciler_(Deps(mgr, events_, instances_, pdb_type)) {}
  Result<ReconcileResult> Reconcile(const ObjectKey& key) override {
    return reconciler_.Reconcile(key);
  }

 private:
  static ClusterReconcilerDeps Deps(Manager& mgr, EventRecorder& events, InstanceClient& instances,
                                    const ResourceType& pdb_type) {
    ClusterReconcilerDeps deps{mgr.reader(), mgr.client(), events, instances, mgr.clock()};
    deps.pdb_type = &pdb_type;
    return deps;
  }

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
  // policy/v1 where served, else v1beta1 (Kubernetes 1.20, petrel local): asked once here.
  PETREL_ASSIGN_OR_RETURN(const ResourceType* pdb_type, DiscoverPdbType(mgr.client()));
  spdlog::info("PodDisruptionBudgets use {}", pdb_type->ApiVersion());
  Controller& c = mgr.AddController("postgrescluster",
                                    std::make_shared<OwningClusterReconciler>(mgr, *pdb_type));
  mgr.Watch(c, resources::kPostgresCluster, EnqueueSelf());
  mgr.Watch(c, resources::kPod, EnqueueControllerOwner("PostgresCluster"));
  mgr.Watch(c, resources::kPersistentVolumeClaim, EnqueueMapped(ClusterOfLabel));
  mgr.Watch(c, resources::kService, EnqueueControllerOwner("PostgresCluster"));
  mgr.Watch(c, resources::kSecret, EnqueueControllerOwner("PostgresCluster"));
  mgr.Watch(c, *pdb_type, EnqueueControllerOwner("PostgresCluster"));
  return Status::Ok();
});

}  // namespace petrel
