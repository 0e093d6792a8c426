// Registers the PostgresCluster controller with `petrel controller` (controller/registry.h).
// Link this library whole into `petrel`:
//   target_link_libraries(petrel PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,petrel_cluster_controller>")
#include <atomic>
#include <memory>

#include "controller/event_recorder.h"
#include "controller/manager.h"
#include "controller/registry.h"
#include "reconcilers/cluster_reconciler.h"
#include "reconcilers/http_instance_client.h"
#include "reconcilers/lease_keeper.h"

namespace petrel {
namespace {

// Owns the reconciler's collaborators for the life of the process: the event recorder, the
// HTTP instance client, and the LeaseKeeper, whose thread renews primaries' leases (only
// while this controller leads: targets come from reconciles, which run only then, and
// `leading` is checked before every round). A failed renewal enqueues the cluster at once.
class OwningClusterReconciler : public Reconciler {
 public:
  explicit OwningClusterReconciler(Manager& mgr)
      : events_(mgr.client(), "postgrescluster", mgr.clock()),
        instances_(mgr.reader()),
        leases_(instances_, mgr.clock(), KeeperOptions(mgr, &queue_)),
        reconciler_(ClusterReconcilerDeps{mgr.reader(), mgr.client(), events_, instances_,
                                          mgr.clock(), [] { return RandomToken(32); }, &leases_,
                                          &mgr.metrics()}) {}
  // The controller whose queue a failed renewal feeds; the keeper runs from here until the
  // controller stops (Stopped(), before its queue is destroyed).
  void Attach(Controller& c) {
    queue_ = &c.queue();
    leases_.Start();
  }
  Result<ReconcileResult> Reconcile(const ObjectKey& key) override {
    return reconciler_.Reconcile(key);
  }
  void Stopped() override {
    leases_.Stop();  // joins the keeper's thread: no renewal runs after this
    queue_ = nullptr;
  }

 private:
  static LeaseKeeperOptions KeeperOptions(Manager& mgr, std::atomic<WorkQueue*>* queue) {
    LeaseKeeperOptions o;
    o.leading = [&mgr] { return mgr.IsLeader(); };
    o.on_renewal_failed = [queue](const ObjectKey& cluster) {
      if (WorkQueue* q = queue->load()) q->Add(cluster);
    };
    return o;
  }

  std::atomic<WorkQueue*> queue_{nullptr};
  KubeEventRecorder events_;
  HttpInstanceClient instances_;
  LeaseKeeper leases_;
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
  auto reconciler = std::make_shared<OwningClusterReconciler>(mgr);
  Controller& c = mgr.AddController("postgrescluster", reconciler);
  reconciler->Attach(c);
  mgr.Watch(c, resources::kPostgresCluster, EnqueueSelf());
  mgr.Watch(c, resources::kPod, EnqueueControllerOwner("PostgresCluster"));
  mgr.Watch(c, resources::kPersistentVolumeClaim, EnqueueMapped(ClusterOfLabel));
  mgr.Watch(c, resources::kService, EnqueueControllerOwner("PostgresCluster"));
  mgr.Watch(c, resources::kSecret, EnqueueControllerOwner("PostgresCluster"));
  mgr.Watch(c, resources::kPodDisruptionBudget, EnqueueControllerOwner("PostgresCluster"));
  return Status::Ok();
});

}  // namespace petrel
