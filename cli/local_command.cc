#include "cli/local_command.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "controller/manager.h"
#include "controller/registry.h"
#include "core/base64.h"
#include "core/log.h"
#include "core/metrics.h"
#include "local/addresses.h"
#include "local/files.h"
#include "local/kube_api.h"
#include "local/manifests.h"
#include "local/node_agent.h"
#include "local/service_proxy.h"
#include "local/store.h"
#include "net/http.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;

constexpr const char* kRuntimeFile = "local.json";
constexpr uint16_t kNeededPorts[] = {5432, 8000, 9187};  // postgres, instance API, metrics

struct LocalFlags {
  std::vector<std::string> files;
  std::string state_dir;
  std::string address_block = "127.0.10.0/24";
  std::string postgres_root = "/usr/lib/postgresql";
  std::string log_level = "warn";
  bool delete_data = false;
};

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "petrel local: %s\n", message.c_str());
  std::fflush(stderr);
  throw CLI::RuntimeError(1);
}

fs::path StateDir(const LocalFlags& flags) {
  if (!flags.state_dir.empty()) return fs::absolute(flags.state_dir);
  return DefaultLocalStateDir();
}

std::string RandomToken() {
  std::random_device rd;
  std::string token;
  for (int i = 0; i < 4; ++i) {
    char buf[9];
    std::snprintf(buf, sizeof(buf), "%08x", rd());
    token += buf;
  }
  return token;
}

// Binds (and releases) address:port the way the service proxy will: a conflict now would be
// a conflict later, after things had started.
Status CheckPortFree(const std::string& address, uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return InternalError(std::string("socket: ") + std::strerror(errno));
  int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, address.c_str(), &addr.sin_addr);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  ::close(fd);
  if (rc == 0) return Status::Ok();
  if (err == EADDRINUSE) {
    return UnavailableError(
        address + ":" + std::to_string(port) +
        " is already in use (another program listening on port " + std::to_string(port) +
        " on all addresses, e.g. a system PostgreSQL, or another petrel local with the same "
        "address block); stop it or choose another --address-block");
  }
  return UnavailableError("cannot bind " + address + ":" + std::to_string(port) + ": " +
                          std::strerror(err));
}

std::vector<std::string> InstalledMajors(const fs::path& root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (fs::exists(entry.path() / "bin" / "postgres")) out.push_back(entry.path().filename());
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status CheckPostgresBinaries(const std::vector<Manifest>& manifests, const fs::path& root) {
  for (const Manifest& m : manifests) {
    if (m.object.value("kind", "") != "PostgresCluster") continue;
    int major = RequestedPostgresMajor(m.object);
    if (major == 0) continue;  // the cluster's own validation reports it
    fs::path bin = root / std::to_string(major) / "bin";
    if (::access((bin / "postgres").c_str(), X_OK) == 0) continue;
    std::string installed;
    for (const std::string& v : InstalledMajors(root)) installed += (installed.empty() ? "" : ", ") + v;
    return TerminalError(
        "PostgresCluster " + meta::Key(m.object).ToString() + " (" + m.file.string() +
        ") needs PostgreSQL " + std::to_string(major) + " but " + (bin / "postgres").string() +
        " is missing: install the postgresql-" + std::to_string(major) +
        " package, or set spec.postgresVersion to an installed version (installed: " +
        (installed.empty() ? "none" : installed) + ")");
  }
  return Status::Ok();
}

const ResourceType& TypeOf(const Json& object) {
  return *resources::FindByKind(object.value("apiVersion", ""), object.value("kind", ""));
}

// Applies every manifest; prints one line per object.
void Apply(KubeClient& client, const std::vector<Manifest>& manifests) {
  for (const Manifest& m : manifests) {
    const ResourceType& type = TypeOf(m.object);
    ObjectKey key = meta::Key(m.object);
    auto before = client.Get(type, key);
    auto applied = client.Patch(type, key, PatchType::kApply, m.object);
    std::string what = type.GroupResource() + "/" + key.ToString();
    if (!applied.ok()) {
      std::printf("  %s not applied: %s\n", what.c_str(), applied.status().message().c_str());
    } else if (!before.ok()) {
      std::printf("  %s created\n", what.c_str());
    } else if (meta::ResourceVersion(*before) != meta::ResourceVersion(*applied)) {
      std::printf("  %s configured\n", what.c_str());
    }
  }
  std::fflush(stdout);
}

std::string ServiceAddress(const std::vector<Json>& services, const std::string& ns,
                           const std::string& name) {
  for (const Json& s : services) {
    if (meta::Namespace(s) != ns || meta::Name(s) != name) continue;
    std::string ip = s["spec"].value("clusterIP", "");
    const Json ports = s["spec"].value("ports", Json::array());
    if (ip.empty() || ip == "None" || ports.empty()) return "";
    return ip + ":" + std::to_string(ports[0].value("port", 0));
  }
  return "";
}

bool ConditionTrue(const Json& status, const std::string& type, bool* present) {
  for (const Json& c : status.value("conditions", Json::array())) {
    if (c.value("type", "") == type) {
      *present = true;
      return c.value("status", "") == "True";
    }
  }
  *present = false;
  return false;
}

// What `petrel local status` shows and `up` prints progress from: read from the store.
Json BuildStatus(LocalStore& store) {
  Json out = {{"clusters", Json::array()}, {"attachments", Json::array()}};
  auto clusters = store.List(resources::kPostgresCluster, "", {});
  auto services = store.List(resources::kService, "", {});
  ListOptions managed;
  managed.label_selector = std::string(kManagedByLabel) + "=" + kManagedByValue;
  auto pods = store.List(resources::kPod, "", managed);
  auto attachments = store.List(resources::kPostgresAttachment, "", {});
  std::vector<Json> svc = services.ok() ? services->items : std::vector<Json>{};
  for (const Json& c : clusters.ok() ? clusters->items : std::vector<Json>{}) {
    std::string ns = meta::Namespace(c), name = meta::Name(c);
    const Json status = c.value("status", Json::object());
    bool has_ready = false;
    bool ready_condition = ConditionTrue(status, "Ready", &has_ready);
    int replicas = c["spec"].value("replicas", 1);
    int ready_replicas = status.value("readyReplicas", 0);
    bool observed = status.value("observedGeneration", int64_t{0}) >= meta::Generation(c);
    Json cluster = {
        {"namespace", ns},
        {"name", name},
        {"phase", status.value("phase", "Pending")},
        {"replicas", replicas},
        {"readyReplicas", ready_replicas},
        {"primary", status.value("currentPrimary", "")},
        {"ready", observed && (has_ready ? ready_condition : ready_replicas >= replicas)},
        {"endpoints",
         {{"leader", ServiceAddress(svc, ns, name + "-rw")},
          {"replicas", ServiceAddress(svc, ns, name + "-ro")},
          {"any", ServiceAddress(svc, ns, name + "-r")}}},
        {"instances", Json::array()}};
    std::map<std::string, Json> reported;
    for (const Json& i : status.value("instances", Json::array())) reported[i.value("name", "")] = i;
    for (const Json& p : pods.ok() ? pods->items : std::vector<Json>{}) {
      if (meta::Namespace(p) != ns || meta::Label(p, "petrel.dev/cluster") != name) continue;
      const Json ps = p.value("status", Json::object());
      bool present = false;
      Json instance = {{"name", meta::Name(p)},
                       {"role", meta::Label(p, "petrel.dev/role")},
                       {"phase", ps.value("phase", "Pending")},
                       {"ready", ConditionTrue(ps, "Ready", &present)},
                       {"podIP", ps.value("podIP", "")},
                       {"address", ServiceAddress(svc, ns, meta::Name(p))}};
      auto r = reported.find(meta::Name(p));
      if (r != reported.end()) {
        instance["lagBytes"] = r->second.value("lagBytes", int64_t{-1});
        if (!r->second.value("role", "").empty()) instance["role"] = r->second["role"];
      }
      cluster["instances"].push_back(instance);
    }
    out["clusters"].push_back(cluster);
  }
  for (const Json& a : attachments.ok() ? attachments->items : std::vector<Json>{}) {
    const Json status = a.value("status", Json::object());
    bool present = false;
    bool ready = ConditionTrue(status, "Ready", &present);
    std::string secret = status.value("secretName", "");
    Json attachment = {{"namespace", meta::Namespace(a)},
                       {"name", meta::Name(a)},
                       {"ready", ready},
                       {"secretName", secret}};
    if (!secret.empty()) {
      auto s = store.Get(resources::kSecret, {meta::Namespace(a), secret});
      std::optional<std::string> url;
      if (s.ok()) url = Base64Decode(s->value("data", Json::object()).value("DATABASE_URL", ""));
      if (url && !url->empty()) {
        attachment["databaseUrl"] = Redact(*url);  // the password stays in the file
        attachment["databaseUrlFile"] = (store.state_dir() / "secrets" / meta::Namespace(a) /
                                         secret / "DATABASE_URL")
                                            .string();
      }
    }
    out["attachments"].push_back(attachment);
  }
  return out;
}

std::string Pad(const std::string& s, size_t width) {
  return s.size() >= width ? s + "  " : s + std::string(width - s.size() + 2, ' ');
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) line += i + 1 < row.size() ? Pad(row[i], widths[i]) : row[i];
    std::printf("%s\n", line.c_str());
  }
}

void PrintStatus(const Json& status) {
  std::vector<std::vector<std::string>> clusters = {
      {"CLUSTER", "PHASE", "READY", "PRIMARY", "LEADER", "REPLICAS"}};
  std::vector<std::vector<std::string>> instances = {
      {"INSTANCE", "CLUSTER", "ROLE", "READY", "PHASE", "LAG", "ADDRESS"}};
  for (const Json& c : status.value("clusters", Json::array())) {
    std::string key = c.value("namespace", "") + "/" + c.value("name", "");
    clusters.push_back({key, c.value("phase", ""),
                        std::to_string(c.value("readyReplicas", 0)) + "/" +
                            std::to_string(c.value("replicas", 0)),
                        c.value("primary", ""), c["endpoints"].value("leader", ""),
                        c["endpoints"].value("replicas", "")});
    for (const Json& i : c.value("instances", Json::array())) {
      int64_t lag = i.value("lagBytes", int64_t{-1});
      instances.push_back({i.value("name", ""), key, i.value("role", ""),
                           i.value("ready", false) ? "yes" : "no", i.value("phase", ""),
                           lag < 0 ? "-" : std::to_string(lag) + "B",
                           i.value("address", "").empty() ? i.value("podIP", "")
                                                          : i.value("address", "")});
    }
  }
  if (clusters.size() == 1) {
    std::printf("no PostgresClusters\n");
  } else {
    PrintTable(clusters);
    std::printf("\n");
    PrintTable(instances);
  }
  const Json attachments = status.value("attachments", Json::array());
  if (!attachments.empty()) {
    std::vector<std::vector<std::string>> rows = {{"ATTACHMENT", "READY", "DATABASE_URL"}};
    for (const Json& a : attachments) {
      rows.push_back({a.value("namespace", "") + "/" + a.value("name", ""),
                      a.value("ready", false) ? "yes" : "no", a.value("databaseUrl", "")});
    }
    std::printf("\n");
    PrintTable(rows);
  }
}

void PrintReadyCluster(const Json& c) {
  std::printf("\nPostgresCluster %s/%s is ready (%d/%d instances, primary %s):\n",
              c.value("namespace", "").c_str(), c.value("name", "").c_str(),
              c.value("readyReplicas", 0), c.value("replicas", 0), c.value("primary", "").c_str());
  const Json& e = c["endpoints"];
  std::printf("  leader (read-write):  %s\n", e.value("leader", "").c_str());
  if (!e.value("replicas", "").empty()) {
    std::printf("  replicas (read-only): %s\n", e.value("replicas", "").c_str());
  }
  if (!e.value("any", "").empty()) std::printf("  any instance:         %s\n", e.value("any", "").c_str());
  for (const Json& i : c.value("instances", Json::array())) {
    std::printf("  %-20s  %-8s %s\n", i.value("name", "").c_str(), i.value("role", "").c_str(),
                i.value("address", "").empty() ? i.value("podIP", "").c_str()
                                                : i.value("address", "").c_str());
  }
  std::fflush(stdout);
}

// Prints what changed since the last call: cluster progress lines, endpoints on readiness,
// attachments' DATABASE_URL once ready.
class ProgressPrinter {
 public:
  void Update(const Json& status) {
    for (const Json& c : status.value("clusters", Json::array())) {
      std::string key = c.value("namespace", "") + "/" + c.value("name", "");
      std::string line = c.value("phase", "") + " " + std::to_string(c.value("readyReplicas", 0)) +
                         "/" + std::to_string(c.value("replicas", 0)) + " ready" +
                         (c.value("primary", "").empty() ? "" : ", primary " + c.value("primary", ""));
      if (lines_[key] != line) {
        std::printf("  postgrescluster %s: %s\n", key.c_str(), line.c_str());
        lines_[key] = line;
      }
      bool ready = c.value("ready", false);
      if (ready && !ready_[key]) PrintReadyCluster(c);
      ready_[key] = ready;
    }
    for (const Json& a : status.value("attachments", Json::array())) {
      std::string key = a.value("namespace", "") + "/" + a.value("name", "");
      bool ready = a.value("ready", false) && a.contains("databaseUrl");
      if (ready && !ready_["pga:" + key]) {
        std::printf("\nPostgresAttachment %s is ready:\n  DATABASE_URL=%s\n  (full value in %s)\n",
                    key.c_str(), a.value("databaseUrl", "").c_str(),
                    a.value("databaseUrlFile", "").c_str());
      }
      ready_["pga:" + key] = ready;
    }
    std::fflush(stdout);
  }

 private:
  std::map<std::string, std::string> lines_;
  std::map<std::string, bool> ready_;
};

std::map<fs::path, fs::file_time_type> ModTimes(const std::vector<fs::path>& paths) {
  std::map<fs::path, fs::file_time_type> out;
  for (const fs::path& f : ManifestFiles(paths)) {
    std::error_code ec;
    out[f] = fs::last_write_time(f, ec);
  }
  return out;
}

// One petrel local per address block on this machine: two on one block would fight over
// the same addresses. A lock directory per block (under the temporary directory, shared by
// every state directory) holds the PID and state directory of its owner.
std::unique_ptr<StateDirLock> LockAddressBlock(const AddressBlock& block, const fs::path& state) {
  std::string name = block.ToString();
  std::replace(name.begin(), name.end(), '/', '_');
  fs::path dir = fs::temp_directory_path() / "petrel-local-blocks" / name;
  auto lock = StateDirLock::Acquire(dir);
  if (!lock.ok()) {
    if (StateDirLock::HolderPid(dir) == 0) return nullptr;  // not lockable here: no check
    std::string owner = ReadFile(dir / "state-dir").value_or("another state directory");
    Fail("address block " + block.ToString() + " is in use by petrel local (pid " +
         std::to_string(StateDirLock::HolderPid(dir)) + ", state " + owner +
         "); stop it or choose another --address-block\nnothing was started");
  }
  (void)WriteFileAtomically(dir / "state-dir", state.string(),
                            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                                fs::perms::others_read);
  return std::move(lock).value();
}

void RunUp(const LocalFlags& flags) {
  // Before any thread exists, so that SIGINT/SIGTERM reach only the sigtimedwait below.
  BlockShutdownSignals();
  InitLogging(LogFormat::kText, flags.log_level, "local");
  const fs::path state = StateDir(flags);

  // 1. Everything that can be checked before starting anything.
  if (flags.files.empty()) Fail("no manifests: pass -f FILE or -f DIR");
  std::vector<fs::path> paths(flags.files.begin(), flags.files.end());
  for (const fs::path& p : paths) {
    if (!fs::exists(p)) Fail(p.string() + " does not exist");
  }
  auto manifests = LoadManifests(paths);
  if (!manifests.ok()) Fail(manifests.status().message() + "\nnothing was started");
  Status pg = CheckPostgresBinaries(*manifests, flags.postgres_root);
  if (!pg.ok()) Fail(pg.message() + "\nnothing was started");
  auto block = AddressBlock::Parse(flags.address_block);
  if (!block.ok()) Fail("--address-block: " + block.status().message());
  auto [pod_block, service_block] = block->Split();

  LocalStoreOptions store_options;
  store_options.state_dir = state;
  store_options.service_block = service_block.ToString();
  auto store = LocalStore::Open(store_options);
  if (!store.ok()) Fail(store.status().message() + "\nnothing was started");
  std::unique_ptr<StateDirLock> block_lock = LockAddressBlock(*block, state);
  for (const AddressBlock& b : {pod_block, service_block}) {
    std::string first = FormatIpv4(b.first_host());
    for (uint16_t port : kNeededPorts) {
      Status free = CheckPortFree(first, port);
      if (!free.ok()) Fail(free.message() + "\nnothing was started");
    }
  }

  // 2. Start: API for status/down, node agent, service proxy, controllers.
  std::printf("petrel local: state in %s, pods on %s, services on %s\n", state.c_str(),
              pod_block.ToString().c_str(), service_block.ToString().c_str());
  std::atomic<bool> shutdown{false};
  const std::string token = RandomToken();
  auto api = HttpServer::Listen("127.0.0.1", 0, 1);
  if (!api.ok()) Fail("starting the local API: " + api.status().message());
  LocalStore& local = **store;
  (*api)->Handle("/status", [&local](const HttpRequest&) {
    return HttpResponse::Json(200, BuildStatus(local).dump());
  });
  // The controllers' metrics (the manager's own listener is off in local mode).
  (*api)->Handle("/metrics", [](const HttpRequest&) {
    HttpResponse r = HttpResponse::Text(200, MetricsRegistry::Default().Expose());
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return r;
  });
  (*api)->Handle("/shutdown", [&shutdown, token](const HttpRequest& r) {
    auto auth = r.headers.find("authorization");
    if (r.method != "POST") return HttpResponse::Text(405, "POST only\n");
    if (auth == r.headers.end() || auth->second != "Bearer " + token) {
      return HttpResponse::Text(401, "missing or wrong token\n");
    }
    shutdown = true;
    return HttpResponse::Text(202, "stopping\n");
  });
  // The Kubernetes-compatible API for the plugin commands and kubectl (local/kube_api.h).
  KubeApi kube_api(local, {token, state / "logs"});
  kube_api.Register(**api);
  (*api)->Start();
  const std::string server = "http://127.0.0.1:" + std::to_string((*api)->port());
  Status kubeconfig = WriteFileAtomically(state / kLocalKubeconfigFile,
                                          LocalKubeconfigYaml(server, token),
                                          fs::perms::owner_read | fs::perms::owner_write);
  if (!kubeconfig.ok()) Fail(kubeconfig.message());
  std::printf("petrel local: Kubernetes API on %s (kubeconfig %s); try `petrel list`\n",
              server.c_str(), (state / kLocalKubeconfigFile).c_str());
  Json runtime = {{"pid", ::getpid()},
                  {"api", "http://127.0.0.1:" + std::to_string((*api)->port())},
                  {"token", token}};
  Status recorded = WriteFileAtomically(state / kRuntimeFile, runtime.dump(),
                                        fs::perms::owner_read | fs::perms::owner_write);
  if (!recorded.ok()) Fail(recorded.message());

  NodeAgentOptions agent_options;
  agent_options.state_dir = state;
  agent_options.pod_block = pod_block.ToString();
  NodeAgent agent(local, agent_options);
  Status started = agent.Start();
  if (!started.ok()) Fail("starting the node agent: " + started.message());
  ServiceProxyOptions proxy_options;
  ServiceProxy proxy(local, proxy_options);
  started = proxy.Start();
  if (!started.ok()) Fail("starting the service proxy: " + started.message());

  ManagerOptions manager_options;
  manager_options.leader_election = LeaderElectionMode::kDisabled;
  manager_options.metrics_bind_address = "0";
  manager_options.health_probe_bind_address = "0";
  manager_options.signals = SignalHandling::kIgnore;
  Manager manager(local, manager_options);
  for (const auto& [name, factory] : ControllerFactories()) {
    Status s = factory(manager);
    if (!s.ok()) Fail("setting up controller " + name + ": " + s.ToString());
  }
  if (ControllerFactories().empty()) {
    std::printf("petrel local: warning: this petrel binary has no controllers built in; objects "
                "are stored and Pods run, but nothing reconciles PostgresClusters\n");
  }
  Status manager_status;
  std::thread manager_thread([&] { manager_status = manager.Run(); });

  // 3. Apply, then follow progress and the manifest files until asked to stop.
  std::printf("applying %zu object(s)\n", manifests->size());
  Apply(local, *manifests);
  auto mtimes = ModTimes(paths);
  ProgressPrinter progress;
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  while (!shutdown) {
    timespec second{1, 0};
    int sig = ::sigtimedwait(&signals, nullptr, &second);
    if (sig == SIGINT || sig == SIGTERM) break;
    progress.Update(BuildStatus(local));
    auto now = ModTimes(paths);
    if (now != mtimes) {
      mtimes = now;
      auto reloaded = LoadManifests(paths);
      if (!reloaded.ok()) {
        std::printf("manifests changed but were not applied:\n%s\n",
                    reloaded.status().message().c_str());
      } else {
        std::printf("manifests changed; applying\n");
        Apply(local, *reloaded);
      }
      std::fflush(stdout);
    }
  }

  // 4. Stop in reverse: controllers, Services, instances (SIGTERM: clean postgres shutdown).
  std::printf("petrel local: stopping (data is kept in %s)\n", state.c_str());
  std::fflush(stdout);
  manager.RequestStop();
  manager_thread.join();
  proxy.Stop();
  agent.Stop();
  (*api)->Stop();
  std::error_code ec;
  fs::remove(state / kRuntimeFile, ec);
  fs::remove(state / kLocalKubeconfigFile, ec);
  if (!manager_status.ok()) Fail("controllers stopped with an error: " + manager_status.ToString());
  std::printf("petrel local: stopped\n");
}

// The running `up` on `state`, from local.json; Fail()s when none runs.
Json RunningInstance(const fs::path& state) {
  int pid = StateDirLock::HolderPid(state);
  auto text = ReadFile(state / kRuntimeFile);
  if (pid == 0 || !text.ok()) {
    Fail("no petrel local is running with state directory " + state.string() +
         "; start one with `petrel local up -f FILE`");
  }
  try {
    return Json::parse(*text);
  } catch (const Json::exception&) {
    Fail((state / kRuntimeFile).string() + " is unreadable; is petrel local still starting?");
  }
}

void RunStatus(const LocalFlags& flags) {
  Json runtime = RunningInstance(StateDir(flags));
  auto response = HttpCall("GET", runtime.value("api", "") + "/status");
  if (!response.ok() || response->status != 200) {
    Fail("cannot reach petrel local (pid " + std::to_string(runtime.value("pid", 0)) + "): " +
         (response.ok() ? "HTTP " + std::to_string(response->status)
                        : response.status().message()));
  }
  try {
    PrintStatus(Json::parse(response->body));
  } catch (const Json::exception& e) {
    Fail(std::string("petrel local answered with invalid JSON: ") + e.what());
  }
}

void RunDown(const LocalFlags& flags) {
  fs::path state = StateDir(flags);
  if (StateDirLock::HolderPid(state) != 0) {
    Json runtime = RunningInstance(state);
    HttpCallOptions options;
    options.headers["Authorization"] = "Bearer " + runtime.value("token", "");
    auto response = HttpCall("POST", runtime.value("api", "") + "/shutdown", "", options);
    if (!response.ok() || response->status != 202) {
      Fail("could not ask petrel local (pid " + std::to_string(runtime.value("pid", 0)) +
           ") to stop: " +
           (response.ok() ? "HTTP " + std::to_string(response->status)
                          : response.status().message()));
    }
    std::printf("asked petrel local (pid %d) to stop; waiting\n", runtime.value("pid", 0));
    std::fflush(stdout);
    // Instances get their grace period; bounded so `down` never hangs forever.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
    while (StateDirLock::HolderPid(state) != 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        Fail("petrel local is still running after 3 minutes; check its output");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    std::printf("stopped\n");
  } else if (!flags.delete_data) {
    std::printf("no petrel local is running with state directory %s\n", state.c_str());
  }
  if (flags.delete_data) {
    // Only a directory that petrel local made: never a mistyped --state-dir like $HOME.
    if (fs::exists(state) && !fs::exists(state / "petrel-local.lock")) {
      Fail(state.string() + " does not look like a petrel local state directory "
                            "(no petrel-local.lock); not deleting it");
    }
    std::error_code ec;
    fs::remove_all(state, ec);
    if (ec) Fail("deleting " + state.string() + ": " + ec.message());
    std::printf("deleted %s\n", state.c_str());
  }
}

}  // namespace

void AddLocalCommand(CLI::App& app) {
  auto flags = std::make_shared<LocalFlags>();
  CLI::App* local = app.add_subcommand(
      "local", "Run Petrel on this machine without Kubernetes (real Postgres processes)");
  local->require_subcommand(1);
  auto add_state_dir = [flags](CLI::App* cmd) {
    cmd->add_option("--state-dir", flags->state_dir,
                    "State directory (default: $XDG_STATE_HOME/petrel or ~/.local/state/petrel)");
  };

  CLI::App* up = local->add_subcommand("up", "Start clusters from manifests and keep them running");
  up->add_option("-f,--filename", flags->files, "Manifest file or directory (repeatable)")
      ->required();
  add_state_dir(up);
  up->add_option("--address-block", flags->address_block,
                 "Loopback block for instances (lower half) and Services (upper half)")
      ->capture_default_str();
  up->add_option("--postgres-root", flags->postgres_root,
                 "Where PostgreSQL binaries live, as <root>/<major>/bin")
      ->capture_default_str();
  up->add_option("--log-level", flags->log_level, "trace, debug, info, warn or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  up->callback([flags] { RunUp(*flags); });

  CLI::App* status = local->add_subcommand("status", "Show the clusters of the running petrel local");
  add_state_dir(status);
  status->callback([flags] { RunStatus(*flags); });

  CLI::App* down = local->add_subcommand("down", "Stop the running petrel local (data is kept)");
  add_state_dir(down);
  down->add_flag("--delete-data", flags->delete_data,
                 "Also delete the state directory (all databases!) after stopping");
  down->callback([flags] { RunDown(*flags); });
}

}  // namespace petrel
