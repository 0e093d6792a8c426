// VolumeSnapshots (snapshot.storage.k8s.io/v1) as Petrel reads and writes them: the labels and
// annotations Petrel puts on the snapshots it takes, and a typed view of an observed snapshot
// for the planners (the snapshot schedule and the restore bootstrap) and the plugin.
//
// The contract with whatever fulfils the snapshot — a CSI snapshotter on Kubernetes, the node
// agent in `petrel local` — is the Kubernetes one: spec.source.persistentVolumeClaimName names
// the instance's PVC; the fulfiller sets status.readyToUse, status.restoreSize,
// status.creationTime (when the copy was cut) and status.error.message on failure.
//
// Thread-safety: pure functions on values.
#pragma once

#include <optional>
#include <string>

#include "core/clock.h"
#include "core/object.h"

namespace petrel {

// Labels on a Petrel VolumeSnapshot (besides petrel.dev/cluster, petrel.dev/instance — the
// source instance — and app.kubernetes.io/managed-by=petrel): the source cluster's uid, so a
// later cluster with the same name never prunes or claims another cluster's snapshots.
inline constexpr const char* kClusterUidLabel = "petrel.dev/cluster-uid";
// Annotations on a Petrel VolumeSnapshot.
inline constexpr const char* kPgMajorAnnotation = "petrel.dev/pg-major";    // "15"
inline constexpr const char* kSystemIdAnnotation = "petrel.dev/system-id";  // of the source data
inline constexpr const char* kSnapshotSlotAnnotation = "petrel.dev/snapshot-slot";  // RFC 3339
// On a PostgresCluster: any new value asks for one snapshot now (`kubectl petrel snapshot`
// writes the current time). On a VolumeSnapshot: the request value it answered.
inline constexpr const char* kSnapshotRequestAnnotation = "petrel.dev/snapshot-request";

struct ObservedSnapshot {
  std::string name;
  std::string cluster;       // petrel.dev/cluster
  std::string cluster_uid;   // petrel.dev/cluster-uid
  std::string instance;      // petrel.dev/instance, else spec.source.persistentVolumeClaimName
  bool ready = false;        // status.readyToUse
  std::string error;         // status.error.message ("" = none)
  std::string restore_size;  // status.restoreSize as written ("" = unknown)
  // status.creationTime, else metadata.creationTimestamp; nullopt when neither parses.
  std::optional<SystemTime> time;
  std::string slot;     // petrel.dev/snapshot-slot
  std::string request;  // petrel.dev/snapshot-request
  int pg_major = 0;     // petrel.dev/pg-major; 0 = absent or malformed
  std::string system_id;
  bool being_deleted = false;
};

ObservedSnapshot ReadVolumeSnapshot(const Json& snapshot);

// The name of a snapshot of `cluster` taken at `t`: "<cluster>-YYYYMMDDhhmmss" (UTC).
std::string SnapshotName(const std::string& cluster, SystemTime t);

}  // namespace petrel
