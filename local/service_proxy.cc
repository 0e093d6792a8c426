#include "local/service_proxy.h"

#include <algorithm>
#include <set>

#include <spdlog/spdlog.h>

namespace petrel {

namespace {

bool IsReady(const Json& pod) {
  const Json status = pod.value("status", Json::object());
  if (status.value("phase", "") != "Running") return false;
  for (const Json& c : status.value("conditions", Json::array())) {
    if (c.value("type", "") == "Ready") return c.value("status", "") == "True";
  }
  return false;
}

std::optional<uint16_t> TargetPort(const Json& pod, const Json& service_port) {
  const Json target = service_port.value("targetPort", service_port.value("port", Json()));
  if (target.is_number_integer()) {
    int p = target.get<int>();
    if (p > 0 && p < 65536) return static_cast<uint16_t>(p);
    return std::nullopt;
  }
  if (!target.is_string()) return std::nullopt;
  std::string name = target.get<std::string>();
  for (const Json& c : pod.value("spec", Json::object()).value("containers", Json::array())) {
    for (const Json& p : c.value("ports", Json::array())) {
      if (p.value("name", "") == name && p.contains("containerPort")) {
        return static_cast<uint16_t>(p["containerPort"].get<int>());
      }
    }
  }
  return std::nullopt;
}

std::string LocalAddress(const Json& service, AddressMode mode) {
  const Json spec = service.value("spec", Json::object());
  std::string cluster_ip = spec.value("clusterIP", "");
  if (cluster_ip == "None") return "";  // headless: no virtual address
  if (mode == AddressMode::kClusterIp) return cluster_ip;
  return meta::Annotation(service, kLocalAddressAnnotation);
}

bool Proxied(const Json& service) {
  const Json spec = service.value("spec", Json::object());
  if (spec.value("type", "") == "ExternalName") return false;
  if (spec.value("clusterIP", "") == "None") return false;
  const Json selector = spec.value("selector", Json::object());
  return selector.is_object() && !selector.empty();
}

}  // namespace

std::vector<Route> PlanRoutes(const std::vector<Json>& services, const std::vector<Json>& pods,
                              AddressMode mode) {
  std::vector<Route> routes;
  for (const Json& service : services) {
    if (!Proxied(service)) continue;
    std::string address = LocalAddress(service, mode);
    if (address.empty()) continue;
    const Json spec = service.value("spec", Json::object());
    std::map<std::string, std::string> selector;
    for (auto& [k, v] : spec["selector"].items()) {
      if (v.is_string()) selector[k] = v.get<std::string>();
    }
    LabelSelector matcher = LabelSelector::FromMap(selector);
    bool publish_not_ready = spec.value("publishNotReadyAddresses", false);
    for (const Json& port : spec.value("ports", Json::array())) {
      if (port.value("protocol", "TCP") != "TCP" || !port.contains("port")) continue;
      Route route;
      route.service = meta::Key(service);
      route.address = address;
      route.port = static_cast<uint16_t>(port["port"].get<int>());
      route.port_name = port.value("name", "");
      for (const Json& pod : pods) {
        if (meta::Namespace(pod) != route.service.namespace_) continue;
        if (!matcher.Matches(meta::Labels(pod)) || meta::IsBeingDeleted(pod)) continue;
        std::string ip = pod.value("status", Json::object()).value("podIP", "");
        if (ip.empty() || !(publish_not_ready || IsReady(pod))) continue;
        if (auto target = TargetPort(pod, port)) route.backends.push_back({ip, *target});
      }
      std::sort(route.backends.begin(), route.backends.end(),
                [](const ProxyBackend& a, const ProxyBackend& b) {
                  return std::tie(a.host, a.port) < std::tie(b.host, b.port);
                });
      routes.push_back(std::move(route));
    }
  }
  return routes;
}

ServiceProxy::ServiceProxy(KubeClient& client, ServiceProxyOptions options)
    : client_(client), options_(std::move(options)) {}

ServiceProxy::~ServiceProxy() { Stop(); }

Status ServiceProxy::Start() {
  if (options_.mode == AddressMode::kAnnotation) {
    PETREL_ASSIGN_OR_RETURN(AddressBlock block, AddressBlock::Parse(options_.address_block));
    addresses_ = std::make_unique<AddressAllocator>(block);
  }
  tcp_ = std::make_unique<TcpProxy>(options_.tcp);
  loop_ = std::make_unique<WatchLoop>(client_, WatchLoopOptions{"", options_.resync},
                                      [this] { SyncOnce(); });
  loop_->Start();
  return Status::Ok();
}

void ServiceProxy::Stop() {
  if (loop_) loop_->Stop();
  std::lock_guard lock(sync_mu_);
  listeners_.clear();  // before the TcpProxy they belong to
  routes_.clear();
  tcp_.reset();
}

std::vector<Route> ServiceProxy::Routes() {
  std::lock_guard lock(sync_mu_);
  return routes_;
}

void ServiceProxy::AnnotateAddresses(std::vector<Json>* services) {
  std::set<std::string> present;
  for (Json& service : *services) {
    if (!Proxied(service)) continue;
    std::string uid = meta::Uid(service);
    present.insert(uid);
    std::string current = meta::Annotation(service, kLocalAddressAnnotation);
    auto known = assigned_.find(uid);
    std::string address;
    if (known != assigned_.end()) {
      address = known->second;
    } else if (!current.empty() && addresses_->Reserve(current)) {
      address = current;
    } else {
      auto allocated = addresses_->Allocate();
      if (!allocated.ok()) {
        spdlog::error("service proxy: {}: {}", meta::Key(service).ToString(),
                      allocated.status().message());
        continue;
      }
      address = *allocated;
    }
    assigned_[uid] = address;
    if (current == address) continue;
    Json patch = {{"metadata", {{"annotations", {{kLocalAddressAnnotation, address}}}}}};
    auto patched = client_.Patch(resources::kService, meta::Key(service), PatchType::kMerge, patch);
    if (!patched.ok()) {
      spdlog::warn("service proxy: annotating {}: {}", meta::Key(service).ToString(),
                   patched.status().message());
      continue;
    }
    service = *patched;
  }
  for (auto it = assigned_.begin(); it != assigned_.end();) {
    if (present.count(it->first) != 0) {
      ++it;
      continue;
    }
    addresses_->Release(it->second);
    it = assigned_.erase(it);
  }
}

void ServiceProxy::SyncOnce() {
  std::lock_guard lock(sync_mu_);
  auto services = client_.ListAll(resources::kService, "", {});
  auto pods = client_.ListAll(resources::kPod, "", {});
  if (!services.ok() || !pods.ok()) {
    spdlog::warn("service proxy: listing: {}",
                 (!services.ok() ? services.status() : pods.status()).message());
    return;
  }
  if (options_.mode == AddressMode::kAnnotation) AnnotateAddresses(&services->items);
  std::vector<Route> planned = PlanRoutes(services->items, pods->items, options_.mode);
  std::map<std::string, const Route*> wanted;
  for (const Route& r : planned) wanted[r.address + ":" + std::to_string(r.port)] = &r;
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    it = wanted.count(it->first) != 0 ? std::next(it) : listeners_.erase(it);
  }
  std::vector<Route> serving;
  for (const auto& [key, route] : wanted) {
    auto it = listeners_.find(key);
    if (it == listeners_.end()) {
      auto listener = tcp_->Listen(route->address, route->port);
      if (!listener.ok()) {
        if (listen_errors_[key] != listener.status().message()) {
          spdlog::error("service proxy: {} ({}): {}", route->service.ToString(), route->port_name,
                        listener.status().message());
          listen_errors_[key] = listener.status().message();
        }
        continue;
      }
      listen_errors_.erase(key);
      it = listeners_.emplace(key, std::move(listener).value()).first;
    }
    it->second->SetBackends(route->backends);
    serving.push_back(*route);
  }
  routes_ = std::move(serving);
}

}  // namespace petrel
