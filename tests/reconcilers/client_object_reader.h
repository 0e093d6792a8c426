// An ObjectReader that reads through a KubeClient on every call (no cache), for tests that
// run a reconciler without the manager's informers. Reads happen with the client's identity,
// so a test running the reconciler as the controller's ServiceAccount also checks that RBAC
// allows its reads. HoldBack plays a cache that has not seen the latest write yet.
// Thread-safe when the client is.
#pragma once

#include <spdlog/spdlog.h>

#include <map>
#include <mutex>
#include <utility>

#include "controller/kube_client.h"
#include "controller/object_reader.h"

namespace petrel {

class ClientObjectReader : public ObjectReader {
 public:
  explicit ClientObjectReader(KubeClient& client) : client_(client) {}

  ObjectPtr Get(const ResourceType& type, const ObjectKey& key) const override {
    {
      std::lock_guard<std::mutex> l(mu_);
      auto held = held_.find({type.resource, key});
      if (held != held_.end()) return std::make_shared<const Json>(held->second);
    }
    auto r = client_.Get(type, key);
    if (!r.ok()) {
      if (r.status().code() != Code::kNotFound) {
        spdlog::error("reading {} {}: {}", type.resource, key.ToString(), r.status().ToString());
      }
      return nullptr;
    }
    return std::make_shared<const Json>(std::move(r).value());
  }

  std::vector<ObjectPtr> List(const ResourceType& type, const std::string& namespace_,
                              const LabelSelector& selector) const override {
    ListOptions options;
    options.label_selector = selector.ToString();
    auto r = client_.ListAll(type, namespace_, options);
    std::vector<ObjectPtr> out;
    if (!r.ok()) {
      spdlog::error("listing {}: {}", type.resource, r.status().ToString());
      return out;
    }
    for (auto& item : r->items) out.push_back(std::make_shared<const Json>(std::move(item)));
    return out;
  }

  // A lagging cache: Get returns `stale` for this object until Release.
  void HoldBack(const ResourceType& type, const ObjectKey& key, Json stale) {
    std::lock_guard<std::mutex> l(mu_);
    held_[{type.resource, key}] = std::move(stale);
  }
  void Release() {
    std::lock_guard<std::mutex> l(mu_);
    held_.clear();
  }

 private:
  KubeClient& client_;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, ObjectKey>, Json> held_;
};

}  // namespace petrel
