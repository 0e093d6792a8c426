// PgAdmin: the Postgres side of a PostgresAttachment as the reconciler sees it — observe a
// role and a database, create and repair them, rotate a password, detach. One PgAdmin is bound
// to one cluster primary for the length of one reconcile. The real implementation
// (reconcilers/attachment_pg_admin.h) runs pg/attach_sql over libpq; unit tests use a fake.
// Passwords passed in are never logged or put into returned messages.
// Thread-safety: one thread at a time per PgAdmin.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "api/attachment.h"
#include "core/status.h"

namespace petrel {

// Where and as whom to connect: the cluster's primary, as the superuser.
struct PgTarget {
  std::string host;
  int port = 5432;
  std::string user = kPostgresSuperuser;
  std::string password;  // secret
};

struct RoleObservation {
  bool exists = false;
  // Who the role's COMMENT marker names; nullopt for a role Petrel did not create.
  std::optional<ObjectKey> managed_by;
  bool attributes_match = false;  // LOGIN, NOSUPERUSER, ..., CONNECTION LIMIT as desired
  bool password_matches = false;  // the stored SCRAM verifier matches the given password
  bool can_login = false;         // LOGIN (false after RevokeLogin)
};

struct DatabaseObservation {
  bool exists = false;
  std::string owner;
  bool public_can_connect = false;
  bool access_complete = false;  // readWrite/readOnly grants all in place (always true for owner)
};

class PgAdmin {
 public:
  virtual ~PgAdmin() = default;
  // `password` is the one the role should have ("" = do not check).
  virtual Result<RoleObservation> ObserveRole(const std::string& role, int connection_limit,
                                              const std::string& password) = 0;
  virtual Result<DatabaseObservation> ObserveDatabase(const std::string& database,
                                                      const std::string& role,
                                                      AttachmentPrivileges privileges) = 0;
  virtual Status CreateRole(const std::string& role, const std::string& password,
                            int connection_limit, const std::string& marker) = 0;
  virtual Status ResetRoleAttributes(const std::string& role, int connection_limit) = 0;
  virtual Status SetPassword(const std::string& role, const std::string& password) = 0;
  virtual Status CreateDatabase(const std::string& database, const std::string& owner) = 0;
  virtual Status RevokePublicConnect(const std::string& database) = 0;
  virtual Status GrantAccess(const std::string& database, const std::string& role,
                             const std::string& database_owner,
                             AttachmentPrivileges privileges) = 0;
  // NOLOGIN and end the role's sessions; the role, its grants and its database stay, so a
  // later ResetRoleAttributes restores access. Idempotent; a missing role is Ok.
  virtual Status RevokeLogin(const std::string& role) = 0;
  // NOLOGIN, end the role's sessions, hand over owned databases, REASSIGN/DROP OWNED in every
  // database it has objects or privileges in, DROP ROLE. Idempotent; a missing role is Ok.
  // reassign_to "" = each database's owner, or postgres where that is the role itself.
  virtual Status DetachRole(const std::string& role, OwnedObjectsPolicy policy,
                            const std::string& reassign_to) = 0;
};

// Connects to a target; Unavailable when the server cannot be reached.
using PgAdminFactory = std::function<Result<std::unique_ptr<PgAdmin>>(const PgTarget&)>;

}  // namespace petrel
