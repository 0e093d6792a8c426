// KubeClient: the one interface through which reconcilers, informers and the node agent
// speak Kubernetes objects. Two implementations: HttpKubeClient (a real kube-apiserver, in
// controller/http_kube_client.h) and LocalStore (the in-process API of `petrel local`, in
// local/store.h). Tests of pure logic use a fake.
//
// Objects are JSON in the wire format. Every call is blocking, bounded by the client's
// request timeout, and returns a typed Status on failure (NotFound, Conflict, AlreadyExists,
// Invalid with field causes, Gone, Forbidden, Unauthorized, TooManyRequests, Unavailable).
//
// Thread-safety: implementations are safe to call from many threads at once.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/object.h"
#include "core/status.h"
#include "core/types.h"

namespace petrel {

struct ListOptions {
  std::string label_selector;   // query-string form, "" for all
  std::string field_selector;   // e.g. "spec.nodeName="
  int64_t limit = 0;            // page size; 0 = server default (no paging)
  std::string continue_token;   // from a previous page
  std::string resource_version; // "" = most recent (quorum read)
};

struct ObjectList {
  std::vector<Json> items;     // each with apiVersion/kind filled in
  std::string resource_version;
  std::string continue_token;  // non-empty when more pages remain
};

enum class PropagationPolicy { kDefault, kBackground, kForeground, kOrphan };

struct DeleteOptions {
  std::optional<std::string> precondition_uid;
  std::optional<std::string> precondition_resource_version;
  PropagationPolicy propagation = PropagationPolicy::kDefault;
  // Seconds a Pod gets to stop; 0 = remove now (the kubelet's final delete). Unset = the
  // object's default (terminationGracePeriodSeconds for Pods).
  std::optional<int64_t> grace_period_seconds;
};

enum class PatchType { kMerge, kJson, kApply };  // merge-patch+json, json-patch+json, apply-patch+yaml

struct PatchOptions {
  std::string field_manager = "petrel";
  bool force = false;          // server-side apply: take ownership of conflicting fields
  std::string subresource;     // "" or "status" or "scale"
};

enum class Subresource { kNone, kStatus };

struct WatchOptions {
  std::string resource_version;  // resume point; "" = start from "now"
  std::string label_selector;
  std::string field_selector;
  bool allow_bookmarks = true;
  int timeout_seconds = 0;       // server-side timeout; 0 = the client picks (5-10 min, jittered)
};

enum class WatchEventType { kAdded, kModified, kDeleted, kBookmark, kError };

struct WatchEvent {
  WatchEventType type;
  Json object;  // for kError: a metav1.Status
};

// A single open watch. Next() blocks until an event arrives, the deadline passes
// (returns Timeout, stream still usable), the stream ends (Unavailable: reconnect), the
// server says the resourceVersion is too old (Gone: relist) or Cancel() is called
// (Cancelled). Cancel() may be called from any thread; everything else from one thread.
class WatchStream {
 public:
  virtual ~WatchStream() = default;
  virtual Status Next(WatchEvent* event, std::chrono::milliseconds timeout) = 0;
  virtual void Cancel() = 0;
};

class KubeClient {
 public:
  virtual ~KubeClient() = default;

  virtual Result<Json> Get(const ResourceType& type, const ObjectKey& key) = 0;
  virtual Result<ObjectList> List(const ResourceType& type, const std::string& namespace_,
                                  const ListOptions& options) = 0;
  virtual Result<Json> Create(const ResourceType& type, const Json& object) = 0;
  // Optimistic concurrency: fails with Conflict when object.metadata.resourceVersion is stale.
  virtual Result<Json> Update(const ResourceType& type, const Json& object,
                              Subresource sub = Subresource::kNone) = 0;
  virtual Status Delete(const ResourceType& type, const ObjectKey& key,
                        const DeleteOptions& options = {}) = 0;
  virtual Result<Json> Patch(const ResourceType& type, const ObjectKey& key, PatchType patch_type,
                             const Json& patch, const PatchOptions& options = {}) = 0;
  // POST to a subresource of an existing object, e.g. "binding" or "eviction" on pods.
  virtual Result<Json> CreateSubresource(const ResourceType& type, const ObjectKey& key,
                                         const std::string& subresource, const Json& body) = 0;
  virtual Result<std::unique_ptr<WatchStream>> Watch(const ResourceType& type,
                                                     const std::string& namespace_,
                                                     const WatchOptions& options) = 0;

  // Convenience built on the above.
  Result<Json> UpdateStatus(const ResourceType& type, const Json& object) {
    return Update(type, object, Subresource::kStatus);
  }
  // Lists every page.
  Result<ObjectList> ListAll(const ResourceType& type, const std::string& namespace_,
                             ListOptions options);
};

}  // namespace petrel
