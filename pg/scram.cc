#include "pg/scram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <vector>

namespace petrel {

namespace {

using Bytes = std::vector<unsigned char>;

std::string Base64(const Bytes& in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), in.data(),
                          static_cast<int>(in.size()));
  out.resize(n);
  return out;
}

bool Unbase64(std::string_view in, Bytes* out) {
  if (in.empty() || in.size() % 4 != 0) return false;
  Bytes buf(3 * in.size() / 4);
  int n = EVP_DecodeBlock(buf.data(), reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return false;
  size_t pad = 0;
  if (in.back() == '=') ++pad;
  if (in.size() > 1 && in[in.size() - 2] == '=') ++pad;
  buf.resize(n - pad);
  *out = std::move(buf);
  return true;
}

Bytes Hmac(const Bytes& key, std::string_view msg) {
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out.data(), &len);
  out.resize(len);
  return out;
}

bool PrintableAscii(std::string_view s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

// StoredKey and ServerKey (base64) for a password and raw salt.
Result<std::pair<std::string, std::string>> Keys(std::string_view password, const Bytes& salt,
                                                 int iterations) {
  Bytes salted(SHA256_DIGEST_LENGTH);
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                        static_cast<int>(salt.size()), iterations, EVP_sha256(),
                        static_cast<int>(salted.size()), salted.data()) != 1) {
    return InternalError("PBKDF2-HMAC-SHA256 failed in OpenSSL");
  }
  Bytes client_key = Hmac(salted, "Client Key");
  Bytes stored(SHA256_DIGEST_LENGTH);
  SHA256(client_key.data(), client_key.size(), stored.data());
  Bytes server_key = Hmac(salted, "Server Key");
  OPENSSL_cleanse(salted.data(), salted.size());
  OPENSSL_cleanse(client_key.data(), client_key.size());
  return std::make_pair(Base64(stored), Base64(server_key));
}

std::string Format(int iterations, const Bytes& salt,
                   const std::pair<std::string, std::string>& k) {
  return "SCRAM-SHA-256$" + std::to_string(iterations) + ":" + Base64(salt) + "$" + k.first + ":" +
         k.second;
}

}  // namespace

Result<std::string> GeneratePassword() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  static_assert(sizeof(kAlphabet) - 1 == 64, "64 symbols: byte & 63 is unbiased");
  unsigned char raw[kGeneratedPasswordLength];
  if (RAND_bytes(raw, sizeof(raw)) != 1) {
    return UnavailableError("the OpenSSL random generator is not available; retry later");
  }
  std::string out;
  out.reserve(kGeneratedPasswordLength);
  for (unsigned char b : raw) out += kAlphabet[b & 63];
  OPENSSL_cleanse(raw, sizeof(raw));
  return out;
}

Result<std::string> ScramVerifierWithSalt(std::string_view password, std::string_view salt,
                                          int iterations) {
  if (password.empty()) return InvalidError("the password is empty");
  if (!PrintableAscii(password)) {
    return InvalidError("the password must consist of printable ASCII characters");
  }
  if (iterations < 1) return InvalidError("SCRAM iteration count must be positive");
  Bytes salt_bytes(salt.begin(), salt.end());
  PETREL_ASSIGN_OR_RETURN(auto keys, Keys(password, salt_bytes, iterations));
  return Format(iterations, salt_bytes, keys);
}

Result<std::string> ScramVerifier(std::string_view password, int iterations) {
  unsigned char salt[kScramSaltBytes];
  if (RAND_bytes(salt, sizeof(salt)) != 1) {
    return UnavailableError("the OpenSSL random generator is not available; retry later");
  }
  return ScramVerifierWithSalt(
      password, std::string_view(reinterpret_cast<char*>(salt), sizeof(salt)), iterations);
}

bool ScramVerifierMatches(std::string_view verifier, std::string_view password) {
  constexpr std::string_view kPrefix = "SCRAM-SHA-256$";
  if (verifier.substr(0, kPrefix.size()) != kPrefix) return false;
  std::string_view rest = verifier.substr(kPrefix.size());
  auto colon = rest.find(':');
  auto dollar = rest.find('$');
  if (colon == std::string_view::npos || dollar == std::string_view::npos || colon > dollar) {
    return false;
  }
  int iterations = 0;
  for (char c : rest.substr(0, colon)) {
    if (c < '0' || c > '9' || iterations > 10000000) return false;
    iterations = iterations * 10 + (c - '0');
  }
  Bytes salt;
  if (iterations < 1 || !Unbase64(rest.substr(colon + 1, dollar - colon - 1), &salt)) {
    return false;
  }
  if (password.empty() || !PrintableAscii(password)) return false;
  auto keys = Keys(password, salt, iterations);
  if (!keys.ok()) return false;
  std::string expected = Format(iterations, salt, *keys);
  return expected.size() == verifier.size() &&
         CRYPTO_memcmp(expected.data(), verifier.data(), expected.size()) == 0;
}

}  // namespace petrel
