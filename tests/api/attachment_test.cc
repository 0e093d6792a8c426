#include "api/attachment.h"

#include <gtest/gtest.h>

namespace petrel {
namespace {

Json Attachment(const std::string& name, Json spec) {
  return Json{{"apiVersion", "petrel.dev/v1alpha1"},
              {"kind", "PostgresAttachment"},
              {"metadata", {{"name", name}, {"namespace", "shop"}}},
              {"spec", std::move(spec)}};
}

TEST(ParseAttachment, DefaultsResolveFromMetadataName) {
  auto spec = ParseAttachment(Attachment("web-app", {{"clusterRef", {{"name", "db"}}}}));
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->cluster, (ObjectKey{"shop", "db"}));
  EXPECT_EQ(spec->database_name, "web_app");
  EXPECT_EQ(spec->role_name, "web_app");
  EXPECT_EQ(spec->privileges, AttachmentPrivileges::kOwner);
  EXPECT_EQ(spec->connection_limit, -1);
  EXPECT_EQ(spec->secret_name, "web-app-database");
  EXPECT_EQ(spec->owned_objects, OwnedObjectsPolicy::kReassign);
  EXPECT_EQ(spec->reassign_owned_to, "");
}

TEST(ParseAttachment, ExplicitFieldsWin) {
  Json object = Attachment(
      "web", {{"clusterRef", {{"name", "db"}, {"namespace", "data"}}},
              {"databaseName", "shop"},
              {"roleName", "shop_reader"},
              {"privileges", "readOnly"},
              {"connectionLimit", 10},
              {"secretName", "reader-creds"},
              {"detachPolicy", {{"ownedObjects", "drop"}, {"reassignOwnedTo", "postgres"}}}});
  object["metadata"]["annotations"] = {{"petrel.dev/rotate-password", "2026-11-23"}};
  auto spec = ParseAttachment(object);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->cluster, (ObjectKey{"data", "db"}));
  EXPECT_EQ(spec->database_name, "shop");
  EXPECT_EQ(spec->role_name, "shop_reader");
  EXPECT_EQ(spec->privileges, AttachmentPrivileges::kReadOnly);
  EXPECT_EQ(spec->connection_limit, 10);
  EXPECT_EQ(spec->secret_name, "reader-creds");
  EXPECT_EQ(spec->owned_objects, OwnedObjectsPolicy::kDrop);
  EXPECT_EQ(spec->reassign_owned_to, "postgres");
  EXPECT_EQ(spec->rotate_password_request, "2026-11-23");
}

struct IdentCase {
  std::string ident;
  bool valid;
  std::string rule;  // a fragment of the message
};

class IdentifierRule : public testing::TestWithParam<IdentCase> {};

TEST_P(IdentifierRule, AcceptsOnlyPlainLowerCaseNames) {
  const auto& c = GetParam();
  std::string problem = IdentifierProblem(c.ident);
  if (c.valid) {
    EXPECT_EQ(problem, "") << c.ident;
  } else {
    EXPECT_NE(problem.find(c.rule), std::string::npos) << c.ident << " -> " << problem;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, IdentifierRule,
    testing::Values(
        IdentCase{"app", true, ""}, IdentCase{"_app", true, ""}, IdentCase{"app_2", true, ""},
        IdentCase{std::string(63, 'a'), true, ""},
        IdentCase{std::string(64, 'a'), false, "limit is 63"},
        IdentCase{"", false, "must not be empty"},
        IdentCase{"App", false, "start with a lower-case letter"},
        IdentCase{"aPP", false, "only lower-case letters"},
        IdentCase{"1app", false, "start with a lower-case letter"},
        IdentCase{"my app", false, "only lower-case"},
        IdentCase{"my-app", false, "only lower-case"}, IdentCase{"a\"b", false, "only lower-case"},
        IdentCase{"x\"; DROP TABLE t; --", false, "only lower-case"},
        IdentCase{"a;b", false, "only lower-case"}, IdentCase{"a'b", false, "only lower-case"},
        IdentCase{"a$$b", false, "only lower-case"}, IdentCase{"caf\xc3\xa9", false, "non-ASCII"},
        IdentCase{std::string("a\0b", 3), false, "only lower-case"},
        IdentCase{"postgres", false, "reserved for Postgres or Petrel"},
        IdentCase{"template0", false, "reserved"}, IdentCase{"template1", false, "reserved"},
        IdentCase{"streaming_replica", false, "reserved"}, IdentCase{"public", false, "reserved"},
        IdentCase{"pg_monitor", false, "\"pg_\""}, IdentCase{"petrel", false, "\"petrel\""},
        IdentCase{"petrel_agent", false, "\"petrel\""},
        IdentCase{"user", false, "reserved key word"},
        IdentCase{"select", false, "reserved key word"}, IdentCase{"pgx", true, ""}));

TEST(ParseAttachment, RejectsHostileNamesNamingFieldAndRule) {
  auto r = ParseAttachment(Attachment(
      "web", {{"clusterRef", {{"name", "db"}}}, {"roleName", "x\"; DROP ROLE postgres; --"}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalid);
  ASSERT_EQ(r.status().causes().size(), 1u);
  EXPECT_EQ(r.status().causes()[0].field, "spec.roleName");
  EXPECT_NE(r.status().message().find("spec.roleName may contain only lower-case letters"),
            std::string::npos)
      << r.status().message();
  // The hostile value is not echoed back.
  EXPECT_EQ(r.status().message().find("DROP ROLE"), std::string::npos);
}

TEST(ParseAttachment, DefaultedNameThatBreaksTheRuleSaysToSetTheField) {
  auto r = ParseAttachment(Attachment("postgres", {{"clusterRef", {{"name", "db"}}}}));
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.status().causes().size(), 2u);
  EXPECT_EQ(r.status().causes()[0].field, "spec.databaseName");
  EXPECT_NE(r.status().causes()[0].message.find("set spec.databaseName explicitly"),
            std::string::npos);
  EXPECT_EQ(r.status().causes()[1].field, "spec.roleName");
}

struct SpecCase {
  std::string name;
  Json spec;
  std::string field;
};

class InvalidSpec : public testing::TestWithParam<SpecCase> {};

TEST_P(InvalidSpec, IsRejectedWithTheFieldPath) {
  auto r = ParseAttachment(Attachment("web", GetParam().spec));
  ASSERT_FALSE(r.ok()) << GetParam().name;
  ASSERT_FALSE(r.status().causes().empty());
  EXPECT_EQ(r.status().causes()[0].field, GetParam().field) << r.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Table, InvalidSpec,
    testing::Values(
        SpecCase{"no cluster", Json::object(), "spec.clusterRef"},
        SpecCase{"empty cluster name", {{"clusterRef", {{"name", ""}}}}, "spec.clusterRef.name"},
        SpecCase{
            "cluster name not a string", {{"clusterRef", {{"name", 3}}}}, "spec.clusterRef.name"},
        SpecCase{"privileges",
                 {{"clusterRef", {{"name", "db"}}}, {"privileges", "superuser"}},
                 "spec.privileges"},
        SpecCase{"limit too small",
                 {{"clusterRef", {{"name", "db"}}}, {"connectionLimit", -2}},
                 "spec.connectionLimit"},
        SpecCase{"limit not integer",
                 {{"clusterRef", {{"name", "db"}}}, {"connectionLimit", "10"}},
                 "spec.connectionLimit"},
        SpecCase{"secret name",
                 {{"clusterRef", {{"name", "db"}}}, {"secretName", "Bad_Name"}},
                 "spec.secretName"},
        SpecCase{"owned objects",
                 {{"clusterRef", {{"name", "db"}}}, {"detachPolicy", {{"ownedObjects", "keep"}}}},
                 "spec.detachPolicy.ownedObjects"},
        SpecCase{
            "reassign to hostile",
            {{"clusterRef", {{"name", "db"}}}, {"detachPolicy", {{"reassignOwnedTo", "a'; DROP"}}}},
            "spec.detachPolicy.reassignOwnedTo"},
        SpecCase{"reassign to itself",
                 {{"clusterRef", {{"name", "db"}}}, {"detachPolicy", {{"reassignOwnedTo", "web"}}}},
                 "spec.detachPolicy.reassignOwnedTo"}),
    [](const auto& info) {
      std::string n = info.param.name;
      for (char& c : n) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return n;
    });

TEST(RoleMarker, RoundTrips) {
  ObjectKey key{"shop", "web"};
  EXPECT_EQ(ParseRoleMarker(RoleMarker(key)), key);
  EXPECT_EQ(ParseRoleMarker("created by hand"), std::nullopt);
  EXPECT_EQ(ParseRoleMarker(""), std::nullopt);
  EXPECT_EQ(ParseRoleMarker("Managed by Petrel for PostgresAttachment shop"), std::nullopt);
  EXPECT_EQ(ParseRoleMarker("Managed by Petrel for PostgresAttachment a/b/c"), std::nullopt);
}

}  // namespace
}  // namespace petrel
