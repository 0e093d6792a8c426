// The Manager composes the controller runtime for `petrel controller`: one KubeClient,
// shared informers (one per resource type and watched namespace, shared by every controller
// that watches that type), the controllers, leader election, and the HTTP endpoints
// /metrics, /healthz and /readyz (ready once every informer has synced).
//
// Lifecycle of Run():
//   1. bind the HTTP endpoints (an address in use fails here, with the address);
//   2. start every informer, on every replica (a standby keeps a warm cache, so a failover
//      only waits for the lease, not for a relist);
//   3. campaign for the lease (or lead at once when leader election is disabled); once
//      leading and every cache has synced, start the controllers' workers;
//   4. on RequestStop() or SIGTERM/SIGINT: stop the workers (in-flight reconciles finish,
//      bounded by the client's request timeout), release the lease so a successor takes
//      over at once, stop the informers and the HTTP endpoints; return Ok.
//   If leadership is lost (renewals failed for the renew deadline), `on_lost_leadership`
//   runs at once; by default it logs and exits the process with status 1 without waiting
//   for anything: exiting is the one way to be sure that no reconcile still writes after
//   another replica may have taken over.
//
// Controllers and watches must be added before Run(). Reads through the ObjectReader
// interface are served from the informers; reading a type nobody declared creates its
// informers on the spot (and, once running, waits up to 30 s for them to sync).
//
// Thread-safety: setup (AddController, Watch, Informers) from one thread before Run();
// ObjectReader reads, Ready(), IsLeader() and RequestStop() from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "controller/controller.h"
#include "controller/informer.h"
#include "controller/kube_client.h"
#include "controller/leader_election.h"
#include "controller/object_reader.h"
#include "core/clock.h"
#include "core/metrics.h"

namespace petrel {

class HttpServer;

enum class LeaderElectionMode { kEnabled, kDisabled };
enum class SignalHandling { kHandle, kIgnore };

struct ManagerOptions {
  std::vector<std::string> namespaces;  // watched namespaces; empty = all
  LeaderElectionMode leader_election = LeaderElectionMode::kEnabled;
  LeaderElectionConfig leader_election_config;
  // "host:port", ":port" (all interfaces) or "0" (disabled). Equal addresses share a server.
  std::string metrics_bind_address = ":8080";
  std::string health_probe_bind_address = ":8081";
  int default_workers = 2;
  int64_t informer_page_size = 500;
  // kHandle: Run() stops on SIGTERM/SIGINT. Call BlockShutdownSignals() before any thread
  // starts (first thing in main) so that the signals reach Run() and no other thread.
  SignalHandling signals = SignalHandling::kIgnore;
  // Runs when leadership is lost; nullptr = log and _exit(1).
  std::function<void()> on_lost_leadership;
  Clock* clock = &Clock::Real();
  MetricsRegistry* metrics = &MetricsRegistry::Default();
};

// Blocks SIGTERM and SIGINT in the calling thread and every thread it creates afterwards.
void BlockShutdownSignals();

// Parses "host:port", ":port" or "0"; false when malformed. host "" means all interfaces.
bool ParseBindAddress(const std::string& text, std::string* host, uint16_t* port, bool* disabled);

class Manager : public ObjectReader {
 public:
  Manager(KubeClient& client, ManagerOptions options);
  ~Manager() override;
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  KubeClient& client() { return client_; }
  MetricsRegistry& metrics() { return *options_.metrics; }
  Clock& clock() { return *options_.clock; }
  const ManagerOptions& options() const { return options_; }
  // The cache-backed reader to hand to reconcilers.
  ObjectReader& reader() { return *this; }

  // `workers` 0 = options().default_workers.
  Controller& AddController(const std::string& name, std::shared_ptr<Reconciler> reconciler,
                            int workers = 0);
  // Feeds `controller` with mapper(obj) for every event on `type` in the watched namespaces.
  void Watch(Controller& controller, const ResourceType& type, EventMapper mapper);
  // The shared informers of `type`: one per watched namespace, or one for all namespaces
  // (and for cluster-scoped types). Created on first use.
  std::vector<SharedInformer*> Informers(const ResourceType& type);

  // ObjectReader, served from the informers.
  ObjectPtr Get(const ResourceType& type, const ObjectKey& key) const override;
  std::vector<ObjectPtr> List(const ResourceType& type, const std::string& namespace_,
                              const LabelSelector& selector = {}) const override;
  std::vector<ObjectPtr> ByIndex(const ResourceType& type, const std::string& index,
                                 const std::string& value) const;

  // Blocks until stopped (Ok) or until leadership is lost with a custom on_lost_leadership
  // (Unavailable). Errors that prevent starting (bad address, bad leader-election settings)
  // are returned before anything starts.
  Status Run();
  void RequestStop();

  bool Ready() const;     // every informer has synced
  bool IsLeader() const;  // leading (always true without leader election, once running)
  // Bound ports once Run() has started them (for tests binding port 0); 0 when disabled.
  uint16_t metrics_port() const { return metrics_port_.load(); }
  uint16_t health_port() const { return health_port_.load(); }

 private:
  std::vector<SharedInformer*> InformersLocked(const ResourceType& type) const;
  SharedInformer* InformerFor(const ResourceType& type, const std::string& namespace_) const;
  Status StartServers();
  void StopServers();
  bool WaitForCacheSync();
  void SignalLoop();

  KubeClient& client_;
  const ManagerOptions options_;

  // Informers are created lazily by const reads too, hence mutable.
  mutable std::mutex informers_mu_;
  mutable std::map<std::pair<ResourceType, std::string>, std::unique_ptr<SharedInformer>>
      informers_;
  mutable std::atomic<bool> informers_running_{false};

  std::vector<std::unique_ptr<Controller>> controllers_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_requested_ = false;
  bool leading_ = false;
  bool lost_ = false;
  std::atomic<bool> run_finished_{false};

  std::unique_ptr<LeaderElector> elector_;
  std::unique_ptr<HttpServer> metrics_server_;
  std::unique_ptr<HttpServer> health_server_;
  std::atomic<uint16_t> metrics_port_{0}, health_port_{0};
};

// Records kube-apiserver requests: rest_client_requests_total{verb,code} and
// rest_client_request_duration_seconds{verb}. Hand it to the HTTP KubeClient's observer.
class ApiRequestMetrics {
 public:
  explicit ApiRequestMetrics(MetricsRegistry& metrics = MetricsRegistry::Default());
  void Observe(const std::string& verb, int code, double seconds);

 private:
  CounterFamily& requests_;
  HistogramFamily& duration_;
};

}  // namespace petrel
