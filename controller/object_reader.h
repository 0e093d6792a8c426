// A read-only view of objects for reconcilers: the manager backs it with informer caches
// (no API round trip), tests back it with a fake or a KubeClient. Returned objects are
// immutable snapshots shared with the cache: never modify them, copy first.
// Thread-safety: implementations are safe to call from many threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/object.h"
#include "core/types.h"

namespace petrel {

using ObjectPtr = std::shared_ptr<const Json>;

class ObjectReader {
 public:
  virtual ~ObjectReader() = default;
  // nullptr when absent (or not cached: a type nobody watches is a programming error that
  // implementations report loudly in logs).
  virtual ObjectPtr Get(const ResourceType& type, const ObjectKey& key) const = 0;
  // namespace_ "" = all namespaces.
  virtual std::vector<ObjectPtr> List(const ResourceType& type, const std::string& namespace_,
                                      const LabelSelector& selector = {}) const = 0;
};

}  // namespace petrel
