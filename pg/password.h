// Password verifiers computed on the client, so that CREATE/ALTER ROLE ... PASSWORD never
// carries a clear-text password to the server (where log_statement or an error report could
// log it).
//
// Thread-safety: thread-safe.
#pragma once

#include <string>

#include "core/status.h"

namespace petrel {

// "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>" for `password` (random salt), as
// libpq's PQencryptPasswordConn computes it (SASLprep included). Use it as the literal of
// CREATE ROLE ... PASSWORD '<verifier>'; the server stores it as is.
Result<std::string> ScramSha256Verifier(const std::string& user, const std::string& password);

}  // namespace petrel
