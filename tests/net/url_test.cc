#include <gtest/gtest.h>

#include "net/http.h"

namespace petrel {
namespace {

TEST(UrlCodingTest, EncodeKeepsUnreservedAndEscapesTheRest) {
  EXPECT_EQ(UrlEncode("aZ09-_.~"), "aZ09-_.~");
  EXPECT_EQ(UrlEncode("app=db,role in (a,b)"), "app%3Ddb%2Crole%20in%20%28a%2Cb%29");
  EXPECT_EQ(UrlEncode("/ä"), "%2F%C3%A4");
}

TEST(UrlCodingTest, DecodeIsTheInverseAndLeavesBadEscapesAlone) {
  for (const std::string s : {"", "plain", "a b&c=d/e?f", "ünïcode", "100%"}) {
    EXPECT_EQ(UrlDecode(UrlEncode(s)), s);
  }
  EXPECT_EQ(UrlDecode("%zz%4"), "%zz%4");
  EXPECT_EQ(UrlDecode("a+b"), "a+b");  // '+' is only a space inside query strings
}

TEST(HttpRequestTest, PathAndQueryParams) {
  HttpRequest r;
  r.target = "/api/v1/pods?labelSelector=app%3Ddb%2Cx+in+%28a%29&watch=1&empty=&flag";
  EXPECT_EQ(r.Path(), "/api/v1/pods");
  EXPECT_EQ(r.QueryParam("labelSelector"), "app=db,x in (a)");
  EXPECT_EQ(r.QueryParam("watch"), "1");
  EXPECT_EQ(r.QueryParam("missing"), "");
  EXPECT_TRUE(r.HasQueryParam("empty"));
  EXPECT_TRUE(r.HasQueryParam("flag"));
  EXPECT_FALSE(r.HasQueryParam("missing"));
  r.target = "/status";
  EXPECT_EQ(r.Path(), "/status");
  EXPECT_FALSE(r.HasQueryParam("status"));
}

}  // namespace
}  // namespace petrel
