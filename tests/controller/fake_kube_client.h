// An in-memory KubeClient for unit tests of the controller runtime: objects per resource,
// a monotonically increasing resourceVersion, an event history that watches replay from a
// resourceVersion, compaction (older resume points get Gone), forced disconnects, and
// optimistic concurrency on Update. Patch and subresources are not modelled.
// Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>

#include "controller/kube_client.h"

namespace petrel::testing_support {

class FakeKubeClient : public KubeClient {
 public:
  Result<Json> Get(const ResourceType& type, const ObjectKey& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto& objs = objects_[type.resource];
    auto it = objs.find(key);
    if (it == objs.end()) return NotFoundError(type.resource + " \"" + key.name + "\" not found");
    return it->second;
  }

  Result<ObjectList> List(const ResourceType& type, const std::string& ns,
                          const ListOptions& options) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++list_calls;
    if (fail_lists > 0) {
      --fail_lists;
      return UnavailableError("fake: list refused");
    }
    LabelSelector selector;
    LabelSelector::Parse(options.label_selector, &selector);
    ObjectList out;
    out.resource_version = std::to_string(rv_);
    size_t start = options.continue_token.empty() ? 0 : std::stoul(options.continue_token);
    size_t index = 0;
    for (const auto& [key, obj] : objects_[type.resource]) {
      if (!ns.empty() && key.namespace_ != ns) continue;
      if (!selector.Matches(meta::Labels(obj))) continue;
      if (index++ < start) continue;
      if (options.limit > 0 && static_cast<int64_t>(out.items.size()) == options.limit) {
        out.continue_token = std::to_string(index - 1);
        break;
      }
      out.items.push_back(obj);
    }
    return out;
  }

  Result<Json> Create(const ResourceType& type, const Json& object) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++writes;
    ObjectKey key = meta::Key(object);
    auto& objs = objects_[type.resource];
    if (objs.count(key)) return AlreadyExistsError(type.resource + " \"" + key.name + "\" exists");
    Json stored = object;
    stored["metadata"]["resourceVersion"] = std::to_string(++rv_);
    stored["metadata"]["uid"] = "uid-" + key.name + "-" + std::to_string(rv_);
    objs[key] = stored;
    RecordLocked(type, WatchEventType::kAdded, stored);
    return stored;
  }

  Result<Json> Update(const ResourceType& type, const Json& object,
                      Subresource = Subresource::kNone) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++writes;
    if (fail_updates > 0) {
      --fail_updates;
      return UnavailableError("fake: update refused");
    }
    ObjectKey key = meta::Key(object);
    auto& objs = objects_[type.resource];
    auto it = objs.find(key);
    if (it == objs.end()) return NotFoundError(type.resource + " \"" + key.name + "\" not found");
    if (meta::ResourceVersion(object) != meta::ResourceVersion(it->second)) {
      return ConflictError("the object has been modified");
    }
    Json stored = object;
    stored["metadata"]["resourceVersion"] = std::to_string(++rv_);
    stored["metadata"]["uid"] = meta::Uid(it->second);
    it->second = stored;
    RecordLocked(type, WatchEventType::kModified, stored);
    return stored;
  }

  Status Delete(const ResourceType& type, const ObjectKey& key,
                const DeleteOptions& = {}) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++writes;
    auto& objs = objects_[type.resource];
    auto it = objs.find(key);
    if (it == objs.end()) return NotFoundError(type.resource + " \"" + key.name + "\" not found");
    Json last = it->second;
    last["metadata"]["resourceVersion"] = std::to_string(++rv_);
    objs.erase(it);
    RecordLocked(type, WatchEventType::kDeleted, last);
    return Status::Ok();
  }

  Result<Json> Patch(const ResourceType&, const ObjectKey&, PatchType, const Json&,
                     const PatchOptions&) override {
    return InternalError("FakeKubeClient does not model Patch");
  }
  Result<Json> CreateSubresource(const ResourceType&, const ObjectKey&, const std::string&,
                                 const Json&) override {
    return InternalError("FakeKubeClient does not model subresources");
  }

  Result<std::unique_ptr<WatchStream>> Watch(const ResourceType& type, const std::string& ns,
                                             const WatchOptions& options) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++watch_calls;
    if (fail_watches > 0) {
      --fail_watches;
      return UnavailableError("fake: watch refused");
    }
    int64_t from = options.resource_version.empty() ? rv_ : std::stoll(options.resource_version);
    if (from < compacted_rv_) return GoneError("too old resource version");
    watch_from.push_back(from);
    return std::unique_ptr<WatchStream>(
        new Stream(this, type.resource, ns, options.label_selector, from, disconnects_));
  }

  // Every open watch ends (Unavailable), as when the API server restarts.
  void DisconnectWatches() {
    std::lock_guard<std::mutex> lock(mu_);
    ++disconnects_;
    cv_.notify_all();
  }
  // Forgets history up to now: resuming from an older resourceVersion answers Gone.
  void Compact() {
    std::lock_guard<std::mutex> lock(mu_);
    compacted_rv_ = rv_;
    history_.clear();
  }
  // Advances the resourceVersion (as writes to other types do) and delivers a bookmark at
  // it to open watches of `type`.
  void Bookmark(const ResourceType& type) {
    std::lock_guard<std::mutex> lock(mu_);
    Json obj = {{"metadata", {{"resourceVersion", std::to_string(++rv_)}}}};
    history_.push_back({type.resource, WatchEventType::kBookmark, obj, rv_});
    cv_.notify_all();
  }
  int64_t CurrentResourceVersion() {
    std::lock_guard<std::mutex> lock(mu_);
    return rv_;
  }

  std::vector<int64_t> WatchResumePoints() {
    std::lock_guard<std::mutex> lock(mu_);
    return watch_from;
  }

  // Counters and failure injection (atomics: tests flip them while informers run).
  std::atomic<int> list_calls{0}, watch_calls{0}, writes{0};
  std::atomic<int> fail_lists{0}, fail_watches{0}, fail_updates{0};

 private:
  std::vector<int64_t> watch_from;

  struct Entry {
    std::string resource;
    WatchEventType type;
    Json object;
    int64_t rv;
  };

  class Stream : public WatchStream {
   public:
    Stream(FakeKubeClient* fake, std::string resource, std::string ns, std::string selector,
           int64_t from, int disconnects)
        : fake_(fake), resource_(std::move(resource)), ns_(std::move(ns)), from_(from),
          disconnects_(disconnects) {
      LabelSelector::Parse(selector, &selector_);
    }
    Status Next(WatchEvent* event, std::chrono::milliseconds timeout) override {
      std::unique_lock<std::mutex> lock(fake_->mu_);
      auto deadline = std::chrono::steady_clock::now() + timeout;
      while (true) {
        if (cancelled_) return CancelledError("watch cancelled");
        if (fake_->disconnects_ != disconnects_) return UnavailableError("connection closed");
        for (const Entry& e : fake_->history_) {
          if (e.rv <= from_ || e.resource != resource_) continue;
          if (e.type != WatchEventType::kBookmark) {
            if (!ns_.empty() && meta::Namespace(e.object) != ns_) continue;
            if (!selector_.Matches(meta::Labels(e.object))) continue;
          }
          from_ = e.rv;
          *event = WatchEvent{e.type, e.object};
          return Status::Ok();
        }
        if (fake_->cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
          return TimeoutError("no event");
        }
      }
    }
    void Cancel() override {
      std::lock_guard<std::mutex> lock(fake_->mu_);
      cancelled_ = true;
      fake_->cv_.notify_all();
    }

   private:
    FakeKubeClient* fake_;
    std::string resource_, ns_;
    LabelSelector selector_;
    int64_t from_;
    int disconnects_;
    bool cancelled_ = false;
  };

  void RecordLocked(const ResourceType& type, WatchEventType t, const Json& obj) {
    history_.push_back({type.resource, t, obj, rv_});
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::map<ObjectKey, Json>> objects_;
  std::deque<Entry> history_;
  int64_t rv_ = 100;
  int64_t compacted_rv_ = 0;
  int disconnects_ = 0;
};

}  // namespace petrel::testing_support
