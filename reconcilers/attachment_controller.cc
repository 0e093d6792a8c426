// Registers the PostgresAttachment controller with `petrel controller` (controller/registry.h):
// the reconciler over the manager's cache and client, Postgres through libpq, passwords from
// OpenSSL's CSPRNG, and the watches that bring an attachment back to its reconciler: itself,
// the Secret it controls, the cluster it references and its namespace (labels decide
// admission).
#include "controller/manager.h"
#include "controller/registry.h"
#include "pg/scram.h"
#include "reconcilers/attachment_pg_admin.h"
#include "reconcilers/attachment_reconciler.h"

namespace petrel {
namespace {

// Owns the event recorder for as long as the reconciler lives.
class AttachmentController : public Reconciler {
 public:
  explicit AttachmentController(Manager& mgr)
      : events_(mgr.client(), "petrel-attachment", mgr.clock()) {
    AttachmentReconcilerDeps deps;
    deps.reader = &mgr.reader();
    deps.client = &mgr.client();
    deps.events = &events_;
    deps.clock = &mgr.clock();
    deps.pg_admin = LibpqPgAdminFactory();
    deps.resolve_service = DefaultServiceResolver(mgr.reader());
    deps.generate_password = &GeneratePassword;
    inner_ = NewAttachmentReconciler(std::move(deps));
  }
  Result<ReconcileResult> Reconcile(const ObjectKey& key) override {
    return inner_->Reconcile(key);
  }

 private:
  KubeEventRecorder events_;
  std::unique_ptr<Reconciler> inner_;
};

}  // namespace
}  // namespace petrel

PETREL_REGISTER_CONTROLLER(postgresattachment, [](petrel::Manager& mgr) -> petrel::Status {
  using namespace petrel;  // NOLINT
  Controller& c =
      mgr.AddController("postgresattachment", std::make_shared<AttachmentController>(mgr));
  ObjectReader& reader = mgr.reader();
  mgr.Watch(c, resources::kPostgresAttachment, EnqueueSelf());
  mgr.Watch(c, resources::kSecret, EnqueueControllerOwner("PostgresAttachment"));
  mgr.Watch(c, resources::kPostgresCluster, EnqueueMapped([&reader](const Json& cluster) {
              return AttachmentsReferencingCluster(reader, cluster);
            }));
  mgr.Watch(c, resources::kNamespace, EnqueueMapped([&reader](const Json& ns) {
              return AttachmentsInNamespace(reader, ns);
            }));
  return Status::Ok();
});
