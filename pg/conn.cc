#include "pg/conn.h"

#include <libpq-fe.h>

namespace petrel {

void PgResultDeleter::operator()(pg_result* r) const { PQclear(r); }
void PgConnDeleter::operator()(pg_conn* c) const { PQfinish(c); }

PgRows::PgRows(std::unique_ptr<pg_result, PgResultDeleter> r)
    : result_(r.release(), PgResultDeleter()) {}

int PgRows::size() const { return result_ ? PQntuples(result_.get()) : 0; }
int PgRows::columns() const { return result_ ? PQnfields(result_.get()) : 0; }
std::optional<std::string> PgRows::Get(int row, int col) const {
  if (!result_ || row < 0 || row >= size() || col < 0 || col >= columns()) return std::nullopt;
  if (PQgetisnull(result_.get(), row, col)) return std::nullopt;
  return std::string(PQgetvalue(result_.get(), row, col), PQgetlength(result_.get(), row, col));
}
std::string PgRows::GetOr(int row, int col, const std::string& fallback) const {
  return Get(row, col).value_or(fallback);
}
int PgRows::ColumnIndex(const std::string& name) const {
  return result_ ? PQfnumber(result_.get(), name.c_str()) : -1;
}
int64_t PgRows::affected() const {
  if (!result_) return 0;
  const char* n = PQcmdTuples(result_.get());
  return n && *n ? std::stoll(n) : 0;
}

static Status ErrorFrom(const char* what, const std::string& detail) {
  std::string d = detail;
  while (!d.empty() && (d.back() == '\n' || d.back() == ' ')) d.pop_back();
  return UnavailableError(std::string(what) + ": " + d);
}

static Status ResultError(pg_result* r, pg_conn* c) {
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  std::string msg = PQresultErrorMessage(r);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  std::string sqlstate = state ? state : "";
  if (PQstatus(c) != CONNECTION_OK) return UnavailableError("connection lost: " + msg);
  // Class 42 (syntax/access), 22 (data), 23 (constraint) will not succeed on retry.
  Code code = Code::kInternal;
  if (sqlstate.rfind("42", 0) == 0 || sqlstate.rfind("22", 0) == 0 ||
      sqlstate.rfind("23", 0) == 0) {
    code = Code::kInvalid;
  } else if (sqlstate == "55006" || sqlstate == "40001" || sqlstate == "40P01" ||
             sqlstate.rfind("57", 0) == 0 || sqlstate.rfind("08", 0) == 0 ||
             sqlstate == "25006") {
    code = Code::kUnavailable;  // object in use, serialization, deadlock, shutdown, read-only
  }
  return Status(code, "SQLSTATE " + sqlstate + ": " + msg);
}

Result<PgConn> PgConn::Connect(const std::string& conninfo, const std::string& password,
                               const PgConnectOptions& options) {
  std::vector<const char*> keys = {"dbname", "connect_timeout", "application_name"};
  std::string timeout = std::to_string(options.connect_timeout.count());
  std::vector<const char*> values = {conninfo.c_str(), timeout.c_str(),
                                     options.application_name.c_str()};
  if (!password.empty()) {
    keys.push_back("password");
    values.push_back(password.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  // expand_dbname=1: the first dbname value may itself be a conninfo string or URI.
  std::unique_ptr<pg_conn, PgConnDeleter> c(PQconnectdbParams(keys.data(), values.data(), 1));
  if (!c) return UnavailableError("connecting to postgres: out of memory");
  if (PQstatus(c.get()) != CONNECTION_OK) {
    return ErrorFrom("connecting to postgres", PQerrorMessage(c.get()));
  }
  PgConn conn(std::move(c));
  if (options.statement_timeout.count() > 0) {
    auto r = conn.Exec("SELECT set_config('statement_timeout', $1, false)",
                       {std::to_string(options.statement_timeout.count())});
    if (!r.ok()) return r.status();
  }
  return conn;
}

Result<PgRows> PgConn::Exec(const std::string& sql,
                            const std::vector<std::optional<std::string>>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  std::unique_ptr<pg_result, PgResultDeleter> r(
      PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()), nullptr,
                   values.data(), nullptr, nullptr, 0));
  if (!r) return ErrorFrom("executing SQL", PQerrorMessage(conn_.get()));
  auto st = PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return ResultError(r.get(), conn_.get());
  return PgRows(std::move(r));
}

Status PgConn::ExecScript(const std::string& sql) {
  std::unique_ptr<pg_result, PgResultDeleter> r(PQexec(conn_.get(), sql.c_str()));
  if (!r) return ErrorFrom("executing SQL", PQerrorMessage(conn_.get()));
  auto st = PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return ResultError(r.get(), conn_.get());
  return Status::Ok();
}

Result<std::string> PgConn::QuoteIdent(const std::string& ident) {
  char* q = PQescapeIdentifier(conn_.get(), ident.data(), ident.size());
  if (!q) return InvalidError("cannot quote identifier: " + std::string(PQerrorMessage(conn_.get())));
  std::string out(q);
  PQfreemem(q);
  return out;
}

Result<std::string> PgConn::QuoteLiteral(const std::string& literal) {
  char* q = PQescapeLiteral(conn_.get(), literal.data(), literal.size());
  if (!q) return InvalidError("cannot quote literal: " + std::string(PQerrorMessage(conn_.get())));
  std::string out(q);
  PQfreemem(q);
  return out;
}

std::string PgConn::ServerVersion() const {
  const char* v = PQparameterStatus(conn_.get(), "server_version");
  return v ? v : "";
}

bool PgConn::ok() const { return conn_ && PQstatus(conn_.get()) == CONNECTION_OK; }

std::string ConnInfo(const std::vector<std::pair<std::string, std::string>>& pairs) {
  std::string out;
  for (const auto& [k, v] : pairs) {
    if (!out.empty()) out += ' ';
    out += k + "='";
    for (char ch : v) {
      if (ch == '\\' || ch == '\'') out += '\\';
      out += ch;
    }
    out += '\'';
  }
  return out;
}

}  // namespace petrel
