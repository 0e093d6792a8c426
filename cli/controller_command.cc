#include "cli/controller_command.h"

#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>

#include <spdlog/spdlog.h>

#include "controller/http_kube_client.h"
#include "controller/kubeconfig.h"
#include "controller/manager.h"
#include "controller/registry.h"
#include "core/log.h"

namespace petrel {
namespace {

struct ControllerFlags {
  std::string kubeconfig;
  std::string context;
  std::vector<std::string> namespaces;
  bool leader_elect = true;
  std::string leader_election_namespace;
  std::string leader_election_id = "petrel-controller";
  std::string lease_duration = "15s";
  std::string renew_deadline = "10s";
  std::string retry_period = "2s";
  int workers = 2;
  std::string metrics_bind_address = ":8080";
  std::string health_probe_bind_address = ":8081";
  std::string log_format = "text";
  std::string log_level = "info";
};

// hostname_<16 hex>: unique per process even for two replicas on one host.
std::string NewIdentity() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "petrel");
  std::random_device rd;
  uint64_t r = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  char suffix[17];
  std::snprintf(suffix, sizeof suffix, "%016llx", static_cast<unsigned long long>(r));
  return std::string(host) + "_" + suffix;
}

[[noreturn]] void Fail(const std::string& message) {
  spdlog::error("{}", message);
  spdlog::default_logger()->flush();
  throw CLI::RuntimeError(1);
}

void RunController(const ControllerFlags& flags) {
  // Before any thread exists, so that SIGTERM/SIGINT reach only the manager's signal loop.
  BlockShutdownSignals();
  InitLogging(flags.log_format == "json" ? LogFormat::kJson : LogFormat::kText, flags.log_level,
              "controller");

  ManagerOptions options;
  options.namespaces = flags.namespaces;
  options.default_workers = flags.workers;
  options.metrics_bind_address = flags.metrics_bind_address;
  options.health_probe_bind_address = flags.health_probe_bind_address;
  options.signals = SignalHandling::kHandle;
  options.leader_election =
      flags.leader_elect ? LeaderElectionMode::kEnabled : LeaderElectionMode::kDisabled;
  LeaderElectionConfig& le = options.leader_election_config;
  const std::pair<const std::string*, std::chrono::milliseconds*> durations[] = {
      {&flags.lease_duration, &le.lease_duration},
      {&flags.renew_deadline, &le.renew_deadline},
      {&flags.retry_period, &le.retry_period}};
  const char* names[] = {"--lease-duration", "--renew-deadline", "--retry-period"};
  for (size_t i = 0; i < 3; ++i) {
    if (!ParseDuration(*durations[i].first, durations[i].second)) {
      Fail(std::string(names[i]) + " \"" + *durations[i].first +
           "\" is not a duration; use e.g. 15s, 500ms or 1m");
    }
  }

  if (flags.leader_elect) {
    LeaderElectionConfig timings = le;
    timings.namespace_ = timings.name = timings.identity = "-";
    if (Status s = timings.Validate(); !s.ok()) Fail(s.message());
  }

  Result<KubeConfig> config = LoadDefaultConfig(flags.kubeconfig, flags.context);
  if (!config.ok()) Fail("loading Kubernetes client configuration: " + config.status().ToString());
  Result<std::unique_ptr<HttpKubeClient>> client = HttpKubeClient::Create(*config);
  if (!client.ok()) Fail("creating the Kubernetes client: " + client.status().ToString());
  auto api_metrics = std::make_shared<ApiRequestMetrics>(MetricsRegistry::Default());
  (*client)->SetObserver([api_metrics](const std::string& verb, int code, double seconds) {
    api_metrics->Observe(verb, code, seconds);
  });

  le.namespace_ = flags.leader_election_namespace.empty() ? (*client)->default_namespace()
                                                          : flags.leader_election_namespace;
  le.name = flags.leader_election_id;
  le.identity = NewIdentity();

  Manager manager(**client, options);
  for (const auto& [name, factory] : ControllerFactories()) {
    Status s = factory(manager);
    if (!s.ok()) Fail("setting up controller " + name + ": " + s.ToString());
  }
  if (ControllerFactories().empty()) {
    spdlog::warn("no controllers are registered in this build; running leader election and "
                 "probes only");
  }
  std::string watched;
  for (const std::string& ns : flags.namespaces) watched += (watched.empty() ? "" : ",") + ns;
  spdlog::info("petrel controller starting as {} (namespaces: {}, leader election: {})",
               le.identity, watched.empty() ? "all" : watched,
               flags.leader_elect ? le.namespace_ + "/" + le.name : "off");
  Status s = manager.Run();
  if (!s.ok()) Fail("petrel controller stopped: " + s.ToString());
  spdlog::info("petrel controller stopped cleanly");
}

}  // namespace

bool ParseDuration(const std::string& text, std::chrono::milliseconds* out) {
  if (text.empty()) return false;
  if (text.find_first_not_of("0123456789.") == std::string::npos) {
    char* end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    if (*end != '\0') return false;
    *out = std::chrono::milliseconds(static_cast<int64_t>(v * 1000));
    return true;
  }
  double total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    if (i == start) return false;
    double v = std::strtod(text.substr(start, i - start).c_str(), nullptr);
    size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string unit = text.substr(unit_start, i - unit_start);
    if (unit == "ms") {
      total_ms += v;
    } else if (unit == "s") {
      total_ms += v * 1000;
    } else if (unit == "m") {
      total_ms += v * 60 * 1000;
    } else if (unit == "h") {
      total_ms += v * 3600 * 1000;
    } else {
      return false;
    }
  }
  *out = std::chrono::milliseconds(static_cast<int64_t>(total_ms));
  return true;
}

void AddControllerCommand(CLI::App& app) {
  auto flags = std::make_shared<ControllerFlags>();
  CLI::App* cmd = app.add_subcommand(
      "controller", "Run the Petrel controllers against a Kubernetes API server");
  cmd->add_option("--kubeconfig", flags->kubeconfig,
                  "Path to a kubeconfig (default: in-cluster config, else $KUBECONFIG or "
                  "~/.kube/config)");
  cmd->add_option("--context", flags->context, "Kubeconfig context to use");
  cmd->add_option("--namespace", flags->namespaces,
                  "Namespace to watch; repeat for several (default: all namespaces)");
  cmd->add_flag("--leader-elect,!--no-leader-elect", flags->leader_elect,
                "Elect a leader so that only one replica reconciles (default true)");
  cmd->add_option("--leader-election-namespace", flags->leader_election_namespace,
                  "Namespace of the leader Lease (default: the client's namespace)");
  cmd->add_option("--leader-election-id", flags->leader_election_id,
                  "Name of the leader Lease")
      ->capture_default_str();
  cmd->add_option("--lease-duration", flags->lease_duration,
                  "How long a standby waits after the last renewal before taking over")
      ->capture_default_str();
  cmd->add_option("--renew-deadline", flags->renew_deadline,
                  "How long the leader keeps retrying a renewal before giving up leadership")
      ->capture_default_str();
  cmd->add_option("--retry-period", flags->retry_period,
                  "Interval between acquire and renew attempts")
      ->capture_default_str();
  cmd->add_option("--workers", flags->workers, "Concurrent reconciles per controller")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("--metrics-bind-address", flags->metrics_bind_address,
                  "host:port for /metrics, or 0 to disable")
      ->capture_default_str();
  cmd->add_option("--health-probe-bind-address", flags->health_probe_bind_address,
                  "host:port for /healthz and /readyz, or 0 to disable")
      ->capture_default_str();
  cmd->add_option("--log-format", flags->log_format, "text or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  cmd->add_option("--log-level", flags->log_level, "trace, debug, info, warn or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  cmd->callback([flags] { RunController(*flags); });
}

}  // namespace petrel
