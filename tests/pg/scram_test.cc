#include "pg/scram.h"

#include <gtest/gtest.h>

#include <regex>
#include <set>

namespace petrel {
namespace {

TEST(Scram, VerifierHasThePostgresFormat) {
  auto v = ScramVerifier("correct horse battery staple");
  ASSERT_TRUE(v.ok());
  // 16-byte salt -> 24 base64 chars; 32-byte keys -> 44 chars.
  std::regex format(
      R"(SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=)");
  EXPECT_TRUE(std::regex_match(*v, format)) << *v;
}

TEST(Scram, KnownAnswerWithTheRfc7677Salt) {
  // Password "pencil" and salt W22ZaJ0SNY7soEsUEjb6gQ== from RFC 7677 section 3; the expected
  // StoredKey/ServerKey were computed independently (Python hashlib/hmac). The e2e test also
  // checks verifiers Postgres itself computed.
  std::string salt = "\x5b\x6d\x99\x68\x9d\x12\x35\x8e\xec\xa0\x4b\x14\x12\x36\xfa\x81";
  auto a = ScramVerifierWithSalt("pencil", salt, 4096);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a,
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
            "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
            "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
  EXPECT_TRUE(ScramVerifierMatches(*a, "pencil"));
  EXPECT_FALSE(ScramVerifierMatches(*a, "pencil2"));
  auto c = ScramVerifierWithSalt("pencil", std::string(16, 'x'), 4096);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(*a, *c);
}

TEST(Scram, RejectsPasswordsPostgresWouldSaslprep) {
  EXPECT_EQ(ScramVerifier("").status().code(), Code::kInvalid);
  EXPECT_EQ(ScramVerifier("caf\xc3\xa9").status().code(), Code::kInvalid);
  EXPECT_EQ(ScramVerifier(std::string("a\nb")).status().code(), Code::kInvalid);
}

TEST(Scram, MatchesRefusesMalformedVerifiers) {
  EXPECT_FALSE(ScramVerifierMatches("", "x"));
  EXPECT_FALSE(ScramVerifierMatches("md5abcdef", "x"));
  EXPECT_FALSE(ScramVerifierMatches("SCRAM-SHA-256$x:abc$def:ghi", "x"));
  EXPECT_FALSE(ScramVerifierMatches("SCRAM-SHA-256$4096:!!!!$def:ghi", "x"));
}

TEST(GeneratePassword, IsLongUrlSafeAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto p = GeneratePassword();
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->size(), 32u);
    for (char c : *p) {
      EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << *p;
    }
    seen.insert(*p);
  }
  EXPECT_EQ(seen.size(), 100u);
}

}  // namespace
}  // namespace petrel
