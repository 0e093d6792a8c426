#include "bench/failover/ha_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "core/base64.h"
#include "local/addresses.h"
#include "tests/support/envtest.h"

namespace petrel {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kContainerIdPrefix = "petrel-local://";

bool PodReady(const Json& pod) {
  for (const Json& c : pod.value("status", Json::object()).value("conditions", Json::array())) {
    if (c.value("type", "") == "Ready") return c.value("status", "") == "True";
  }
  return false;
}

// The main process of the Pod's first running container, from its containerID.
std::optional<pid_t> ContainerPid(const Json& pod) {
  for (const Json& c :
       pod.value("status", Json::object()).value("containerStatuses", Json::array())) {
    std::string id = c.value("containerID", "");
    if (id.rfind(kContainerIdPrefix, 0) != 0) continue;
    if (!c.value("state", Json::object()).contains("running")) continue;
    try {
      return static_cast<pid_t>(std::stol(id.substr(std::string(kContainerIdPrefix).size())));
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
bool ReadStat(pid_t pid, char* state, pid_t* ppid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  auto close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 1));
  rest >> *state >> *ppid;
  return !rest.fail();
}

bool IsStopped(pid_t pid) {
  char state = '?';
  pid_t ppid = 0;
  return ReadStat(pid, &state, &ppid) && (state == 'T' || state == 't');
}

std::string ClusterManifest(const HaClusterOptions& o) {
  std::string m =
      "apiVersion: petrel.dev/v1alpha1\nkind: PostgresCluster\nmetadata:\n  name: " + o.name +
      "\nspec:\n  replicas: " + std::to_string(o.replicas) +
      "\n  image: ghcr.io/petrel-dev/postgres:15.4\n  storage:\n    size: 1Gi\n"
      "  switchoverDelay: 10\n";
  if (o.mode == ReplicationMode::kSync) {
    m += "  postgresql:\n    synchronous:\n      method: any\n      number: 1\n"
         "      dataDurability: required\n";
  }
  return m;
}

}  // namespace

const char* ReplicationModeName(ReplicationMode m) {
  return m == ReplicationMode::kSync ? "sync" : "async";
}

std::vector<pid_t> ProcessTree(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    char state = '?';
    pid_t ppid = 0;
    pid_t pid = static_cast<pid_t>(std::stol(name));
    if (ReadStat(pid, &state, &ppid)) children.emplace(ppid, pid);
  }
  std::vector<pid_t> out;
  if (::kill(root, 0) != 0) return out;
  out.push_back(root);
  for (size_t i = 0; i < out.size(); ++i) {
    auto [begin, end] = children.equal_range(out[i]);
    for (auto it = begin; it != end; ++it) out.push_back(it->second);
  }
  return out;
}

HaCluster::HaCluster(Envtest& env, HaClusterOptions options)
    : env_(env), options_(std::move(options)) {}

HaCluster::~HaCluster() {
  Thaw();  // never leave stopped processes behind
  KillController();
  if (proxy_) proxy_->Stop();
  if (agent_) agent_->Stop();
}

KubeClient& HaCluster::client() { return env_.Client(); }

Result<std::unique_ptr<HaCluster>> HaCluster::Start(Envtest& env, HaClusterOptions options) {
  std::unique_ptr<HaCluster> c(new HaCluster(env, std::move(options)));
  PETREL_RETURN_IF_ERROR(c->Setup());
  return c;
}

Status HaCluster::Setup() {
  if (options_.petrel_binary.empty() || options_.source_dir.empty()) {
    return InvalidError(
        "HaCluster needs petrel_binary and source_dir (PETREL_BINARY and "
        "PETREL_SOURCE_DIR)");
  }
  PETREL_ASSIGN_OR_RETURN(ns_, env_.NewNamespace("ha"));
  for (const char* crd : {"postgrescluster.yaml", "postgresattachment.yaml"}) {
    auto r = env_.Kubectl({"apply", "-f", options_.source_dir + "/crds/" + crd});
    if (r.exit_code != 0) return UnavailableError(std::string("applying ") + crd + ": " + r.err);
  }
  auto established = env_.Kubectl(
      {"wait", "--for=condition=established", "--timeout=60s", "crd/postgresclusters.petrel.dev"});
  if (established.exit_code != 0)
    return UnavailableError("CRD not established: " + established.err);

  PETREL_ASSIGN_OR_RETURN(AddressBlock block, AddressBlock::Parse(options_.address_block));
  auto [pod_block, service_block] = block.Split();
  NodeAgentOptions agent_options;
  agent_options.state_dir = options_.work_dir;
  agent_options.pod_block = pod_block.ToString();
  agent_options.petrel_binary = options_.petrel_binary;
  agent_ = std::make_unique<NodeAgent>(client(), agent_options);
  PETREL_RETURN_IF_ERROR(agent_->Start());
  ServiceProxyOptions proxy_options;
  proxy_options.mode = AddressMode::kAnnotation;
  proxy_options.address_block = service_block.ToString();
  proxy_ = std::make_unique<ServiceProxy>(client(), proxy_options);
  PETREL_RETURN_IF_ERROR(proxy_->Start());
  PETREL_RETURN_IF_ERROR(StartController());

  auto applied = env_.Kubectl({"apply", "-n", ns_, "-f", "-"}, ClusterManifest(options_));
  if (applied.exit_code != 0) return InvalidError("applying the PostgresCluster: " + applied.err);
  return Status::Ok();
}

Status HaCluster::StartController() {
  if (ControllerRunning()) return Status::Ok();
  std::string log =
      (options_.work_dir / ("controller-" + std::to_string(++controller_starts_) + ".log"))
          .string();
  std::vector<std::string> args = {options_.petrel_binary,
                                   "controller",
                                   "--kubeconfig",
                                   env_.KubeconfigPath(),
                                   "--no-leader-elect",
                                   "--namespace",
                                   ns_,
                                   "--metrics-bind-address",
                                   "127.0.0.1:0",
                                   "--health-probe-bind-address",
                                   "127.0.0.1:0",
                                   "--log-level",
                                   options_.controller_log_level};
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return UnavailableError("fork: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test or bench
    if (::getppid() != parent) ::_exit(127);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  controller_pid_ = pid;
  return Status::Ok();
}

bool HaCluster::ControllerRunning() {
  if (controller_pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(controller_pid_, &status, WNOHANG) == controller_pid_) {
    controller_pid_ = -1;
    return false;
  }
  return true;
}

void HaCluster::KillController() {
  if (controller_pid_ <= 0) return;
  ::kill(controller_pid_, SIGKILL);
  int status = 0;
  ::waitpid(controller_pid_, &status, 0);
  controller_pid_ = -1;
}

Json HaCluster::Cluster() {
  auto c = client().Get(resources::kPostgresCluster, {ns_, options_.name});
  return c.ok() ? *c : Json::object();
}

std::string HaCluster::CurrentPrimary() {
  return Cluster().value("status", Json::object()).value("currentPrimary", "");
}

std::vector<InstanceView> HaCluster::Instances() {
  ListOptions list;
  list.label_selector = "petrel.dev/cluster=" + options_.name;
  auto pods = client().List(resources::kPod, ns_, list);
  std::vector<InstanceView> out;
  if (!pods.ok()) return out;
  for (const Json& p : pods->items) {
    if (p.value("metadata", Json::object()).contains("deletionTimestamp")) continue;
    out.push_back({meta::Name(p), p.value("status", Json::object()).value("podIP", ""), PodReady(p),
                   ContainerPid(p)});
  }
  std::sort(out.begin(), out.end(),
            [](const InstanceView& a, const InstanceView& b) { return a.name < b.name; });
  return out;
}

std::optional<InstanceView> HaCluster::Instance(const std::string& name) {
  for (InstanceView& i : Instances()) {
    if (i.name == name) return i;
  }
  return std::nullopt;
}

Result<std::string> HaCluster::SuperuserPassword() {
  if (!password_.empty()) return password_;
  PETREL_ASSIGN_OR_RETURN(Json secret,
                          client().Get(resources::kSecret, {ns_, options_.name + "-superuser"}));
  auto password = Base64Decode(secret.value("data", Json::object()).value("password", ""));
  if (!password || password->empty()) return NotFoundError("the superuser Secret has no password");
  password_ = *password;
  return password_;
}

Result<PgTarget> HaCluster::ServiceTarget(const std::string& service) {
  PETREL_ASSIGN_OR_RETURN(Json svc, client().Get(resources::kService, {ns_, service}));
  std::string address = meta::Annotation(svc, kLocalAddressAnnotation);
  if (address.empty()) return NotFoundError("Service " + service + " has no local address yet");
  PgTarget t;
  t.host = address;
  PETREL_ASSIGN_OR_RETURN(t.password, SuperuserPassword());
  return t;
}

std::vector<std::string> HaCluster::LeaderBackends() {
  std::vector<std::string> out;
  for (const Route& r : proxy_->Routes()) {
    if (r.service.namespace_ != ns_ || r.service.name != options_.name + "-rw") continue;
    for (const ProxyBackend& b : r.backends) out.push_back(b.host);
  }
  return out;
}

Result<PgTarget> HaCluster::LeaderTarget() { return ServiceTarget(options_.name + "-rw"); }

Result<PgTarget> HaCluster::InstanceServiceTarget(const std::string& instance) {
  return ServiceTarget(instance);
}

Result<PgTarget> HaCluster::PodTarget(const std::string& instance) {
  auto i = Instance(instance);
  if (!i || i->pod_ip.empty()) return NotFoundError("instance " + instance + " has no Pod IP");
  PgTarget t;
  t.host = i->pod_ip;
  PETREL_ASSIGN_OR_RETURN(t.password, SuperuserPassword());
  return t;
}

namespace {

DeadlineConnOptions ProbeOptions() {
  DeadlineConnOptions o;
  o.connect_timeout = std::chrono::milliseconds(1000);
  o.statement_timeout = std::chrono::milliseconds(1000);
  o.application_name = "petrel-ha-probe";
  return o;
}

Result<PgRows> Query(const PgTarget& t, const std::string& sql) {
  PETREL_ASSIGN_OR_RETURN(DeadlineConn c, DeadlineConn::Connect(t.host, t.port, t.user, t.password,
                                                                t.dbname, ProbeOptions()));
  return c.Exec(sql);
}

}  // namespace

bool HaCluster::AcceptsWrites(const PgTarget& target) {
  // A temporary table's write still needs a writable, non-recovering server and a commit.
  auto r = Query(target, "SELECT pg_is_in_recovery(), txid_current() IS NOT NULL");
  return r.ok() && r->GetOr(0, 0) == "f" && r->GetOr(0, 1) == "t";
}

std::vector<std::string> HaCluster::WritablePrimaries() {
  std::vector<std::string> out;
  for (const InstanceView& i : Instances()) {
    if (i.pod_ip.empty()) continue;
    auto t = PodTarget(i.name);
    if (t.ok() && AcceptsWrites(*t)) out.push_back(i.name);
  }
  return out;
}

Status HaCluster::WaitConverged(std::chrono::seconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::string missing = "nothing observed yet";
  while (Clock::now() < deadline) {
    Json c = Cluster();
    Json status = c.value("status", Json::object());
    std::string primary = status.value("currentPrimary", "");
    auto instances = Instances();
    int ready = 0;
    for (const auto& i : instances) ready += i.ready ? 1 : 0;
    int reported_ready = 0;
    for (const Json& i : status.value("instances", Json::array())) {
      reported_ready += i.value("ready", false) ? 1 : 0;
    }
    if (primary.empty()) {
      missing = "no currentPrimary";
    } else if (status.value("targetPrimary", primary) != primary ||
               status.contains("primaryChange")) {
      missing = "a primary change is in progress";
    } else if (status.value("readyReplicas", 0) != options_.replicas ||
               reported_ready != options_.replicas) {
      // The controller's own view: it refuses a switchover to a replica it has not seen ready.
      missing = "the controller reports " + std::to_string(reported_ready) + "/" +
                std::to_string(options_.replicas) + " instances ready";
    } else if (status.value("phase", "") != "Healthy") {
      missing = "phase " + status.value("phase", "") + " (" + status.value("phaseReason", "") + ")";
    } else if (static_cast<int>(instances.size()) != options_.replicas ||
               ready != options_.replicas) {
      missing =
          std::to_string(ready) + "/" + std::to_string(options_.replicas) + " instances ready";
    } else {
      auto target = PodTarget(primary);
      auto streaming = target.ok() ? Query(*target,
                                           "SELECT pg_is_in_recovery(), string_agg("
                                           "application_name, ',' ORDER BY application_name) "
                                           "FROM pg_stat_replication WHERE state = 'streaming'")
                                   : Result<PgRows>(target.status());
      std::string expected;
      for (const auto& i : instances) {
        if (i.name != primary) expected += (expected.empty() ? "" : ",") + i.name;
      }
      if (!streaming.ok()) {
        missing = "primary " + primary + " unreachable: " + streaming.status().ToString();
      } else if (streaming->GetOr(0, 0) != "f") {
        missing = "primary " + primary + " is in recovery";
      } else if (streaming->GetOr(0, 1) != expected) {
        missing = "primary " + primary + " streams to [" + streaming->GetOr(0, 1) + "], not [" +
                  expected + "]";
      } else {
        bool all_replicas = true;
        for (const auto& i : instances) {
          if (i.name == primary) continue;
          auto t = PodTarget(i.name);
          auto r = t.ok() ? Query(*t, "SELECT pg_is_in_recovery()") : Result<PgRows>(t.status());
          if (!r.ok() || r->GetOr(0, 0) != "t") {
            missing = "replica " + i.name + " is not in recovery";
            all_replicas = false;
            break;
          }
        }
        if (all_replicas) return Status::Ok();
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return TimeoutError("cluster " + ns_ + "/" + options_.name + " not converged after " +
                      std::to_string(timeout.count()) + " s: " + missing);
}

Result<std::vector<pid_t>> HaCluster::InstanceProcesses(const std::string& instance) {
  auto i = Instance(instance);
  if (!i) return NotFoundError("no Pod for instance " + instance);
  if (!i->pid) return NotFoundError("instance " + instance + " has no running container");
  std::vector<pid_t> tree = ProcessTree(*i->pid);
  if (tree.empty()) {
    return NotFoundError("process " + std::to_string(*i->pid) + " of " + instance + " is gone");
  }
  return tree;
}

Status HaCluster::Freeze(const std::string& instance) {
  PETREL_ASSIGN_OR_RETURN(std::vector<pid_t> tree, InstanceProcesses(instance));
  pid_t root = tree.front();
  std::set<pid_t> stopped;
  // A process may fork between listing and stopping; stop until a listing finds nothing new
  // (parents are stopped before their children, so the set stops growing).
  for (int round = 0; round < 20; ++round) {
    bool added = false;
    for (pid_t pid : ProcessTree(root)) {
      if (stopped.count(pid)) continue;
      if (::kill(pid, SIGSTOP) == 0) {
        stopped.insert(pid);
        frozen_.push_back(pid);
        added = true;
      }
    }
    if (!added) break;
  }
  for (pid_t pid : stopped) {
    for (int i = 0; i < 100 && ::kill(pid, 0) == 0 && !IsStopped(pid); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  return Status::Ok();
}

void HaCluster::Thaw() {
  for (pid_t pid : frozen_) ::kill(pid, SIGCONT);
  frozen_.clear();
}

Status HaCluster::Crash(const std::string& instance) {
  // Stopped first, so that nothing forks or restarts anything in between; then every process
  // at once, as a machine crash would: postgres backends whose postmaster died would otherwise
  // keep committing on their open connections.
  PETREL_RETURN_IF_ERROR(Freeze(instance));
  for (pid_t pid : frozen_) ::kill(pid, SIGKILL);
  frozen_.clear();
  return Status::Ok();
}

Status HaCluster::RequestSwitchover(const std::string& target) {
  PatchOptions options;
  options.subresource = "status";
  options.field_manager = "petrel-ha-test";
  auto r = client().Patch(resources::kPostgresCluster, {ns_, options_.name}, PatchType::kMerge,
                          {{"status", {{"targetPrimary", target}}}}, options);
  return r.ok() ? Status::Ok() : r.status();
}

std::vector<Json> HaCluster::Events() {
  auto list = client().List(resources::kEvent, ns_, {});
  if (!list.ok()) return {};
  std::vector<Json> events = list->items;
  std::sort(events.begin(), events.end(), [](const Json& a, const Json& b) {
    return a.value("eventTime", "") < b.value("eventTime", "");
  });
  return events;
}

std::string HaCluster::Describe() {
  std::string out = "status: " + Cluster().value("status", Json::object()).dump() + "\nevents:\n";
  for (const Json& e : Events()) {
    out += "  " + e.value("eventTime", "") + " " + e.value("reason", "") + ": " +
           e.value("note", "") + "\n";
  }
  // The end of every instance's log (petrel instance and postgres), where a rejoin that did
  // not happen says why.
  constexpr size_t kTailLines = 25;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(options_.work_dir / "logs" / ns_, ec)) {
    std::ifstream in(entry.path());
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) {
      lines.push_back(line);
      if (lines.size() > kTailLines) lines.erase(lines.begin());
    }
    out += "log " + entry.path().filename().string() + " (last lines):\n";
    for (const auto& line : lines) out += "  " + line + "\n";
  }
  return out;
}

}  // namespace petrel
