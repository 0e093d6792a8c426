#include "pg/password.h"

#include <gtest/gtest.h>

#include <regex>

namespace petrel {
namespace {

TEST(ScramSha256VerifierTest, HasPostgresFormatAndARandomSalt) {
  auto a = ScramSha256Verifier("streaming_replica", "pw");
  auto b = ScramSha256Verifier("streaming_replica", "pw");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok());
  static const std::regex format(
      R"(SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+)");
  EXPECT_TRUE(std::regex_match(*a, format)) << *a;
  EXPECT_NE(*a, *b) << "each verifier gets its own salt";
  EXPECT_EQ(a->find("pw"), std::string::npos);
}

}  // namespace
}  // namespace petrel
