#include "local/addresses.h"

#include <arpa/inet.h>

#include <charconv>

namespace petrel {

bool ParseIpv4(const std::string& text, uint32_t* host_order) {
  in_addr addr{};
  if (inet_pton(AF_INET, text.c_str(), &addr) != 1) return false;
  *host_order = ntohl(addr.s_addr);
  return true;
}

std::string FormatIpv4(uint32_t host_order) {
  in_addr addr{htonl(host_order)};
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &addr, buf, sizeof(buf));
  return buf;
}

Result<AddressBlock> AddressBlock::Parse(const std::string& cidr) {
  auto slash = cidr.find('/');
  uint32_t ip = 0;
  int prefix = -1;
  if (slash != std::string::npos) {
    const char* begin = cidr.data() + slash + 1;
    const char* end = cidr.data() + cidr.size();
    auto [ptr, ec] = std::from_chars(begin, end, prefix);
    if (ec != std::errc() || ptr != end) prefix = -1;
  }
  if (slash == std::string::npos || prefix < 0 || !ParseIpv4(cidr.substr(0, slash), &ip)) {
    return InvalidError("address block \"" + cidr +
                        "\" is not an IPv4 CIDR; write it like 127.0.10.0/24");
  }
  if (prefix < 8 || prefix > 30) {
    return InvalidError("address block \"" + cidr +
                        "\" must have a prefix between /8 and /30 (e.g. 127.0.10.0/24)");
  }
  uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  if ((ip & 0xff000000u) != 0x7f000000u) {
    return InvalidError("address block \"" + cidr +
                        "\" is not a loopback block; use one inside 127.0.0.0/8");
  }
  return AddressBlock(ip & mask, prefix);
}

std::string AddressBlock::ToString() const {
  return FormatIpv4(network_) + "/" + std::to_string(prefix_);
}

bool AddressBlock::Contains(const std::string& text) const {
  uint32_t ip = 0;
  if (!ParseIpv4(text, &ip)) return false;
  return ip >= first_host() && ip <= last_host();
}

std::pair<AddressBlock, AddressBlock> AddressBlock::Split() const {
  int half = prefix_ >= 30 ? prefix_ : prefix_ + 1;
  uint32_t size = 1u << (32 - half);
  return {AddressBlock(network_, half), AddressBlock(network_ + size, half)};
}

Result<std::string> AddressAllocator::Allocate() {
  std::lock_guard lock(mu_);
  for (uint32_t ip = block_.first_host(); ip <= block_.last_host(); ++ip) {
    if (taken_.insert(ip).second) return FormatIpv4(ip);
  }
  return UnavailableError("every address of " + block_.ToString() +
                          " is in use; choose a larger --address-block");
}

bool AddressAllocator::Reserve(const std::string& text) {
  uint32_t ip = 0;
  if (!block_.Contains(text) || !ParseIpv4(text, &ip)) return false;
  std::lock_guard lock(mu_);
  return taken_.insert(ip).second;
}

void AddressAllocator::Release(const std::string& text) {
  uint32_t ip = 0;
  if (!ParseIpv4(text, &ip)) return;
  std::lock_guard lock(mu_);
  taken_.erase(ip);
}

}  // namespace petrel
