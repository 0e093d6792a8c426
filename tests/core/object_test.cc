#include "core/object.h"

#include <gtest/gtest.h>

#include "core/log.h"

namespace petrel {
namespace {

TEST(ObjectTest, MetadataAccessors) {
  Json pod = Json::parse(R"({"metadata":{"name":"a","namespace":"ns","generation":3,
    "labels":{"app":"x"},"ownerReferences":[{"apiVersion":"petrel.dev/v1alpha1",
    "kind":"PostgresCluster","name":"c","uid":"u1","controller":true}]}})");
  EXPECT_EQ(meta::Key(pod).ToString(), "ns/a");
  EXPECT_EQ(meta::Generation(pod), 3);
  EXPECT_EQ(meta::Label(pod, "app"), "x");
  ASSERT_TRUE(meta::ControllerOf(pod).has_value());
  EXPECT_EQ(meta::ControllerOf(pod)->name, "c");
  EXPECT_FALSE(meta::IsBeingDeleted(pod));
}

TEST(LabelSelectorTest, ParsesAndMatchesEveryOperator) {
  LabelSelector s;
  ASSERT_TRUE(LabelSelector::Parse("app=pg,role!=replica,tier in (a, b),!legacy,zone", &s));
  EXPECT_TRUE(s.Matches({{"app", "pg"}, {"role", "primary"}, {"tier", "b"}, {"zone", "z"}}));
  EXPECT_FALSE(s.Matches({{"app", "pg"}, {"role", "replica"}, {"tier", "b"}, {"zone", "z"}}));
  EXPECT_FALSE(s.Matches({{"app", "pg"}, {"tier", "c"}, {"zone", "z"}}));
  EXPECT_FALSE(s.Matches({{"app", "pg"}, {"tier", "a"}, {"zone", "z"}, {"legacy", "1"}}));
  EXPECT_FALSE(s.Matches({{"app", "pg"}, {"tier", "a"}}));
}

TEST(LabelSelectorTest, FromJsonMatchExpressions) {
  auto s = LabelSelector::FromJson(Json::parse(
      R"({"matchLabels":{"a":"1"},"matchExpressions":[{"key":"b","operator":"NotIn","values":["x"]}]})"));
  EXPECT_TRUE(s.Matches({{"a", "1"}, {"b", "y"}}));
  EXPECT_FALSE(s.Matches({{"a", "1"}, {"b", "x"}}));
}

TEST(LogTest, RedactHidesPasswords) {
  EXPECT_EQ(Redact("postgres://app:s3cr%40t@127.0.0.1:5432/db"), "postgres://app:***@127.0.0.1:5432/db");
  EXPECT_EQ(Redact("host=x password=hunter2 user=y"), "host=x password=*** user=y");
}

}  // namespace
}  // namespace petrel
