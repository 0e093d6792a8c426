#include "pg/scram.h"

#include <gtest/gtest.h>

#include <regex>

namespace petrel {
namespace {

TEST(ScramVerifierTest, HasPostgresFormatAndARandomSalt) {
  auto a = ScramVerifier("pw");
  auto b = ScramVerifier("pw");
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
