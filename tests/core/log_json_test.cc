#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/log.h"

namespace petrel {
namespace {

TEST(LogJsonTest, MessagesWithQuotesNewlinesAndControlCharsStayOneValidJsonLine) {
  testing::internal::CaptureStderr();
  InitLogging(LogFormat::kJson, "info", "json-escape-test");
  spdlog::info("object \"db-1\" failed:\nserver said \\ \x01");
  spdlog::default_logger()->flush();
  std::string out = testing::internal::GetCapturedStderr();
  ASSERT_FALSE(out.empty());
  ASSERT_EQ(out.find('\n'), out.size() - 1) << out;
  nlohmann::json line = nlohmann::json::parse(out);
  EXPECT_EQ(line["msg"], "object \"db-1\" failed:\nserver said \\ \x01");
  EXPECT_EQ(line["level"], "info");
  EXPECT_EQ(line["component"], "json-escape-test");
}

}  // namespace
}  // namespace petrel
