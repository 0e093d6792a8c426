#include "reconcilers/pdb_api.h"

namespace petrel {

Result<const ResourceType*> ChoosePdbType(const Status& v1_list, const Status& v1beta1_list) {
  if (v1_list.ok()) return &resources::kPodDisruptionBudgetV1;
  if (v1beta1_list.ok()) return &resources::kPodDisruptionBudget;
  return Status(v1beta1_list.code(),
                "the API server answered neither policy/v1 nor policy/v1beta1 "
                "PodDisruptionBudgets (v1: " +
                    v1_list.message() + "; v1beta1: " + v1beta1_list.message() +
                    "); check that the controller may list poddisruptionbudgets (ClusterRole "
                    "in manifests/10-rbac.yaml) and that the API server is reachable");
}

Result<const ResourceType*> DiscoverPdbType(KubeClient& client) {
  ListOptions one;
  one.limit = 1;
  Status v1 = client.List(resources::kPodDisruptionBudgetV1, "", one).status();
  if (v1.ok()) return ChoosePdbType(v1, Status::Ok());
  Status v1beta1 = client.List(resources::kPodDisruptionBudget, "", one).status();
  return ChoosePdbType(v1, v1beta1);
}

}  // namespace petrel
