// libpq behind RAII: one owner per PGconn / PGresult, explicit deleters, and every call
// bounded by a timeout. SQL identifiers and literals are only ever quoted by libpq
// (PQescapeIdentifier / PQescapeLiteral) or passed as parameters; never formatted in.
//
// Thread-safety: a PgConn is used by one thread at a time; distinct PgConns are independent.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

struct pg_conn;
struct pg_result;

namespace petrel {

struct PgResultDeleter {
  void operator()(pg_result* r) const;
};
struct PgConnDeleter {
  void operator()(pg_conn* c) const;
};

// A query's rows as text (NULL is std::nullopt).
class PgRows {
 public:
  PgRows() = default;
  explicit PgRows(std::unique_ptr<pg_result, PgResultDeleter> r);
  int size() const;
  int columns() const;
  std::optional<std::string> Get(int row, int col) const;
  std::string GetOr(int row, int col, const std::string& fallback = "") const;
  int ColumnIndex(const std::string& name) const;  // -1 if absent
  int64_t affected() const;                        // rows affected by a command

 private:
  std::shared_ptr<pg_result> result_;
};

struct PgConnectOptions {
  std::chrono::seconds connect_timeout{5};
  // statement_timeout applied to the session; 0 = none.
  std::chrono::milliseconds statement_timeout{30000};
  std::string application_name = "petrel";
};

class PgConn {
 public:
  // conninfo: "host=... port=... user=... dbname=..." or a postgres:// URI. The password
  // may be given separately so it never appears in a string that could be logged.
  static Result<PgConn> Connect(const std::string& conninfo, const std::string& password = "",
                                const PgConnectOptions& options = {});

  // Runs one statement with $1..$n text parameters (NULL via std::nullopt).
  Result<PgRows> Exec(const std::string& sql,
                      const std::vector<std::optional<std::string>>& params = {});
  // Runs several statements (no parameters), e.g. a DDL script.
  Status ExecScript(const std::string& sql);

  // "quoted" identifier / 'quoted' literal via libpq (respects the server encoding).
  Result<std::string> QuoteIdent(const std::string& ident);
  Result<std::string> QuoteLiteral(const std::string& literal);

  std::string ServerVersion() const;
  bool ok() const;

 private:
  explicit PgConn(std::unique_ptr<pg_conn, PgConnDeleter> c) : conn_(std::move(c)) {}
  std::unique_ptr<pg_conn, PgConnDeleter> conn_;
};

// Builds "key=value ..." conninfo with values quoted as libpq expects ('...' with \\ and \').
std::string ConnInfo(const std::vector<std::pair<std::string, std::string>>& pairs);

}  // namespace petrel
