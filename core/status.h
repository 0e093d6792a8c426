// Errors as values. A Status is Ok or a code plus a human message; Result<T> is a T or a
// non-Ok Status. Messages that reach users (conditions, events, CLI) say what is wrong and
// what to do. Thread-safety: plain values, safe to copy across threads.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace petrel {

enum class Code {
  kOk,
  kNotFound,          // object or thing does not exist
  kAlreadyExists,     // create of an existing object
  kConflict,          // optimistic-concurrency failure (stale resourceVersion)
  kInvalid,           // input rejected; see causes
  kGone,              // watch resourceVersion too old (HTTP 410)
  kForbidden,         // authenticated but not allowed
  kUnauthorized,      // credentials missing or rejected
  kTooManyRequests,   // throttled (HTTP 429)
  kUnavailable,       // transient: connection refused, 5xx, timeout; retry with backoff
  kTimeout,           // deadline passed
  kCancelled,         // stopped on request (shutdown)
  kTerminal,          // will not succeed on retry without a change of input
  kInternal,          // a bug or unexpected state
};

const char* CodeName(Code code);

// One field-level reason, as in a Kubernetes Status "details.causes" entry.
struct StatusCause {
  std::string field;
  std::string reason;
  std::string message;
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  const std::vector<StatusCause>& causes() const { return causes_; }
  Status& WithCauses(std::vector<StatusCause> causes) {
    causes_ = std::move(causes);
    return *this;
  }
  // Optional server hint (Retry-After) in milliseconds; 0 when absent.
  int retry_after_ms() const { return retry_after_ms_; }
  Status& WithRetryAfterMs(int ms) {
    retry_after_ms_ = ms;
    return *this;
  }

  // "NotFound: pods \"x\" not found"
  std::string ToString() const;
  // Adds context in front of the message, keeping the code: "reading kubeconfig: ...".
  Status Annotate(const std::string& context) const;

  bool IsRetryable() const {
    return code_ == Code::kUnavailable || code_ == Code::kTooManyRequests ||
           code_ == Code::kTimeout || code_ == Code::kConflict;
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
  std::vector<StatusCause> causes_;
  int retry_after_ms_ = 0;
};

inline Status NotFoundError(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status AlreadyExistsError(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
inline Status ConflictError(std::string m) { return {Code::kConflict, std::move(m)}; }
inline Status InvalidError(std::string m) { return {Code::kInvalid, std::move(m)}; }
inline Status GoneError(std::string m) { return {Code::kGone, std::move(m)}; }
inline Status ForbiddenError(std::string m) { return {Code::kForbidden, std::move(m)}; }
inline Status UnavailableError(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status TimeoutError(std::string m) { return {Code::kTimeout, std::move(m)}; }
inline Status CancelledError(std::string m) { return {Code::kCancelled, std::move(m)}; }
inline Status TerminalError(std::string m) { return {Code::kTerminal, std::move(m)}; }
inline Status InternalError(std::string m) { return {Code::kInternal, std::move(m)}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "Result constructed from an Ok status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T value_or(T fallback) const { return ok() ? value() : std::move(fallback); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace petrel

// Early return of a non-Ok Status (or of a Result's Status).
#define PETREL_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::petrel::Status petrel_status_ = (expr);        \
    if (!petrel_status_.ok()) return petrel_status_; \
  } while (0)

#define PETREL_CONCAT_INNER_(a, b) a##b
#define PETREL_CONCAT_(a, b) PETREL_CONCAT_INNER_(a, b)
// PETREL_ASSIGN_OR_RETURN(auto x, Compute()); returns the Status when Compute() failed.
#define PETREL_ASSIGN_OR_RETURN(lhs, expr) \
  PETREL_ASSIGN_OR_RETURN_IMPL_(PETREL_CONCAT_(petrel_result_, __LINE__), lhs, expr)
#define PETREL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()
