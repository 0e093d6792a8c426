// The SQL behind PostgresAttachment: create and reconcile a least-privilege login role and its
// database, grant access to a shared database, detach (disable, end sessions, reassign or drop
// what the role owns, drop the role), rotate the password, and the read-only listings behind
// "users list" / "db list".
//
// SQL hygiene: every identifier goes through PgConn::QuoteIdent and every value is a $n
// parameter or goes through PgConn::QuoteLiteral (utility statements such as CREATE ROLE take
// no parameters); nothing user-supplied is formatted into SQL. Passwords reach the server only
// as SCRAM-SHA-256 verifiers (pg/scram.h). Messages never contain a password or verifier.
//
// Every function runs on the PgConn it is given, connected as a superuser; functions that act
// inside one database (grants, REASSIGN/DROP OWNED) need a PgConn connected to that database.
// Thread-safety: as PgConn (one thread per connection).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "api/attachment.h"
#include "core/status.h"
#include "pg/conn.h"

namespace petrel::attach_sql {

// A login role as Postgres sees it. `verifier` is pg_authid.rolpassword: sensitive, never log.
struct RoleState {
  bool exists = false;
  bool can_login = false;
  bool superuser = false;
  bool create_db = false;
  bool create_role = false;
  bool replication = false;
  bool bypass_rls = false;
  bool inherit = true;
  bool has_valid_until = false;  // VALID UNTIL set to something other than 'infinity'
  int connection_limit = -1;
  std::optional<std::string> comment;
  std::string verifier;
};
Result<RoleState> ReadRole(PgConn& conn, const std::string& role);

// True when the role has exactly the attributes Petrel gives attachment roles.
bool HasAttachmentAttributes(const RoleState& role, int connection_limit);

// CREATE ROLE ... LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT
// CONNECTION LIMIT n PASSWORD '<verifier>' plus COMMENT ON ROLE <marker>, in one transaction so
// a role never exists without its marker.
Status CreateRole(PgConn& conn, const std::string& role, const std::string& password,
                  int connection_limit, const std::string& comment);
// Puts the attributes above back (after a hand edit) and clears VALID UNTIL.
Status ResetRoleAttributes(PgConn& conn, const std::string& role, int connection_limit);
// ALTER ROLE ... PASSWORD '<new verifier>'. Existing sessions continue (Postgres checks the
// password only when a connection is made); new connections need the new password.
Status SetRolePassword(PgConn& conn, const std::string& role, const std::string& password);
Status SetRoleComment(PgConn& conn, const std::string& role, const std::string& comment);

struct DatabaseState {
  bool exists = false;
  std::string owner;
  bool public_can_connect = false;  // PUBLIC holds CONNECT (the default ACL does)
  int64_t size_bytes = 0;
};
Result<DatabaseState> ReadDatabase(PgConn& conn, const std::string& database);

// CREATE DATABASE <db> OWNER <role> (not in a transaction, as Postgres requires).
Status CreateDatabase(PgConn& conn, const std::string& database, const std::string& owner);
// REVOKE CONNECT ON DATABASE <db> FROM PUBLIC: only its owner (and explicit grantees) connect.
Status RevokePublicConnect(PgConn& conn, const std::string& database);

// The grants of a readWrite / readOnly attachment (no-op for owner):
//  database:  readWrite: CONNECT, TEMPORARY; readOnly: CONNECT
//  schema public: USAGE
//  tables (and views) in public: readWrite: SELECT, INSERT, UPDATE, DELETE; readOnly: SELECT
//  sequences in public: readWrite: USAGE, SELECT, UPDATE; readOnly: SELECT
//  default privileges FOR ROLE <database owner> IN SCHEMA public: the same on future tables
//  and sequences.
// `in_database` must be connected to `database`.
Status GrantAccess(PgConn& in_database, const std::string& database, const std::string& role,
                   const std::string& database_owner, AttachmentPrivileges privileges);
// True when every grant above is in place (so steady state issues no GRANT).
Result<bool> HasAccess(PgConn& in_database, const std::string& role,
                       const std::string& database_owner, AttachmentPrivileges privileges);

// Detach, step by step (each idempotent; a missing role is fine for all of them):
Status DisableLogin(PgConn& conn, const std::string& role);
// pg_terminate_backend for each session of the role, waiting up to 5 s for each to end.
Result<int> TerminateSessions(PgConn& conn, const std::string& role);
// Connectable databases where the role owns objects, holds privileges or default privileges,
// or that it owns.
Result<std::vector<std::string>> DatabasesWithDependencies(PgConn& conn, const std::string& role);
// ALTER DATABASE ... OWNER TO for each database the role owns (DROP OWNED never drops a
// database; Petrel always keeps it).
Status HandOverOwnedDatabases(PgConn& conn, const std::string& role, const std::string& to);
// Inside one database: REASSIGN OWNED BY role TO `to` (policy reassign) and then DROP OWNED BY
// role (which, after a reassign, only revokes its privileges and default privileges).
Status ReleaseOwned(PgConn& in_database, const std::string& role, OwnedObjectsPolicy policy,
                    const std::string& to);
Status DropRole(PgConn& conn, const std::string& role);

// "db list" / "users list".
struct DatabaseInfo {
  std::string name;
  std::string owner;
  int64_t size_bytes = 0;
};
Result<std::vector<DatabaseInfo>> ListDatabases(PgConn& conn);

struct LoginRoleInfo {
  std::string name;
  bool superuser = false;
  int connection_limit = -1;
  std::optional<ObjectKey> attachment;  // set when the role carries Petrel's marker
};
Result<std::vector<LoginRoleInfo>> ListLoginRoles(PgConn& conn);

}  // namespace petrel::attach_sql
