#include "local/node_agent.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/base64.h"
#include "core/clock.h"
#include "local/files.h"
#include "local/process.h"
#include "local/snapshot_driver.h"
#include "local/store.h"
#include "net/http.h"

namespace petrel {

namespace fs = std::filesystem;

namespace {

constexpr auto kPrivateDir = fs::perms::owner_all;
constexpr auto kTraversableDir = fs::perms::owner_all | fs::perms::group_exec |
                                 fs::perms::others_exec;

std::string ManagedSelector() { return std::string(kManagedByLabel) + "=" + kManagedByValue; }

std::string Now() { return FormatRfc3339(Clock::Real().WallNow()); }

bool TcpConnect(const std::string& host, uint16_t port, std::chrono::milliseconds timeout) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) return false;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    ok = true;
  } else if (errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
      int err = 0;
      socklen_t len = sizeof(err);
      ok = ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
  }
  ::close(fd);
  return ok;
}

std::map<std::string, std::string> DecodedData(const Json& object, bool base64) {
  std::map<std::string, std::string> out;
  const Json data = object.value("data", Json::object());
  for (auto& [k, v] : data.items()) {
    if (!v.is_string()) continue;
    std::optional<std::string> value = v.get<std::string>();
    if (base64) value = Base64Decode(*value);
    if (value) out[k] = *value;
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> HostBaseEnv() {
  std::vector<std::pair<std::string, std::string>> env;
  for (const char* name : {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"}) {
    if (const char* v = std::getenv(name)) env.emplace_back(name, v);
  }
  bool has_path = false;
  for (auto& [k, v] : env) has_path = has_path || k == "PATH";
  if (!has_path) env.emplace_back("PATH", "/usr/local/bin:/usr/bin:/bin");
  return env;
}

}  // namespace

bool ProbeOnce(const ProbePlan& probe, std::chrono::milliseconds timeout) {
  switch (probe.kind) {
    case ProbePlan::Kind::kNone:
      return true;
    case ProbePlan::Kind::kTcpSocket:
      return TcpConnect(probe.host, probe.port, timeout);
    case ProbePlan::Kind::kHttpGet: {
      HttpCallOptions options;
      options.timeout = timeout;
      std::string path = probe.path.empty() || probe.path[0] != '/' ? "/" + probe.path : probe.path;
      auto response = HttpCall(
          "GET", "http://" + probe.host + ":" + std::to_string(probe.port) + path, "", options);
      return response.ok() && response->status >= 200 && response->status < 400;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// PodWorker: runs one Pod's containers on its own thread and reports the Pod's status.

class PodWorker {
 public:
  PodWorker(KubeClient& client, const NodeAgentOptions& options, Json pod, std::string pod_ip)
      : client_(client), options_(options), pod_(std::move(pod)), pod_ip_(std::move(pod_ip)),
        key_(meta::Key(pod_)) {
    pod_dir_ = options_.state_dir / "pods" / key_.namespace_ / meta::Uid(pod_);
    log_file_ = options_.state_dir / "logs" / key_.namespace_ / (key_.name + ".log");
    thread_ = std::thread([this] { Run(); });
  }

  ~PodWorker() {
    RequestStop(options_.max_grace_period);
    if (thread_.joinable()) thread_.join();
  }

  // Starts stopping (non-blocking). A shorter grace than an earlier request wins.
  void RequestStop(std::chrono::seconds grace) {
    {
      std::lock_guard lock(mu_);
      grace = std::min(grace, options_.max_grace_period);
      if (!stop_ || grace < grace_) grace_ = grace;
      stop_ = true;
    }
    cv_.notify_all();
  }

  bool Finished() const { return finished_.load(); }
  bool Terminal() const { return terminal_.load(); }
  // Removes the Pod's private directory (emptyDirs, materialised volumes).
  void RemovePodDirectory() {
    std::error_code ec;
    fs::remove_all(pod_dir_, ec);
  }

 private:
  struct Container {
    ContainerPlan plan;
    std::unique_ptr<Process> process;
    int restarts = 0;
    std::string started_at;
    SteadyTime started{};
    SteadyTime next_start{};
    std::chrono::milliseconds backoff{0};
    std::optional<Json> last_terminated;  // containerStatuses[].lastState.terminated
    std::optional<Json> terminated;       // final state when it will not run again
    std::string waiting_reason = "ContainerCreating";
    std::string waiting_message;
    bool ready = false;
    int probe_successes = 0;
    int probe_failures = 0;
    SteadyTime next_probe{};
    int liveness_failures = 0;
    SteadyTime next_liveness{};
    bool done = false;  // exited and will not be restarted
  };

  // Waits up to `d` or until a stop is requested; true when stopping.
  bool SleepOrStop(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, d, [this] { return stop_; });
  }
  bool Stopping() {
    std::lock_guard lock(mu_);
    return stop_;
  }

  Result<PodPlan> Prepare();
  Status PrepareVolumes(PodEnvironment* env);
  bool StartContainer(Container& c);
  void Run();
  bool RunInitContainers(const PodPlan& plan);
  void Supervise(const PodPlan& plan);
  void StopAll();
  void PublishStatus(const std::string& phase, bool initialized, const std::string& message = "");
  Json ContainerStatus(const Container& c) const;
  void LogLine(const std::string& line);

  KubeClient& client_;
  const NodeAgentOptions& options_;
  const Json pod_;
  const std::string pod_ip_;
  const ObjectKey key_;
  fs::path pod_dir_;
  fs::path log_file_;
  std::string start_time_ = Now();
  std::vector<Container> init_;
  std::vector<Container> containers_;
  Json last_status_;
  std::map<std::string, std::pair<std::string, std::string>> conditions_;  // type -> (status, time)

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                   // guarded by mu_
  std::chrono::seconds grace_{30};      // guarded by mu_
  std::atomic<bool> finished_{false};
  std::atomic<bool> terminal_{false};
  std::thread thread_;  // last: started once everything above is initialised
};

void PodWorker::LogLine(const std::string& line) {
  std::ofstream out(log_file_, std::ios::app);
  out << Now() << " petrel node agent: " << line << "\n";
}

Status PodWorker::PrepareVolumes(PodEnvironment* env) {
  const std::string& ns = key_.namespace_;
  for (const Json& v : pod_.value("spec", Json::object()).value("volumes", Json::array())) {
    std::string name = v.value("name", "");
    fs::path dir = pod_dir_ / "volumes" / name;
    if (v.contains("persistentVolumeClaim")) {
      std::string claim = v["persistentVolumeClaim"].value("claimName", "");
      auto pvc = client_.Get(resources::kPersistentVolumeClaim, {ns, claim});
      if (!pvc.ok()) {
        return pvc.status().Annotate("volume \"" + name + "\": PersistentVolumeClaim \"" + claim +
                                     "\"");
      }
      if (SnapshotDriver::ProvisionsClaim(*pvc) &&
          pvc->value("status", Json::object()).value("phase", "") != "Bound") {
        return UnavailableError("PersistentVolumeClaim \"" + claim +
                                "\" is not bound yet: waiting for it to be restored from its "
                                "VolumeSnapshot");
      }
      dir = options_.state_dir / "volumes" / ns / claim;
      PETREL_RETURN_IF_ERROR(MakeDirectory(dir, kTraversableDir));
    } else if (v.contains("emptyDir")) {
      PETREL_RETURN_IF_ERROR(MakeDirectory(dir, fs::perms::all));
    } else if (v.contains("hostPath")) {
      dir = v["hostPath"].value("path", "");
    } else if (v.contains("secret") || v.contains("configMap")) {
      bool is_secret = v.contains("secret");
      const Json& src = is_secret ? v["secret"] : v["configMap"];
      std::string object_name = src.value(is_secret ? "secretName" : "name", "");
      auto object = client_.Get(is_secret ? resources::kSecret : resources::kConfigMap,
                                {ns, object_name});
      if (!object.ok()) {
        if (object.status().code() == Code::kNotFound && src.value("optional", false)) {
          PETREL_RETURN_IF_ERROR(MakeDirectory(dir, kTraversableDir));
          env->volume_dirs[name] = dir.string();
          continue;
        }
        return object.status().Annotate("volume \"" + name + "\"");
      }
      auto data = DecodedData(*object, is_secret);
      auto mode = static_cast<fs::perms>(src.value("defaultMode", 0644));
      PETREL_RETURN_IF_ERROR(MakeDirectory(dir, kTraversableDir));
      std::map<std::string, std::string> files;  // path in the volume -> content
      if (src.contains("items")) {
        for (const Json& item : src["items"]) {
          auto it = data.find(item.value("key", ""));
          if (it == data.end()) continue;
          std::string path = item.value("path", it->first);
          if (path.find("..") != std::string::npos || path.empty() || path[0] == '/') {
            return InvalidError("volume \"" + name + "\": item path \"" + path +
                                "\" must be relative and must not contain ..");
          }
          files[path] = it->second;
        }
      } else {
        files.insert(data.begin(), data.end());
      }
      for (const auto& [path, content] : files) {
        fs::path file = dir / path;
        PETREL_RETURN_IF_ERROR(MakeDirectory(file.parent_path(), kTraversableDir));
        PETREL_RETURN_IF_ERROR(WriteFileAtomically(file, content, mode));
      }
    } else {
      return InvalidError("volume \"" + name +
                          "\" is of a kind the local node agent cannot provide (supported: "
                          "persistentVolumeClaim, emptyDir, secret, configMap, hostPath)");
    }
    env->volume_dirs[name] = dir.string();
  }
  return Status::Ok();
}

Result<PodPlan> PodWorker::Prepare() {
  PETREL_RETURN_IF_ERROR(MakeDirectory(pod_dir_, kTraversableDir));
  PodEnvironment env;
  env.pod_ip = pod_ip_;
  env.host_ip = options_.host_ip;
  env.petrel_binary = options_.petrel_binary;
  env.base_env = HostBaseEnv();
  PETREL_RETURN_IF_ERROR(PrepareVolumes(&env));
  const std::string ns = key_.namespace_;
  auto data_of = [this, ns](const ResourceType& type, const std::string& name,
                            bool base64) -> Result<std::map<std::string, std::string>> {
    PETREL_ASSIGN_OR_RETURN(Json object, client_.Get(type, {ns, name}));
    return DecodedData(object, base64);
  };
  auto value_of = [data_of](const ResourceType& type, const std::string& name,
                            const std::string& key, bool base64) -> Result<std::string> {
    PETREL_ASSIGN_OR_RETURN(auto data, data_of(type, name, base64));
    auto it = data.find(key);
    if (it == data.end()) {
      return NotFoundError(type.kind + " \"" + name + "\" has no key \"" + key + "\"");
    }
    return it->second;
  };
  env.secret_value = [value_of](const std::string& name, const std::string& key) {
    return value_of(resources::kSecret, name, key, true);
  };
  env.config_map_value = [value_of](const std::string& name, const std::string& key) {
    return value_of(resources::kConfigMap, name, key, false);
  };
  env.secret_data = [data_of](const std::string& name) {
    return data_of(resources::kSecret, name, true);
  };
  env.config_map_data = [data_of](const std::string& name) {
    return data_of(resources::kConfigMap, name, false);
  };
  return PlanPod(pod_, env);
}

bool PodWorker::StartContainer(Container& c) {
  SpawnSpec spec;
  spec.argv = c.plan.argv;
  spec.env = c.plan.env;
  spec.working_dir = c.plan.working_dir.empty() ? pod_dir_.string() : c.plan.working_dir;
  spec.log_file = log_file_.string();
  auto process = Process::Spawn(spec);
  if (!process.ok()) {
    c.waiting_reason = "RunContainerError";
    c.waiting_message = process.status().message();
    LogLine("container " + c.plan.name + " cannot start: " + process.status().message());
    return false;
  }
  c.process = std::move(process).value();
  c.started = std::chrono::steady_clock::now();
  c.started_at = Now();
  c.waiting_reason.clear();
  c.waiting_message.clear();
  c.ready = false;
  c.probe_successes = c.probe_failures = 0;
  c.next_probe = c.started + c.plan.readiness.initial_delay;
  c.liveness_failures = 0;
  c.next_liveness = c.started + c.plan.liveness.initial_delay + c.plan.liveness.period;
  LogLine("container " + c.plan.name + " started (pid " + std::to_string(c.process->pid()) +
          ") on " + pod_ip_);
  return true;
}

Json PodWorker::ContainerStatus(const Container& c) const {
  Json s = {{"name", c.plan.name},
            {"image", c.plan.image},
            {"imageID", ""},
            {"ready", c.ready},
            {"started", c.process != nullptr},
            {"restartCount", c.restarts}};
  if (c.process) {
    s["containerID"] = "petrel-local://" + std::to_string(c.process->pid());
    s["state"] = {{"running", {{"startedAt", c.started_at}}}};
  } else if (c.terminated) {
    s["state"] = {{"terminated", *c.terminated}};
  } else {
    Json waiting = {{"reason", c.waiting_reason}};
    if (!c.waiting_message.empty()) waiting["message"] = c.waiting_message;
    s["state"] = {{"waiting", waiting}};
  }
  s["lastState"] = c.last_terminated ? Json{{"terminated", *c.last_terminated}} : Json::object();
  return s;
}

void PodWorker::PublishStatus(const std::string& phase, bool initialized,
                              const std::string& message) {
  bool ready = !containers_.empty() && phase == "Running";
  for (const Container& c : containers_) ready = ready && c.ready;
  auto condition = [&](const std::string& type, bool value) {
    std::string v = value ? "True" : "False";
    auto& [status, time] = conditions_[type];
    if (status != v) {
      status = v;
      time = Now();
    }
    return Json{{"type", type}, {"status", status}, {"lastTransitionTime", time}};
  };
  Json status = {{"phase", phase},
                 {"hostIP", options_.host_ip},
                 {"podIP", pod_ip_},
                 {"podIPs", Json::array({{{"ip", pod_ip_}}})},
                 {"startTime", start_time_},
                 {"conditions", Json::array({condition("PodScheduled", true),
                                             condition("Initialized", initialized),
                                             condition("ContainersReady", ready),
                                             condition("Ready", ready)})}};
  if (!message.empty()) status["message"] = message;
  Json init = Json::array();
  for (const Container& c : init_) init.push_back(ContainerStatus(c));
  if (!init.empty()) status["initContainerStatuses"] = init;
  Json main = Json::array();
  for (const Container& c : containers_) main.push_back(ContainerStatus(c));
  status["containerStatuses"] = main;
  if (status == last_status_) return;
  PatchOptions options;
  options.subresource = "status";
  auto patched = client_.Patch(resources::kPod, key_, PatchType::kMerge, {{"status", status}},
                               options);
  if (patched.ok()) {
    last_status_ = status;
  } else if (patched.status().code() != Code::kNotFound) {
    spdlog::warn("node agent: status of pod {}: {}", key_.ToString(), patched.status().message());
  }
}

void PodWorker::StopAll() {
  std::chrono::seconds grace;
  {
    std::lock_guard lock(mu_);
    grace = grace_;
  }
  std::vector<Container*> running;
  for (auto* list : {&init_, &containers_}) {
    for (Container& c : *list) {
      if (c.process) running.push_back(&c);
    }
  }
  if (running.empty()) return;
  LogLine("stopping (grace period " + std::to_string(grace.count()) + "s)");
  // SIGTERM to every container at once, then each gets what is left of the shared deadline.
  for (Container* c : running) ::kill(c->process->pid(), SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  for (Container* c : running) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    ExitStatus e = c->process->Terminate(std::max(left, std::chrono::milliseconds(0)));
    LogLine("container " + c->plan.name + " stopped (exit code " + std::to_string(e.code) + ")");
    c->process.reset();
  }
}

bool PodWorker::RunInitContainers(const PodPlan& plan) {
  for (Container& c : init_) {
    while (!c.done) {
      if (Stopping()) return false;
      if (!c.process) {
        if (std::chrono::steady_clock::now() < c.next_start || !StartContainer(c)) {
          PublishStatus("Pending", false);
          if (SleepOrStop(std::chrono::milliseconds(200))) return false;
          continue;
        }
      }
      PublishStatus("Pending", false);
      auto exit = c.process->Poll();
      if (!exit) {
        if (SleepOrStop(std::chrono::milliseconds(100))) return false;
        continue;
      }
      c.process.reset();
      Json terminated = {{"exitCode", exit->code},
                         {"reason", exit->code == 0 ? "Completed" : "Error"},
                         {"startedAt", c.started_at},
                         {"finishedAt", Now()}};
      if (exit->code == 0) {
        c.done = true;
        c.terminated = terminated;
        continue;
      }
      c.last_terminated = terminated;
      if (plan.restart_policy == RestartPolicy::kNever) {
        c.terminated = terminated;
        PublishStatus("Failed", false, "init container " + c.plan.name + " failed");
        terminal_ = true;
        return false;
      }
      ++c.restarts;
      c.backoff = std::min(std::max(c.backoff * 2, options_.restart_backoff_initial),
                           options_.restart_backoff_max);
      c.next_start = std::chrono::steady_clock::now() + c.backoff;
      c.waiting_reason = "CrashLoopBackOff";
    }
  }
  return true;
}

void PodWorker::Supervise(const PodPlan& plan) {
  while (!Stopping()) {
    auto now = std::chrono::steady_clock::now();
    bool any_started = false;
    bool all_done = true;
    bool any_failed = false;
    for (Container& c : containers_) {
      if (c.done) {
        any_failed = any_failed || (*c.terminated)["exitCode"] != 0;
        continue;
      }
      all_done = false;
      if (!c.process) {
        if (now >= c.next_start) StartContainer(c);
        if (!c.process) {
          if (c.waiting_reason == "RunContainerError") {
            c.backoff = std::min(std::max(c.backoff * 2, options_.restart_backoff_initial),
                                 options_.restart_backoff_max);
            c.next_start = now + c.backoff;
          }
          continue;
        }
      }
      if (auto exit = c.process->Poll()) {
        c.process.reset();
        c.ready = false;
        Json terminated = {{"exitCode", exit->code},
                           {"reason", exit->code == 0 ? "Completed" : "Error"},
                           {"startedAt", c.started_at},
                           {"finishedAt", Now()}};
        if (exit->signal != 0) terminated["signal"] = exit->signal;
        LogLine("container " + c.plan.name + " exited with code " + std::to_string(exit->code));
        bool restart = plan.restart_policy == RestartPolicy::kAlways ||
                       (plan.restart_policy == RestartPolicy::kOnFailure && exit->code != 0);
        if (!restart) {
          c.done = true;
          c.terminated = terminated;
          continue;
        }
        c.last_terminated = terminated;
        ++c.restarts;
        // A container that ran for a while starts again quickly; a crash loop backs off.
        if (now - c.started > 4 * options_.restart_backoff_max) c.backoff = {};
        c.backoff = std::min(std::max(c.backoff * 2, options_.restart_backoff_initial),
                             options_.restart_backoff_max);
        c.next_start = now + c.backoff;
        c.waiting_reason = "CrashLoopBackOff";
        c.waiting_message = "back-off " + std::to_string(c.backoff.count()) +
                            "ms restarting failed container " + c.plan.name;
        continue;
      }
      any_started = true;
      if (c.plan.liveness.kind != ProbePlan::Kind::kNone && now >= c.next_liveness) {
        c.next_liveness = now + c.plan.liveness.period;
        if (ProbeOnce(c.plan.liveness, c.plan.liveness.timeout)) {
          c.liveness_failures = 0;
        } else if (++c.liveness_failures >= c.plan.liveness.failure_threshold) {
          // As the kubelet does: stop it (SIGTERM, grace, SIGKILL); the exit is then handled
          // like any other and the restart policy applies.
          LogLine("container " + c.plan.name + " failed its liveness probe " +
                  std::to_string(c.liveness_failures) + " times; restarting it");
          c.ready = false;
          c.process->Terminate(std::min(plan.grace_period, options_.max_grace_period));
          continue;  // the next turn sees the exit
        }
      }
      if (now >= c.next_probe) {
        c.next_probe = now + options_.probe_period;
        bool ok = ProbeOnce(c.plan.readiness, std::chrono::milliseconds(1000));
        if (ok) {
          c.probe_failures = 0;
          if (++c.probe_successes >= c.plan.readiness.success_threshold) c.ready = true;
        } else {
          c.probe_successes = 0;
          if (++c.probe_failures >= c.plan.readiness.failure_threshold) c.ready = false;
        }
      }
    }
    if (all_done) {
      PublishStatus(any_failed ? "Failed" : "Succeeded", true);
      terminal_ = true;
      return;
    }
    bool running = any_started;
    for (const Container& c : containers_) running = running || c.restarts > 0 || c.done;
    PublishStatus(running ? "Running" : "Pending", true);
    if (SleepOrStop(std::chrono::milliseconds(100))) break;
  }
}

void PodWorker::Run() {
  std::error_code ec;
  fs::create_directories(log_file_.parent_path(), ec);
  Result<PodPlan> plan = Prepare();
  while (!plan.ok()) {
    // Not runnable yet (a Secret or claim may still be coming): report why and retry.
    std::string message = plan.status().message();
    for (const Json& c : pod_["spec"].value("containers", Json::array())) {
      Container waiting;
      waiting.plan.name = c.value("name", "");
      waiting.plan.image = c.value("image", "");
      waiting.waiting_reason = "CreateContainerConfigError";
      waiting.waiting_message = message;
      containers_.push_back(std::move(waiting));
    }
    PublishStatus("Pending", false, message);
    containers_.clear();
    if (SleepOrStop(std::chrono::milliseconds(2000))) {
      finished_ = true;
      return;
    }
    plan = Prepare();
  }
  for (const ContainerPlan& p : plan->init_containers) init_.push_back(Container{p});
  for (const ContainerPlan& p : plan->containers) containers_.push_back(Container{p});
  if (RunInitContainers(*plan)) Supervise(*plan);
  StopAll();
  finished_ = true;
}

// ---------------------------------------------------------------------------------------------
// NodeAgent

NodeAgent::NodeAgent(KubeClient& client, NodeAgentOptions options)
    : client_(client), options_(std::move(options)) {}

NodeAgent::~NodeAgent() { Stop(); }

Status NodeAgent::Start() {
  if (options_.state_dir.empty()) return InvalidError("the node agent needs a state directory");
  PETREL_ASSIGN_OR_RETURN(AddressBlock block, AddressBlock::Parse(options_.pod_block));
  ips_ = std::make_unique<AddressAllocator>(block);
  if (options_.petrel_binary.empty()) {
    std::error_code ec;
    options_.petrel_binary = fs::read_symlink("/proc/self/exe", ec).string();
    if (ec) return InternalError("cannot find this process's executable: " + ec.message());
  }
  PETREL_RETURN_IF_ERROR(MakeDirectory(options_.state_dir, kTraversableDir));
  PETREL_RETURN_IF_ERROR(MakeDirectory(options_.state_dir / "volumes", kTraversableDir));
  PETREL_RETURN_IF_ERROR(MakeDirectory(options_.state_dir / "pods", kTraversableDir));
  PETREL_RETURN_IF_ERROR(MakeDirectory(options_.state_dir / "logs", kPrivateDir));
  SnapshotDriverOptions snapshot_options;
  snapshot_options.state_dir = options_.state_dir;
  snapshot_options.node_name = options_.node_name;
  snapshots_ = std::make_unique<SnapshotDriver>(client_, snapshot_options);
  PETREL_RETURN_IF_ERROR(snapshots_->Start());
  loop_ = std::make_unique<WatchLoop>(
      client_, WatchLoopOptions{ManagedSelector(), options_.resync}, [this] { Reconcile(); });
  loop_->Start();
  return Status::Ok();
}

void NodeAgent::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (loop_) loop_->Stop();
  // Every worker stops at once; destruction then waits for each.
  for (auto& [uid, worker] : workers_) worker->RequestStop(options_.max_grace_period);
  workers_.clear();
  // Last: a snapshot in progress ends when its instance has stopped.
  if (snapshots_) snapshots_->Stop();
}

std::string NodeAgent::AllocatePodIp(const Json& pod) {
  std::string uid = meta::Uid(pod);
  auto known = pod_ips_.find(uid);
  if (known != pod_ips_.end()) return known->second;
  std::string previous = pod.value("status", Json::object()).value("podIP", "");
  std::string ip;
  if (!previous.empty() && ips_->Reserve(previous)) {
    ip = previous;
  } else {
    auto allocated = ips_->Allocate();
    if (!allocated.ok()) return "";
    ip = *allocated;
  }
  pod_ips_[uid] = ip;
  return ip;
}

void NodeAgent::FinalDelete(const Json& pod) {
  DeleteOptions options;
  options.precondition_uid = meta::Uid(pod);
  options.grace_period_seconds = 0;
  Status s = client_.Delete(resources::kPod, meta::Key(pod), options);
  if (!s.ok() && s.code() != Code::kNotFound) {
    spdlog::warn("node agent: final delete of pod {}: {}", meta::Key(pod).ToString(),
                 s.message());
  }
}

void NodeAgent::Reconcile() {
  ListOptions list;
  list.label_selector = ManagedSelector();
  auto pods = client_.ListAll(resources::kPod, "", list);
  if (!pods.ok()) {
    spdlog::warn("node agent: listing pods: {}", pods.status().message());
    return;
  }
  std::set<std::string> seen;
  for (const Json& pod : pods->items) {
    std::string uid = meta::Uid(pod);
    std::string node = pod.value("spec", Json::object()).value("nodeName", "");
    if (node.empty()) {
      if (meta::IsBeingDeleted(pod)) continue;
      Json binding = {{"apiVersion", "v1"},
                      {"kind", "Binding"},
                      {"metadata", {{"name", meta::Name(pod)}, {"namespace", meta::Namespace(pod)}}},
                      {"target", {{"apiVersion", "v1"}, {"kind", "Node"}, {"name", options_.node_name}}}};
      auto bound = client_.CreateSubresource(resources::kPod, meta::Key(pod), "binding", binding);
      if (!bound.ok() && bound.status().code() != Code::kConflict) {
        spdlog::warn("node agent: binding pod {}: {}", meta::Key(pod).ToString(),
                     bound.status().message());
      }
      continue;
    }
    if (node != options_.node_name) continue;
    seen.insert(uid);
    auto it = workers_.find(uid);
    if (meta::IsBeingDeleted(pod)) {
      if (it == workers_.end()) {
        FinalDelete(pod);
        continue;
      }
      auto& metadata = pod["metadata"];
      int64_t grace = metadata.value("deletionGracePeriodSeconds",
                                     pod["spec"].value("terminationGracePeriodSeconds", 30));
      it->second->RequestStop(std::chrono::seconds(std::max<int64_t>(grace, 0)));
      if (it->second->Finished()) {
        it->second->RemovePodDirectory();
        workers_.erase(it);
        if (auto ip = pod_ips_.find(uid); ip != pod_ips_.end()) {
          ips_->Release(ip->second);
          pod_ips_.erase(ip);
        }
        FinalDelete(pod);
      }
      continue;
    }
    if (it != workers_.end()) {
      if (it->second->Finished() && it->second->Terminal()) {
        workers_.erase(it);
        finished_.insert(uid);
        if (auto ip = pod_ips_.find(uid); ip != pod_ips_.end()) {
          ips_->Release(ip->second);
          pod_ips_.erase(ip);
        }
      }
      continue;
    }
    if (finished_.count(uid) != 0) continue;
    std::string phase = pod.value("status", Json::object()).value("phase", "");
    if (phase == "Succeeded" || phase == "Failed") continue;
    std::string ip = AllocatePodIp(pod);
    if (ip.empty()) {
      spdlog::error("node agent: no free address in {} for pod {}", options_.pod_block,
                    meta::Key(pod).ToString());
      continue;
    }
    workers_[uid] = std::make_unique<PodWorker>(client_, options_, pod, ip);
  }
  // Pods gone from the API (deleted without a grace period, or no longer ours): stop them.
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (seen.count(it->first) != 0) {
      ++it;
      continue;
    }
    it->second->RequestStop(options_.max_grace_period);
    if (!it->second->Finished()) {
      ++it;
      continue;
    }
    it->second->RemovePodDirectory();
    if (auto ip = pod_ips_.find(it->first); ip != pod_ips_.end()) {
      ips_->Release(ip->second);
      pod_ips_.erase(ip);
    }
    it = workers_.erase(it);
  }
  for (auto it = finished_.begin(); it != finished_.end();) {
    it = seen.count(*it) != 0 ? std::next(it) : finished_.erase(it);
  }
  if (options_.bind_claims) BindClaims();
}

void NodeAgent::BindClaims() {
  ListOptions list;
  list.label_selector = ManagedSelector();
  auto claims = client_.ListAll(resources::kPersistentVolumeClaim, "", list);
  if (!claims.ok()) {
    spdlog::warn("node agent: listing claims: {}", claims.status().message());
    return;
  }
  for (const Json& pvc : claims->items) {
    if (meta::IsBeingDeleted(pvc) || SnapshotDriver::ProvisionsClaim(pvc)) continue;
    fs::path dir = options_.state_dir / "volumes" / meta::Namespace(pvc) / meta::Name(pvc);
    Status made = MakeDirectory(dir, kTraversableDir);
    if (!made.ok()) {
      spdlog::warn("node agent: claim {}: {}", meta::Key(pvc).ToString(), made.message());
      continue;
    }
    if (pvc.value("status", Json::object()).value("phase", "") == "Bound") continue;
    const Json spec = pvc.value("spec", Json::object());
    Json capacity = spec.value("resources", Json::object()).value("requests", Json::object());
    Json status = {{"phase", "Bound"},
                   {"accessModes", spec.value("accessModes", Json::array({"ReadWriteOnce"}))},
                   {"capacity", capacity}};
    PatchOptions options;
    options.subresource = "status";
    auto patched = client_.Patch(resources::kPersistentVolumeClaim, meta::Key(pvc),
                                 PatchType::kMerge, {{"status", status}}, options);
    if (!patched.ok() && patched.status().code() != Code::kNotFound) {
      spdlog::warn("node agent: binding claim {}: {}", meta::Key(pvc).ToString(),
                   patched.status().message());
    }
  }
}

}  // namespace petrel
