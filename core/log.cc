#include "core/log.h"

#include <regex>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace petrel {
namespace {
// %j: the message as the contents of a JSON string. Messages carry arbitrary text (object
// names, server errors with quotes and newlines); unescaped they would break the one JSON
// object per line that collectors parse.
class JsonEscapedMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm& /*tm*/,
              spdlog::memory_buf_t& dest) override {
    static constexpr char kHex[] = "0123456789abcdef";
    for (char c : msg.payload) {
      auto u = static_cast<unsigned char>(c);
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (u < 0x20) {
            const char esc[] = {'\\', 'u', '0', '0', kHex[u >> 4], kHex[u & 0xf]};
            dest.append(esc, esc + sizeof esc);
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonEscapedMessage>();
  }
};
}  // namespace

void InitLogging(LogFormat format, const std::string& level, const std::string& component) {
  auto logger = spdlog::stderr_logger_mt(component.empty() ? "petrel" : component);
  if (format == LogFormat::kJson) {
    // One JSON object per line; %j escapes the message (component names are ours).
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<JsonEscapedMessage>('j').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","component":"%n","msg":"%j"})");
    logger->set_formatter(std::move(formatter));
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
