// LocalStore: the in-process API server of `petrel local`, a KubeClient with the Kubernetes
// semantics reconcilers rely on, kept in one state directory so that a restart brings the same
// objects back.
//
// What it implements, and how it approximates kube-apiserver:
// - One global, monotonically increasing resourceVersion; metadata.uid, creationTimestamp;
//   metadata.generation starts at 1 and is bumped when anything outside metadata and status
//   changes (spec, data, ...). generateName is honoured.
// - Status subresource for every kind that has one in Kubernetes (PostgresCluster,
//   PostgresAttachment, Pod, PVC, Service, Namespace, PDB, VolumeSnapshot, CRD): Update of
//   the main resource keeps the stored status; UpdateStatus (and Patch with subresource
//   "status") changes only status. Kinds without status (Secret, ConfigMap, Endpoints, Event,
//   Lease) refuse the status subresource.
// - Optimistic concurrency: an Update (or a merge patch) carrying a stale
//   metadata.resourceVersion fails with Conflict; without one the write is unconditional.
// - Create of an existing name: AlreadyExists; anything on a missing object: NotFound.
// - Namespaces are implicit: objects may be created in any namespace without a Namespace
//   object (there is no namespace lifecycle controller here).
// - List/Watch take label selectors and simple field selectors (metadata.name,
//   metadata.namespace, spec.nodeName, status.phase; `=`, `==`, `!=`), and List pages with
//   limit/continue.
// - Patch: merge patch (RFC 7386) and JSON patch (RFC 6902). Server-side apply is
//   APPROXIMATED as "create the applied object if it does not exist, otherwise merge-patch the
//   applied fields into it": there are no managedFields, so fields a manager stops applying
//   are NOT removed and field ownership conflicts are never reported.
// - Finalizers: Delete of an object with finalizers sets deletionTimestamp; the update that
//   removes the last finalizer deletes it.
// - Pods bound to a node (spec.nodeName set) are deleted gracefully, as kube-apiserver does:
//   Delete sets deletionTimestamp and deletionGracePeriodSeconds and the node agent removes the
//   Pod with a final Delete(grace_period_seconds = 0) once its processes are gone. Unbound Pods
//   are deleted at once. The "binding" subresource of pods sets spec.nodeName.
// - Garbage collection: when an object is removed, each object with an ownerReference to its
//   uid loses that reference and, when none of its owners remain, is deleted too (cascading,
//   honouring finalizers). Orphan propagation only removes the references. Foreground
//   propagation is treated as background. Objects without ownerReferences (e.g. PVCs) stay.
// - Secrets: stringData is folded into base64 data. Every Secret is also materialised as
//   files, mode 0600, under <state>/secrets/<namespace>/<name>/<key> (directories 0700).
// - Services get spec.clusterIP allocated from the store's service address block (a loopback
//   block, so the service proxy can listen on it); "None" stays headless.
// - Events (events.k8s.io) are kept in memory only, the newest kMaxEvents.
// - Watches are served from an in-memory history of the last `history_size` changes: a
//   resume from a resourceVersion still in the history replays what was missed; an older one
//   gets Gone (as does any resume from before a restart). A watch without resourceVersion
//   (or "0") starts with synthetic ADDED events for the current objects, like kube-apiserver.
//   A watch with a label selector sees an object leave it as DELETED and enter it as ADDED.
//   With timeout_seconds set, the stream ends (Unavailable) after that long. No bookmarks.
// - Unknown kinds are refused with Invalid naming the resource and listing what is served.
//
// Persistence: every change rewrites <state>/store.json atomically (write a temporary file,
// fsync, rename, fsync the directory), so a crash leaves either the old or the new store.
// store.json holds Secret data and is mode 0600 in a 0700 directory. A lock file
// (<state>/petrel-local.lock, flock) held for the store's lifetime makes a second store on the
// same directory fail with a message naming the PID that holds it.
//
// Thread-safety: every method may be called from any thread. WatchStreams stay valid after the
// store is destroyed (they then end with Unavailable).
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "controller/kube_client.h"
#include "core/clock.h"
#include "local/addresses.h"

namespace petrel {

// An exclusive flock on <dir>/petrel-local.lock holding the owner's PID. Released on
// destruction (or by the kernel when the process dies).
class StateDirLock {
 public:
  // Creates `dir` (0711) if needed. Unavailable, naming the PID, when another process holds
  // the lock.
  static Result<std::unique_ptr<StateDirLock>> Acquire(const std::filesystem::path& dir);
  // The PID recorded by the current holder, or 0 when the directory is not locked.
  static int HolderPid(const std::filesystem::path& dir);
  ~StateDirLock();
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;

 private:
  explicit StateDirLock(int fd) : fd_(fd) {}
  int fd_;
};

struct LocalStoreOptions {
  // Where store.json, the lock and the secret files live; empty = memory only (unit tests).
  std::filesystem::path state_dir;
  // Loopback block Service clusterIPs are allocated from.
  std::string service_block = "127.0.10.128/25";
  size_t history_size = 4096;
  Clock* clock = &Clock::Real();
};

class LocalStore : public KubeClient {
 public:
  static constexpr size_t kMaxEvents = 1000;

  // Locks the state directory and loads store.json when it exists.
  static Result<std::unique_ptr<LocalStore>> Open(LocalStoreOptions options);
  ~LocalStore() override;

  Result<Json> Get(const ResourceType& type, const ObjectKey& key) override;
  Result<ObjectList> List(const ResourceType& type, const std::string& namespace_,
                          const ListOptions& options) override;
  Result<Json> Create(const ResourceType& type, const Json& object) override;
  Result<Json> Update(const ResourceType& type, const Json& object,
                      Subresource sub = Subresource::kNone) override;
  Status Delete(const ResourceType& type, const ObjectKey& key,
                const DeleteOptions& options = {}) override;
  Result<Json> Patch(const ResourceType& type, const ObjectKey& key, PatchType patch_type,
                     const Json& patch, const PatchOptions& options = {}) override;
  Result<Json> CreateSubresource(const ResourceType& type, const ObjectKey& key,
                                 const std::string& subresource, const Json& body) override;
  Result<std::unique_ptr<WatchStream>> Watch(const ResourceType& type,
                                             const std::string& namespace_,
                                             const WatchOptions& options) override;

  // The current (latest) resourceVersion.
  int64_t CurrentResourceVersion();
  const std::filesystem::path& state_dir() const { return options_.state_dir; }

  struct WatchState;  // shared with open streams (store.cc)

 private:
  struct Change {
    int64_t rv;
    std::string resource;  // GroupResource()
    Json old_object;       // null for ADDED
    Json new_object;       // null for DELETED
  };
  using Objects = std::map<ObjectKey, Json>;

  LocalStore(LocalStoreOptions options, std::unique_ptr<StateDirLock> lock);

  // Everything below runs with mu_ held.
  Status Load();
  Status Persist();
  Objects& Table(const ResourceType& type) { return tables_[type.GroupResource()]; }
  Result<Json> CreateLocked(const ResourceType& type, Json object);
  Result<Json> UpdateLocked(const ResourceType& type, Json object, Subresource sub);
  Status DeleteLocked(const ResourceType& type, const ObjectKey& key,
                      const DeleteOptions& options);
  // Removes the object for good, then garbage-collects its dependents.
  void RemoveLocked(const ResourceType& type, const ObjectKey& key, PropagationPolicy policy);
  void CollectGarbageLocked(const std::string& owner_uid, PropagationPolicy policy);
  bool UidExistsLocked(const std::string& uid) const;
  Status PrepareSecretLocked(Json* secret);
  Status AllocateClusterIpLocked(const Json* old_service, Json* service);
  void Record(const ResourceType& type, Json old_object, Json new_object);
  void WriteSecretFiles(const Json* old_secret, const Json* new_secret);
  void TrimEventsLocked();

  LocalStoreOptions options_;
  std::unique_ptr<StateDirLock> lock_;
  std::unique_ptr<AddressAllocator> service_ips_;

  std::mutex mu_;
  int64_t rv_ = 0;                               // guarded by mu_
  std::map<std::string, Objects> tables_;        // guarded by mu_; by GroupResource()
  std::deque<Change> history_;                   // guarded by mu_
  int64_t compacted_rv_ = 0;                     // guarded by mu_; newest rv not in history_
  std::vector<std::weak_ptr<WatchState>> watches_;  // guarded by mu_
};

// The resource types the LocalStore serves.
const std::vector<const ResourceType*>& LocalStoreServedTypes();
// The served type equal to `type`; nullptr for any other.
const ResourceType* LocalStoreServedType(const ResourceType& type);

}  // namespace petrel
