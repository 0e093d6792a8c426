#include "core/base64.h"

#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace petrel {
namespace {

TEST(Base64Test, DecodesStandardAlphabetAndRejectsGarbage) {
  const std::vector<std::pair<std::string, std::string>> good = {
      {"", ""}, {"YQ==", "a"}, {"YWI=", "ab"}, {"YWJj", "abc"}, {"YWJj\nZA==", "abcd"},
      {"YQ", "a"}, {"+/8=", "\xfb\xff"}, {"aGVsbG8=", "hello"},
  };
  for (const auto& [in, want] : good) {
    std::optional<std::string> out = Base64Decode(in);
    ASSERT_TRUE(out.has_value()) << in;
    EXPECT_EQ(*out, want) << in;
  }
  for (const std::string bad : {"Y", "YQ==YQ", "a*b", "YQ===", "a$b"}) {
    EXPECT_FALSE(Base64Decode(bad).has_value()) << bad;
  }
}

TEST(Base64Test, EncodeRoundTripsEveryLength) {
  std::string bytes;
  for (int i = 0; i < 70; ++i) {
    bytes.push_back(static_cast<char>(i * 37 + 11));
    std::optional<std::string> back = Base64Decode(Base64Encode(bytes));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, bytes);
  }
  EXPECT_EQ(Base64Encode("hello"), "aGVsbG8=");
  EXPECT_EQ(Base64Encode("pencil"), "cGVuY2ls");
  EXPECT_EQ(Base64Decode(Base64Encode("p@ss:w/rd\n\x01\xff")), "p@ss:w/rd\n\x01\xff");
}

}  // namespace
}  // namespace petrel
