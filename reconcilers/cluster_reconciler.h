// The PostgresCluster reconciler: observe (cache reads + each instance's GET /status), plan
// (reconcilers/cluster_plan.h, pure), execute (create / merge-patch / delete through the
// KubeClient, the status write, then PUT /spec to instances, then events).
//
// Every write is preceded by a comparison with what was observed, so a converged cluster
// makes no API writes at all. Secrets are generated here (OpenSSL's CSPRNG) and never logged.
//
// Thread-safety: Reconcile() may run concurrently for different keys (the dependencies are
// thread-safe); the manager never runs it concurrently for the same key.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "controller/event_recorder.h"
#include "controller/kube_client.h"
#include "controller/object_reader.h"
#include "controller/reconciler.h"
#include "core/clock.h"
#include "reconcilers/cluster_plan.h"
#include "reconcilers/instance_client.h"

namespace petrel {

// `bytes` random bytes from OpenSSL's CSPRNG as URL-safe base64 without padding (43
// characters for 32 bytes). Internal when the CSPRNG fails (never falls back to a weaker one).
Result<std::string> RandomToken(size_t bytes = 32);

struct ClusterReconcilerDeps {
  ObjectReader& reader;  // cache of PostgresClusters, Pods, PVCs, Services, Secrets, PDBs
  KubeClient& client;    // writes
  EventRecorder& events;
  InstanceClient& instances;
  Clock& clock;
  // Source of secret values; tests may replace it. Defaults to RandomToken.
  std::function<Result<std::string>()> generate_password = [] { return RandomToken(32); };
  // The PodDisruptionBudget API to read and write (DiscoverPdbType in reconcilers/pdb_api.h).
  const ResourceType* pdb_type = &resources::kPodDisruptionBudget;
};

class ClusterReconciler : public Reconciler {
 public:
  explicit ClusterReconciler(ClusterReconcilerDeps deps) : deps_(std::move(deps)) {}
  Result<ReconcileResult> Reconcile(const ObjectKey& key) override;

  // The observation Reconcile() plans from (exposed for tests and diagnostics).
  ClusterObservation Observe(const Json& cluster);

 private:
  Status Execute(const Json& cluster, const ClusterPlan& plan);

  ClusterReconcilerDeps deps_;
};

std::unique_ptr<Reconciler> NewClusterReconciler(ClusterReconcilerDeps deps);

// The types the cluster reconciler reads through its ObjectReader; the manager must cache
// (watch) these, and map events on owned objects to their controlling PostgresCluster.
const std::vector<const ResourceType*>& ClusterReconcilerWatchedTypes();

}  // namespace petrel
