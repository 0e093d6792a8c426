#include "reconcilers/attachment_pg_admin.h"

#include "pg/attach_sql.h"
#include "pg/conn.h"
#include "pg/scram.h"

namespace petrel {

namespace {

namespace sql = attach_sql;

class LibpqPgAdmin : public PgAdmin {
 public:
  LibpqPgAdmin(PgTarget target, PgConn admin)
      : target_(std::move(target)), admin_(std::move(admin)) {}

  Result<RoleObservation> ObserveRole(const std::string& role, int connection_limit,
                                      const std::string& password) override {
    PETREL_ASSIGN_OR_RETURN(sql::RoleState state, sql::ReadRole(admin_, role));
    RoleObservation out;
    out.exists = state.exists;
    if (!state.exists) return out;
    if (state.comment) out.managed_by = ParseRoleMarker(*state.comment);
    out.attributes_match = sql::HasAttachmentAttributes(state, connection_limit);
    out.password_matches = !password.empty() && ScramVerifierMatches(state.verifier, password);
    out.can_login = state.can_login;
    return out;
  }

  Result<DatabaseObservation> ObserveDatabase(const std::string& database, const std::string& role,
                                              AttachmentPrivileges privileges) override {
    PETREL_ASSIGN_OR_RETURN(sql::DatabaseState state, sql::ReadDatabase(admin_, database));
    DatabaseObservation out;
    out.exists = state.exists;
    if (!state.exists) return out;
    out.owner = state.owner;
    out.public_can_connect = state.public_can_connect;
    out.access_complete = true;
    if (privileges != AttachmentPrivileges::kOwner) {
      PETREL_ASSIGN_OR_RETURN(PgConn in_db, ConnectTo(database));
      PETREL_ASSIGN_OR_RETURN(out.access_complete,
                              sql::HasAccess(in_db, role, state.owner, privileges));
    }
    return out;
  }

  Status CreateRole(const std::string& role, const std::string& password, int connection_limit,
                    const std::string& marker) override {
    return sql::CreateRole(admin_, role, password, connection_limit, marker);
  }
  Status ResetRoleAttributes(const std::string& role, int connection_limit) override {
    return sql::ResetRoleAttributes(admin_, role, connection_limit);
  }
  Status SetPassword(const std::string& role, const std::string& password) override {
    return sql::SetRolePassword(admin_, role, password);
  }
  Status CreateDatabase(const std::string& database, const std::string& owner) override {
    return sql::CreateDatabase(admin_, database, owner);
  }
  Status RevokePublicConnect(const std::string& database) override {
    return sql::RevokePublicConnect(admin_, database);
  }
  Status GrantAccess(const std::string& database, const std::string& role,
                     const std::string& database_owner, AttachmentPrivileges privileges) override {
    PETREL_ASSIGN_OR_RETURN(PgConn in_db, ConnectTo(database));
    return sql::GrantAccess(in_db, database, role, database_owner, privileges);
  }

  Status RevokeLogin(const std::string& role) override {
    PETREL_RETURN_IF_ERROR(sql::DisableLogin(admin_, role));
    return sql::TerminateSessions(admin_, role).status();
  }

  Status DetachRole(const std::string& role, OwnedObjectsPolicy policy,
                    const std::string& reassign_to) override {
    PETREL_RETURN_IF_ERROR(sql::DisableLogin(admin_, role));
    PETREL_ASSIGN_OR_RETURN(int ended, sql::TerminateSessions(admin_, role));
    (void)ended;
    PETREL_ASSIGN_OR_RETURN(std::vector<std::string> databases,
                            sql::DatabasesWithDependencies(admin_, role));
    // Each database's owner (before the hand-over) receives what the role owns in it.
    std::vector<std::pair<std::string, std::string>> targets;
    for (const auto& db : databases) {
      PETREL_ASSIGN_OR_RETURN(sql::DatabaseState state, sql::ReadDatabase(admin_, db));
      std::string to = reassign_to;
      if (to.empty()) to = state.owner == role ? kPostgresSuperuser : state.owner;
      targets.emplace_back(db, to);
    }
    PETREL_RETURN_IF_ERROR(sql::HandOverOwnedDatabases(
        admin_, role, reassign_to.empty() ? std::string(kPostgresSuperuser) : reassign_to));
    for (const auto& [db, to] : targets) {
      PETREL_ASSIGN_OR_RETURN(PgConn in_db, ConnectTo(db));
      PETREL_RETURN_IF_ERROR(sql::ReleaseOwned(in_db, role, policy, to));
    }
    return sql::DropRole(admin_, role);
  }

 private:
  Result<PgConn> ConnectTo(const std::string& database) {
    return PgConn::Connect(ConnInfo({{"host", target_.host},
                                     {"port", std::to_string(target_.port)},
                                     {"user", target_.user},
                                     {"dbname", database}}),
                           target_.password);
  }

  PgTarget target_;
  PgConn admin_;
};

}  // namespace

PgAdminFactory LibpqPgAdminFactory() {
  return [](const PgTarget& target) -> Result<std::unique_ptr<PgAdmin>> {
    PETREL_ASSIGN_OR_RETURN(PgConn admin,
                            PgConn::Connect(ConnInfo({{"host", target.host},
                                                      {"port", std::to_string(target.port)},
                                                      {"user", target.user},
                                                      {"dbname", "postgres"}}),
                                            target.password));
    return std::unique_ptr<PgAdmin>(new LibpqPgAdmin(target, std::move(admin)));
  };
}

}  // namespace petrel
