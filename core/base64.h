// Standard base64 (RFC 4648 §4), as Kubernetes uses for Secret data and kubeconfig
// *-data fields. Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace petrel {

std::string Base64Encode(std::string_view in);
// Accepts padded or unpadded input and skips ASCII whitespace (PEM-style line breaks);
// nullopt on any other character outside the alphabet or data after padding.
std::optional<std::string> Base64Decode(std::string_view in);

}  // namespace petrel
