// DeadlineConn: a libpq connection whose every call is bounded by a *client-side* deadline.
//
// Failover measurement needs a client that never hangs on a primary that is frozen (SIGSTOP):
// the kernel still accepts TCP connections and acknowledges data for a stopped process, so
// server-side settings (statement_timeout) and TCP timeouts never fire. This class drives
// libpq's non-blocking API (PQconnectStartParams/PQconnectPoll, PQsendQueryParams/
// PQconsumeInput) and poll(2) with a deadline; when the deadline passes the connection is
// dropped (PQfinish closes the socket) and the call fails with Timeout. A timed-out statement may
// or may not have committed: callers must treat it as unacknowledged, never as failed-and-absent.
//
// Thread-safety: one thread per DeadlineConn; distinct objects are independent.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "pg/conn.h"

namespace petrel {

struct DeadlineConnOptions {
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds statement_timeout{1000};
  std::string application_name = "petrel-failover";
};

class DeadlineConn {
 public:
  // host/port/user/dbname as libpq keywords; the password is passed apart so it never appears
  // in a string that could be logged.
  static Result<DeadlineConn> Connect(const std::string& host, uint16_t port,
                                      const std::string& user, const std::string& password,
                                      const std::string& dbname,
                                      const DeadlineConnOptions& options = {});

  // Runs one statement with $1..$n text parameters within options.statement_timeout. On a
  // deadline or a broken connection the connection is closed (ok() turns false).
  Result<PgRows> Exec(const std::string& sql, const std::vector<std::string>& params = {});

  bool ok() const;

 private:
  DeadlineConn(std::unique_ptr<pg_conn, PgConnDeleter> c, DeadlineConnOptions options)
      : conn_(std::move(c)), options_(std::move(options)) {}
  std::unique_ptr<pg_conn, PgConnDeleter> conn_;
  DeadlineConnOptions options_;
};

}  // namespace petrel
