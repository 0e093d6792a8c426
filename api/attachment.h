// PostgresAttachment (petrel.dev/v1alpha1): "attach an app to a cluster". One namespaced
// object in the application's namespace asks for a database and a least-privilege login role
// on a PostgresCluster, published as a Secret holding DATABASE_URL. This header is the typed,
// validated view of the object's spec with every default resolved (defaults live here and in
// status, never written back into spec). Pure functions; thread-safe on distinct values.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/object.h"
#include "core/status.h"
#include "core/types.h"

namespace petrel {

// What the attachment's role may do in its database.
enum class AttachmentPrivileges {
  kOwner,      // the role owns a database created for it; nobody else may connect
  kReadWrite,  // an existing database: read and write rows in schema public
  kReadOnly,   // an existing database: read rows in schema public
};
const char* PrivilegesName(AttachmentPrivileges p);  // "owner" | "readWrite" | "readOnly"

// What detach does with objects (tables, sequences, ...) the role owns.
enum class OwnedObjectsPolicy {
  kReassign,  // REASSIGN OWNED to reassignOwnedTo (default): the data stays
  kDrop,      // DROP OWNED: objects owned by the role are dropped with it
};
const char* OwnedObjectsPolicyName(OwnedObjectsPolicy p);  // "reassign" | "drop"

// The annotation that asks for a new password: set it to any new value; once the new password
// is live the value is echoed in status.passwordRotation.observedRequest.
inline constexpr const char* kRotatePasswordAnnotation = "petrel.dev/rotate-password";

// The finalizer that makes deletion detach (revoke, drop the role) before the object goes.
inline constexpr const char* kDetachFinalizer = "petrel.dev/detach";

// The Postgres superuser Petrel connects as, and the default reassignOwnedTo target when the
// detaching role owns its database.
inline constexpr const char* kPostgresSuperuser = "postgres";

struct AttachmentSpec {
  ObjectKey cluster;          // clusterRef, namespace defaulted to the attachment's
  std::string database_name;  // resolved (default: metadata.name with '-' -> '_')
  std::string role_name;      // resolved (default: same as database_name)
  AttachmentPrivileges privileges = AttachmentPrivileges::kOwner;
  int connection_limit = -1;  // -1 = no limit
  std::string secret_name;    // resolved (default: "<metadata.name>-database")
  OwnedObjectsPolicy owned_objects = OwnedObjectsPolicy::kReassign;
  std::string reassign_owned_to;  // "" = the database owner, or postgres when that is the role
  std::string rotate_password_request;  // the annotation's value, "" when absent
};

// Parses and validates a PostgresAttachment object. Invalid input returns kInvalid with one
// StatusCause per offending field (field path, the rule, the value when it is safe to show).
Result<AttachmentSpec> ParseAttachment(const Json& object);

// Default database/role name for an attachment named `name`: '-' and '.' become '_'.
std::string DefaultIdentifierFor(const std::string& name);

// Checks a role or database name against Petrel's identifier rule: 1-63 bytes of [a-z0-9_],
// starting with a letter or '_', and not reserved (postgres, template0, template1,
// streaming_replica, petrel*, pg_*). Returns "" when valid, else a sentence that says the rule.
std::string IdentifierProblem(std::string_view ident);

// Validation of reassignOwnedTo: the same syntax rule, but `postgres` is allowed.
std::string ReassignTargetProblem(std::string_view ident);

// The marker Petrel writes as COMMENT ON ROLE for roles it manages, and its parser.
// A role whose comment does not parse as a marker was not created by Petrel and is never
// altered, taken over or dropped.
std::string RoleMarker(const ObjectKey& attachment);
std::optional<ObjectKey> ParseRoleMarker(std::string_view comment);

}  // namespace petrel
