#include "core/types.h"

#include <array>

namespace petrel {

ObjectKey ObjectKey::Parse(const std::string& key) {
  auto slash = key.find('/');
  if (slash == std::string::npos) return ObjectKey{"", key};
  return ObjectKey{key.substr(0, slash), key.substr(slash + 1)};
}

namespace resources {
const ResourceType kPod{"", "v1", "pods", "Pod", true};
const ResourceType kPersistentVolumeClaim{"", "v1", "persistentvolumeclaims",
                                          "PersistentVolumeClaim", true};
const ResourceType kService{"", "v1", "services", "Service", true};
const ResourceType kEndpoints{"", "v1", "endpoints", "Endpoints", true};
const ResourceType kSecret{"", "v1", "secrets", "Secret", true};
const ResourceType kConfigMap{"", "v1", "configmaps", "ConfigMap", true};
const ResourceType kNamespace{"", "v1", "namespaces", "Namespace", false};
const ResourceType kEvent{"events.k8s.io", "v1", "events", "Event", true};
const ResourceType kLease{"coordination.k8s.io", "v1", "leases", "Lease", true};
const ResourceType kPodDisruptionBudget{"policy", "v1beta1", "poddisruptionbudgets",
                                        "PodDisruptionBudget", true};
const ResourceType kPodDisruptionBudgetV1{"policy", "v1", "poddisruptionbudgets",
                                          "PodDisruptionBudget", true};
const ResourceType kCustomResourceDefinition{"apiextensions.k8s.io", "v1",
                                             "customresourcedefinitions",
                                             "CustomResourceDefinition", false};
const ResourceType kPostgresCluster{kPetrelGroup, kPetrelVersion, "postgresclusters",
                                    "PostgresCluster", true};
const ResourceType kPostgresAttachment{kPetrelGroup, kPetrelVersion, "postgresattachments",
                                       "PostgresAttachment", true};
const ResourceType kVolumeSnapshot{"snapshot.storage.k8s.io", "v1", "volumesnapshots",
                                   "VolumeSnapshot", true};

const ResourceType* FindByKind(const std::string& api_version, const std::string& kind) {
  // Without an apiVersion the first match wins: v1beta1 before v1 for PodDisruptionBudget.
  static const std::array<const ResourceType*, 15> all = {
      &kPod, &kPersistentVolumeClaim, &kService, &kEndpoints, &kSecret,
      &kConfigMap, &kNamespace, &kEvent, &kLease, &kPodDisruptionBudget,
      &kCustomResourceDefinition, &kPostgresCluster, &kPostgresAttachment, &kVolumeSnapshot,
      &kPodDisruptionBudgetV1};
  for (const ResourceType* t : all) {
    if (t->kind == kind && (api_version.empty() || t->ApiVersion() == api_version)) return t;
  }
  return nullptr;
}
}  // namespace resources

}  // namespace petrel
