// The attachment reconciler end to end against a real PostgreSQL 15 (Kubernetes is the
// in-memory twin here; the envtest tier covers the API server side). Apps connect with the
// Secret's DATABASE_URL verbatim, through psql (libpq) and node-postgres.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>

#include "pg/attach_sql.h"
#include "pg/conn.h"
#include "pg/scram.h"
#include "reconcilers/attachment_pg_admin.h"
#include "reconcilers/attachment_reconciler.h"
#include "tests/pg/postgres_server.h"
#include "tests/reconcilers/attachment_fakes.h"

namespace petrel {
namespace {

using namespace testing_attach;  // NOLINT

struct Output {
  int rc;
  std::string text;
};
// Runs a command with URL in the environment (never on the command line), capturing stdout+err.
Output RunWithUrl(const std::string& command, const std::string& url) {
  ::setenv("URL", url.c_str(), 1);
  std::string text;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return {-1, "popen failed"};
  std::array<char, 512> buf;
  while (size_t n = std::fread(buf.data(), 1, buf.size(), p)) text.append(buf.data(), n);
  int rc = ::pclose(p);
  ::unsetenv("URL");
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, text};
}

Output Psql(const std::string& url, const std::string& sql) {
  return RunWithUrl("psql \"$URL\" -X -At -v ON_ERROR_STOP=1 -c \"" + sql + "\"", url);
}

// node-postgres, installed once into the build tree (idempotent).
std::string NodePgDir() {
  static const std::string dir = [] {
    std::string d = (std::filesystem::current_path() / "node-pg").string();
    if (!std::filesystem::exists(d + "/node_modules/pg/package.json")) {
      testing_pg::Run("npm install --prefix " + d + " pg@8 --no-audit --no-fund >" + d +
                      ".log 2>&1");
    }
    return d;
  }();
  return dir;
}

Output Node(const std::string& url, const std::string& sql) {
  std::string script =
      "const {Client}=require('pg');"
      "const c=new Client({connectionString:process.env.URL});"
      "c.connect().then(()=>c.query(process.env.SQL)).then(r=>{"
      "console.log(Object.values(r.rows[0]||{}).join('|'));return c.end();})"
      ".catch(e=>{console.log('ERROR '+e.message);process.exit(1);});";
  ::setenv("SQL", sql.c_str(), 1);
  ::setenv("NODE_PATH", (NodePgDir() + "/node_modules").c_str(), 1);
  Output out = RunWithUrl("node -e \"" + script + "\"", url);
  ::unsetenv("SQL");
  return out;
}

class AttachmentE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new testing_pg::PostgresServer();
    start_error_ = server_->Start("super-Secret-1");
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    ASSERT_EQ(start_error_, "") << start_error_;
    kube_.Put(resources::kPostgresCluster,
              {{"metadata", {{"name", "db"}, {"namespace", "data"}}},
               {"spec", {{"attachments", {{"allowedNamespaces", {"*"}}}}}}});
    kube_.Put(resources::kSecret, {{"metadata", {{"name", "db-superuser"}, {"namespace", "data"}}},
                                   {"data", {{"password", Base64Encode(server_->password())}}}});
    AttachmentReconcilerDeps deps;
    deps.reader = &kube_;
    deps.client = &kube_;
    deps.events = &events_;
    deps.clock = &Clock::Real();
    deps.pg_admin = LibpqPgAdminFactory();
    deps.resolve_service = [](const ObjectKey&) -> Result<ServiceAddress> {
      return ServiceAddress{server_->host(), server_->port()};
    };
    deps.generate_password = &GeneratePassword;
    reconciler_ = NewAttachmentReconciler(std::move(deps));
  }

  void Attach(const std::string& ns, const std::string& name, Json spec = Json::object()) {
    spec["clusterRef"] = {{"name", "db"}, {"namespace", "data"}};
    kube_.Put(resources::kPostgresAttachment,
              {{"apiVersion", "petrel.dev/v1alpha1"},
               {"kind", "PostgresAttachment"},
               {"metadata", {{"name", name}, {"namespace", ns}, {"generation", 1}}},
               {"spec", spec}});
    auto r = reconciler_->Reconcile({ns, name});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    Json a = *kube_.Find(resources::kPostgresAttachment, {ns, name});
    ASSERT_EQ(a["status"]["phase"], "Ready") << a["status"].dump();
  }
  std::string SecretValueOf(const std::string& ns, const std::string& secret,
                            const std::string& key) {
    const Json* s = kube_.Find(resources::kSecret, {ns, secret});
    if (!s) return "";
    return SecretValue(*s, key).value_or("");
  }
  PgConn Admin(const std::string& db = "postgres") {
    auto c = PgConn::Connect(server_->SuperuserConnInfo(db), server_->password());
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return std::move(c).value();
  }

  static testing_pg::PostgresServer* server_;
  static std::string start_error_;
  FakeKube kube_;
  FakeEvents events_;
  std::unique_ptr<Reconciler> reconciler_;
};
testing_pg::PostgresServer* AttachmentE2eTest::server_ = nullptr;
std::string AttachmentE2eTest::start_error_;

TEST_F(AttachmentE2eTest, AppConnectsWithDatabaseUrlVerbatimFromPsqlAndNode) {
  Attach("shop", "web-app");
  std::string url = SecretValueOf("shop", "web-app-database", "DATABASE_URL");
  ASSERT_NE(url, "");
  EXPECT_EQ(url.rfind("postgres://web_app:", 0), 0u);
  Output p = Psql(url, "SELECT current_user || '@' || current_database()");
  EXPECT_EQ(p.rc, 0) << p.text;
  EXPECT_EQ(p.text, "web_app@web_app");
  Output n = Node(url, "SELECT current_user AS u, current_database() AS d");
  EXPECT_EQ(n.rc, 0) << n.text << " (npm log: " << NodePgDir() << ".log)";
  EXPECT_EQ(n.text, "web_app|web_app");
  // The other keys agree.
  EXPECT_EQ(SecretValueOf("shop", "web-app-database", "user"), "web_app");
  EXPECT_EQ(SecretValueOf("shop", "web-app-database", "dbname"), "web_app");
  Output ro = Psql(SecretValueOf("shop", "web-app-database", "DATABASE_READONLY_URL"), "SELECT 1");
  EXPECT_EQ(ro.text, "1");
}

TEST_F(AttachmentE2eTest, RoleIsLeastPrivilegeAndCannotReachOtherAttachments) {
  Attach("shop", "lp");
  Attach("blog", "other");
  std::string url = SecretValueOf("shop", "lp-database", "DATABASE_URL");
  EXPECT_NE(Psql(url, "CREATE ROLE sneaky").rc, 0);
  EXPECT_NE(Psql(url, "CREATE DATABASE sneaky").rc, 0);
  EXPECT_EQ(Psql(url, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").text, "f");
  std::string into_other = url.substr(0, url.rfind('/')) + "/other?sslmode=disable";
  Output p = Psql(into_other, "SELECT 1");
  EXPECT_NE(p.rc, 0);
  EXPECT_NE(p.text.find("permission denied for database"), std::string::npos) << p.text;
}

TEST_F(AttachmentE2eTest, HostilePasswordInTheSecretWorksThroughBothDrivers) {
  Attach("shop", "hostile");
  // Someone puts a password full of URL syntax into the Secret: Petrel sets it on the role
  // and re-issues every key, percent-encoded where needed.
  Json secret = *kube_.Find(resources::kSecret, {"shop", "hostile-database"});
  const std::string pw = "p@ss:w/rd?#%&= '\"\\;$$x";
  secret["data"]["password"] = Base64Encode(pw);
  kube_.Put(resources::kSecret, secret);
  ASSERT_TRUE(reconciler_->Reconcile({"shop", "hostile"}).ok());
  std::string url = SecretValueOf("shop", "hostile-database", "DATABASE_URL");
  EXPECT_EQ(url.find(pw), std::string::npos);
  EXPECT_EQ(Psql(url, "SELECT current_user").text, "hostile");
  Output n = Node(url, "SELECT current_user AS u");
  EXPECT_EQ(n.text, "hostile");
  EXPECT_EQ(SecretValueOf("shop", "hostile-database", "password"), pw);
}

TEST_F(AttachmentE2eTest, RotationSwitchesPasswordsAndKeepsExistingSessions) {
  Attach("shop", "rot");
  std::string old_url = SecretValueOf("shop", "rot-database", "DATABASE_URL");
  std::string old_pw = SecretValueOf("shop", "rot-database", "password");
  auto session = PgConn::Connect(old_url);
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  Json a = *kube_.Find(resources::kPostgresAttachment, {"shop", "rot"});
  a["metadata"]["annotations"]["petrel.dev/rotate-password"] = "2026-11-23";
  kube_.Put(resources::kPostgresAttachment, a);
  ASSERT_TRUE(reconciler_->Reconcile({"shop", "rot"}).ok());
  std::string new_url = SecretValueOf("shop", "rot-database", "DATABASE_URL");
  ASSERT_NE(new_url, old_url);
  EXPECT_NE(SecretValueOf("shop", "rot-database", "password"), old_pw);
  EXPECT_EQ(Psql(new_url, "SELECT 1").text, "1");
  EXPECT_NE(Psql(old_url, "SELECT 1").rc, 0);
  auto still = session->Exec("SELECT 1");
  EXPECT_TRUE(still.ok()) << "rotation ended an existing session";
  a = *kube_.Find(resources::kPostgresAttachment, {"shop", "rot"});
  EXPECT_EQ(a["status"]["passwordRotation"]["observedRequest"], "2026-11-23");
}

TEST_F(AttachmentE2eTest, ReadOnlyAttachmentSharesTheDatabase) {
  Attach("shop", "owner");
  std::string owner_url = SecretValueOf("shop", "owner-database", "DATABASE_URL");
  ASSERT_EQ(Psql(owner_url, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)").rc, 0);
  Attach("shop", "reports", {{"databaseName", "owner"}, {"privileges", "readOnly"}});
  std::string ro_url = SecretValueOf("shop", "reports-database", "DATABASE_URL");
  EXPECT_EQ(Psql(ro_url, "SELECT count(*) FROM t").text, "1");
  EXPECT_NE(Psql(ro_url, "INSERT INTO t VALUES (2)").rc, 0);
  // Second pass: nothing to do.
  ASSERT_TRUE(reconciler_->Reconcile({"shop", "reports"}).ok());
}

TEST_F(AttachmentE2eTest, DetachEndsSessionsDropsRoleRemovesSecretKeepsData) {
  Attach("shop", "leaving");
  std::string url = SecretValueOf("shop", "leaving-database", "DATABASE_URL");
  ASSERT_EQ(Psql(url, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('data')").rc, 0);
  auto session = PgConn::Connect(url);
  ASSERT_TRUE(session.ok());
  kube_.MarkDeleted(resources::kPostgresAttachment, {"shop", "leaving"});
  auto r = reconciler_->Reconcile({"shop", "leaving"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(session->Exec("SELECT 1").ok()) << "the session outlived detach";
  PgConn admin = Admin();
  auto role = attach_sql::ReadRole(admin, "leaving");
  ASSERT_TRUE(role.ok());
  EXPECT_FALSE(role->exists);
  EXPECT_EQ(kube_.Find(resources::kSecret, {"shop", "leaving-database"}), nullptr);
  EXPECT_EQ(kube_.Find(resources::kPostgresAttachment, {"shop", "leaving"}), nullptr);
  PgConn in_db = Admin("leaving");
  auto rows = in_db.Exec("SELECT v FROM kept");
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(rows->GetOr(0, 0), "data");
  EXPECT_NE(Psql(url, "SELECT 1").rc, 0);
}

// The cluster withdraws its consent after attach: the session ends, the role can no longer
// log in, the Secret goes, the data stays; consent given again restores access.
TEST_F(AttachmentE2eTest, WithdrawnConsentRevokesAccessAndKeepsData) {
  Attach("shop", "revoked");
  std::string url = SecretValueOf("shop", "revoked-database", "DATABASE_URL");
  ASSERT_EQ(Psql(url, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('data')").rc, 0);
  auto session = PgConn::Connect(url);
  ASSERT_TRUE(session.ok());

  Json cluster = *kube_.Find(resources::kPostgresCluster, {"data", "db"});
  cluster["spec"]["attachments"]["allowedNamespaces"] = {"billing"};
  kube_.Put(resources::kPostgresCluster, cluster);
  auto r = reconciler_->Reconcile({"shop", "revoked"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(session->Exec("SELECT 1").ok()) << "the session outlived the revocation";
  EXPECT_NE(Psql(url, "SELECT 1").rc, 0);
  EXPECT_EQ(kube_.Find(resources::kSecret, {"shop", "revoked-database"}), nullptr);
  PgConn admin = Admin();
  auto role = attach_sql::ReadRole(admin, "revoked");
  ASSERT_TRUE(role.ok());
  EXPECT_TRUE(role->exists);
  EXPECT_FALSE(role->can_login);
  Json a = *kube_.Find(resources::kPostgresAttachment, {"shop", "revoked"});
  EXPECT_EQ(a["status"]["phase"], "Refused");

  cluster["spec"]["attachments"]["allowedNamespaces"] = {"*"};
  kube_.Put(resources::kPostgresCluster, cluster);
  ASSERT_TRUE(reconciler_->Reconcile({"shop", "revoked"}).ok());
  std::string new_url = SecretValueOf("shop", "revoked-database", "DATABASE_URL");
  ASSERT_NE(new_url, "");
  EXPECT_EQ(Psql(new_url, "SELECT v FROM kept").text, "data");
}

TEST_F(AttachmentE2eTest, DeletedSecretGetsANewPasswordThatWorks) {
  Attach("shop", "reissue");
  std::string old_url = SecretValueOf("shop", "reissue-database", "DATABASE_URL");
  ASSERT_TRUE(kube_.Delete(resources::kSecret, {"shop", "reissue-database"}, {}).ok());
  ASSERT_TRUE(reconciler_->Reconcile({"shop", "reissue"}).ok());
  std::string new_url = SecretValueOf("shop", "reissue-database", "DATABASE_URL");
  ASSERT_NE(new_url, "");
  EXPECT_NE(new_url, old_url);
  EXPECT_EQ(Psql(new_url, "SELECT 1").text, "1");
  EXPECT_NE(Psql(old_url, "SELECT 1").rc, 0);
}

}  // namespace
}  // namespace petrel
