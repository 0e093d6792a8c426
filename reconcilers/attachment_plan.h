// The pure half of the attachment reconciler: admission of a cross-namespace attachment by
// its cluster, claims and conflicts between attachments, the Secret's contents, what to do in
// Postgres, and the status conditions. No I/O; every function is deterministic given its
// inputs (the fresh password and the time are inputs). Thread-safe.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/attachment.h"
#include "core/base64.h"
#include "core/object.h"
#include "reconcilers/pg_admin.h"

namespace petrel {

// ---- Admission -------------------------------------------------------------------------

struct Admission {
  bool admitted = false;
  std::string message;  // when refused: which field of which cluster to change
};
// The cluster's own namespace is always admitted; otherwise spec.attachments.allowedNamespaces
// (a list; "*" = any) or spec.attachments.namespaceSelector (a metav1.LabelSelector matched
// against the namespace's labels; absent or empty matches nothing) must admit it.
Admission AdmitNamespace(const Json& cluster, const std::string& attachment_namespace,
                         const std::map<std::string, std::string>& namespace_labels);

// ---- Claims ----------------------------------------------------------------------------

// What one attachment claims on a cluster.
struct AttachmentClaim {
  ObjectKey attachment;
  std::string creation_timestamp;  // RFC 3339, compares lexicographically
  ObjectKey cluster;
  std::string role;
  std::string database;
  AttachmentPrivileges privileges = AttachmentPrivileges::kOwner;
};
std::optional<AttachmentClaim> ClaimOf(const Json& attachment);

// The earlier attachment (creationTimestamp, then namespace/name) keeps a role name, and an
// owner database name; the later gets a message naming the winner. Sharing a database as
// readWrite/readOnly is not a conflict.
std::optional<std::string> FindConflict(const AttachmentClaim& self,
                                        const std::vector<AttachmentClaim>& others);

// ---- Secret ----------------------------------------------------------------------------

struct ServiceAddress {
  std::string host;
  int port = 5432;
};

struct ConnectionDetails {
  ServiceAddress read_write;
  ServiceAddress read_only;
  std::string database;
  std::string user;
  std::string password;
};

// RFC 3986 percent-encoding of everything but the unreserved characters A-Z a-z 0-9 - . _ ~.
std::string PercentEncode(std::string_view in);

// The Secret's keys (cleartext values): DATABASE_URL, DATABASE_READONLY_URL, uri, jdbc-uri,
// host, port, dbname, user, username, password, pgpass. URLs carry sslmode=disable: Petrel
// serves no TLS yet, and saying so keeps drivers from attempting a handshake.
std::map<std::string, std::string> ConnectionSecretData(const ConnectionDetails& details);

// The whole Secret (type Opaque, owned by the attachment via a controller ownerReference,
// labelled petrel.dev/cluster and app.kubernetes.io/managed-by=petrel), data base64-encoded.
Json DesiredSecret(const Json& attachment, const std::string& name, const std::string& cluster,
                   const std::map<std::string, std::string>& data);

// A Secret's data[key] decoded; nullopt when absent or malformed.
std::optional<std::string> SecretValue(const Json& secret, const std::string& key);

// ---- Postgres plan ---------------------------------------------------------------------

enum class PgStepKind {
  kCreateRole,
  kResetRoleAttributes,
  kSetPassword,
  kCreateDatabase,
  kRevokePublicConnect,
  kGrantAccess,
};
const char* PgStepName(PgStepKind kind);

struct PgStep {
  PgStepKind kind;
  bool operator==(const PgStep&) const = default;
};

struct AttachInputs {
  AttachmentSpec spec;
  ObjectKey attachment;
  RoleObservation role;
  DatabaseObservation database;
  std::optional<std::string> secret_password;  // the Secret's password, when it has a usable one
  std::string fresh_password;                  // a newly generated one, used only if needed
  bool rotation_requested = false;             // the annotation differs from status' echo
};

struct Refusal {
  std::string condition;  // RoleReady | DatabaseReady
  std::string reason;     // UpperCamelCase
  std::string message;
  bool wait = false;  // true: retry later (e.g. the database is not there yet)
};

struct AttachPlan {
  std::optional<Refusal> refusal;  // set: do nothing in Postgres
  std::vector<PgStep> steps;       // in order
  std::string password;            // the password the role has after the steps
  bool new_password = false;       // password differs from the Secret's (rotation or reissue)
  std::string owner;               // database owner used for grants
};
AttachPlan PlanAttach(const AttachInputs& in);

// ---- Status ----------------------------------------------------------------------------

enum class ConditionStatus { kTrue, kFalse, kUnknown };

// Sets conditions[type] (a metav1.Condition list), keeping lastTransitionTime when the status
// did not change. `now` is RFC 3339.
void SetCondition(Json& conditions, const std::string& type, ConditionStatus status,
                  const std::string& reason, const std::string& message, int64_t generation,
                  const std::string& now);

// True when two status objects differ in anything but condition timestamps.
bool StatusDiffers(const Json& a, const Json& b);

}  // namespace petrel
