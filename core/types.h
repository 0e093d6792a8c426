// Strong identities shared by every layer: object keys and resource types.
// Plain values; thread-safe to copy.
#pragma once

#include <compare>
#include <functional>
#include <string>

namespace petrel {

// namespace/name of an object; namespace_ is empty for cluster-scoped objects.
struct ObjectKey {
  std::string namespace_;
  std::string name;

  // "ns/name", or "name" when cluster-scoped (the client-go cache key format).
  std::string ToString() const { return namespace_.empty() ? name : namespace_ + "/" + name; }
  static ObjectKey Parse(const std::string& key);
  auto operator<=>(const ObjectKey&) const = default;
};

// Group/version/resource plus kind: everything needed to build a URL and to recognise an
// object. `group` is empty for the core API.
struct ResourceType {
  std::string group;
  std::string version;
  std::string resource;  // plural, lower case: "pods", "postgresclusters"
  std::string kind;      // "Pod", "PostgresCluster"
  bool namespaced = true;

  std::string ApiVersion() const { return group.empty() ? version : group + "/" + version; }
  // "pods" or "postgresclusters.petrel.dev" (the form kubectl and RBAC use)
  std::string GroupResource() const { return group.empty() ? resource : resource + "." + group; }
  auto operator<=>(const ResourceType&) const = default;
};

namespace resources {
extern const ResourceType kPod;
extern const ResourceType kPersistentVolumeClaim;
extern const ResourceType kService;
extern const ResourceType kEndpoints;
extern const ResourceType kSecret;
extern const ResourceType kConfigMap;
extern const ResourceType kNamespace;
extern const ResourceType kEvent;  // events.k8s.io/v1
extern const ResourceType kLease;
extern const ResourceType kPodDisruptionBudget;    // policy/v1beta1: Kubernetes up to 1.24
extern const ResourceType kPodDisruptionBudgetV1;  // policy/v1: Kubernetes 1.21 and later
extern const ResourceType kCustomResourceDefinition;
extern const ResourceType kPostgresCluster;
extern const ResourceType kPostgresAttachment;
extern const ResourceType kVolumeSnapshot;
// Finds a well-known type by kind ("Pod") or plural ("pods"); nullptr if unknown.
const ResourceType* FindByKind(const std::string& api_version, const std::string& kind);
}  // namespace resources

inline constexpr const char* kPetrelGroup = "petrel.dev";
inline constexpr const char* kPetrelVersion = "v1alpha1";

}  // namespace petrel

template <>
struct std::hash<petrel::ObjectKey> {
  size_t operator()(const petrel::ObjectKey& k) const noexcept {
    return std::hash<std::string>()(k.namespace_) * 31 + std::hash<std::string>()(k.name);
  }
};
