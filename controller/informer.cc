#include "controller/informer.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace petrel {

std::vector<std::string> IndexByControllerUid(const Json& obj) {
  auto ref = meta::ControllerOf(obj);
  if (!ref || ref->uid.empty()) return {};
  return {ref->uid};
}

SharedInformer::SharedInformer(KubeClient& client, InformerOptions options)
    : client_(client),
      options_(std::move(options)),
      lists_(options_.metrics
                 ->Counter("informer_lists_total", "Full lists made by informers.",
                           {"resource", "namespace"})
                 .WithLabels({options_.type.GroupResource(), options_.namespace_})),
      watches_(options_.metrics
                   ->Counter("informer_watches_total", "Watches opened by informers.",
                             {"resource", "namespace"})
                   .WithLabels({options_.type.GroupResource(), options_.namespace_})),
      relists_gone_(options_.metrics
                        ->Counter("informer_relists_after_gone_total",
                                  "Relists forced by a Gone (410) watch answer.",
                                  {"resource", "namespace"})
                        .WithLabels({options_.type.GroupResource(), options_.namespace_})),
      events_(options_.metrics
                  ->Counter("informer_watch_events_total",
                            "Watch events (including bookmarks) received by informers.",
                            {"resource", "namespace"})
                  .WithLabels({options_.type.GroupResource(), options_.namespace_})) {
  index_funcs_[kIndexControllerUid] = IndexByControllerUid;
}

SharedInformer::~SharedInformer() { Stop(); }

void SharedInformer::AddIndex(const std::string& name, IndexFunc fn) {
  std::lock_guard<std::mutex> lock(mu_);
  index_funcs_[name] = std::move(fn);
  auto& index = indexes_[name];
  index.clear();
  for (const auto& [key, obj] : items_) {
    for (auto& v : index_funcs_[name](*obj)) index[v].insert(key);
  }
}

void SharedInformer::AddEventHandler(EventHandler handler) {
  auto h = std::make_shared<EventHandler>(std::move(handler));
  std::lock_guard<std::mutex> lock(handlers_mu_);
  if (h->on_add) {
    for (const ObjectPtr& obj : List()) h->on_add(obj);
  }
  handlers_.push_back(std::move(h));
}

void SharedInformer::Dispatch(const std::function<void(const EventHandler&)>& fn) {
  std::lock_guard<std::mutex> lock(handlers_mu_);
  for (const auto& h : handlers_) fn(*h);
}

void SharedInformer::Start() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { Run(); });
}

void SharedInformer::Stop() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stopping_ = true;
    if (active_watch_ != nullptr) active_watch_->Cancel();
  }
  stop_cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

bool SharedInformer::WaitForSync(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(stop_mu_);
  stop_cv_.wait_for(lock, timeout, [this] { return synced_.load() || stopping_; });
  return synced_.load();
}

ObjectPtr SharedInformer::Get(const ObjectKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = items_.find(key);
  return it == items_.end() ? nullptr : it->second;
}

std::vector<ObjectPtr> SharedInformer::List(const std::string& namespace_,
                                            const LabelSelector& selector) const {
  std::vector<ObjectPtr> out;
  std::lock_guard<std::mutex> lock(mu_);
  // Keys sort by namespace first, so one namespace is a contiguous range.
  auto it = namespace_.empty() ? items_.begin() : items_.lower_bound(ObjectKey{namespace_, ""});
  for (; it != items_.end(); ++it) {
    if (!namespace_.empty() && it->first.namespace_ != namespace_) break;
    if (selector.Empty() || selector.Matches(meta::Labels(*it->second))) out.push_back(it->second);
  }
  return out;
}

std::vector<ObjectPtr> SharedInformer::ByIndex(const std::string& index,
                                               const std::string& value) const {
  std::vector<ObjectPtr> out;
  std::lock_guard<std::mutex> lock(mu_);
  auto idx = indexes_.find(index);
  if (idx == indexes_.end()) return out;
  auto keys = idx->second.find(value);
  if (keys == idx->second.end()) return out;
  for (const ObjectKey& key : keys->second) {
    auto it = items_.find(key);
    if (it != items_.end()) out.push_back(it->second);
  }
  return out;
}

size_t SharedInformer::Size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return items_.size();
}

std::string SharedInformer::LastResourceVersion() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_rv_;
}

ObjectPtr SharedInformer::Prepare(Json obj) const {
  if (options_.strip_managed_fields) {
    if (auto m = obj.find("metadata"); m != obj.end() && m->is_object()) m->erase("managedFields");
  }
  return std::make_shared<const Json>(std::move(obj));
}

void SharedInformer::IndexLocked(const ObjectKey& key, const Json& obj, bool add) {
  for (const auto& [name, fn] : index_funcs_) {
    auto& index = indexes_[name];
    for (const std::string& v : fn(obj)) {
      if (add) {
        index[v].insert(key);
      } else if (auto it = index.find(v); it != index.end()) {
        it->second.erase(key);
        if (it->second.empty()) index.erase(it);
      }
    }
  }
}

void SharedInformer::Upsert(ObjectPtr obj) {
  ObjectKey key = meta::Key(*obj);
  ObjectPtr old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = items_[key];
    old = slot;
    if (old) IndexLocked(key, *old, false);
    slot = obj;
    IndexLocked(key, *obj, true);
    last_rv_ = meta::ResourceVersion(*obj);
  }
  if (old) {
    Dispatch([&](const EventHandler& h) {
      if (h.on_update) h.on_update(old, obj);
    });
  } else {
    Dispatch([&](const EventHandler& h) {
      if (h.on_add) h.on_add(obj);
    });
  }
}

void SharedInformer::Remove(const Json& event_obj) {
  ObjectPtr final_state = Prepare(event_obj);
  ObjectKey key = meta::Key(*final_state);
  bool known = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = items_.find(key);
    if (it != items_.end()) {
      IndexLocked(key, *it->second, false);
      items_.erase(it);
      known = true;
    }
    last_rv_ = meta::ResourceVersion(*final_state);
  }
  if (!known) return;
  Dispatch([&](const EventHandler& h) {
    if (h.on_delete) h.on_delete(final_state);
  });
}

Status SharedInformer::ListAndReplace() {
  ListOptions opts;
  opts.label_selector = options_.label_selector;
  opts.limit = options_.page_size;
  lists_.Inc();
  Result<ObjectList> listed = client_.ListAll(options_.type, options_.namespace_, opts);
  if (!listed.ok() && listed.status().code() == Code::kGone && opts.limit > 0) {
    // The continue token expired between pages; a single unpaged list cannot expire.
    opts.limit = 0;
    listed = client_.ListAll(options_.type, options_.namespace_, opts);
  }
  if (!listed.ok()) return listed.status();

  std::map<ObjectKey, ObjectPtr> fresh;
  for (Json& item : listed->items) {
    ObjectPtr obj = Prepare(std::move(item));
    fresh[meta::Key(*obj)] = std::move(obj);
  }
  std::vector<ObjectPtr> added, deleted;
  std::vector<std::pair<ObjectPtr, ObjectPtr>> updated;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, obj] : fresh) {
      auto it = items_.find(key);
      if (it == items_.end()) {
        added.push_back(obj);
      } else if (meta::ResourceVersion(*it->second) != meta::ResourceVersion(*obj)) {
        updated.emplace_back(it->second, obj);
      }
    }
    for (const auto& [key, obj] : items_) {
      if (!fresh.count(key)) deleted.push_back(obj);
    }
    // Unchanged objects keep their old pointer so that readers holding it see no churn.
    for (auto& [key, obj] : fresh) {
      auto it = items_.find(key);
      if (it != items_.end() && meta::ResourceVersion(*it->second) == meta::ResourceVersion(*obj)) {
        obj = it->second;
      }
    }
    items_ = std::move(fresh);
    indexes_.clear();
    for (const auto& [key, obj] : items_) IndexLocked(key, *obj, true);
    last_rv_ = listed->resource_version;
  }
  for (const ObjectPtr& obj : deleted) {
    Dispatch([&](const EventHandler& h) {
      if (h.on_delete) h.on_delete(obj);
    });
  }
  for (const ObjectPtr& obj : added) {
    Dispatch([&](const EventHandler& h) {
      if (h.on_add) h.on_add(obj);
    });
  }
  for (const auto& [old_obj, new_obj] : updated) {
    Dispatch([&](const EventHandler& h) {
      if (h.on_update) h.on_update(old_obj, new_obj);
    });
  }
  if (!synced_.exchange(true)) {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stop_cv_.notify_all();
  }
  return Status::Ok();
}

SharedInformer::WatchEnd SharedInformer::WatchOnce(bool* received_events) {
  WatchOptions w;
  w.resource_version = LastResourceVersion();
  w.label_selector = options_.label_selector;
  w.allow_bookmarks = true;
  watches_.Inc();
  auto opened = client_.Watch(options_.type, options_.namespace_, w);
  if (!opened.ok()) {
    if (opened.status().code() == Code::kGone) return WatchEnd::kRelist;
    spdlog::warn("watch {} in {}: {}", options_.type.GroupResource(),
                 options_.namespace_.empty() ? "all namespaces" : options_.namespace_,
                 opened.status().ToString());
    return WatchEnd::kReconnect;
  }
  std::unique_ptr<WatchStream> stream = std::move(opened).value();
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    if (stopping_) return WatchEnd::kStopped;
    active_watch_ = stream.get();
  }
  struct ClearActive {
    SharedInformer* self;
    ~ClearActive() {
      std::lock_guard<std::mutex> lock(self->stop_mu_);
      self->active_watch_ = nullptr;
    }
  } clear_active{this};

  while (true) {
    WatchEvent event;
    Status s = stream->Next(&event, options_.poll_interval);
    if (s.code() == Code::kTimeout) {
      std::lock_guard<std::mutex> lock(stop_mu_);
      if (stopping_) return WatchEnd::kStopped;
      continue;
    }
    if (!s.ok()) {
      {
        std::lock_guard<std::mutex> lock(stop_mu_);
        if (stopping_) return WatchEnd::kStopped;
      }
      if (s.code() == Code::kGone) return WatchEnd::kRelist;
      spdlog::debug("watch {} ended: {}", options_.type.GroupResource(), s.ToString());
      return WatchEnd::kReconnect;
    }
    *received_events = true;
    events_.Inc();
    switch (event.type) {
      case WatchEventType::kAdded:
      case WatchEventType::kModified:
        Upsert(Prepare(std::move(event.object)));
        break;
      case WatchEventType::kDeleted:
        Remove(event.object);
        break;
      case WatchEventType::kBookmark: {
        std::string rv = meta::ResourceVersion(event.object);
        if (!rv.empty()) {
          std::lock_guard<std::mutex> lock(mu_);
          last_rv_ = rv;
        }
        break;
      }
      case WatchEventType::kError: {
        int code = event.object.is_object() ? event.object.value("code", 0) : 0;
        if (code == 410) return WatchEnd::kRelist;
        spdlog::warn("watch {} error event: {}", options_.type.GroupResource(),
                     event.object.dump());
        return WatchEnd::kReconnect;
      }
    }
  }
}

void SharedInformer::SleepUnlessStopped(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(stop_mu_);
  stop_cv_.wait_for(lock, d, [this] { return stopping_; });
}

void SharedInformer::Run() {
  bool need_list = true;
  int failures = 0;
  auto backoff = [&] {
    ++failures;
    auto d = options_.backoff_initial * (1LL << std::min(failures - 1, 20));
    return std::min<std::chrono::milliseconds>(d, options_.backoff_max);
  };
  while (true) {
    {
      std::lock_guard<std::mutex> lock(stop_mu_);
      if (stopping_) return;
    }
    if (need_list) {
      Status s = ListAndReplace();
      if (!s.ok()) {
        spdlog::warn("list {} in {}: {}", options_.type.GroupResource(),
                     options_.namespace_.empty() ? "all namespaces" : options_.namespace_,
                     s.ToString());
        SleepUnlessStopped(backoff());
        continue;
      }
      need_list = false;
      failures = 0;
    }
    bool received = false;
    switch (WatchOnce(&received)) {
      case WatchEnd::kStopped:
        return;
      case WatchEnd::kRelist:
        relists_gone_.Inc();
        spdlog::info("watch {} from resourceVersion {} is too old; relisting",
                     options_.type.GroupResource(), LastResourceVersion());
        need_list = true;
        // Gone straight after a list, with no event in between, would otherwise loop on full
        // lists as fast as the server answers.
        if (!received) SleepUnlessStopped(backoff());
        break;
      case WatchEnd::kReconnect:
        // A watch that delivered events ended normally (server timeout); reconnect at once.
        // One that failed without any event backs off, so a broken server is not hammered.
        if (received) {
          failures = 0;
        } else {
          SleepUnlessStopped(backoff());
        }
        break;
    }
  }
}

}  // namespace petrel
