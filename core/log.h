// Structured logging over spdlog. One process-wide logger configured once at start-up
// (text for humans, JSON lines for collectors). Thread-safe (spdlog's mt sinks).
// Never log secrets: pass names, not values; Redact() masks a connection string's password.
#pragma once

#include <string>

#include <spdlog/spdlog.h>

namespace petrel {

enum class LogFormat { kText, kJson };

// level: trace|debug|info|warn|error. Unknown levels fall back to info.
void InitLogging(LogFormat format, const std::string& level, const std::string& component);

// "postgres://u:secret@h/db" -> "postgres://u:***@h/db"; "password=x" -> "password=***".
std::string Redact(const std::string& text);

}  // namespace petrel
