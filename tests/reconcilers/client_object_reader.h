// An ObjectReader that reads through a KubeClient on every call (no cache), for tests that
// run a reconciler without the manager's informers. Reads happen with the client's identity,
// so a test running the reconciler as the controller's ServiceAccount also checks that RBAC
// allows its reads. Thread-safe when the client is.
#pragma once

#include <spdlog/spdlog.h>

#include "controller/kube_client.h"
#include "controller/object_reader.h"

namespace petrel {

class ClientObjectReader : public ObjectReader {
 public:
  explicit ClientObjectReader(KubeClient& client) : client_(client) {}

  ObjectPtr Get(const ResourceType& type, const ObjectKey& key) const override {
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

 private:
  KubeClient& client_;
};

}  // namespace petrel
