#include "reconcilers/attachment_reconciler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <tuple>

namespace petrel {

namespace {

using std::chrono::seconds;

constexpr seconds kWaitForInput{30};    // cluster, database or Service not there yet
constexpr seconds kRefusedRecheck{60};  // refused: a cluster or another attachment may change

bool PrintableAscii(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

std::string ServiceNameFor(const ObjectKey& cluster, const char* suffix) {
  return cluster.name + suffix;
}

class AttachmentReconciler : public Reconciler {
 public:
  explicit AttachmentReconciler(AttachmentReconcilerDeps deps) : d_(std::move(deps)) {}

  Result<ReconcileResult> Reconcile(const ObjectKey& key) override {
    ObjectPtr cached = d_.reader->Get(resources::kPostgresAttachment, key);
    if (!cached) return ReconcileResult::Done();
    Json attachment = *cached;
    if (meta::IsBeingDeleted(attachment)) return Detach(attachment);
    return Attach(attachment);
  }

 private:
  // A status under construction: starts from the observed one so unchanged fields stay equal.
  struct StatusBuilder {
    Json status;
    int64_t generation;
    std::string now;
    void Condition(const std::string& type, ConditionStatus s, const std::string& reason,
                   const std::string& message) {
      SetCondition(status["conditions"], type, s, reason, message, generation, now);
    }
    // Ready=False plus the phase, for every outcome that is not Ready.
    void NotReady(const std::string& phase, const std::string& reason, const std::string& message) {
      status["phase"] = phase;
      Condition("Ready", ConditionStatus::kFalse, reason, message);
    }
  };

  StatusBuilder NewStatus(const Json& attachment) const {
    StatusBuilder b{attachment.value("status", Json::object()), meta::Generation(attachment),
                    FormatRfc3339(d_.clock->WallNow())};
    if (!b.status.is_object()) b.status = Json::object();
    b.status["observedGeneration"] = b.generation;
    return b;
  }

  // Writes status only when it changed (ignoring condition timestamps). On a Conflict the
  // caller's error requeues with backoff and the next attempt reads a fresh object.
  Status WriteStatus(const Json& attachment, const StatusBuilder& b) {
    Json old = attachment.value("status", Json::object());
    if (!StatusDiffers(old, b.status)) return Status::Ok();
    Json updated = attachment;
    updated["status"] = b.status;
    auto r = d_.client->UpdateStatus(resources::kPostgresAttachment, updated);
    return r.ok() ? Status::Ok() : r.status().Annotate("writing status");
  }

  Result<ReconcileResult> Finish(const Json& attachment, const StatusBuilder& b,
                                 ReconcileResult result) {
    PETREL_RETURN_IF_ERROR(WriteStatus(attachment, b));
    return result;
  }
  Result<ReconcileResult> Fail(const Json& attachment, const StatusBuilder& b,
                               const Status& error) {
    PETREL_RETURN_IF_ERROR(WriteStatus(attachment, b));
    return error;
  }

  // Records a Warning only when the Ready reason changes, so repeats stay rare.
  void WarnOnTransition(const Json& attachment, const std::string& reason,
                        const std::string& message) {
    for (const auto& c : attachment.value("/status/conditions"_json_pointer, Json::array())) {
      if (c.value("type", "") == "Ready" && c.value("reason", "") == reason) return;
    }
    d_.events->Record(attachment, EventType::kWarning, reason, "Attach", message);
  }

  // The cluster's primary as the superuser, or why it cannot be reached.
  Result<std::unique_ptr<PgAdmin>> ConnectAdmin(const ObjectKey& cluster, std::string* where) {
    ObjectKey rw{cluster.namespace_, ServiceNameFor(cluster, "-rw")};
    auto address = d_.resolve_service(rw);
    if (!address.ok()) {
      return address.status().Annotate("resolving Service " + rw.ToString());
    }
    *where = address->host + ":" + std::to_string(address->port);
    ObjectKey secret_key{cluster.namespace_, cluster.name + "-superuser"};
    auto secret = d_.client->Get(resources::kSecret, secret_key);
    if (!secret.ok()) {
      return secret.status().Annotate("reading Secret " + secret_key.ToString());
    }
    auto password = SecretValue(*secret, "password");
    if (!password || password->empty()) {
      return UnavailableError("Secret " + secret_key.ToString() + " has no key \"password\"");
    }
    PgTarget target{address->host, address->port, kPostgresSuperuser, *password};
    return d_.pg_admin(target);
  }

  Status EnsureFinalizer(Json& attachment) {
    if (meta::HasFinalizer(attachment, kDetachFinalizer)) return Status::Ok();
    Json updated = attachment;
    updated["metadata"]["finalizers"].push_back(kDetachFinalizer);
    PETREL_ASSIGN_OR_RETURN(attachment, d_.client->Update(resources::kPostgresAttachment, updated));
    return Status::Ok();
  }

  // --------------------------------------------------------------------------------------
  Result<ReconcileResult> Attach(Json attachment) {
    const ObjectKey key = meta::Key(attachment);
    StatusBuilder b = NewStatus(attachment);

    auto parsed = ParseAttachment(attachment);
    if (!parsed.ok()) {
      b.NotReady("Failed", "InvalidSpec", parsed.status().message());
      WarnOnTransition(attachment, "InvalidSpec", parsed.status().message());
      return Finish(attachment, b, ReconcileResult::Done());
    }
    const AttachmentSpec& spec = *parsed;
    // Privileges are fixed too: the grants of one level are not turned into another's.
    for (auto [field, was, now] :
         {std::tuple{"roleName", b.status.value("roleName", ""), spec.role_name},
          std::tuple{"databaseName", b.status.value("databaseName", ""), spec.database_name},
          std::tuple{"privileges", b.status.value("privileges", ""),
                     std::string(PrivilegesName(spec.privileges))}}) {
      if (!was.empty() && was != now) {
        std::string message = std::string("spec.") + field + " resolves to \"" + now +
                              "\" but this attachment was made with \"" + was +
                              "\"; it cannot change after attach. Put the old value back, "
                              "or delete the attachment and create a new one";
        b.NotReady("Refused", "ImmutableFieldChanged", message);
        WarnOnTransition(attachment, "ImmutableFieldChanged", message);
        return Finish(attachment, b, ReconcileResult::Done());
      }
    }

    ObjectPtr cluster = d_.reader->Get(resources::kPostgresCluster, spec.cluster);
    if (!cluster) {
      b.NotReady("Pending", "ClusterNotFound",
                 "PostgresCluster " + spec.cluster.ToString() +
                     " not found; create it or correct spec.clusterRef");
      return Finish(attachment, b, ReconcileResult::RequeueAfter(kWaitForInput));
    }
    std::map<std::string, std::string> ns_labels;
    if (ObjectPtr ns = d_.reader->Get(resources::kNamespace, {"", key.namespace_})) {
      ns_labels = meta::Labels(*ns);
    }
    Admission admission = AdmitNamespace(*cluster, key.namespace_, ns_labels);
    if (!admission.admitted && meta::HasFinalizer(attachment, kDetachFinalizer) &&
        !b.status.value("roleName", "").empty()) {
      return Revoke(attachment, spec, admission.message, b);
    }
    if (!admission.admitted) {
      b.NotReady("Refused", "NotAdmitted", admission.message);
      WarnOnTransition(attachment, "NotAdmitted", admission.message);
      return Finish(attachment, b, ReconcileResult::RequeueAfter(kRefusedRecheck));
    }
    auto self = ClaimOf(attachment);
    std::vector<AttachmentClaim> others;
    for (const auto& other : d_.reader->List(resources::kPostgresAttachment, "")) {
      if (auto c = ClaimOf(*other)) others.push_back(*c);
    }
    if (auto conflict = FindConflict(*self, others)) {
      b.NotReady("Refused", "Conflict", *conflict);
      WarnOnTransition(attachment, "Conflict", *conflict);
      return Finish(attachment, b, ReconcileResult::RequeueAfter(kRefusedRecheck));
    }

    // The Secret: read from the API (not the cache) because its password is the only copy.
    const ObjectKey secret_key{key.namespace_, spec.secret_name};
    std::optional<Json> secret;
    if (auto s = d_.client->Get(resources::kSecret, secret_key); s.ok()) {
      secret = *s;
    } else if (s.status().code() != Code::kNotFound) {
      return s.status().Annotate("reading Secret " + secret_key.ToString());
    }
    if (secret) {
      auto owner = meta::ControllerOf(*secret);
      if (!owner || owner->uid != meta::Uid(attachment)) {
        std::string message = "Secret " + secret_key.ToString() +
                              " exists and is not owned by this attachment; Petrel does not "
                              "overwrite it. Delete it or set spec.secretName";
        b.Condition("SecretReady", ConditionStatus::kFalse, "SecretNotOwned", message);
        b.NotReady("Refused", "SecretNotOwned", message);
        WarnOnTransition(attachment, "SecretNotOwned", message);
        return Finish(attachment, b, ReconcileResult::RequeueAfter(kRefusedRecheck));
      }
    }

    std::string where;
    auto admin = ConnectAdmin(spec.cluster, &where);
    if (!admin.ok()) {
      std::string message = "cannot reach the primary of PostgresCluster " +
                            spec.cluster.ToString() + (where.empty() ? "" : " at " + where) + ": " +
                            admin.status().message() + "; retrying with backoff";
      b.NotReady("Pending", "ClusterUnreachable", message);
      return Fail(attachment, b, UnavailableError(message));
    }
    PgAdmin& pg = **admin;

    AttachInputs in;
    in.spec = spec;
    in.attachment = key;
    if (secret) {
      auto pw = SecretValue(*secret, "password");
      if (pw && PrintableAscii(*pw)) in.secret_password = *pw;
    }
    const std::string observed_request =
        b.status.value("/passwordRotation/observedRequest"_json_pointer, "");
    in.rotation_requested =
        !spec.rotate_password_request.empty() && spec.rotate_password_request != observed_request;
    auto sql_failed = [&](const Status& s) {
      std::string message = "Postgres on PostgresCluster " + spec.cluster.ToString() + ": " +
                            s.message() + "; retrying with backoff";
      b.NotReady("Pending", "PostgresError", message);
      return Fail(attachment, b, Status(s.code(), message));
    };
    auto role =
        pg.ObserveRole(spec.role_name, spec.connection_limit, in.secret_password.value_or(""));
    if (!role.ok()) return sql_failed(role.status());
    in.role = *role;
    auto db = pg.ObserveDatabase(spec.database_name, spec.role_name, spec.privileges);
    if (!db.ok()) return sql_failed(db.status());
    in.database = *db;
    auto fresh = d_.generate_password();
    if (!fresh.ok()) return fresh.status();
    in.fresh_password = *fresh;

    AttachPlan plan = PlanAttach(in);
    if (plan.refusal) {
      const Refusal& r = *plan.refusal;
      b.Condition(r.condition, ConditionStatus::kFalse, r.reason, r.message);
      b.NotReady(r.wait ? "Pending" : "Refused", r.reason, r.message);
      if (!r.wait) WarnOnTransition(attachment, r.reason, r.message);
      return Finish(attachment, b,
                    ReconcileResult::RequeueAfter(r.wait ? kWaitForInput : kRefusedRecheck));
    }

    // Before the first change in Postgres, so deletion always detaches (no write when present).
    PETREL_RETURN_IF_ERROR(EnsureFinalizer(attachment));
    for (const PgStep& step : plan.steps) {
      Status s = Execute(pg, step, spec, plan, key);
      if (!s.ok()) return sql_failed(s);
      spdlog::info("attachment {}: {} done", key.ToString(), PgStepName(step.kind));
    }
    b.Condition("RoleReady", ConditionStatus::kTrue, "RoleReady",
                "role \"" + spec.role_name + "\" can log in with the Secret's password");
    b.Condition("DatabaseReady", ConditionStatus::kTrue, "DatabaseReady",
                "database \"" + spec.database_name + "\" is ready with " +
                    PrivilegesName(spec.privileges) + " privileges");
    b.status["roleName"] = spec.role_name;
    b.status["databaseName"] = spec.database_name;
    b.status["privileges"] = PrivilegesName(spec.privileges);
    b.status["clusterNamespace"] = spec.cluster.namespace_;
    for (const PgStep& step : plan.steps) {
      if (step.kind == PgStepKind::kCreateRole) {
        d_.events->Record(attachment, EventType::kNormal, "Attached", "Attach",
                          "created role \"" + spec.role_name + "\" on PostgresCluster " +
                              spec.cluster.ToString());
      }
    }
    if (in.rotation_requested) {
      b.status["passwordRotation"]["observedRequest"] = spec.rotate_password_request;
    }
    if (plan.new_password && in.role.exists) {
      b.status["passwordRotation"]["rotatedAt"] = b.now;
      d_.events->Record(attachment, EventType::kNormal, "PasswordRotated", "RotatePassword",
                        "role \"" + spec.role_name + "\" has a new password in Secret " +
                            spec.secret_name +
                            "; existing sessions continue, new connections need it");
    }

    // The Secret last: it only ever holds a password the role already has.
    ConnectionDetails details;
    details.read_write = ServiceAddress{};
    {
      auto rw = d_.resolve_service({spec.cluster.namespace_, ServiceNameFor(spec.cluster, "-rw")});
      auto ro = d_.resolve_service({spec.cluster.namespace_, ServiceNameFor(spec.cluster, "-ro")});
      if (!rw.ok()) return rw.status();
      details.read_write = *rw;
      details.read_only = ro.ok() ? *ro : *rw;
    }
    details.database = spec.database_name;
    details.user = spec.role_name;
    details.password = plan.password;
    Json desired = DesiredSecret(attachment, spec.secret_name, spec.cluster.name,
                                 ConnectionSecretData(details));
    if (!secret) {
      auto created = d_.client->Create(resources::kSecret, desired);
      if (!created.ok())
        return created.status().Annotate("creating Secret " + secret_key.ToString());
    } else if ((*secret)["data"] != desired["data"] ||
               secret->value("/metadata/labels"_json_pointer, Json::object()) !=
                   desired["metadata"]["labels"]) {
      Json updated = *secret;
      updated["data"] = desired["data"];
      updated["metadata"]["labels"] = desired["metadata"]["labels"];
      auto r = d_.client->Update(resources::kSecret, updated);
      if (!r.ok()) return r.status().Annotate("updating Secret " + secret_key.ToString());
    }
    // spec.secretName changed: the previous Secret (ours) goes, so only one holds the password.
    const std::string previous = b.status.value("secretName", "");
    if (!previous.empty() && previous != spec.secret_name) {
      PETREL_RETURN_IF_ERROR(DeleteOwnedSecret(attachment, {key.namespace_, previous}));
    }
    b.status["secretName"] = spec.secret_name;
    b.Condition("SecretReady", ConditionStatus::kTrue, "SecretReady",
                "Secret " + spec.secret_name + " holds DATABASE_URL");
    b.status["phase"] = "Ready";
    b.Condition("Ready", ConditionStatus::kTrue, "Attached",
                "attached to database \"" + spec.database_name + "\" on PostgresCluster " +
                    spec.cluster.ToString());
    return Finish(attachment, b, ReconcileResult::RequeueAfter(d_.resync));
  }

  // The cluster withdrew its consent after this attachment was made: the role stops logging
  // in (its sessions end) and the Secret goes; the role, its grants and the database with its
  // data stay, so consent given again restores access (with a new password) and deleting the
  // attachment still detaches. Steady state only reads.
  Result<ReconcileResult> Revoke(const Json& attachment, const AttachmentSpec& spec,
                                 const std::string& why, StatusBuilder& b) {
    const ObjectKey key = meta::Key(attachment);
    std::string where;
    auto admin = ConnectAdmin(spec.cluster, &where);
    Status s = admin.ok() ? Status::Ok() : admin.status();
    if (s.ok()) {
      auto role = (*admin)->ObserveRole(spec.role_name, spec.connection_limit, "");
      if (!role.ok()) {
        s = role.status();
      } else if (role->exists && role->managed_by == key && role->can_login) {
        s = (*admin)->RevokeLogin(spec.role_name);
        if (s.ok())
          spdlog::info("attachment {}: login of role {} revoked", key.ToString(), spec.role_name);
      }
    }
    if (!s.ok()) {
      std::string message = why + "; revoking the access of role \"" + spec.role_name +
                            "\" on PostgresCluster " + spec.cluster.ToString() +
                            (where.empty() ? "" : " at " + where) + " failed: " + s.message() +
                            "; retrying with backoff";
      b.NotReady("Refused", "RevokePending", message);
      return Fail(attachment, b, Status(s.code(), message));
    }
    const std::string secret_name = b.status.value("secretName", "");
    if (!secret_name.empty()) {
      PETREL_RETURN_IF_ERROR(DeleteOwnedSecret(attachment, {key.namespace_, secret_name}));
    }
    std::string revoked =
        "role \"" + spec.role_name + "\" can no longer log in" +
        (secret_name.empty() ? "" : " and Secret " + secret_name + " was removed");
    std::string message = why + ". Access was revoked: " + revoked + "; database \"" +
                          spec.database_name +
                          "\" and its data are kept. Admit the namespace again to restore access "
                          "with a new password, or delete the attachment to detach";
    b.Condition("RoleReady", ConditionStatus::kFalse, "AccessRevoked",
                "role \"" + spec.role_name +
                    "\" cannot log in: the cluster no longer admits "
                    "this namespace");
    if (!secret_name.empty()) {
      b.Condition("SecretReady", ConditionStatus::kFalse, "SecretRemoved",
                  "Secret " + secret_name + " was removed when access was revoked");
    }
    b.NotReady("Refused", "AccessRevoked", message);
    WarnOnTransition(attachment, "AccessRevoked", message);
    return Finish(attachment, b, ReconcileResult::RequeueAfter(kRefusedRecheck));
  }

  Status Execute(PgAdmin& pg, const PgStep& step, const AttachmentSpec& spec,
                 const AttachPlan& plan, const ObjectKey& key) {
    switch (step.kind) {
      case PgStepKind::kCreateRole:
        return pg.CreateRole(spec.role_name, plan.password, spec.connection_limit, RoleMarker(key));
      case PgStepKind::kResetRoleAttributes:
        return pg.ResetRoleAttributes(spec.role_name, spec.connection_limit);
      case PgStepKind::kSetPassword:
        return pg.SetPassword(spec.role_name, plan.password);
      case PgStepKind::kCreateDatabase:
        return pg.CreateDatabase(spec.database_name, spec.role_name);
      case PgStepKind::kRevokePublicConnect:
        return pg.RevokePublicConnect(spec.database_name);
      case PgStepKind::kGrantAccess:
        return pg.GrantAccess(spec.database_name, spec.role_name, plan.owner, spec.privileges);
    }
    return InternalError("unknown step");
  }

  // Deletes the Secret when this attachment controls it; absent is fine.
  Status DeleteOwnedSecret(const Json& attachment, const ObjectKey& secret_key) {
    auto secret = d_.client->Get(resources::kSecret, secret_key);
    if (!secret.ok()) {
      return secret.status().code() == Code::kNotFound
                 ? Status::Ok()
                 : secret.status().Annotate("reading Secret " + secret_key.ToString());
    }
    auto owner = meta::ControllerOf(*secret);
    if (!owner || owner->uid != meta::Uid(attachment)) return Status::Ok();
    DeleteOptions opts;
    opts.precondition_uid = meta::Uid(*secret);
    Status s = d_.client->Delete(resources::kSecret, secret_key, opts);
    if (!s.ok() && s.code() != Code::kNotFound) {
      return s.Annotate("deleting Secret " + secret_key.ToString());
    }
    return Status::Ok();
  }

  // --------------------------------------------------------------------------------------
  Result<ReconcileResult> Detach(const Json& attachment) {
    if (!meta::HasFinalizer(attachment, kDetachFinalizer)) return ReconcileResult::Done();
    const ObjectKey key = meta::Key(attachment);
    StatusBuilder b = NewStatus(attachment);
    const std::string role = b.status.value("roleName", "");
    std::string cluster_ns = b.status.value("clusterNamespace", "");
    if (cluster_ns.empty()) {
      cluster_ns = attachment.value("/spec/clusterRef/namespace"_json_pointer, key.namespace_);
    }
    const ObjectKey cluster{cluster_ns, attachment.value("/spec/clusterRef/name"_json_pointer, "")};
    OwnedObjectsPolicy policy = OwnedObjectsPolicy::kReassign;
    std::string reassign_to;
    if (auto spec = ParseAttachment(attachment); spec.ok()) {
      policy = spec->owned_objects;
      reassign_to = spec->reassign_owned_to;
    }

    if (!role.empty()) {
      if (!d_.reader->Get(resources::kPostgresCluster, cluster)) {
        d_.events->Record(attachment, EventType::kWarning, "ClusterGone", "Detach",
                          "PostgresCluster " + cluster.ToString() + " no longer exists; role \"" +
                              role +
                              "\" could not be dropped there. Detach finished in Kubernetes only");
      } else {
        std::string where;
        auto admin = ConnectAdmin(cluster, &where);
        Status s = admin.ok() ? Status::Ok() : admin.status();
        std::optional<RoleObservation> observed;
        if (s.ok()) {
          auto r = (*admin)->ObserveRole(role, -1, "");
          if (r.ok())
            observed = *r;
          else
            s = r.status();
        }
        if (s.ok() && observed->exists && observed->managed_by == key) {
          s = (*admin)->DetachRole(role, policy, reassign_to);
          if (s.ok()) {
            d_.events->Record(attachment, EventType::kNormal, "Detached", "Detach",
                              "dropped role \"" + role + "\" on PostgresCluster " +
                                  cluster.ToString() + "; the database was kept");
          }
        } else if (s.ok() && observed->exists) {
          d_.events->Record(attachment, EventType::kWarning, "RoleNotManaged", "Detach",
                            "role \"" + role +
                                "\" is not marked as this attachment's; it was "
                                "left in place");
        }
        if (!s.ok()) {
          std::string message = "detaching from PostgresCluster " + cluster.ToString() +
                                (where.empty() ? "" : " at " + where) + ": " + s.message() +
                                "; retrying with backoff";
          b.NotReady("Detaching", "DetachPending", message);
          return Fail(attachment, b, Status(s.code(), message));
        }
      }
    }

    // The Secret, when it is ours (without a garbage collector, nobody else removes it).
    std::string secret_name = b.status.value("secretName", "");
    if (!secret_name.empty()) {
      PETREL_RETURN_IF_ERROR(DeleteOwnedSecret(attachment, {key.namespace_, secret_name}));
    }

    Json updated = attachment;
    Json kept = Json::array();
    for (const auto& f : attachment["metadata"]["finalizers"]) {
      if (f != kDetachFinalizer) kept.push_back(f);
    }
    updated["metadata"]["finalizers"] = kept;
    auto r = d_.client->Update(resources::kPostgresAttachment, updated);
    if (!r.ok() && r.status().code() != Code::kNotFound) {
      return r.status().Annotate("removing the finalizer");
    }
    return ReconcileResult::Done();
  }

  AttachmentReconcilerDeps d_;
};

}  // namespace

ServiceResolver KubernetesDnsResolver() {
  return [](const ObjectKey& service) -> Result<ServiceAddress> {
    return ServiceAddress{service.name + "." + service.namespace_ + ".svc", 5432};
  };
}

ServiceResolver ServiceObjectResolver(const ObjectReader& reader) {
  return [&reader](const ObjectKey& key) -> Result<ServiceAddress> {
    ObjectPtr svc = reader.Get(resources::kService, key);
    if (!svc) return NotFoundError("Service " + key.ToString() + " not found");
    ServiceAddress out;
    out.port = svc->value("/spec/ports/0/port"_json_pointer, 5432);
    std::string local = meta::Annotation(*svc, "petrel.dev/local-address");
    if (!local.empty()) {
      auto colon = local.rfind(':');
      if (colon != std::string::npos && local.find(':') == colon) {
        out.host = local.substr(0, colon);
        try {
          out.port = std::stoi(local.substr(colon + 1));
        } catch (const std::exception&) {
          return InvalidError("Service " + key.ToString() +
                              ": annotation petrel.dev/local-address is not host[:port]");
        }
      } else {
        out.host = local;
      }
      return out;
    }
    out.host = svc->value("/spec/clusterIP"_json_pointer, "");
    if (out.host.empty() || out.host == "None") {
      return UnavailableError("Service " + key.ToString() + " has no address yet");
    }
    return out;
  };
}

ServiceResolver DefaultServiceResolver(const ObjectReader& reader) {
  return [&reader, by_object = ServiceObjectResolver(reader),
          dns = KubernetesDnsResolver()](const ObjectKey& key) -> Result<ServiceAddress> {
    ObjectPtr svc = reader.Get(resources::kService, key);
    if (svc) {
      const bool annotated = !meta::Annotation(*svc, "petrel.dev/local-address").empty();
      // `petrel local` allocates cluster IPs from a loopback block; real clusters never do.
      const bool loopback = svc->value("/spec/clusterIP"_json_pointer, "").rfind("127.", 0) == 0;
      if (annotated || loopback) return by_object(key);
    }
    return dns(key);
  };
}

std::vector<ObjectKey> AttachmentsReferencingCluster(const ObjectReader& reader,
                                                     const Json& cluster) {
  const ObjectKey key = meta::Key(cluster);
  std::vector<ObjectKey> out;
  for (const auto& a : reader.List(resources::kPostgresAttachment, "")) {
    std::string ns = a->value("/spec/clusterRef/namespace"_json_pointer, "");
    if (ns.empty()) ns = meta::Namespace(*a);
    if (ns == key.namespace_ && a->value("/spec/clusterRef/name"_json_pointer, "") == key.name) {
      out.push_back(meta::Key(*a));
    }
  }
  return out;
}

std::vector<ObjectKey> AttachmentsInNamespace(const ObjectReader& reader, const Json& ns) {
  std::vector<ObjectKey> out;
  for (const auto& a : reader.List(resources::kPostgresAttachment, meta::Name(ns))) {
    out.push_back(meta::Key(*a));
  }
  return out;
}

std::unique_ptr<Reconciler> NewAttachmentReconciler(AttachmentReconcilerDeps deps) {
  return std::make_unique<AttachmentReconciler>(std::move(deps));
}

}  // namespace petrel
