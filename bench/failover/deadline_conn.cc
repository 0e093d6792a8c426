#include "bench/failover/deadline_conn.h"

#include <libpq-fe.h>
#include <poll.h>

namespace petrel {
namespace {

using Clock = std::chrono::steady_clock;

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Waits until the connection's socket is readable (or writable) or `deadline` passes.
// Returns false on timeout or a poll error.
bool WaitSocket(pg_conn* c, bool for_write, Clock::time_point deadline) {
  int fd = PQsocket(c);
  if (fd < 0) return false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

}  // namespace

Result<DeadlineConn> DeadlineConn::Connect(const std::string& host, uint16_t port,
                                           const std::string& user, const std::string& password,
                                           const std::string& dbname,
                                           const DeadlineConnOptions& options) {
  std::string port_text = std::to_string(port);
  const char* keys[] = {"host",    "port", "user", "password", "dbname", "application_name",
                        "sslmode", nullptr};
  const char* values[] = {host.c_str(),   port_text.c_str(),
                          user.c_str(),   password.c_str(),
                          dbname.c_str(), options.application_name.c_str(),
                          "disable",      nullptr};
  std::unique_ptr<pg_conn, PgConnDeleter> c(PQconnectStartParams(keys, values, 0));
  if (!c) return UnavailableError("connect: out of memory");
  if (PQstatus(c.get()) == CONNECTION_BAD) {
    return UnavailableError("connect " + host + ":" + port_text + ": " +
                            Trimmed(PQerrorMessage(c.get())));
  }
  // Server notices (e.g. "terminating connection due to administrator command") are
  // expected during failovers; they are not this client's output.
  PQsetNoticeProcessor(
      c.get(), [](void*, const char*) {}, nullptr);
  auto deadline = Clock::now() + options.connect_timeout;
  PostgresPollingStatusType state = PGRES_POLLING_WRITING;
  while (state != PGRES_POLLING_OK) {
    if (state == PGRES_POLLING_FAILED) {
      return UnavailableError("connect " + host + ":" + port_text + ": " +
                              Trimmed(PQerrorMessage(c.get())));
    }
    if (!WaitSocket(c.get(), state == PGRES_POLLING_WRITING, deadline)) {
      return TimeoutError("connect " + host + ":" + port_text + ": no answer within " +
                          std::to_string(options.connect_timeout.count()) + " ms");
    }
    state = PQconnectPoll(c.get());
  }
  if (PQsetnonblocking(c.get(), 1) != 0)
    return UnavailableError("connect: PQsetnonblocking failed");
  return DeadlineConn(std::move(c), options);
}

bool DeadlineConn::ok() const { return conn_ && PQstatus(conn_.get()) == CONNECTION_OK; }

Result<PgRows> DeadlineConn::Exec(const std::string& sql, const std::vector<std::string>& params) {
  if (!ok()) return UnavailableError("not connected");
  auto deadline = Clock::now() + options_.statement_timeout;
  auto drop = [&](Status s) {
    conn_.reset();  // the statement's fate is unknown: never reuse this session
    return s;
  };
  std::vector<const char*> values;
  for (const std::string& p : params) values.push_back(p.c_str());
  if (PQsendQueryParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()), nullptr,
                        values.data(), nullptr, nullptr, 0) != 1) {
    return drop(UnavailableError("send: " + Trimmed(PQerrorMessage(conn_.get()))));
  }
  // Non-blocking mode: flush whatever the socket did not take yet.
  for (int f = PQflush(conn_.get()); f != 0; f = PQflush(conn_.get())) {
    if (f < 0 || !WaitSocket(conn_.get(), true, deadline)) {
      return drop(TimeoutError("send: no progress within " +
                               std::to_string(options_.statement_timeout.count()) + " ms"));
    }
  }
  std::unique_ptr<pg_result, PgResultDeleter> last;
  for (;;) {
    while (PQisBusy(conn_.get())) {
      if (!WaitSocket(conn_.get(), false, deadline)) {
        return drop(TimeoutError("no reply within " +
                                 std::to_string(options_.statement_timeout.count()) + " ms"));
      }
      if (PQconsumeInput(conn_.get()) != 1) {
        return drop(UnavailableError("connection lost: " + Trimmed(PQerrorMessage(conn_.get()))));
      }
    }
    std::unique_ptr<pg_result, PgResultDeleter> r(PQgetResult(conn_.get()));
    if (!r) break;
    last = std::move(r);
  }
  if (!last) return drop(UnavailableError("no result"));
  ExecStatusType st = PQresultStatus(last.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    const char* state = PQresultErrorField(last.get(), PG_DIAG_SQLSTATE);
    Status s = UnavailableError(std::string("SQLSTATE ") + (state ? state : "?") + ": " +
                                Trimmed(PQresultErrorMessage(last.get())));
    if (PQstatus(conn_.get()) != CONNECTION_OK) conn_.reset();
    return s;
  }
  return PgRows(std::move(last));
}

}  // namespace petrel
