#include "pg/password.h"

#include <libpq-fe.h>

#include <memory>

#include "pg/conn.h"

namespace petrel {

Result<std::string> ScramSha256Verifier(const std::string& user, const std::string& password) {
  // PQencryptPasswordConn needs a PGconn only for error reporting when the algorithm is
  // given. An unknown conninfo option makes libpq return a (failed) connection object without
  // opening any socket.
  std::unique_ptr<pg_conn, PgConnDeleter> conn(PQconnectStart("petrel_no_connection=1"));
  if (!conn) return InternalError("computing a SCRAM verifier: out of memory");
  char* v = PQencryptPasswordConn(conn.get(), password.c_str(), user.c_str(), "scram-sha-256");
  if (v == nullptr) {
    return InternalError("computing a SCRAM verifier: " + std::string(PQerrorMessage(conn.get())));
  }
  std::string out(v);
  PQfreemem(v);
  return out;
}

}  // namespace petrel
