// The attachment SQL against a real PostgreSQL 15 started for this test.
#include "pg/attach_sql.h"

#include <gtest/gtest.h>

#include "pg/scram.h"
#include "tests/pg/postgres_server.h"

namespace petrel {
namespace {

namespace sql = attach_sql;

class AttachSqlTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new testing_pg::PostgresServer();
    start_error_ = server_->Start("super-Secret-1");
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_EQ(start_error_, "") << start_error_; }

  static PgConn Admin(const std::string& db = "postgres") {
    auto c = PgConn::Connect(server_->SuperuserConnInfo(db), server_->password());
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return std::move(c).value();
  }
  static Result<PgConn> As(const std::string& role, const std::string& password,
                           const std::string& db) {
    return PgConn::Connect(ConnInfo({{"host", server_->host()},
                                     {"port", std::to_string(server_->port())},
                                     {"user", role},
                                     {"dbname", db}}),
                           password);
  }
  // The owner attachment, as the reconciler performs it.
  static void AttachOwner(const std::string& name, const std::string& password) {
    PgConn admin = Admin();
    ASSERT_TRUE(sql::CreateRole(admin, name, password, -1, RoleMarker({"apps", name})).ok());
    ASSERT_TRUE(sql::CreateDatabase(admin, name, name).ok());
    ASSERT_TRUE(sql::RevokePublicConnect(admin, name).ok());
  }
  static bool RoleExists(const std::string& role) {
    PgConn admin = Admin();
    auto r = sql::ReadRole(admin, role);
    return r.ok() && r->exists;
  }

  static testing_pg::PostgresServer* server_;
  static std::string start_error_;
};
testing_pg::PostgresServer* AttachSqlTest::server_ = nullptr;
std::string AttachSqlTest::start_error_;

TEST_F(AttachSqlTest, OurVerifierIsAcceptedAndPostgresVerifiersMatchOurCheck) {
  PgConn admin = Admin();
  ASSERT_TRUE(sql::CreateRole(admin, "scram_check", "pw-from-petrel", -1, "x").ok());
  EXPECT_TRUE(As("scram_check", "pw-from-petrel", "postgres").ok());
  EXPECT_FALSE(As("scram_check", "wrong", "postgres").ok());
  // The server computes this verifier itself; our checker must agree with it.
  ASSERT_TRUE(admin.ExecScript("ALTER ROLE scram_check PASSWORD 'server side'").ok());
  auto role = sql::ReadRole(admin, "scram_check");
  ASSERT_TRUE(role.ok());
  EXPECT_EQ(role->verifier.rfind("SCRAM-SHA-256$4096:", 0), 0u);
  EXPECT_TRUE(ScramVerifierMatches(role->verifier, "server side"));
  EXPECT_FALSE(ScramVerifierMatches(role->verifier, "pw-from-petrel"));
  ASSERT_TRUE(sql::DropRole(admin, "scram_check").ok());
}

TEST_F(AttachSqlTest, CleartextPasswordNeverReachesTheServerLog) {
  PgConn admin = Admin();
  ASSERT_TRUE(admin.ExecScript("SET log_statement = 'all'").ok());
  ASSERT_TRUE(sql::CreateRole(admin, "log_check", "never-logged-9f3a", -1, "x").ok());
  ASSERT_TRUE(sql::SetRolePassword(admin, "log_check", "never-logged-b77c").ok());
  ASSERT_TRUE(sql::DropRole(admin, "log_check").ok());
  std::ifstream log(server_->dir() + "/server.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("CREATE ROLE"), std::string::npos) << "statement logging did not work";
  EXPECT_EQ(text.find("never-logged"), std::string::npos);
}

TEST_F(AttachSqlTest, OwnerRoleIsLeastPrivilegeAndIsolated) {
  AttachOwner("shop", "shop-pw");
  AttachOwner("blog", "blog-pw");
  PgConn admin = Admin();
  auto role = sql::ReadRole(admin, "shop");
  ASSERT_TRUE(role.ok());
  EXPECT_TRUE(sql::HasAttachmentAttributes(*role, -1));
  EXPECT_EQ(ParseRoleMarker(role->comment.value_or("")), (ObjectKey{"apps", "shop"}));
  auto db = sql::ReadDatabase(admin, "shop");
  ASSERT_TRUE(db.ok());
  EXPECT_TRUE(db->exists);
  EXPECT_EQ(db->owner, "shop");
  EXPECT_FALSE(db->public_can_connect);

  auto shop = As("shop", "shop-pw", "shop");
  ASSERT_TRUE(shop.ok()) << shop.status().ToString();
  EXPECT_TRUE(shop->ExecScript("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)").ok());
  EXPECT_FALSE(shop->ExecScript("CREATE ROLE sneaky").ok());
  EXPECT_FALSE(shop->ExecScript("CREATE DATABASE sneaky").ok());
  EXPECT_FALSE(shop->ExecScript("ALTER ROLE shop SUPERUSER").ok());
  // Another attachment's role cannot even connect to shop's database.
  auto blog_in_shop = As("blog", "blog-pw", "shop");
  ASSERT_FALSE(blog_in_shop.ok());
  EXPECT_NE(blog_in_shop.status().message().find("permission denied for database"),
            std::string::npos)
      << blog_in_shop.status().message();
}

TEST_F(AttachSqlTest, HandEditedAttributesAreDetectedAndReset) {
  AttachOwner("edited", "pw");
  PgConn admin = Admin();
  ASSERT_TRUE(admin
                  .ExecScript("ALTER ROLE edited CREATEDB CONNECTION LIMIT 3 "
                              "VALID UNTIL '2000-01-01'")
                  .ok());
  auto before = sql::ReadRole(admin, "edited");
  ASSERT_TRUE(before.ok());
  EXPECT_FALSE(sql::HasAttachmentAttributes(*before, -1));
  ASSERT_TRUE(sql::ResetRoleAttributes(admin, "edited", -1).ok());
  auto after = sql::ReadRole(admin, "edited");
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(sql::HasAttachmentAttributes(*after, -1));
  EXPECT_TRUE(As("edited", "pw", "edited").ok());
}

TEST_F(AttachSqlTest, HostileStringsPassedToTheSqlLayerAreInert) {
  PgConn admin = Admin();
  ASSERT_TRUE(admin.ExecScript("CREATE TABLE canary (x int); INSERT INTO canary VALUES (42)").ok());
  const std::vector<std::string> hostile = {
      "x\"; DROP TABLE canary; --", "x'; DROP TABLE canary; --", "$$; DROP TABLE canary; $$",
      "a\" SUPERUSER --", "Robert'); DROP TABLE canary;--"};
  for (const auto& h : hostile) {
    ASSERT_TRUE(sql::CreateRole(admin, h, "pw", -1, "'); DROP TABLE canary; --").ok()) << h;
    ASSERT_TRUE(sql::SetRolePassword(admin, h, "pw2").ok()) << h;
    ASSERT_TRUE(sql::CreateDatabase(admin, h, h).ok()) << h;
    ASSERT_TRUE(sql::RevokePublicConnect(admin, h).ok()) << h;
    auto role = sql::ReadRole(admin, h);
    ASSERT_TRUE(role.ok());
    EXPECT_TRUE(role->exists) << "the role exists under exactly the hostile name: " << h;
    EXPECT_FALSE(role->superuser) << h;
    EXPECT_EQ(role->comment.value_or(""), "'); DROP TABLE canary; --");
    ASSERT_TRUE(sql::HandOverOwnedDatabases(admin, h, "postgres").ok()) << h;
    ASSERT_TRUE(sql::ReleaseOwned(admin, h, OwnedObjectsPolicy::kReassign, "postgres").ok());
    ASSERT_TRUE(sql::DropRole(admin, h).ok()) << h;
    EXPECT_FALSE(RoleExists(h));
  }
  // Names libpq or Postgres would silently shorten are refused instead of acting on another
  // role: an embedded NUL ("victim\0..." would read as "victim") and > 63 bytes.
  ASSERT_TRUE(sql::CreateRole(admin, "victim", "pw", -1, "x").ok());
  const std::string nul_name("victim\0; DROP TABLE canary", 27);
  EXPECT_EQ(sql::DropRole(admin, nul_name).code(), Code::kInvalid);
  EXPECT_EQ(sql::ReadRole(admin, nul_name).status().code(), Code::kInvalid);
  EXPECT_EQ(sql::CreateRole(admin, std::string(64, 'v'), "pw", -1, "x").code(), Code::kInvalid);
  EXPECT_EQ(sql::SetRoleComment(admin, "victim", nul_name).code(), Code::kInvalid);
  EXPECT_TRUE(RoleExists("victim"));
  ASSERT_TRUE(sql::DropRole(admin, "victim").ok());
  auto rows = admin.Exec("SELECT x FROM canary");
  ASSERT_TRUE(rows.ok()) << "canary table was dropped: " << rows.status().ToString();
  EXPECT_EQ(rows->GetOr(0, 0), "42");
}

TEST_F(AttachSqlTest, ReadWriteAndReadOnlyGrantsOnASharedDatabase) {
  AttachOwner("store", "store-pw");
  {
    auto owner = As("store", "store-pw", "store");
    ASSERT_TRUE(owner.ok());
    ASSERT_TRUE(owner
                    ->ExecScript("CREATE TABLE items (id serial, name text);"
                                 "INSERT INTO items (name) VALUES ('a')")
                    .ok());
  }
  PgConn admin = Admin();
  ASSERT_TRUE(sql::CreateRole(admin, "store_rw", "rw-pw", -1, "x").ok());
  ASSERT_TRUE(sql::CreateRole(admin, "store_ro", "ro-pw", -1, "x").ok());
  PgConn in_store = Admin("store");
  for (auto [role, priv] : {std::pair{"store_rw", AttachmentPrivileges::kReadWrite},
                            std::pair{"store_ro", AttachmentPrivileges::kReadOnly}}) {
    auto has = sql::HasAccess(in_store, role, "store", priv);
    ASSERT_TRUE(has.ok()) << has.status().ToString();
    EXPECT_FALSE(*has);
    ASSERT_TRUE(sql::GrantAccess(in_store, "store", role, "store", priv).ok());
    has = sql::HasAccess(in_store, role, "store", priv);
    ASSERT_TRUE(has.ok());
    EXPECT_TRUE(*has) << role;
  }
  auto rw = As("store_rw", "rw-pw", "store");
  ASSERT_TRUE(rw.ok()) << rw.status().ToString();
  EXPECT_TRUE(rw->ExecScript("INSERT INTO items (name) VALUES ('b')").ok());
  EXPECT_FALSE(rw->ExecScript("CREATE TABLE mine (x int)").ok());  // PG15: no CREATE on public
  auto ro = As("store_ro", "ro-pw", "store");
  ASSERT_TRUE(ro.ok());
  auto n = ro->Exec("SELECT count(*) FROM items");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->GetOr(0, 0), "2");
  EXPECT_FALSE(ro->ExecScript("INSERT INTO items (name) VALUES ('c')").ok());
  // A table the owner creates later is covered by the default privileges.
  {
    auto owner = As("store", "store-pw", "store");
    ASSERT_TRUE(owner->ExecScript("CREATE TABLE later (x int); INSERT INTO later VALUES (7)").ok());
  }
  EXPECT_TRUE(rw->ExecScript("INSERT INTO later VALUES (8)").ok());
  auto later = ro->Exec("SELECT count(*) FROM later");
  ASSERT_TRUE(later.ok()) << later.status().ToString();
  EXPECT_EQ(later->GetOr(0, 0), "2");
  auto still = sql::HasAccess(in_store, "store_rw", "store", AttachmentPrivileges::kReadWrite);
  ASSERT_TRUE(still.ok());
  EXPECT_TRUE(*still);
}

TEST_F(AttachSqlTest, DetachEndsSessionsDropsRoleAndKeepsTheData) {
  AttachOwner("gone", "gone-pw");
  auto session = As("gone", "gone-pw", "gone");
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(
      session->ExecScript("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('data')").ok());
  PgConn admin = Admin();
  ASSERT_TRUE(sql::DisableLogin(admin, "gone").ok());
  EXPECT_FALSE(As("gone", "gone-pw", "gone").ok());
  auto ended = sql::TerminateSessions(admin, "gone");
  ASSERT_TRUE(ended.ok());
  EXPECT_EQ(*ended, 1);
  EXPECT_FALSE(session->Exec("SELECT 1").ok()) << "the role's session survived detach";
  auto dbs = sql::DatabasesWithDependencies(admin, "gone");
  ASSERT_TRUE(dbs.ok());
  EXPECT_EQ(*dbs, std::vector<std::string>{"gone"});
  ASSERT_TRUE(sql::HandOverOwnedDatabases(admin, "gone", "postgres").ok());
  for (const auto& db : *dbs) {
    PgConn in_db = Admin(db);
    ASSERT_TRUE(sql::ReleaseOwned(in_db, "gone", OwnedObjectsPolicy::kReassign, "postgres").ok());
  }
  ASSERT_TRUE(sql::DropRole(admin, "gone").ok());
  EXPECT_FALSE(RoleExists("gone"));
  // Every step is idempotent.
  EXPECT_TRUE(sql::DisableLogin(admin, "gone").ok());
  EXPECT_TRUE(sql::ReleaseOwned(admin, "gone", OwnedObjectsPolicy::kReassign, "postgres").ok());
  EXPECT_TRUE(sql::DropRole(admin, "gone").ok());
  PgConn in_gone = Admin("gone");
  auto rows = in_gone.Exec(
      "SELECT v, pg_get_userbyid(c.relowner) FROM kept, pg_class c "
      "WHERE c.relname = 'kept'");
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(rows->GetOr(0, 0), "data");
  EXPECT_EQ(rows->GetOr(0, 1), "postgres");
}

TEST_F(AttachSqlTest, RotationKeepsExistingSessionsAndSwitchesNewOnes) {
  AttachOwner("rot", "old-pw");
  auto session = As("rot", "old-pw", "rot");
  ASSERT_TRUE(session.ok());
  PgConn admin = Admin();
  ASSERT_TRUE(sql::SetRolePassword(admin, "rot", "new-pw").ok());
  EXPECT_FALSE(As("rot", "old-pw", "rot").ok());
  EXPECT_TRUE(As("rot", "new-pw", "rot").ok());
  EXPECT_TRUE(session->Exec("SELECT 1").ok()) << "rotation ended an existing session";
  auto role = sql::ReadRole(admin, "rot");
  ASSERT_TRUE(role.ok());
  EXPECT_TRUE(ScramVerifierMatches(role->verifier, "new-pw"));
}

TEST_F(AttachSqlTest, ListingsShowOwnersSizesAndManagedRoles) {
  AttachOwner("listed", "pw");
  PgConn admin = Admin();
  auto dbs = sql::ListDatabases(admin);
  ASSERT_TRUE(dbs.ok());
  bool found = false;
  for (const auto& d : *dbs) {
    if (d.name == "listed") {
      found = true;
      EXPECT_EQ(d.owner, "listed");
      EXPECT_GT(d.size_bytes, 0);
    }
    EXPECT_NE(d.name, "template0");
  }
  EXPECT_TRUE(found);
  auto roles = sql::ListLoginRoles(admin);
  ASSERT_TRUE(roles.ok());
  bool saw_managed = false, saw_postgres = false;
  for (const auto& r : *roles) {
    if (r.name == "listed") {
      saw_managed = true;
      EXPECT_EQ(r.attachment, (ObjectKey{"apps", "listed"}));
    }
    if (r.name == "postgres") {
      saw_postgres = true;
      EXPECT_TRUE(r.superuser);
      EXPECT_FALSE(r.attachment.has_value());
    }
  }
  EXPECT_TRUE(saw_managed && saw_postgres);
}

}  // namespace
}  // namespace petrel
