#include "core/status.h"

#include <gtest/gtest.h>

namespace petrel {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return InvalidError("odd number " + std::to_string(x));
  return x / 2;
}

Result<int> Quarter(int x) {
  PETREL_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST(StatusTest, ResultCarriesValueOrError) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalid);
  EXPECT_EQ(r.status().message(), "odd number 3");
}

TEST(StatusTest, AnnotateKeepsCodeAndCauses) {
  Status s = InvalidError("bad spec").WithCauses({{"spec.replicas", "FieldValueInvalid", "must be >= 0"}});
  Status a = s.Annotate("applying cluster db/x");
  EXPECT_EQ(a.code(), Code::kInvalid);
  EXPECT_EQ(a.ToString(), "Invalid: applying cluster db/x: bad spec; spec.replicas: must be >= 0");
}

TEST(StatusTest, RetryableCodes) {
  EXPECT_TRUE(UnavailableError("x").IsRetryable());
  EXPECT_TRUE(ConflictError("x").IsRetryable());
  EXPECT_FALSE(InvalidError("x").IsRetryable());
  EXPECT_FALSE(NotFoundError("x").IsRetryable());
}

}  // namespace
}  // namespace petrel
