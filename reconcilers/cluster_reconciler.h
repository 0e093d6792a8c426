// The PostgresCluster reconciler: observe (cache reads + each instance's GET /status, in
// parallel, plus the LeaseKeeper's bound on an old primary's lease), plan
// (reconcilers/cluster_plan.h, pure), execute (create / merge-patch / delete through the
// KubeClient, the status write, then PUT /spec to instances, then the lease to renew, then
// events), and publish per-cluster gauges:
//   petrel_cluster_instances_desired{namespace,cluster}  spec.replicas
//   petrel_cluster_instances_ready{namespace,cluster}    status.readyReplicas
//   petrel_cluster_failovers_total{namespace,cluster}    status.failovers
//
// Every write is preceded by a comparison with what was observed, so a converged cluster
// makes no API writes at all. Secrets are generated here (OpenSSL's CSPRNG) and never logged.
//
// Thread-safety: Reconcile() may run concurrently for different keys (the dependencies are
// thread-safe); the manager never runs it concurrently for the same key.
#pragma once

#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "controller/event_recorder.h"
#include "controller/kube_client.h"
#include "controller/object_reader.h"
#include "controller/reconciler.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "reconcilers/cluster_plan.h"
#include "reconcilers/instance_client.h"
#include "reconcilers/lease_keeper.h"

namespace petrel {

// `bytes` random bytes from OpenSSL's CSPRNG as URL-safe base64 without padding (43
// characters for 32 bytes). Internal when the CSPRNG fails (never falls back to a weaker one).
Result<std::string> RandomToken(size_t bytes = 32);

// How long an instance that missed its lease renewal gets to answer GET /status: a quarter of
// the lease, at least 250 ms (a read already in flight with the ordinary timeout is given up
// after that long too). A longer lease makes detection more tolerant of a slow instance (and
// failover slower).
Millis SuspectTimeout(int64_t lease_duration_ms);
// ... and the primary a failover is replacing, while it has not answered its lease renewal.
inline constexpr Millis kReplacedPrimaryTimeout{50};

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
  // Renews primaries' leases and bounds old ones (reconcilers/lease_keeper.h); nullptr = no
  // leases are renewed and a failover never gets past waiting for the old lease.
  LeaseKeeper* leases = nullptr;
  // Per-cluster gauges (petrel_cluster_*); nullptr = none.
  MetricsRegistry* metrics = nullptr;
};

class ClusterReconciler : public Reconciler {
 public:
  explicit ClusterReconciler(ClusterReconcilerDeps deps) : deps_(std::move(deps)) {}
  ~ClusterReconciler() override;  // waits for status reads it stopped waiting for
  Result<ReconcileResult> Reconcile(const ObjectKey& key) override;

  // The observation Reconcile() plans from (exposed for tests and diagnostics).
  ClusterObservation Observe(const Json& cluster);

 private:
  // GET /status of every instance (in parallel) and the lease evidence, into `o`.
  void ObserveInstances(ClusterObservation& o);
  Status Execute(const Json& cluster, const ClusterPlan& plan);
  void PublishMetrics(const Json& cluster, const ClusterPlan& plan);

  ClusterReconcilerDeps deps_;
  // The cluster as this reconciler last wrote it (status update), used instead of the cache
  // until the cache has caught up: planning on the object from before our own write would
  // only end in a Conflict and a retry (dozens per failover in the benchmark).
  ObjectPtr Freshest(const ObjectKey& key, ObjectPtr cached);
  void RememberWritten(const ObjectKey& key, std::optional<Json> written);

  std::mutex written_mu_;
  std::map<ObjectKey, Json> written_;
  // Status reads given up on because their instance missed a lease renewal meanwhile; they
  // end within the client's timeout and are collected on the next observation.
  std::mutex abandoned_mu_;
  std::vector<std::future<Result<InstanceStatus>>> abandoned_;
};

std::unique_ptr<Reconciler> NewClusterReconciler(ClusterReconcilerDeps deps);

// The types the cluster reconciler reads through its ObjectReader; the manager must cache
// (watch) these, and map events on owned objects to their controlling PostgresCluster.
const std::vector<const ResourceType*>& ClusterReconcilerWatchedTypes();

}  // namespace petrel
