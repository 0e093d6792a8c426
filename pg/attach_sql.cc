#include "pg/attach_sql.h"

#include "pg/scram.h"

namespace petrel::attach_sql {

namespace {

bool True(const PgRows& rows, int row, int col) { return rows.GetOr(row, col) == "t"; }

// The fixed attribute list of attachment roles; only an integer is formatted in.
std::string RoleAttributes(int connection_limit) {
  return " WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT "
         "CONNECTION LIMIT " +
         std::to_string(connection_limit);
}

Status Annotated(const Status& s, const std::string& what) { return s.ok() ? s : s.Annotate(what); }

// libpq takes parameters and quoting input as C strings, and Postgres truncates identifiers
// past 63 bytes: either would make a statement act on a different name than the one given.
Status CheckIdent(const std::string& ident) {
  if (ident.empty()) return InvalidError("an SQL identifier is empty");
  if (ident.find('\0') != std::string::npos) {
    return InvalidError("an SQL identifier contains a NUL byte");
  }
  if (ident.size() > 63) return InvalidError("an SQL identifier is longer than 63 bytes");
  return Status::Ok();
}
Status CheckValue(const std::string& value) {
  if (value.find('\0') != std::string::npos) {
    return InvalidError("an SQL value contains a NUL byte");
  }
  return Status::Ok();
}

Result<std::string> Ident(PgConn& conn, const std::string& ident) {
  PETREL_RETURN_IF_ERROR(CheckIdent(ident));
  return conn.QuoteIdent(ident);
}
Result<std::string> Literal(PgConn& conn, const std::string& value) {
  PETREL_RETURN_IF_ERROR(CheckValue(value));
  return conn.QuoteLiteral(value);
}

}  // namespace

Result<RoleState> ReadRole(PgConn& conn, const std::string& role) {
  PETREL_RETURN_IF_ERROR(CheckIdent(role));
  PETREL_ASSIGN_OR_RETURN(
      PgRows rows, conn.Exec("SELECT a.rolcanlogin, a.rolsuper, a.rolcreatedb, a.rolcreaterole, "
                             "a.rolreplication, a.rolbypassrls, a.rolinherit, "
                             "a.rolvaliduntil IS NOT NULL AND a.rolvaliduntil <> 'infinity', "
                             "a.rolconnlimit, shobj_description(a.oid, 'pg_authid'), a.rolpassword "
                             "FROM pg_authid a WHERE a.rolname = $1",
                             {role}));
  RoleState out;
  if (rows.size() == 0) return out;
  out.exists = true;
  out.can_login = True(rows, 0, 0);
  out.superuser = True(rows, 0, 1);
  out.create_db = True(rows, 0, 2);
  out.create_role = True(rows, 0, 3);
  out.replication = True(rows, 0, 4);
  out.bypass_rls = True(rows, 0, 5);
  out.inherit = True(rows, 0, 6);
  out.has_valid_until = True(rows, 0, 7);
  out.connection_limit = std::stoi(rows.GetOr(0, 8, "-1"));
  out.comment = rows.Get(0, 9);
  out.verifier = rows.GetOr(0, 10);
  return out;
}

bool HasAttachmentAttributes(const RoleState& r, int connection_limit) {
  return r.exists && r.can_login && !r.superuser && !r.create_db && !r.create_role &&
         !r.replication && !r.bypass_rls && r.inherit && !r.has_valid_until &&
         r.connection_limit == connection_limit;
}

Status CreateRole(PgConn& conn, const std::string& role, const std::string& password,
                  int connection_limit, const std::string& comment) {
  PETREL_ASSIGN_OR_RETURN(std::string verifier, ScramVerifier(password));
  PETREL_ASSIGN_OR_RETURN(std::string q_role, Ident(conn, role));
  PETREL_ASSIGN_OR_RETURN(std::string q_verifier, Literal(conn, verifier));
  PETREL_ASSIGN_OR_RETURN(std::string q_comment, Literal(conn, comment));
  // One PQexec of several statements is one implicit transaction.
  return Annotated(
      conn.ExecScript("CREATE ROLE " + q_role + RoleAttributes(connection_limit) + " PASSWORD " +
                      q_verifier + "; COMMENT ON ROLE " + q_role + " IS " + q_comment),
      "creating role " + q_role);
}

Status ResetRoleAttributes(PgConn& conn, const std::string& role, int connection_limit) {
  PETREL_ASSIGN_OR_RETURN(std::string q_role, Ident(conn, role));
  return Annotated(conn.ExecScript("ALTER ROLE " + q_role + RoleAttributes(connection_limit) +
                                   " VALID UNTIL 'infinity'"),
                   "resetting the attributes of role " + q_role);
}

Status SetRolePassword(PgConn& conn, const std::string& role, const std::string& password) {
  PETREL_ASSIGN_OR_RETURN(std::string verifier, ScramVerifier(password));
  PETREL_ASSIGN_OR_RETURN(std::string q_role, Ident(conn, role));
  PETREL_ASSIGN_OR_RETURN(std::string q_verifier, Literal(conn, verifier));
  return Annotated(conn.ExecScript("ALTER ROLE " + q_role + " PASSWORD " + q_verifier),
                   "setting the password of role " + q_role);
}

Status SetRoleComment(PgConn& conn, const std::string& role, const std::string& comment) {
  PETREL_ASSIGN_OR_RETURN(std::string q_role, Ident(conn, role));
  PETREL_ASSIGN_OR_RETURN(std::string q_comment, Literal(conn, comment));
  return Annotated(conn.ExecScript("COMMENT ON ROLE " + q_role + " IS " + q_comment),
                   "marking role " + q_role);
}

Result<DatabaseState> ReadDatabase(PgConn& conn, const std::string& database) {
  PETREL_RETURN_IF_ERROR(CheckIdent(database));
  PETREL_ASSIGN_OR_RETURN(
      PgRows rows,
      conn.Exec("SELECT pg_get_userbyid(d.datdba), "
                "EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
                " WHERE a.grantee = 0 AND a.privilege_type = 'CONNECT'), "
                "pg_database_size(d.oid) FROM pg_database d WHERE d.datname = $1",
                {database}));
  DatabaseState out;
  if (rows.size() == 0) return out;
  out.exists = true;
  out.owner = rows.GetOr(0, 0);
  out.public_can_connect = True(rows, 0, 1);
  out.size_bytes = std::stoll(rows.GetOr(0, 2, "0"));
  return out;
}

Status CreateDatabase(PgConn& conn, const std::string& database, const std::string& owner) {
  PETREL_ASSIGN_OR_RETURN(std::string q_db, Ident(conn, database));
  PETREL_ASSIGN_OR_RETURN(std::string q_owner, Ident(conn, owner));
  return Annotated(conn.ExecScript("CREATE DATABASE " + q_db + " OWNER " + q_owner),
                   "creating database " + q_db);
}

Status RevokePublicConnect(PgConn& conn, const std::string& database) {
  PETREL_ASSIGN_OR_RETURN(std::string q_db, Ident(conn, database));
  return Annotated(conn.ExecScript("REVOKE CONNECT ON DATABASE " + q_db + " FROM PUBLIC"),
                   "revoking CONNECT on database " + q_db + " from PUBLIC");
}

namespace {

struct GrantSet {
  const char* database;
  const char* tables;
  const char* sequences;
  const char* table_array;  // the same, as a text[] literal for has_table_privilege
  const char* sequence_array;
};

GrantSet GrantsFor(AttachmentPrivileges p) {
  if (p == AttachmentPrivileges::kReadWrite) {
    return {"CONNECT, TEMPORARY", "SELECT, INSERT, UPDATE, DELETE", "USAGE, SELECT, UPDATE",
            "{SELECT,INSERT,UPDATE,DELETE}", "{USAGE,SELECT,UPDATE}"};
  }
  return {"CONNECT", "SELECT", "SELECT", "{SELECT}", "{SELECT}"};
}

}  // namespace

Status GrantAccess(PgConn& in_database, const std::string& database, const std::string& role,
                   const std::string& database_owner, AttachmentPrivileges privileges) {
  if (privileges == AttachmentPrivileges::kOwner) return Status::Ok();
  GrantSet g = GrantsFor(privileges);
  PETREL_ASSIGN_OR_RETURN(std::string q_db, Ident(in_database, database));
  PETREL_ASSIGN_OR_RETURN(std::string q_role, Ident(in_database, role));
  PETREL_ASSIGN_OR_RETURN(std::string q_owner, Ident(in_database, database_owner));
  const std::string defaults =
      "ALTER DEFAULT PRIVILEGES FOR ROLE " + q_owner + " IN SCHEMA public GRANT ";
  std::string script = std::string("GRANT ") + g.database + " ON DATABASE " + q_db + " TO " +
                       q_role + ";\n" + "GRANT USAGE ON SCHEMA public TO " + q_role + ";\n" +
                       "GRANT " + g.tables + " ON ALL TABLES IN SCHEMA public TO " + q_role +
                       ";\n" + "GRANT " + g.sequences + " ON ALL SEQUENCES IN SCHEMA public TO " +
                       q_role + ";\n" + defaults + g.tables + " ON TABLES TO " + q_role + ";\n" +
                       defaults + g.sequences + " ON SEQUENCES TO " + q_role;
  return Annotated(in_database.ExecScript(script), "granting " +
                                                       std::string(PrivilegesName(privileges)) +
                                                       " access on " + q_db + " to " + q_role);
}

Result<bool> HasAccess(PgConn& in_database, const std::string& role,
                       const std::string& database_owner, AttachmentPrivileges privileges) {
  if (privileges == AttachmentPrivileges::kOwner) return true;
  GrantSet g = GrantsFor(privileges);
  PETREL_RETURN_IF_ERROR(CheckIdent(role));
  PETREL_RETURN_IF_ERROR(CheckIdent(database_owner));
  // $1 role, $2 owner, $3 table privileges, $4 sequence privileges.
  PETREL_ASSIGN_OR_RETURN(
      PgRows rows,
      in_database.Exec(
          "WITH r AS (SELECT oid FROM pg_roles WHERE rolname = $1), "
          "o AS (SELECT oid FROM pg_roles WHERE rolname = $2) "
          "SELECT EXISTS (SELECT 1 FROM r) "
          " AND has_database_privilege($1, current_database(), 'CONNECT') "
          " AND has_schema_privilege($1, 'public', 'USAGE') "
          " AND NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
          "   WHERE n.nspname = 'public' AND c.relkind IN ('r','p','v','m','f')"
          "   AND NOT (SELECT bool_and(has_table_privilege($1, c.oid, p))"
          "            FROM unnest($3::text[]) p)) "
          " AND NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
          "   WHERE n.nspname = 'public' AND c.relkind = 'S'"
          "   AND NOT (SELECT bool_and(has_sequence_privilege($1, c.oid, p))"
          "            FROM unnest($4::text[]) p)) "
          " AND (SELECT count(DISTINCT d.defaclobjtype) FROM pg_default_acl d"
          "   JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) a"
          "   WHERE n.nspname = 'public' AND d.defaclrole = (SELECT oid FROM o)"
          "   AND d.defaclobjtype IN ('r','S') AND a.grantee = (SELECT oid FROM r)) = 2",
          {role, database_owner, std::string(g.table_array), std::string(g.sequence_array)}));
  return True(rows, 0, 0);
}

Status DisableLogin(PgConn& conn, const std::string& role) {
  PETREL_ASSIGN_OR_RETURN(std::string q_role, Ident(conn, role));
  PETREL_ASSIGN_OR_RETURN(PgRows exists,
                          conn.Exec("SELECT 1 FROM pg_roles WHERE rolname = $1", {role}));
  if (exists.size() == 0) return Status::Ok();
  return Annotated(conn.ExecScript("ALTER ROLE " + q_role + " NOLOGIN"),
                   "disabling login of role " + q_role);
}

Result<int> TerminateSessions(PgConn& conn, const std::string& role) {
  PETREL_RETURN_IF_ERROR(CheckIdent(role));
  PETREL_ASSIGN_OR_RETURN(
      PgRows rows, conn.Exec("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) "
                             "FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()",
                             {role}));
  return std::stoi(rows.GetOr(0, 0, "0"));
}

Result<std::vector<std::string>> DatabasesWithDependencies(PgConn& conn, const std::string& role) {
  PETREL_RETURN_IF_ERROR(CheckIdent(role));
  PETREL_ASSIGN_OR_RETURN(
      PgRows rows,
      conn.Exec("WITH r AS (SELECT oid FROM pg_roles WHERE rolname = $1) "
                "SELECT d.datname FROM pg_database d WHERE d.datallowconn AND ("
                " d.datdba = (SELECT oid FROM r) OR EXISTS (SELECT 1 FROM pg_shdepend s"
                "  WHERE s.dbid = d.oid AND s.refclassid = 'pg_authid'::regclass"
                "  AND s.refobjid = (SELECT oid FROM r))) ORDER BY 1",
                {role}));
  std::vector<std::string> out;
  for (int i = 0; i < rows.size(); ++i) out.push_back(rows.GetOr(i, 0));
  return out;
}

Status HandOverOwnedDatabases(PgConn& conn, const std::string& role, const std::string& to) {
  PETREL_RETURN_IF_ERROR(CheckIdent(role));
  PETREL_ASSIGN_OR_RETURN(
      PgRows rows,
      conn.Exec("SELECT d.datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                "WHERE r.rolname = $1 ORDER BY 1",
                {role}));
  PETREL_ASSIGN_OR_RETURN(std::string q_to, Ident(conn, to));
  for (int i = 0; i < rows.size(); ++i) {
    PETREL_ASSIGN_OR_RETURN(std::string q_db, Ident(conn, rows.GetOr(i, 0)));
    PETREL_RETURN_IF_ERROR(
        Annotated(conn.ExecScript("ALTER DATABASE " + q_db + " OWNER TO " + q_to),
                  "handing database " + q_db + " over to " + q_to));
  }
  return Status::Ok();
}

Status ReleaseOwned(PgConn& in_database, const std::string& role, OwnedObjectsPolicy policy,
                    const std::string& to) {
  PETREL_RETURN_IF_ERROR(CheckIdent(role));
  PETREL_ASSIGN_OR_RETURN(PgRows exists,
                          in_database.Exec("SELECT 1 FROM pg_roles WHERE rolname = $1", {role}));
  if (exists.size() == 0) return Status::Ok();
  PETREL_ASSIGN_OR_RETURN(std::string q_role, Ident(in_database, role));
  std::string script;
  if (policy == OwnedObjectsPolicy::kReassign) {
    PETREL_ASSIGN_OR_RETURN(std::string q_to, Ident(in_database, to));
    script = "REASSIGN OWNED BY " + q_role + " TO " + q_to + "; ";
  }
  script += "DROP OWNED BY " + q_role;
  return Annotated(in_database.ExecScript(script), "releasing what role " + q_role + " owns");
}

Status DropRole(PgConn& conn, const std::string& role) {
  PETREL_ASSIGN_OR_RETURN(std::string q_role, Ident(conn, role));
  return Annotated(conn.ExecScript("DROP ROLE IF EXISTS " + q_role), "dropping role " + q_role);
}

Result<std::vector<DatabaseInfo>> ListDatabases(PgConn& conn) {
  PETREL_ASSIGN_OR_RETURN(
      PgRows rows, conn.Exec("SELECT d.datname, pg_get_userbyid(d.datdba), pg_database_size(d.oid) "
                             "FROM pg_database d WHERE NOT d.datistemplate ORDER BY 1"));
  std::vector<DatabaseInfo> out;
  for (int i = 0; i < rows.size(); ++i) {
    out.push_back({rows.GetOr(i, 0), rows.GetOr(i, 1), std::stoll(rows.GetOr(i, 2, "0"))});
  }
  return out;
}

Result<std::vector<LoginRoleInfo>> ListLoginRoles(PgConn& conn) {
  PETREL_ASSIGN_OR_RETURN(PgRows rows,
                          conn.Exec("SELECT r.rolname, r.rolsuper, r.rolconnlimit, "
                                    "shobj_description(r.oid, 'pg_authid') FROM pg_roles r "
                                    "WHERE r.rolcanlogin ORDER BY 1"));
  std::vector<LoginRoleInfo> out;
  for (int i = 0; i < rows.size(); ++i) {
    LoginRoleInfo info;
    info.name = rows.GetOr(i, 0);
    info.superuser = rows.GetOr(i, 1) == "t";
    info.connection_limit = std::stoi(rows.GetOr(i, 2, "-1"));
    if (auto c = rows.Get(i, 3)) info.attachment = ParseRoleMarker(*c);
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace petrel::attach_sql
