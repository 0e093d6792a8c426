// Passwords for attachment roles: generated with OpenSSL's CSPRNG, and sent to Postgres only
// as SCRAM-SHA-256 verifiers computed here (RFC 5802 / RFC 7677, the format Postgres stores in
// pg_authid.rolpassword), so the cleartext never reaches the server, its logs or pg_stat views.
// Pure functions apart from the CSPRNG; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace petrel {

inline constexpr int kScramIterations = 4096;  // Postgres' default scram_iterations
inline constexpr size_t kScramSaltBytes = 16;
inline constexpr size_t kGeneratedPasswordLength = 32;  // 192 bits from a 64-symbol alphabet

// A new random password of kGeneratedPasswordLength characters from the URL-safe alphabet
// [A-Za-z0-9-_] (RFC 3986 unreserved: no percent-encoding needed anywhere).
Result<std::string> GeneratePassword();

// "SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>".
// The password must be printable ASCII (SASLprep is then the identity, as in Postgres);
// anything else is kInvalid. ScramVerifier draws a random salt; ScramVerifierWithSalt is the
// deterministic core (for tests and for checking a password against a stored verifier).
Result<std::string> ScramVerifier(std::string_view password, int iterations = kScramIterations);
Result<std::string> ScramVerifierWithSalt(std::string_view password, std::string_view salt,
                                          int iterations);

// True when `verifier` (as stored in pg_authid) was made from `password`. False for a
// malformed verifier, an md5 hash or an empty one.
bool ScramVerifierMatches(std::string_view verifier, std::string_view password);

}  // namespace petrel
