#include "reconcilers/attachment_plan.h"

#include <gtest/gtest.h>

namespace petrel {
namespace {

AttachInputs Inputs(AttachmentPrivileges p = AttachmentPrivileges::kOwner) {
  AttachInputs in;
  in.spec.cluster = {"data", "db"};
  in.spec.role_name = "web";
  in.spec.database_name = p == AttachmentPrivileges::kOwner ? "web" : "shared";
  in.spec.privileges = p;
  in.attachment = {"shop", "web"};
  in.fresh_password = "FRESH";
  return in;
}

struct PlanCase {
  std::string name;
  std::function<void(AttachInputs&)> setup;
  std::vector<PgStepKind> steps;
  std::string password;
  std::string refusal_reason;  // "" = not refused
};

class PlanAttachTable : public testing::TestWithParam<PlanCase> {};

TEST_P(PlanAttachTable, PlansTheSteps) {
  const auto& c = GetParam();
  AttachInputs in = Inputs();
  c.setup(in);
  AttachPlan plan = PlanAttach(in);
  if (!c.refusal_reason.empty()) {
    ASSERT_TRUE(plan.refusal.has_value()) << c.name;
    EXPECT_EQ(plan.refusal->reason, c.refusal_reason);
    EXPECT_TRUE(plan.steps.empty());
    return;
  }
  ASSERT_FALSE(plan.refusal.has_value()) << plan.refusal->message;
  std::vector<PgStepKind> kinds;
  for (const auto& s : plan.steps) kinds.push_back(s.kind);
  EXPECT_EQ(kinds, c.steps) << c.name;
  EXPECT_EQ(plan.password, c.password);
}

RoleObservation OurRole(bool attrs = true, bool pw = true) {
  return {true, ObjectKey{"shop", "web"}, attrs, pw};
}
DatabaseObservation OurDb(bool public_connect = false) {
  return {true, "web", public_connect, true};
}

using K = PgStepKind;
INSTANTIATE_TEST_SUITE_P(
    Table, PlanAttachTable,
    testing::Values(PlanCase{"fresh attach",
                             [](AttachInputs&) {},
                             {K::kCreateRole, K::kCreateDatabase, K::kRevokePublicConnect},
                             "FRESH",
                             ""},
                    PlanCase{"steady state",
                             [](AttachInputs& in) {
                               in.role = OurRole();
                               in.database = OurDb();
                               in.secret_password = "KEPT";
                             },
                             {},
                             "KEPT",
                             ""},
                    PlanCase{"secret deleted: new password",
                             [](AttachInputs& in) {
                               in.role = OurRole(true, false);
                               in.database = OurDb();
                             },
                             {K::kSetPassword},
                             "FRESH",
                             ""},
                    PlanCase{"role password changed by hand: restore the Secret's",
                             [](AttachInputs& in) {
                               in.role = OurRole(true, false);
                               in.database = OurDb();
                               in.secret_password = "KEPT";
                             },
                             {K::kSetPassword},
                             "KEPT",
                             ""},
                    PlanCase{"rotation requested",
                             [](AttachInputs& in) {
                               in.role = OurRole();
                               in.database = OurDb();
                               in.secret_password = "KEPT";
                               in.rotation_requested = true;
                             },
                             {K::kSetPassword},
                             "FRESH",
                             ""},
                    PlanCase{"attributes edited by hand, PUBLIC connect re-granted",
                             [](AttachInputs& in) {
                               in.role = OurRole(false, true);
                               in.database = OurDb(true);
                               in.secret_password = "KEPT";
                             },
                             {K::kResetRoleAttributes, K::kRevokePublicConnect},
                             "KEPT",
                             ""},
                    PlanCase{"role created but crashed before the database",
                             [](AttachInputs& in) {
                               in.role = OurRole();
                               in.secret_password = std::nullopt;
                             },
                             {K::kSetPassword, K::kCreateDatabase, K::kRevokePublicConnect},
                             "FRESH",
                             ""},
                    PlanCase{"role not created by Petrel",
                             [](AttachInputs& in) {
                               in.role = {true, std::nullopt, true, false};
                             },
                             {},
                             "",
                             "RoleNotManaged"},
                    PlanCase{"role of another attachment",
                             [](AttachInputs& in) {
                               in.role = {true, ObjectKey{"other", "web"}, true, false};
                             },
                             {},
                             "",
                             "RoleNotManaged"},
                    PlanCase{"database owned by someone else",
                             [](AttachInputs& in) {
                               in.database = {true, "legacy", true, true};
                             },
                             {},
                             "",
                             "DatabaseOwnedByOtherRole"}),
    [](const auto& info) {
      std::string n = info.param.name;
      for (char& ch : n) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return n;
    });

TEST(PlanAttach, SharedDatabaseGrantsOrWaits) {
  AttachInputs in = Inputs(AttachmentPrivileges::kReadOnly);
  AttachPlan missing = PlanAttach(in);
  ASSERT_TRUE(missing.refusal.has_value());
  EXPECT_EQ(missing.refusal->reason, "DatabaseNotFound");
  EXPECT_TRUE(missing.refusal->wait);

  in.database = {true, "shop_owner", false, false};
  AttachPlan plan = PlanAttach(in);
  ASSERT_FALSE(plan.refusal.has_value());
  ASSERT_EQ(plan.steps.size(), 2u);
  EXPECT_EQ(plan.steps[0].kind, K::kCreateRole);
  EXPECT_EQ(plan.steps[1].kind, K::kGrantAccess);
  EXPECT_EQ(plan.owner, "shop_owner");

  in.role = OurRole();
  in.secret_password = "KEPT";
  in.database.access_complete = true;
  EXPECT_TRUE(PlanAttach(in).steps.empty());
}

Json Cluster(Json attachments) {
  return {{"metadata", {{"name", "db"}, {"namespace", "data"}}},
          {"spec", {{"attachments", std::move(attachments)}}}};
}

TEST(AdmitNamespace, OwnNamespaceListWildcardAndSelector) {
  EXPECT_TRUE(AdmitNamespace(Cluster(Json::object()), "data", {}).admitted);
  EXPECT_FALSE(AdmitNamespace(Cluster(Json::object()), "shop", {}).admitted);
  EXPECT_TRUE(
      AdmitNamespace(Cluster({{"allowedNamespaces", {"blog", "shop"}}}), "shop", {}).admitted);
  EXPECT_FALSE(AdmitNamespace(Cluster({{"allowedNamespaces", {"blog"}}}), "shop", {}).admitted);
  EXPECT_TRUE(AdmitNamespace(Cluster({{"allowedNamespaces", {"*"}}}), "shop", {}).admitted);
  Json selector = {{"namespaceSelector", {{"matchLabels", {{"team", "web"}}}}}};
  EXPECT_TRUE(AdmitNamespace(Cluster(selector), "shop", {{"team", "web"}}).admitted);
  EXPECT_FALSE(AdmitNamespace(Cluster(selector), "shop", {{"team", "ops"}}).admitted);
  // An empty selector admits nobody (consent must be explicit).
  EXPECT_FALSE(
      AdmitNamespace(Cluster({{"namespaceSelector", Json::object()}}), "shop", {}).admitted);
  Admission refused = AdmitNamespace(Cluster(Json::object()), "shop", {});
  EXPECT_NE(refused.message.find("add \"shop\" to spec.attachments.allowedNamespaces of "
                                 "PostgresCluster data/db"),
            std::string::npos)
      << refused.message;
}

AttachmentClaim Claim(std::string ns, std::string name, std::string ts, std::string role,
                      std::string db, AttachmentPrivileges p = AttachmentPrivileges::kOwner) {
  return {{ns, name}, ts, {"data", "db"}, role, db, p};
}

TEST(FindConflict, EarlierClaimWinsThenNamespaceName) {
  auto a = Claim("shop", "web", "2026-01-01T00:00:00Z", "web", "web");
  auto b = Claim("blog", "web", "2026-01-02T00:00:00Z", "web", "web");
  EXPECT_EQ(FindConflict(a, {a, b}), std::nullopt);
  auto lost = FindConflict(b, {a, b});
  ASSERT_TRUE(lost.has_value());
  EXPECT_NE(lost->find("already claimed by PostgresAttachment shop/web"), std::string::npos);
  // Same timestamp: namespace/name order decides.
  auto c = Claim("alpha", "web", "2026-01-01T00:00:00Z", "web", "other");
  EXPECT_TRUE(FindConflict(a, {a, c}).has_value());
  EXPECT_FALSE(FindConflict(c, {a, c}).has_value());
  // Sharing a database read-only is not a conflict; two owners are.
  auto reader = Claim("shop", "reports", "2026-01-03T00:00:00Z", "reports", "web",
                      AttachmentPrivileges::kReadOnly);
  EXPECT_FALSE(FindConflict(reader, {a, reader}).has_value());
  auto owner2 = Claim("shop", "web2", "2026-01-03T00:00:00Z", "web2", "web");
  EXPECT_TRUE(FindConflict(owner2, {a, owner2}).has_value());
  // Another cluster is another namespace of names.
  auto elsewhere = b;
  elsewhere.cluster = {"data", "db2"};
  EXPECT_FALSE(FindConflict(elsewhere, {a, elsewhere}).has_value());
}

TEST(ConnectionSecret, HostilePasswordsArePercentEncoded) {
  ConnectionDetails d;
  d.read_write = {"db-rw.data.svc", 5432};
  d.read_only = {"db-ro.data.svc", 5432};
  d.database = "web";
  d.user = "web";
  d.password = "p@ss:w/rd?#%&= '\"\\";
  auto data = ConnectionSecretData(d);
  EXPECT_EQ(data["DATABASE_URL"],
            "postgres://web:p%40ss%3Aw%2Frd%3F%23%25%26%3D%20%27%22%5C@db-rw.data.svc:5432/"
            "web?sslmode=disable");
  EXPECT_EQ(data["DATABASE_READONLY_URL"],
            "postgres://web:p%40ss%3Aw%2Frd%3F%23%25%26%3D%20%27%22%5C@db-ro.data.svc:5432/"
            "web?sslmode=disable");
  EXPECT_EQ(data["uri"], data["DATABASE_URL"]);
  EXPECT_EQ(data["password"], d.password);
  EXPECT_EQ(data["user"], "web");
  EXPECT_EQ(data["username"], "web");
  EXPECT_EQ(data["dbname"], "web");
  EXPECT_EQ(data["host"], "db-rw.data.svc");
  EXPECT_EQ(data["port"], "5432");
  EXPECT_EQ(data["pgpass"], "db-rw.data.svc:5432:web:web:p@ss\\:w/rd?#%&= '\"\\\\\n");
  EXPECT_EQ(data["jdbc-uri"],
            "jdbc:postgresql://db-rw.data.svc:5432/web?user=web&password="
            "p%40ss%3Aw%2Frd%3F%23%25%26%3D%20%27%22%5C&sslmode=disable");
  EXPECT_EQ(PercentEncode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(PercentEncode("\xc3\xa9"), "%C3%A9");
}

TEST(Base64, RoundTrips) {
  for (std::string s : {"", "a", "ab", "abc", "abcd", "p@ss:w/rd\n\x01\xff"}) {
    auto back = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(back.has_value()) << s;
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(Base64Encode("pencil"), "cGVuY2ls");
  EXPECT_FALSE(Base64Decode("abc").has_value());
  EXPECT_FALSE(Base64Decode("a=bc").has_value());
}

TEST(SetCondition, KeepsTransitionTimeWhileStatusHolds) {
  Json conds;
  SetCondition(conds, "Ready", ConditionStatus::kFalse, "A", "m", 1, "t1");
  SetCondition(conds, "Ready", ConditionStatus::kFalse, "B", "m2", 2, "t2");
  ASSERT_EQ(conds.size(), 1u);
  EXPECT_EQ(conds[0]["lastTransitionTime"], "t1");
  EXPECT_EQ(conds[0]["reason"], "B");
  SetCondition(conds, "Ready", ConditionStatus::kTrue, "C", "m3", 2, "t3");
  EXPECT_EQ(conds[0]["lastTransitionTime"], "t3");
  Json a = {{"conditions", conds}};
  Json b = a;
  b["conditions"][0]["lastTransitionTime"] = "t9";
  EXPECT_FALSE(StatusDiffers(a, b));
  b["phase"] = "Ready";
  EXPECT_TRUE(StatusDiffers(a, b));
}

}  // namespace
}  // namespace petrel
