// Controller-runtime benchmark: 1000 custom resources on a real kube-apiserver (envtest),
// then a fresh process runs the Manager (leader election on, shared informers, a controller
// with a no-op reconciler) and reports
//   - seconds from start to caches synced, and to every key reconciled once;
//   - peak RSS of that process (VmHWM);
//   - API writes per second at steady state over a window (Lease renewals counted apart).
// The runtime runs in its own process so that its peak RSS is not the driver's (which holds
// the envtest client and created the objects).
//
// Usage: controller_bench [--objects N] [--steady-seconds S]; needs KUBEBUILDER_ASSETS.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <set>
#include <sstream>
#include <thread>

#include "controller/http_kube_client.h"
#include "controller/kubeconfig.h"
#include "controller/manager.h"
#include "core/log.h"
#include "tests/support/envtest.h"

extern char** environ;

namespace petrel {
namespace {
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

const ResourceType kWidget{"bench.petrel.dev", "v1", "benchwidgets", "BenchWidget", true};

struct Args {
  std::string mode = "driver";
  int objects = 1000;
  int steady_seconds = 30;
  std::string kubeconfig;
  std::string namespace_;
};

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto value = [&](const std::string& flag) -> const char* {
      if (s.rfind(flag + "=", 0) == 0) return argv[i] + flag.size() + 1;
      return nullptr;
    };
    if (auto v = value("--mode")) a.mode = v;
    if (auto v = value("--objects")) a.objects = std::atoi(v);
    if (auto v = value("--steady-seconds")) a.steady_seconds = std::atoi(v);
    if (auto v = value("--kubeconfig")) a.kubeconfig = v;
    if (auto v = value("--namespace")) a.namespace_ = v;
  }
  return a;
}

long StatusKb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::atol(line.c_str() + field.size() + 1);
  }
  return -1;
}

// Forwards to the real client, counting writes: leases apart from everything else.
class CountingClient : public KubeClient {
 public:
  explicit CountingClient(KubeClient& inner) : inner_(inner) {}
  Result<Json> Get(const ResourceType& t, const ObjectKey& k) override { return inner_.Get(t, k); }
  Result<ObjectList> List(const ResourceType& t, const std::string& ns,
                          const ListOptions& o) override {
    ++reads;
    return inner_.List(t, ns, o);
  }
  Result<Json> Create(const ResourceType& t, const Json& o) override {
    Count(t);
    return inner_.Create(t, o);
  }
  Result<Json> Update(const ResourceType& t, const Json& o, Subresource s) override {
    Count(t);
    return inner_.Update(t, o, s);
  }
  Status Delete(const ResourceType& t, const ObjectKey& k, const DeleteOptions& o) override {
    Count(t);
    return inner_.Delete(t, k, o);
  }
  Result<Json> Patch(const ResourceType& t, const ObjectKey& k, PatchType p, const Json& j,
                     const PatchOptions& o) override {
    Count(t);
    return inner_.Patch(t, k, p, j, o);
  }
  Result<Json> CreateSubresource(const ResourceType& t, const ObjectKey& k, const std::string& s,
                                 const Json& b) override {
    Count(t);
    return inner_.CreateSubresource(t, k, s, b);
  }
  Result<std::unique_ptr<WatchStream>> Watch(const ResourceType& t, const std::string& ns,
                                             const WatchOptions& o) override {
    ++watches;
    return inner_.Watch(t, ns, o);
  }
  std::atomic<int64_t> writes{0}, lease_writes{0}, reads{0}, watches{0};

 private:
  void Count(const ResourceType& t) { ++(t == resources::kLease ? lease_writes : writes); }
  KubeClient& inner_;
};

class NoopReconciler : public Reconciler {
 public:
  Result<ReconcileResult> Reconcile(const ObjectKey& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    seen_.insert(key);
    return ReconcileResult::Done();
  }
  size_t Distinct() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_.size();
  }

 private:
  std::mutex mu_;
  std::set<ObjectKey> seen_;
};

int RunRuntime(const Args& args) {
  auto start = SteadyClock::now();
  auto config = LoadDefaultConfig(args.kubeconfig, "");
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 1;
  }
  auto http = HttpKubeClient::Create(*config);
  if (!http.ok()) {
    std::fprintf(stderr, "%s\n", http.status().ToString().c_str());
    return 1;
  }
  CountingClient client(**http);
  long rss_before = StatusKb("VmRSS");
  ManagerOptions options;
  options.namespaces = {args.namespace_};
  options.metrics_bind_address = "0";
  options.health_probe_bind_address = "0";
  options.leader_election_config.namespace_ = args.namespace_;
  options.leader_election_config.name = "bench-controller";
  options.leader_election_config.identity = "bench";
  Manager manager(client, options);
  auto reconciler = std::make_shared<NoopReconciler>();
  manager.Watch(manager.AddController("bench", reconciler), kWidget, EnqueueSelf());
  auto run = std::async(std::launch::async, [&] { return manager.Run(); });

  auto wait = [&](auto pred) {
    while (!pred()) {
      if (run.wait_for(5ms) == std::future_status::ready) return false;
    }
    return true;
  };
  if (!wait([&] { return manager.Ready(); })) return 1;
  double synced_s = std::chrono::duration<double>(SteadyClock::now() - start).count();
  if (!wait([&] { return reconciler->Distinct() >= static_cast<size_t>(args.objects); })) return 1;
  double reconciled_s = std::chrono::duration<double>(SteadyClock::now() - start).count();

  int64_t writes0 = client.writes, lease0 = client.lease_writes, lists0 = client.reads,
          watches0 = client.watches;
  std::this_thread::sleep_for(std::chrono::seconds(args.steady_seconds));
  int64_t writes = client.writes - writes0, lease = client.lease_writes - lease0;
  int64_t lists = client.reads - lists0, watches = client.watches - watches0;

  long hwm = StatusKb("VmHWM"), rss = StatusKb("VmRSS");
  auto cached = manager.List(kWidget, args.namespace_);
  size_t json_bytes = 0;
  for (const ObjectPtr& o : cached) json_bytes += o->dump().size();
  manager.RequestStop();
  Status s = run.get();
  std::printf(
      "{\"objects\":%d,\"cached\":%zu,\"synced_s\":%.3f,\"all_reconciled_s\":%.3f,"
      "\"vm_hwm_kib\":%ld,\"vm_rss_kib\":%ld,\"steady_seconds\":%d,\"steady_writes\":%lld,"
      "\"steady_lease_writes\":%lld,\"steady_lists\":%lld,\"steady_watches\":%lld,"
      "\"clean_stop\":%s,\"rss_before_kib\":%ld,\"avg_object_bytes\":%zu}\n",
      args.objects, cached.size(), synced_s, reconciled_s, hwm,
      rss, args.steady_seconds, static_cast<long long>(writes), static_cast<long long>(lease),
      static_cast<long long>(lists), static_cast<long long>(watches), s.ok() ? "true" : "false",
      rss_before, cached.empty() ? 0 : json_bytes / cached.size());
  return 0;
}

Json Widget(const std::string& ns, int i) {
  Json spec = Json::object();
  for (int f = 0; f < 16; ++f) spec["field" + std::to_string(f)] = "value-" + std::to_string(i * f);
  spec["replicas"] = 3;
  spec["storage"] = {{"size", "10Gi"}, {"storageClass", "standard"}};
  return {{"apiVersion", "bench.petrel.dev/v1"},
          {"kind", "BenchWidget"},
          {"metadata",
           {{"namespace", ns},
            {"name", "widget-" + std::to_string(i)},
            {"labels", {{"app.kubernetes.io/managed-by", "petrel"}, {"bench", "yes"}}}}},
          {"spec", spec}};
}

Status InstallCrd(KubeClient& client) {
  Json crd = {
      {"apiVersion", "apiextensions.k8s.io/v1"},
      {"kind", "CustomResourceDefinition"},
      {"metadata", {{"name", "benchwidgets.bench.petrel.dev"}}},
      {"spec",
       {{"group", "bench.petrel.dev"},
        {"scope", "Namespaced"},
        {"names",
         {{"plural", "benchwidgets"},
          {"singular", "benchwidget"},
          {"kind", "BenchWidget"},
          {"listKind", "BenchWidgetList"}}},
        {"versions",
         Json::array({{{"name", "v1"},
                       {"served", true},
                       {"storage", true},
                       {"schema",
                        {{"openAPIV3Schema",
                          {{"type", "object"},
                           {"x-kubernetes-preserve-unknown-fields", true}}}}}}})}}}};
  auto created = client.Create(resources::kCustomResourceDefinition, crd);
  if (!created.ok() && created.status().code() != Code::kAlreadyExists) return created.status();
  for (int i = 0; i < 600; ++i) {
    auto got = client.Get(resources::kCustomResourceDefinition,
                          ObjectKey{"", "benchwidgets.bench.petrel.dev"});
    if (got.ok()) {
      for (const Json& c : got->value("status", Json::object()).value("conditions", Json::array())) {
        if (c.value("type", "") == "Established" && c.value("status", "") == "True") {
          // Established can precede the endpoint serving; probe it.
          if (client.List(kWidget, "default", {}).ok()) return Status::Ok();
        }
      }
    }
    std::this_thread::sleep_for(100ms);
  }
  return TimeoutError("CRD benchwidgets.bench.petrel.dev not established after 60 s");
}

std::string Machine() {
  auto read = [](const std::string& cmd) {
    std::string out;
    if (FILE* p = popen(cmd.c_str(), "r")) {
      char buf[256];
      while (fgets(buf, sizeof buf, p)) out += buf;
      pclose(p);
    }
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  };
  return "nproc " + read("nproc") + "; CPU " +
         read("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'") + "; memory " +
         read("free -h | awk '/Mem:/ {print $2}'") + "; kernel " + read("uname -r");
}

int RunDriver(const Args& args, const char* self) {
  auto env = Envtest::Shared();
  if (!env.ok()) {
    std::fprintf(stderr, "envtest: %s\n", env.status().ToString().c_str());
    return 1;
  }
  KubeClient& client = (*env)->Client();
  if (Status s = InstallCrd(client); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  auto ns = (*env)->NewNamespace("bench");
  if (!ns.ok()) {
    std::fprintf(stderr, "%s\n", ns.status().ToString().c_str());
    return 1;
  }
  std::fprintf(stderr, "creating %d BenchWidgets in %s...\n", args.objects, ns->c_str());
  std::atomic<int> next{0}, failed{0};
  std::vector<std::thread> creators;
  for (int t = 0; t < 8; ++t) {
    creators.emplace_back([&] {
      for (int i = next++; i < args.objects; i = next++) {
        if (!client.Create(kWidget, Widget(*ns, i)).ok()) ++failed;
      }
    });
  }
  for (auto& t : creators) t.join();
  if (failed > 0) {
    std::fprintf(stderr, "%d creates failed\n", failed.load());
    return 1;
  }

  std::string out_path = (*env)->Dir() + "/runtime.json";
  std::vector<std::string> argv_s = {self, "--mode=runtime", "--objects=" + std::to_string(args.objects),
                                     "--steady-seconds=" + std::to_string(args.steady_seconds),
                                     "--kubeconfig=" + (*env)->KubeconfigPath(),
                                     "--namespace=" + *ns};
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid;
  std::fprintf(stderr, "running the controller runtime (steady window %d s)...\n",
               args.steady_seconds);
  if (posix_spawn(&pid, self, &actions, nullptr, argv.data(), environ) != 0) return 1;
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  waitpid(pid, &status, 0);
  std::ifstream in(out_path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "runtime process failed: %s\n", ss.str().c_str());
    return 1;
  }
  Json r = Json::parse(ss.str(), nullptr, false);
  if (r.is_discarded()) return 1;
  char date[64];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  double steady_s = r["steady_seconds"].get<double>();
  std::printf("### %s\n\nMachine: %s\n\n", date, Machine().c_str());
  std::printf("| measure | value |\n|---|---|\n");
  std::printf("| objects (BenchWidget CRs) | %d (cached: %d; %d bytes of JSON each as cached, "
              "managedFields stripped) |\n",
              r["objects"].get<int>(), r["cached"].get<int>(), r["avg_object_bytes"].get<int>());
  std::printf("| RSS before informers start (client, TLS, logging) | %.1f MiB |\n",
              r["rss_before_kib"].get<double>() / 1024);
  std::printf("| start → caches synced | %.2f s |\n", r["synced_s"].get<double>());
  std::printf("| start → every key reconciled once | %.2f s |\n", r["all_reconciled_s"].get<double>());
  std::printf("| peak RSS (VmHWM) | %.1f MiB |\n", r["vm_hwm_kib"].get<double>() / 1024);
  std::printf("| RSS at end | %.1f MiB |\n", r["vm_rss_kib"].get<double>() / 1024);
  std::printf("| API writes/s at steady state (%.0f s window, Leases excluded) | %.2f |\n", steady_s,
              r["steady_writes"].get<double>() / steady_s);
  std::printf("| Lease renewals/s (leader election, retry period 2 s) | %.2f |\n",
              r["steady_lease_writes"].get<double>() / steady_s);
  std::printf("| lists / watches opened during the window | %lld / %lld |\n",
              r["steady_lists"].get<long long>(), r["steady_watches"].get<long long>());
  return r["steady_writes"].get<int64_t>() == 0 ? 0 : 2;
}

}  // namespace
}  // namespace petrel

int main(int argc, char** argv) {
  petrel::Args args = petrel::ParseArgs(argc, argv);
  if (args.mode == "runtime") {
    petrel::InitLogging(petrel::LogFormat::kText, "warn", "bench");
    return petrel::RunRuntime(args);
  }
  return petrel::RunDriver(args, argv[0]);
}
