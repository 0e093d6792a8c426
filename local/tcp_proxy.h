// A small TCP proxy on Asio, the local stand-in for a Service's virtual IP: listeners that
// forward each accepted connection to one of a changing set of backends.
//
// Behaviour that matters for Postgres failover:
// - Backends are chosen round-robin among the current set; a backend that refuses the
//   connection is skipped for the next one.
// - SetBackends() closes every open connection whose backend left the set, so a client
//   blocked on a frozen old primary gets an error and reconnects to the new one.
// - With no backend, a new connection is held up to `hold` waiting for one, then closed.
// - Connects to backends are bounded by `connect_timeout`; TCP keepalive is on for both sides
//   (an idle connection to a vanished peer is detected), there is no idle timeout.
// - Half-close is forwarded: EOF from one side shuts down writing to the other.
//
// Thread-safety: TcpProxy and listener handles are safe to use from any thread. All I/O runs
// on the proxy's own thread. Listener handles must be destroyed before their TcpProxy.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace petrel {

struct ProxyBackend {
  std::string host;
  uint16_t port = 0;
  bool operator==(const ProxyBackend&) const = default;
  std::string ToString() const { return host + ":" + std::to_string(port); }
};

struct TcpProxyOptions {
  std::chrono::milliseconds hold{3000};
  std::chrono::milliseconds connect_timeout{3000};
};

class ProxyListener {
 public:
  virtual ~ProxyListener() = default;  // stops listening and closes its connections
  virtual void SetBackends(std::vector<ProxyBackend> backends) = 0;
  virtual std::vector<ProxyBackend> Backends() const = 0;
  virtual std::string address() const = 0;
  virtual uint16_t port() const = 0;
  // Connections currently open (held or forwarding).
  virtual size_t Connections() const = 0;
};

class TcpProxy {
 public:
  explicit TcpProxy(TcpProxyOptions options = {});
  ~TcpProxy();  // closes every listener and connection, joins the I/O thread
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  // Binds at once, so "address in use" surfaces here (Unavailable, naming address:port).
  // Port 0 picks a free port. Destroying the handle closes the listener and its connections.
  Result<std::unique_ptr<ProxyListener>> Listen(const std::string& address, uint16_t port);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace petrel
