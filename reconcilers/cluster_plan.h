// The pure half of the PostgresCluster reconciler: given everything observed about one cluster
// (the object, its Pods, PVCs, Services, Secrets, PDBs and what each instance reports), compute
// the next step — objects to create, patch or delete, InstanceSpecs to PUT, the status to
// publish and the events to record. No I/O, no clock, no randomness: the same observation
// always gives the same plan, which is what makes every step resumable after a crash (progress
// is derived from the observation and the published status, never from memory) and what the
// table-driven tests in tests/reconcilers/cluster_plan_test.cc pin down.
//
// What the plan converges (names and labels: ARCHITECTURE.md):
// - members: status.instanceNames plus any labelled Pod; scale up adds new serials (never one
//   a PVC still holds), scale down removes the highest-serial members that are neither the
//   primary nor a switchover target.
// - per member a PVC and a Pod `<cluster>-<serial>`; the `petrel.dev/role` label follows
//   status.currentPrimary; PVCs grow, never shrink.
// - Services -rw/-ro/-r and one per member; Secrets created once; PodDisruptionBudgets.
// - rolling updates of image/resources: replicas one at a time (highest serial first, each
//   only when every member is ready), then a switchover (or a restart) of the primary.
// - a switchover: status.targetPrimary names the target (set by a rolling update, or by a
//   user with a merge patch on the status subresource: validated, refused with an event when
//   the target is not a ready replica); status.primaryChange records it. The old primary is
//   fenced; once it has stopped and the target has replayed its last WAL, the term grows,
//   status.currentPrimary moves, the target is promoted and the old primary rejoins as a
//   replica. Not done within switchoverDelay: undone (the old primary is unfenced).
// - a failover (cluster_ha.h decides who): the primary is gone, does not answer, or keeps
//   Postgres down, for failoverDelay -> status.primaryChange records {from, to}; every replica
//   gets term+1 (so none confirms the old primary's leadership any more) and the old primary,
//   when it answers, is fenced; once the old lease has certainly expired
//   (old_lease_expires_in_ms == 0) the term grows, currentPrimary moves and the candidate is
//   promoted; when it is ready, status.lastFailover and status.failovers tell the story.
//   Every step is derived from the published status and what is observed, so a controller
//   that crashes at any point resumes. Polls every ~150 ms while a change is in progress.
// - leadership: every InstanceSpec carries the term; with more than one member the primary's
//   carries the lease duration and its peers (the replicas' instance APIs), and the plan names
//   the lease to keep renewing.
// - changes it cannot make safely (storage shrink, storage class change, major version
//   change, an invalid spec) are refused: a Degraded condition and a Warning event saying what
//   to do, and no other change.
// - restore (spec.bootstrap.snapshot): the first instance's new PVC gets the VolumeSnapshot as
//   its dataSource and its InstanceSpec bootstrap kSnapshot (the instance re-keys the data);
//   replicas clone from it. A snapshot that is missing, not ready, failed, of another major
//   version or larger than spec.storage.size is refused before anything is created. An
//   existing PVC never gets a dataSource.
//
// Thread-safety: pure functions on values.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "api/cluster.h"
#include "api/instance.h"
#include "controller/event_recorder.h"
#include "core/object.h"
#include "core/status.h"
#include "core/types.h"

namespace petrel {

// Label keys and values shared by every object the cluster reconciler manages.
inline constexpr const char* kClusterLabel = "petrel.dev/cluster";
inline constexpr const char* kInstanceLabel = "petrel.dev/instance";
inline constexpr const char* kRoleLabel = "petrel.dev/role";
inline constexpr const char* kManagedByLabel = "app.kubernetes.io/managed-by";
inline constexpr const char* kPodSpecHashAnnotation = "petrel.dev/pod-spec-hash";

// Everything observed about one cluster, gathered once per reconcile.
struct ClusterObservation {
  Json cluster;                          // the PostgresCluster (metadata, spec, status)
  std::vector<Json> pods;                // Pods labelled petrel.dev/cluster=<name>
  std::vector<Json> pvcs;                // PVCs labelled petrel.dev/cluster=<name>
  std::map<std::string, Json> services;  // existing Services the cluster may own, by name
  std::map<std::string, Json> secrets;   // existing cluster Secrets, by name
  std::map<std::string, Json> pdbs;      // existing PodDisruptionBudgets, by name
  // What each Pod's instance reported (by Pod name); a Pod absent here was not asked.
  std::map<std::string, Result<InstanceStatus>> instances;
  std::string now;  // RFC 3339, for condition transition times
  // The PodDisruptionBudget API the server serves (reconcilers/pdb_api.h).
  const ResourceType* pdb_type = &resources::kPodDisruptionBudget;
  // The VolumeSnapshot spec.bootstrap.snapshot names, read only while a restore has not
  // started (status.currentPrimary unset); nullopt when not read. NotFound when it is absent.
  std::optional<Result<Json>> restore_snapshot;
  // The same moment in Unix milliseconds, for durations (failoverDelay, switchoverDelay, how
  // long a failover took); 0 = derive it from `now`.
  int64_t now_unix_ms = 0;
  // During a failover that has not promoted yet (status.primaryChange of type Failover with
  // currentPrimary still the old primary): milliseconds until every lease the old primary may
  // hold for status.term has certainly expired (0 = expired), as bounded by the LeaseKeeper
  // (reconcilers/lease_keeper.h). nullopt = cannot be bounded yet (no replica has been seen to
  // accept the next term, so the old primary's peers may still extend its lease). Taken
  // before the instances were asked, so that when it is 0 their WAL positions are final.
  std::optional<int64_t> old_lease_expires_in_ms;
};

enum class ObjectOp { kCreate, kMergePatch, kDelete };

struct ObjectAction {
  ObjectOp op;
  const ResourceType* type;
  ObjectKey key;
  Json body;                // the object to create, or the merge patch
  std::string description;  // "create Pod db-2", for logs
};

// A Secret to create once. The executor adds the generated password under `password`
// (stringData) so that the plan stays deterministic and the secret never passes through it.
struct SecretToCreate {
  Json object;
};

struct SpecPut {
  std::string pod;
  InstanceSpec spec;
};

struct PlannedEvent {
  EventType type;
  std::string reason;  // UpperCamelCase
  std::string action;
  std::string note;
  bool operator==(const PlannedEvent&) const = default;
};

// The lease the controller should keep renewing (PUT /lease), see reconcilers/lease_keeper.h.
struct LeaseTarget {
  std::string pod;  // the primary
  int64_t term = 0;
  int64_t duration_ms = 0;
  bool operator==(const LeaseTarget&) const = default;
};

struct ClusterPlan {
  std::vector<SecretToCreate> secrets;
  std::vector<ObjectAction> actions;  // executed in order
  // The status to publish; nullopt when it equals the observed status (no write).
  std::optional<PostgresClusterStatus> status;
  std::vector<SpecPut> spec_puts;  // after the status write
  std::vector<PlannedEvent> events;
  std::chrono::milliseconds requeue_after{0};  // 0 = nothing to poll for
  // The primary lease to renew; nullopt = renew none (single instance, no primary yet, or a
  // failover waiting for the old primary's lease to run out).
  std::optional<LeaseTarget> lease;

  bool Empty() const { return secrets.empty() && actions.empty() && !status && spec_puts.empty(); }
};

ClusterPlan PlanCluster(const ClusterObservation& observed);

// Builders of desired objects, exposed for tests and for `petrel local`.
std::string InstanceName(const std::string& cluster, int serial);
// The serial of "<cluster>-<n>", or -1 when `name` is not an instance of `cluster`.
int InstanceSerial(const std::string& cluster, const std::string& name);
std::string SecretName(const std::string& cluster, const std::string& purpose);  // "superuser"...
// synchronous_standby_names for `standbys` (instance names, which replicas use as their
// application_name; each is double-quoted because instance names contain '-'), "" when
// asynchronous: ANY 1 ("db-2", "db-3").
std::string SynchronousStandbyNames(const std::optional<SynchronousSpec>& sync,
                                    const std::vector<std::string>& standbys);
// A stable content hash (FNV-1a, 16 hex digits) of an InstanceSpec ignoring `generation`.
std::string InstanceSpecHash(const InstanceSpec& spec);

}  // namespace petrel
