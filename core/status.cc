#include "core/status.h"

namespace petrel {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "Ok";
    case Code::kNotFound: return "NotFound";
    case Code::kAlreadyExists: return "AlreadyExists";
    case Code::kConflict: return "Conflict";
    case Code::kInvalid: return "Invalid";
    case Code::kGone: return "Gone";
    case Code::kForbidden: return "Forbidden";
    case Code::kUnauthorized: return "Unauthorized";
    case Code::kTooManyRequests: return "TooManyRequests";
    case Code::kUnavailable: return "Unavailable";
    case Code::kTimeout: return "Timeout";
    case Code::kCancelled: return "Cancelled";
    case Code::kTerminal: return "Terminal";
    case Code::kInternal: return "Internal";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "Ok";
  std::string s = std::string(CodeName(code_)) + ": " + message_;
  for (const auto& c : causes_) {
    s += "; " + (c.field.empty() ? std::string() : c.field + ": ") + c.message;
  }
  return s;
}

Status Status::Annotate(const std::string& context) const {
  if (ok()) return *this;
  Status s(code_, context + ": " + message_);
  s.causes_ = causes_;
  s.retry_after_ms_ = retry_after_ms_;
  return s;
}

}  // namespace petrel
