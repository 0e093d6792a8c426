// Loopback address blocks for `petrel local`: every Pod and every Service gets its own
// address in 127.0.0.0/8 (Linux routes the whole /8 to `lo`, so any of them can be bound
// without configuration). AddressBlock is a plain value; AddressAllocator is thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "core/status.h"

namespace petrel {

class AddressBlock {
 public:
  // "127.0.10.0/24". Refuses blocks outside 127.0.0.0/8 and prefixes longer than /30.
  static Result<AddressBlock> Parse(const std::string& cidr);

  std::string ToString() const;  // CIDR form
  bool Contains(const std::string& ip) const;
  // Usable host addresses: the network and broadcast addresses are never handed out.
  uint32_t first_host() const { return network_ + 1; }
  uint32_t last_host() const { return network_ + (1u << (32 - prefix_)) - 2; }
  // The two halves of this block (pods in one, services in the other).
  std::pair<AddressBlock, AddressBlock> Split() const;

 private:
  AddressBlock(uint32_t network, int prefix) : network_(network), prefix_(prefix) {}
  uint32_t network_ = 0;
  int prefix_ = 32;
};

std::string FormatIpv4(uint32_t host_order);
bool ParseIpv4(const std::string& text, uint32_t* host_order);

class AddressAllocator {
 public:
  explicit AddressAllocator(AddressBlock block) : block_(block) {}

  const AddressBlock& block() const { return block_; }
  // The lowest free address; Unavailable when the block is exhausted.
  Result<std::string> Allocate();
  // Marks `ip` as taken (e.g. restored from stored objects). False when it is outside the
  // block or already taken.
  bool Reserve(const std::string& ip);
  void Release(const std::string& ip);

 private:
  const AddressBlock block_;
  std::mutex mu_;
  std::set<uint32_t> taken_;  // guarded by mu_
};

}  // namespace petrel
