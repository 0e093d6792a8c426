#include "reconcilers/attachment_plan.h"

#include <algorithm>

#include "api/cluster.h"

namespace petrel {

// ---- Admission -------------------------------------------------------------------------

Admission AdmitNamespace(const Json& cluster, const std::string& ns,
                         const std::map<std::string, std::string>& namespace_labels) {
  const std::string cluster_ns = meta::Namespace(cluster);
  // Only spec.attachments is read (a cluster invalid elsewhere still answers for consent);
  // the decision itself is the cluster API's AttachmentPolicy::Allows.
  AttachmentPolicy policy;
  const Json attachments = cluster.value("/spec/attachments"_json_pointer, Json::object());
  if (attachments.is_object()) {
    if (auto list = attachments.find("allowedNamespaces");
        list != attachments.end() && list->is_array()) {
      for (const auto& entry : *list) {
        if (entry.is_string()) policy.allowed_namespaces.push_back(entry.get<std::string>());
      }
    }
    if (auto sel = attachments.find("namespaceSelector");
        sel != attachments.end() && sel->is_object()) {
      policy.namespace_selector = LabelSelector::FromJson(*sel);
    }
  }
  if (policy.Allows(cluster_ns, ns, namespace_labels)) return {true, ""};
  const std::string cluster_key = ObjectKey{cluster_ns, meta::Name(cluster)}.ToString();
  return {false, "PostgresCluster " + cluster_key + " does not admit attachments from namespace " +
                     ns + ": add \"" + ns + "\" to spec.attachments.allowedNamespaces of " +
                     "PostgresCluster " + cluster_key + ", or label namespace " + ns +
                     " to match its spec.attachments.namespaceSelector"};
}

// ---- Claims ----------------------------------------------------------------------------

std::optional<AttachmentClaim> ClaimOf(const Json& attachment) {
  auto spec = ParseAttachment(attachment);
  if (!spec.ok()) return std::nullopt;
  AttachmentClaim c;
  c.attachment = meta::Key(attachment);
  c.creation_timestamp = attachment.value("/metadata/creationTimestamp"_json_pointer, "");
  c.cluster = spec->cluster;
  c.role = spec->role_name;
  c.database = spec->database_name;
  c.privileges = spec->privileges;
  return c;
}

namespace {
bool Earlier(const AttachmentClaim& a, const AttachmentClaim& b) {
  if (a.creation_timestamp != b.creation_timestamp) {
    // An empty timestamp (not yet persisted) sorts last.
    if (a.creation_timestamp.empty()) return false;
    if (b.creation_timestamp.empty()) return true;
    return a.creation_timestamp < b.creation_timestamp;
  }
  return a.attachment < b.attachment;
}
}  // namespace

std::optional<std::string> FindConflict(const AttachmentClaim& self,
                                        const std::vector<AttachmentClaim>& others) {
  for (const auto& o : others) {
    if (o.attachment == self.attachment || o.cluster != self.cluster) continue;
    if (!Earlier(o, self)) continue;
    if (o.role == self.role) {
      return "role \"" + self.role + "\" on PostgresCluster " + self.cluster.ToString() +
             " is already claimed by PostgresAttachment " + o.attachment.ToString() +
             "; set a different spec.roleName";
    }
    if (o.database == self.database && o.privileges == AttachmentPrivileges::kOwner &&
        self.privileges == AttachmentPrivileges::kOwner) {
      return "database \"" + self.database + "\" on PostgresCluster " + self.cluster.ToString() +
             " is already owned through PostgresAttachment " + o.attachment.ToString() +
             "; set a different spec.databaseName, or privileges readWrite/readOnly to share it";
    }
  }
  return std::nullopt;
}

// ---- Secret ----------------------------------------------------------------------------

std::string PercentEncode(std::string_view in) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : in) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

namespace {
// pgpass fields escape ':' and '\' with a backslash.
std::string PgpassField(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string Url(const ServiceAddress& a, const ConnectionDetails& d) {
  return "postgres://" + PercentEncode(d.user) + ":" + PercentEncode(d.password) + "@" + a.host +
         ":" + std::to_string(a.port) + "/" + PercentEncode(d.database) + "?sslmode=disable";
}
}  // namespace

std::map<std::string, std::string> ConnectionSecretData(const ConnectionDetails& d) {
  const std::string port = std::to_string(d.read_write.port);
  std::map<std::string, std::string> out;
  out["DATABASE_URL"] = Url(d.read_write, d);
  out["DATABASE_READONLY_URL"] = Url(d.read_only, d);
  out["uri"] = out["DATABASE_URL"];
  out["jdbc-uri"] = "jdbc:postgresql://" + d.read_write.host + ":" + port + "/" +
                    PercentEncode(d.database) + "?user=" + PercentEncode(d.user) +
                    "&password=" + PercentEncode(d.password) + "&sslmode=disable";
  out["host"] = d.read_write.host;
  out["port"] = port;
  out["dbname"] = d.database;
  out["user"] = d.user;
  out["username"] = d.user;
  out["password"] = d.password;
  out["pgpass"] = PgpassField(d.read_write.host) + ":" + port + ":" + PgpassField(d.database) +
                  ":" + PgpassField(d.user) + ":" + PgpassField(d.password) + "\n";
  return out;
}

Json DesiredSecret(const Json& attachment, const std::string& name, const std::string& cluster,
                   const std::map<std::string, std::string>& data) {
  Json encoded = Json::object();
  for (const auto& [k, v] : data) encoded[k] = Base64Encode(v);
  return Json{{"apiVersion", "v1"},
              {"kind", "Secret"},
              {"metadata",
               {{"name", name},
                {"namespace", meta::Namespace(attachment)},
                {"labels",
                 {{"app.kubernetes.io/managed-by", "petrel"},
                  {"petrel.dev/cluster", cluster},
                  {"petrel.dev/attachment", meta::Name(attachment)}}},
                {"ownerReferences", Json::array({meta::ControllerRefTo(attachment)})}}},
              {"type", "Opaque"},
              {"data", encoded}};
}



std::optional<std::string> SecretValue(const Json& secret, const std::string& key) {
  auto data = secret.find("data");
  if (data == secret.end() || !data->is_object()) return std::nullopt;
  auto it = data->find(key);
  if (it == data->end() || !it->is_string()) return std::nullopt;
  return Base64Decode(it->get<std::string>());
}

// ---- Postgres plan ---------------------------------------------------------------------

const char* PgStepName(PgStepKind kind) {
  switch (kind) {
    case PgStepKind::kCreateRole:
      return "CreateRole";
    case PgStepKind::kResetRoleAttributes:
      return "ResetRoleAttributes";
    case PgStepKind::kSetPassword:
      return "SetPassword";
    case PgStepKind::kCreateDatabase:
      return "CreateDatabase";
    case PgStepKind::kRevokePublicConnect:
      return "RevokePublicConnect";
    case PgStepKind::kGrantAccess:
      return "GrantAccess";
  }
  return "?";
}

AttachPlan PlanAttach(const AttachInputs& in) {
  AttachPlan plan;
  const auto& spec = in.spec;
  const std::string& role = spec.role_name;
  const std::string& db = spec.database_name;

  // Refusals first: nothing is created when any of them applies.
  if (in.role.exists && in.role.managed_by != in.attachment) {
    std::string message =
        in.role.managed_by
            ? "role \"" + role + "\" already belongs to PostgresAttachment " +
                  in.role.managed_by->ToString() + "; set a different spec.roleName"
            : "role \"" + role +
                  "\" exists in Postgres and was not created by Petrel; Petrel "
                  "never takes over or drops such roles. Set a different spec.roleName, or drop "
                  "the role by hand";
    plan.refusal = Refusal{"RoleReady", "RoleNotManaged", message, false};
    return plan;
  }
  if (spec.privileges == AttachmentPrivileges::kOwner) {
    if (in.database.exists && in.database.owner != role) {
      plan.refusal = Refusal{
          "DatabaseReady", "DatabaseOwnedByOtherRole",
          "database \"" + db + "\" exists and is owned by role \"" + in.database.owner +
              "\"; Petrel does not take over existing databases. Use privileges readWrite or "
              "readOnly to share it, set a different spec.databaseName, or change its owner "
              "by hand (ALTER DATABASE ... OWNER TO ...)",
          false};
      return plan;
    }
  } else if (!in.database.exists) {
    plan.refusal = Refusal{"DatabaseReady", "DatabaseNotFound",
                           "database \"" + db + "\" does not exist; privileges " +
                               PrivilegesName(spec.privileges) +
                               " attach to an existing database (create it with an owner "
                               "attachment first)",
                           true};
    return plan;
  }

  // The password: the Secret's, unless rotation was asked for or there is none.
  if (in.secret_password && !in.rotation_requested) {
    plan.password = *in.secret_password;
  } else {
    plan.password = in.fresh_password;
    plan.new_password = true;
  }

  if (!in.role.exists) {
    plan.steps.push_back({PgStepKind::kCreateRole});
  } else {
    if (!in.role.attributes_match) plan.steps.push_back({PgStepKind::kResetRoleAttributes});
    if (plan.new_password || !in.role.password_matches) {
      plan.steps.push_back({PgStepKind::kSetPassword});
    }
  }
  if (spec.privileges == AttachmentPrivileges::kOwner) {
    plan.owner = role;
    if (!in.database.exists) {
      plan.steps.push_back({PgStepKind::kCreateDatabase});
      plan.steps.push_back({PgStepKind::kRevokePublicConnect});
    } else if (in.database.public_can_connect) {
      plan.steps.push_back({PgStepKind::kRevokePublicConnect});
    }
  } else {
    plan.owner = in.database.owner;
    if (!in.role.exists || !in.database.access_complete) {
      plan.steps.push_back({PgStepKind::kGrantAccess});
    }
  }
  return plan;
}

// ---- Status ----------------------------------------------------------------------------

namespace {
const char* StatusName(ConditionStatus s) {
  switch (s) {
    case ConditionStatus::kTrue:
      return "True";
    case ConditionStatus::kFalse:
      return "False";
    case ConditionStatus::kUnknown:
      return "Unknown";
  }
  return "Unknown";
}
}  // namespace

void SetCondition(Json& conditions, const std::string& type, ConditionStatus status,
                  const std::string& reason, const std::string& message, int64_t generation,
                  const std::string& now) {
  if (!conditions.is_array()) conditions = Json::array();
  Json cond = {
      {"type", type},       {"status", StatusName(status)},     {"reason", reason},
      {"message", message}, {"observedGeneration", generation}, {"lastTransitionTime", now}};
  for (auto& c : conditions) {
    if (c.value("type", "") == type) {
      if (c.value("status", "") == cond["status"]) {
        cond["lastTransitionTime"] = c.value("lastTransitionTime", now);
      }
      c = cond;
      return;
    }
  }
  conditions.push_back(cond);
}

bool StatusDiffers(const Json& a, const Json& b) {
  auto strip = [](Json s) {
    if (s.is_object() && s.contains("conditions") && s["conditions"].is_array()) {
      for (auto& c : s["conditions"]) c.erase("lastTransitionTime");
    }
    return s;
  };
  return strip(a) != strip(b);
}

}  // namespace petrel
