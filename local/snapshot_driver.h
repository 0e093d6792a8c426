// SnapshotDriver: the node agent's stand-in for a CSI snapshotter and for a provisioner that
// restores volumes from snapshots, for the PersistentVolumeClaims the agent hosts
// (<state>/volumes/<ns>/<claim>). It works against any KubeClient, like the agent.
//
// Snapshots. For each snapshot.storage.k8s.io/v1 VolumeSnapshot whose
// spec.source.persistentVolumeClaimName is a claim hosted here, it asks the Petrel instance
// running on that claim for a consistent copy (POST /snapshot on the Pod's instance API, with
// the bearer token from the cluster's `<cluster>-petrel` Secret) and keeps it in
//   <state>/snapshots/<ns>/<name>/volume/    an image of the volume: the data directory at
//                                            the same place as in the source volume
//   <state>/snapshots/<ns>/<name>/snapshot.json  the VolumeSnapshot's uid, source claim and
//                                            SnapshotInfo; written last (the commit mark)
// then sets status.readyToUse, restoreSize (bytes), creationTime, or status.error{message,
// time} when it cannot (retried with a bounded exponential backoff). A copy whose
// VolumeSnapshot is gone (or was re-created: another uid), and a copy left incomplete by an
// interrupted attempt, is deleted — on every pass, so also at start.
//
// Restores. A claim whose spec.dataSource is a VolumeSnapshot is left Pending (the agent does
// not bind it, and Pods using it wait) until the driver has copied the snapshot's volume image
// into the claim's new directory; then it is Bound. A missing or not-ready snapshot leaves it
// Pending with a Warning event saying why; a volume directory that already holds data is never
// overwritten (also a Warning event).
//
// Thread-safety: Start/Stop from one thread; the driver runs one thread of its own, so a long
// copy delays other snapshots but never the agent's Pods. Stop waits for a copy in progress:
// the agent stops its Pods first, which ends it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "api/instance.h"
#include "controller/event_recorder.h"
#include "controller/kube_client.h"
#include "core/clock.h"

namespace petrel {

struct SnapshotDriverOptions {
  std::filesystem::path state_dir;  // the node agent's (volumes/ and snapshots/)
  std::string node_name = "petrel-local";
  uint16_t instance_api_port = kInstanceApiPort;
  std::chrono::milliseconds resync{1000};
  std::chrono::seconds snapshot_timeout{3600};  // one POST /snapshot
  std::chrono::milliseconds retry_initial{2000};
  std::chrono::milliseconds retry_max{300000};
};

// --- Pure helpers (tests/local/snapshot_driver_test.cc) ------------------------------------

// The VolumeSnapshot a claim is to be restored from (spec.dataSource with apiGroup
// snapshot.storage.k8s.io and kind VolumeSnapshot), in the claim's namespace; nullopt when the
// claim has no such dataSource.
std::optional<ObjectKey> SnapshotDataSource(const Json& pvc);

// Where a Pod's instance keeps its data directory inside the volume of `claim`: the
// `--pgdata` argument (or PGDATA env) of the container mounting the claim, relative to the
// mount path. Invalid, saying why, when the Pod does not tell.
Result<std::string> DataDirInVolume(const Json& pod, const std::string& claim);

// The status the driver publishes (merge patch bodies for the status subresource).
Json ReadyStatus(const SnapshotInfo& info, const std::string& now);
Json ErrorStatus(const std::string& message, const std::string& now);

// --- The driver ------------------------------------------------------------------------------

class SnapshotDriver {
 public:
  SnapshotDriver(KubeClient& client, SnapshotDriverOptions options, Clock& clock = Clock::Real());
  ~SnapshotDriver();
  SnapshotDriver(const SnapshotDriver&) = delete;
  SnapshotDriver& operator=(const SnapshotDriver&) = delete;

  Status Start();
  void Stop();

  // One pass (what the thread runs every `resync`); public for tests that drive it directly.
  void Reconcile();

  // True for claims the driver provisions (a VolumeSnapshot dataSource): the agent must not
  // bind or create their directory itself.
  static bool ProvisionsClaim(const Json& pvc) { return SnapshotDataSource(pvc).has_value(); }

  std::filesystem::path SnapshotDir(const ObjectKey& snapshot) const;

 private:
  struct Retry {
    int attempts = 0;
    SteadyTime next{};
  };

  void Run();
  void TakeSnapshots(const std::vector<Json>& snapshots);
  Status TakeSnapshot(const Json& snapshot);
  void DeleteOrphans(const std::vector<Json>& snapshots);
  void RestoreClaims();
  Status RestoreClaim(const Json& pvc, const ObjectKey& source);
  Result<Json> FindPod(const std::string& ns, const std::string& claim);
  Result<std::string> InstanceToken(const Json& pod);
  bool Hosts(const std::string& ns, const std::string& claim) const;
  bool Stopping();
  bool Due(const std::string& key);
  void Failed(const std::string& key);
  // A Warning event on the claim, once per distinct note.
  void WarnClaim(const Json& pvc, const std::string& reason, const std::string& note);

  KubeClient& client_;
  SnapshotDriverOptions options_;
  Clock& clock_;
  KubeEventRecorder events_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;

  // Owned by the driver thread.
  std::map<std::string, Retry> retries_;         // by "<kind>/<ns>/<name>"
  std::map<std::string, std::string> warned_;    // last Warning note per claim, to not repeat
};

}  // namespace petrel
