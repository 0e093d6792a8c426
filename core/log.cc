#include "core/log.h"

#include <regex>

#include <spdlog/sinks/stdout_sinks.h>

namespace petrel {

void InitLogging(LogFormat format, const std::string& level, const std::string& component) {
  auto logger = spdlog::stderr_logger_mt(component.empty() ? "petrel" : component);
  if (format == LogFormat::kJson) {
    // Messages are escaped by the caller-facing helpers; keep one JSON object per line.
    logger->set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","component":"%n","msg":"%v"})",
        spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v");
  }
  spdlog::level::level_enum lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") lvl = spdlog::level::info;
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
}

std::string Redact(const std::string& text) {
  static const std::regex url_password(R"(([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)[^@\s]*@)");
  static const std::regex kv_password(R"((password\s*=\s*)('[^']*'|\S+))", std::regex::icase);
  std::string out = std::regex_replace(text, url_password, "$1***@");
  return std::regex_replace(out, kv_password, "$1***");
}

}  // namespace petrel
