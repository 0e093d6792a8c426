// The PostgresAttachment reconciler: converges one attachment to "database + least-privilege
// login role exist on the cluster's primary, and the Secret with DATABASE_URL exists in the
// attachment's namespace", and detaches on deletion (finalizer petrel.dev/detach).
//
// Each Reconcile observes once (cache: attachment, cluster, other attachments, namespace;
// API: the two Secrets; Postgres through PgAdmin), plans purely (reconcilers/attachment_plan.h)
// and executes. Steady state makes no writes. Passwords appear only in the Secret.
//
// Thread-safety: Reconcile may run on several worker threads for different keys at once;
// the reconciler keeps no mutable state of its own.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "controller/event_recorder.h"
#include "controller/kube_client.h"
#include "controller/object_reader.h"
#include "controller/reconciler.h"
#include "core/clock.h"
#include "reconcilers/attachment_plan.h"
#include "reconcilers/pg_admin.h"

namespace petrel {

// Where a Service can be reached: in Kubernetes its DNS name, in local mode (or from the
// node agent) its address. NotFound/Unavailable when it cannot be resolved yet.
using ServiceResolver = std::function<Result<ServiceAddress>(const ObjectKey& service)>;

// "<name>.<namespace>.svc", port 5432.
ServiceResolver KubernetesDnsResolver();
// From the Service object in the cache: the petrel.dev/local-address annotation ("host" or
// "host:port"), else spec.clusterIP with spec.ports[0].port.
ServiceResolver ServiceObjectResolver(const ObjectReader& reader);
// What `petrel controller` uses: the Service's petrel.dev/local-address annotation when it has
// one (node agent against a real API server), its spec.clusterIP when that is a loopback
// address (`petrel local`), else its Kubernetes DNS name.
ServiceResolver DefaultServiceResolver(const ObjectReader& reader);

struct AttachmentReconcilerDeps {
  ObjectReader* reader = nullptr;
  KubeClient* client = nullptr;
  EventRecorder* events = nullptr;
  Clock* clock = nullptr;
  PgAdminFactory pg_admin;
  ServiceResolver resolve_service;
  std::function<Result<std::string>()> generate_password;
  // How often a Ready attachment is looked at again to catch drift (a role edited by hand, a
  // Secret deleted while no watch event reached us).
  std::chrono::milliseconds resync = std::chrono::minutes(5);
};

std::unique_ptr<Reconciler> NewAttachmentReconciler(AttachmentReconcilerDeps deps);

// For watches: the attachments (in any namespace) whose clusterRef names `cluster`, so a change
// of a cluster's spec.attachments or its deletion re-reconciles them.
std::vector<ObjectKey> AttachmentsReferencingCluster(const ObjectReader& reader,
                                                     const Json& cluster);
// For watches: the attachments in the namespace whose admission may change with its labels.
std::vector<ObjectKey> AttachmentsInNamespace(const ObjectReader& reader, const Json& ns);

}  // namespace petrel
