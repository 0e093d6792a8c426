#include "controller/manager.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include <spdlog/spdlog.h>

#include "net/http.h"

namespace petrel {
namespace {
constexpr auto kLazyInformerSyncTimeout = std::chrono::seconds(30);
constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";
}  // namespace

void BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

bool ParseBindAddress(const std::string& text, std::string* host, uint16_t* port,
                      bool* disabled) {
  *disabled = false;
  if (text == "0") {
    *disabled = true;
    return true;
  }
  auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  std::string port_text = text.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  unsigned long p = std::stoul(port_text);
  if (p > 65535) return false;
  *host = text.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  *port = static_cast<uint16_t>(p);
  return true;
}

Manager::Manager(KubeClient& client, ManagerOptions options)
    : client_(client), options_(std::move(options)) {}

Manager::~Manager() {
  RequestStop();
  for (auto& c : controllers_) c->Stop();
  std::lock_guard<std::mutex> lock(informers_mu_);
  for (auto& [key, informer] : informers_) informer->Stop();
}

Controller& Manager::AddController(const std::string& name, std::shared_ptr<Reconciler> reconciler,
                                   int workers) {
  ControllerOptions o;
  o.workers = workers > 0 ? workers : options_.default_workers;
  o.clock = options_.clock;
  o.metrics = options_.metrics;
  controllers_.push_back(std::make_unique<Controller>(name, std::move(reconciler), o));
  return *controllers_.back();
}

void Manager::Watch(Controller& controller, const ResourceType& type, EventMapper mapper) {
  for (SharedInformer* informer : Informers(type)) controller.Watch(*informer, mapper);
}

std::vector<SharedInformer*> Manager::Informers(const ResourceType& type) {
  std::vector<SharedInformer*> out;
  bool created_while_running = false;
  {
    std::lock_guard<std::mutex> lock(informers_mu_);
    size_t before = informers_.size();
    out = InformersLocked(type);
    created_while_running = informers_running_ && informers_.size() != before;
  }
  if (created_while_running) {
    for (SharedInformer* informer : out) {
      if (!informer->WaitForSync(
              std::chrono::duration_cast<std::chrono::milliseconds>(kLazyInformerSyncTimeout))) {
        spdlog::error("cache for {} did not sync within {} s; reads may miss objects",
                      type.GroupResource(), kLazyInformerSyncTimeout.count());
      }
    }
  }
  return out;
}

std::vector<SharedInformer*> Manager::InformersLocked(const ResourceType& type) const {
  std::vector<std::string> namespaces = {""};
  if (type.namespaced && !options_.namespaces.empty()) namespaces = options_.namespaces;
  std::vector<SharedInformer*> out;
  for (const std::string& ns : namespaces) {
    auto& slot = informers_[{type, ns}];
    if (!slot) {
      InformerOptions o;
      o.type = type;
      o.namespace_ = ns;
      o.page_size = options_.informer_page_size;
      o.metrics = options_.metrics;
      slot = std::make_unique<SharedInformer>(client_, o);
      if (informers_running_) slot->Start();
    }
    out.push_back(slot.get());
  }
  return out;
}

SharedInformer* Manager::InformerFor(const ResourceType& type, const std::string& namespace_) const {
  std::vector<SharedInformer*> informers;
  bool created = false;
  {
    std::lock_guard<std::mutex> lock(informers_mu_);
    size_t before = informers_.size();
    informers = InformersLocked(type);
    created = informers_.size() != before;
  }
  if (created) {
    spdlog::error("{} read from the cache but no controller declared it; watching it now",
                  type.GroupResource());
    if (informers_running_) {
      for (SharedInformer* i : informers) {
        i->WaitForSync(std::chrono::duration_cast<std::chrono::milliseconds>(kLazyInformerSyncTimeout));
      }
    }
  }
  for (SharedInformer* i : informers) {
    if (i->options().namespace_.empty() || i->options().namespace_ == namespace_) return i;
  }
  return nullptr;
}

ObjectPtr Manager::Get(const ResourceType& type, const ObjectKey& key) const {
  SharedInformer* informer = InformerFor(type, key.namespace_);
  if (informer == nullptr) {
    spdlog::debug("{} in namespace {} is outside the watched namespaces", type.GroupResource(),
                  key.namespace_);
    return nullptr;
  }
  return informer->Get(key);
}

std::vector<ObjectPtr> Manager::List(const ResourceType& type, const std::string& namespace_,
                                     const LabelSelector& selector) const {
  if (!namespace_.empty()) {
    SharedInformer* informer = InformerFor(type, namespace_);
    return informer == nullptr ? std::vector<ObjectPtr>{} : informer->List(namespace_, selector);
  }
  InformerFor(type, "");  // creates them if needed
  std::vector<SharedInformer*> informers;
  {
    std::lock_guard<std::mutex> lock(informers_mu_);
    informers = InformersLocked(type);
  }
  std::vector<ObjectPtr> out;
  for (SharedInformer* i : informers) {
    auto part = i->List("", selector);
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

std::vector<ObjectPtr> Manager::ByIndex(const ResourceType& type, const std::string& index,
                                        const std::string& value) const {
  InformerFor(type, "");
  std::vector<SharedInformer*> informers;
  {
    std::lock_guard<std::mutex> lock(informers_mu_);
    informers = InformersLocked(type);
  }
  std::vector<ObjectPtr> out;
  for (SharedInformer* i : informers) {
    auto part = i->ByIndex(index, value);
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

bool Manager::Ready() const {
  std::lock_guard<std::mutex> lock(informers_mu_);
  if (!informers_running_) return false;
  for (const auto& [key, informer] : informers_) {
    if (!informer->HasSynced()) return false;
  }
  return true;
}

bool Manager::IsLeader() const {
  std::lock_guard<std::mutex> lock(mu_);
  return leading_ && !lost_;
}

void Manager::RequestStop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_requested_ = true;
  }
  cv_.notify_all();
}

Status Manager::StartServers() {
  struct Endpoint {
    std::string address;
    bool metrics, health;
  };
  std::vector<Endpoint> endpoints;
  auto add = [&](const std::string& address, bool metrics) -> Status {
    std::string host;
    uint16_t port = 0;
    bool disabled = false;
    if (!ParseBindAddress(address, &host, &port, &disabled)) {
      return InvalidError("bind address \"" + address +
                          "\" is malformed; use host:port, :port, or 0 to disable");
    }
    if (disabled) return Status::Ok();
    for (auto& e : endpoints) {
      if (e.address == address) {
        (metrics ? e.metrics : e.health) = true;
        return Status::Ok();
      }
    }
    endpoints.push_back(Endpoint{address, metrics, !metrics});
    return Status::Ok();
  };
  PETREL_RETURN_IF_ERROR(add(options_.metrics_bind_address, true));
  PETREL_RETURN_IF_ERROR(add(options_.health_probe_bind_address, false));

  for (const Endpoint& e : endpoints) {
    std::string host;
    uint16_t port = 0;
    bool disabled = false;
    ParseBindAddress(e.address, &host, &port, &disabled);
    auto server = HttpServer::Listen(host.empty() ? "0.0.0.0" : host, port);
    if (!server.ok()) {
      return server.status().Annotate(std::string("serving ") +
                                      (e.metrics ? "metrics" : "health probes") + " on " +
                                      e.address);
    }
    if (e.metrics) {
      MetricsRegistry* registry = options_.metrics;
      (*server)->Handle("/metrics", [registry](const HttpRequest&) {
        HttpResponse r = HttpResponse::Text(200, registry->Expose());
        r.content_type = kPrometheusContentType;
        return r;
      });
    }
    if (e.health) {
      (*server)->Handle("/healthz", [](const HttpRequest&) { return HttpResponse::Text(200, "ok\n"); });
      (*server)->Handle("/readyz", [this](const HttpRequest&) {
        return Ready() ? HttpResponse::Text(200, "ok\n")
                       : HttpResponse::Text(503, "caches not synced\n");
      });
    }
    (*server)->Start();
    uint16_t bound = (*server)->port();
    if (e.metrics) metrics_port_ = bound;
    if (e.health) health_port_ = bound;
    spdlog::info("serving{}{} on {}:{}", e.metrics ? " /metrics" : "",
                 e.health ? " /healthz /readyz" : "", host.empty() ? "0.0.0.0" : host, bound);
    if (e.metrics) {
      metrics_server_ = std::move(server).value();
    } else {
      health_server_ = std::move(server).value();
    }
  }
  return Status::Ok();
}

void Manager::StopServers() {
  if (metrics_server_) metrics_server_->Stop();
  if (health_server_) health_server_->Stop();
}

bool Manager::WaitForCacheSync() {
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_requested_ || lost_) return false;
    }
    if (Ready()) return true;
    std::vector<SharedInformer*> pending;
    {
      std::lock_guard<std::mutex> lock(informers_mu_);
      for (auto& [key, informer] : informers_) {
        if (!informer->HasSynced()) pending.push_back(informer.get());
      }
    }
    if (!pending.empty()) pending.front()->WaitForSync(std::chrono::milliseconds(100));
  }
}

void Manager::SignalLoop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  // sigtimedwait rather than a handler: no async-signal-safety constraints, and the loop
  // notices the end of Run() within the timeout.
  const timespec timeout{0, 200 * 1000 * 1000};
  while (!run_finished_) {
    int sig = sigtimedwait(&set, nullptr, &timeout);
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("received {}; shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      RequestStop();
    }
  }
}

Status Manager::Run() {
  if (options_.leader_election == LeaderElectionMode::kEnabled) {
    PETREL_RETURN_IF_ERROR(options_.leader_election_config.Validate());
  }
  PETREL_RETURN_IF_ERROR(StartServers());
  {
    std::lock_guard<std::mutex> lock(informers_mu_);
    informers_running_ = true;
    for (auto& [key, informer] : informers_) informer->Start();
  }
  std::thread signal_thread;
  if (options_.signals == SignalHandling::kHandle) signal_thread = std::thread([this] { SignalLoop(); });

  std::thread elector_thread;
  if (options_.leader_election == LeaderElectionMode::kEnabled) {
    LeaderCallbacks callbacks;
    callbacks.on_started_leading = [this] {
      {
        std::lock_guard<std::mutex> lock(mu_);
        leading_ = true;
      }
      cv_.notify_all();
    };
    callbacks.on_stopped_leading = [this](StopReason reason) {
      if (reason != StopReason::kLost) return;
      if (options_.on_lost_leadership) {
        options_.on_lost_leadership();
      } else {
        // Exit before anything else can write: another replica may take over once the lease
        // expires, and a worker might be in the middle of a reconcile.
        spdlog::critical("leadership lost; exiting so that no reconcile writes as a non-leader");
        spdlog::default_logger()->flush();
        _exit(1);
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        lost_ = true;
      }
      cv_.notify_all();
    };
    elector_ = std::make_unique<LeaderElector>(client_, options_.leader_election_config,
                                               std::move(callbacks), *options_.clock,
                                               *options_.metrics);
    elector_thread = std::thread([this] { elector_->Run(); });
  } else {
    std::lock_guard<std::mutex> lock(mu_);
    leading_ = true;
  }

  bool controllers_started = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stop_requested_ || lost_ || (leading_ && !controllers_started); });
      if (stop_requested_ || lost_) break;
      lock.unlock();
      bool synced = WaitForCacheSync();
      if (synced) {
        spdlog::info("caches synced; starting {} controllers", controllers_.size());
        for (auto& c : controllers_) c->Start();
      }
      lock.lock();
      controllers_started = synced;
    }
  }

  // Workers first, then the lease: the successor must not start while we still write.
  for (auto& c : controllers_) c->Stop();
  bool lost = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    lost = lost_;
  }
  if (elector_) {
    elector_->Stop();
    elector_thread.join();
    if (!lost) {
      Status s = elector_->Release();
      if (!s.ok()) spdlog::warn("could not release the leader lease: {}", s.ToString());
    }
  }
  {
    std::lock_guard<std::mutex> lock(informers_mu_);
    for (auto& [key, informer] : informers_) informer->Stop();
  }
  StopServers();
  run_finished_ = true;
  if (signal_thread.joinable()) signal_thread.join();
  if (lost) return UnavailableError("leadership lost: renewals failed for the renew deadline");
  return Status::Ok();
}

ApiRequestMetrics::ApiRequestMetrics(MetricsRegistry& metrics)
    : requests_(metrics.Counter("rest_client_requests_total",
                                "Requests to the kube-apiserver by verb and HTTP status code "
                                "(0 = no response).",
                                {"verb", "code"})),
      duration_(metrics.Histogram("rest_client_request_duration_seconds",
                                  "Seconds a kube-apiserver request takes, by verb.", {"verb"},
                                  DefaultLatencyBuckets())) {}

void ApiRequestMetrics::Observe(const std::string& verb, int code, double seconds) {
  requests_.WithLabels({verb, std::to_string(code)}).Inc();
  duration_.WithLabels({verb}).Observe(seconds);
}

}  // namespace petrel
