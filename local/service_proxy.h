// ServiceProxy: Services as loopback TCP listeners, the local stand-in for kube-proxy.
// For every Service (with a selector, not headless, not ExternalName) and each of its ports,
// a listener on the Service's local address forwards to the selected Pods that are Ready, on
// the targetPort. The leader endpoint (`<cluster>-rw`, whose selector includes
// petrel.dev/role=primary) therefore follows the primary: when a Pod stops being selected or
// Ready, new connections go to the new backend and existing ones to the old backend are
// closed (see tcp_proxy.h).
//
// Where a Service listens:
// - AddressMode::kClusterIp (LocalStore): on spec.clusterIP, which the store allocates from
//   a loopback block.
// - AddressMode::kAnnotation (a real kube-apiserver, whose clusterIPs are not bindable here):
//   on a loopback address the proxy allocates from its own block and publishes on the Service
//   as the annotation petrel.dev/local-address.
//
// Routing is computed by a pure function (PlanRoutes) from Services and Pods; the proxy
// re-plans on every Pod/Service change it sees (and every `resync`) and applies the
// difference to its listeners.
//
// Thread-safety: Start/Stop from one thread; Routes() from any thread.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "controller/kube_client.h"
#include "local/addresses.h"
#include "local/tcp_proxy.h"
#include "local/watch_loop.h"

namespace petrel {

inline constexpr const char* kLocalAddressAnnotation = "petrel.dev/local-address";

enum class AddressMode { kClusterIp, kAnnotation };

struct Route {
  ObjectKey service;
  std::string address;
  uint16_t port = 0;
  std::string port_name;
  std::vector<ProxyBackend> backends;  // Ready selected Pods, sorted
  bool operator==(const Route&) const = default;
};

// The listeners Services need, given all Services and Pods. Services without a local address
// (per `mode`) are skipped. Pure.
std::vector<Route> PlanRoutes(const std::vector<Json>& services, const std::vector<Json>& pods,
                              AddressMode mode);

struct ServiceProxyOptions {
  AddressMode mode = AddressMode::kClusterIp;
  std::string address_block;  // kAnnotation only: where Service addresses come from
  std::chrono::milliseconds resync{1000};
  TcpProxyOptions tcp;
};

class ServiceProxy {
 public:
  ServiceProxy(KubeClient& client, ServiceProxyOptions options);
  ~ServiceProxy();
  ServiceProxy(const ServiceProxy&) = delete;
  ServiceProxy& operator=(const ServiceProxy&) = delete;

  Status Start();
  void Stop();
  // The routes currently served (listening), for status displays.
  std::vector<Route> Routes();
  // Runs one planning pass now (tests; the loop does this on every change).
  void SyncOnce();

 private:
  void AnnotateAddresses(std::vector<Json>* services);

  KubeClient& client_;
  ServiceProxyOptions options_;
  std::unique_ptr<AddressAllocator> addresses_;  // kAnnotation only
  std::unique_ptr<TcpProxy> tcp_;
  std::unique_ptr<WatchLoop> loop_;  // runs SyncOnce (local/watch_loop.h)

  std::mutex sync_mu_;  // one planning pass at a time
  std::map<std::string, std::unique_ptr<ProxyListener>> listeners_;  // "addr:port"; sync_mu_
  std::vector<Route> routes_;  // guarded by sync_mu_
  std::map<std::string, std::string> assigned_;       // kAnnotation: service uid -> address
  std::map<std::string, std::string> listen_errors_;  // "addr:port" -> last error logged
};

}  // namespace petrel
