// Which PodDisruptionBudget API the cluster reconciler writes: policy/v1 where the API server
// serves it (Kubernetes 1.21 and later; the only one from 1.25), else policy/v1beta1
// (Kubernetes 1.20 and `petrel local`). Decided once when the controller starts.
//
// Thread-safety: pure function and a one-shot probe through a thread-safe KubeClient.
#pragma once

#include "controller/kube_client.h"
#include "core/status.h"
#include "core/types.h"

namespace petrel {

// The choice from the answers to a one-item List of each version: the newest version that
// answered; an error saying both answers when neither did (e.g. the API server is down or the
// controller may not list PodDisruptionBudgets).
Result<const ResourceType*> ChoosePdbType(const Status& v1_list, const Status& v1beta1_list);

// Asks the server (two bounded List calls with limit 1, across all namespaces) and chooses.
Result<const ResourceType*> DiscoverPdbType(KubeClient& client);

}  // namespace petrel
