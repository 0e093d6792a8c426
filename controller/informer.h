// A shared informer: keeps an in-memory cache of one resource type (in one namespace or all,
// optionally filtered by a label selector) in step with the API server, and tells event
// handlers what changed. This is client-go's reflector + indexer + shared informer in one.
//
// How it stays in step: list (in pages) then watch from the list's resourceVersion with
// bookmarks. When a watch ends or the connection drops it reconnects, with capped
// exponential backoff when it keeps failing, and resumes from the last resourceVersion seen
// (an event's or a bookmark's), so nothing is missed and nothing is replayed. When the server
// answers Gone (410: that resourceVersion was compacted away) it lists again and replaces the
// cache, emitting OnDelete for objects that vanished during the gap, OnAdd for new ones and
// OnUpdate for those whose resourceVersion changed.
//
// Memory: each object is stored once as shared_ptr<const Json>; readers and handlers share
// that pointer. By default `metadata.managedFields` is stripped before caching (it is often
// larger than the object and only the API server reads it): code that needs field ownership
// must GET the object from the API instead of reading the cache.
//
// Thread-safety: the cache accessors may be called from any thread. Event handlers run on
// the informer's own thread, one at a time and in event order, outside the cache lock; they
// must be quick (enqueue a key, not reconcile) and must not call Stop().
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "controller/kube_client.h"
#include "controller/object_reader.h"
#include "core/metrics.h"
#include "core/object.h"

namespace petrel {

struct EventHandler {
  std::function<void(const ObjectPtr&)> on_add;
  std::function<void(const ObjectPtr& old_obj, const ObjectPtr& new_obj)> on_update;
  std::function<void(const ObjectPtr&)> on_delete;
};

// Index values of an object for a named secondary index (e.g. its controller owner's UID).
using IndexFunc = std::function<std::vector<std::string>(const Json&)>;

// The built-in index: the UID of the object's controller ownerReference.
inline constexpr const char* kIndexControllerUid = "controller-uid";
std::vector<std::string> IndexByControllerUid(const Json& obj);

struct InformerOptions {
  ResourceType type;
  std::string namespace_;      // "" = all namespaces (or a cluster-scoped type)
  std::string label_selector;  // query-string form; "" = everything
  int64_t page_size = 500;
  // Reconnect backoff after failures: initial, doubling, capped.
  std::chrono::milliseconds backoff_initial{200};
  std::chrono::milliseconds backoff_max{30000};
  // How long one Next() call waits; only bounds how often the loop re-checks for Stop().
  std::chrono::milliseconds poll_interval{30000};
  bool strip_managed_fields = true;
  MetricsRegistry* metrics = &MetricsRegistry::Default();
};

class SharedInformer {
 public:
  SharedInformer(KubeClient& client, InformerOptions options);
  ~SharedInformer();  // stops
  SharedInformer(const SharedInformer&) = delete;
  SharedInformer& operator=(const SharedInformer&) = delete;

  // Adds an index; call before Start().
  void AddIndex(const std::string& name, IndexFunc fn);
  // Registers a handler. It first receives OnAdd for every object already cached (on the
  // calling thread, before this returns), so a handler added after Start() misses nothing;
  // an object cached at the same moment may be reported twice, which handlers that enqueue
  // keys absorb.
  void AddEventHandler(EventHandler handler);

  void Start();
  // Cancels the watch and joins the informer thread. Idempotent.
  void Stop();
  // True once the first list has been applied to the cache.
  bool HasSynced() const { return synced_.load(); }
  // Waits until HasSynced() or `timeout`; false on timeout or Stop().
  bool WaitForSync(std::chrono::milliseconds timeout);

  ObjectPtr Get(const ObjectKey& key) const;  // nullptr when absent
  // Objects in `namespace_` ("" = every namespace) matching `selector`, in key order.
  std::vector<ObjectPtr> List(const std::string& namespace_ = "",
                              const LabelSelector& selector = {}) const;
  std::vector<ObjectPtr> ByIndex(const std::string& index, const std::string& value) const;
  size_t Size() const;

  const InformerOptions& options() const { return options_; }
  // The resourceVersion the next watch resumes from (for tests and debugging).
  std::string LastResourceVersion() const;

 private:
  enum class WatchEnd { kStopped, kReconnect, kRelist };
  void Run();
  Status ListAndReplace();
  WatchEnd WatchOnce(bool* received_events);
  ObjectPtr Prepare(Json obj) const;
  void Upsert(ObjectPtr obj);
  void Remove(const Json& obj);
  void IndexLocked(const ObjectKey& key, const Json& obj, bool add);
  void SleepUnlessStopped(std::chrono::milliseconds d);
  void Dispatch(const std::function<void(const EventHandler&)>& fn);

  KubeClient& client_;
  const InformerOptions options_;

  mutable std::mutex mu_;  // cache, indexes, last_rv_
  std::map<ObjectKey, ObjectPtr> items_;
  std::map<std::string, IndexFunc> index_funcs_;
  std::map<std::string, std::map<std::string, std::set<ObjectKey>>> indexes_;
  std::string last_rv_;

  std::mutex handlers_mu_;  // held while handlers run, so a late AddEventHandler is ordered
  std::vector<std::shared_ptr<EventHandler>> handlers_;

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  WatchStream* active_watch_ = nullptr;  // guarded by stop_mu_; cancelled by Stop()

  std::atomic<bool> synced_{false};
  std::thread thread_;

  Counter& lists_;
  Counter& watches_;
  Counter& relists_gone_;
  Counter& events_;
};

}  // namespace petrel
