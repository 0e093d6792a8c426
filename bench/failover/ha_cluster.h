// HaCluster: a real 3-instance PostgresCluster for failover measurements and HA end-to-end
// tests, with every piece a separate, killable part:
// - the shared envtest kube-apiserver + etcd (tests/support/envtest.h), one namespace each;
// - `petrel controller` as a child process (so a test can SIGKILL it mid-failover and start
//   it again);
// - the node agent (Pods as local process groups) and the service proxy (Services as
//   loopback listeners, published in the petrel.dev/local-address annotation), in this
//   process, through the same HttpKubeClient.
//
// It also knows how to hurt an instance the way the benchmark's faults do: every process of
// an instance is found from its Pod (status.containerStatuses[].containerID is
// "petrel-local://<pid>" of the container's main process, `petrel instance`) plus all of that
// process's descendants in /proc (postgres runs in its own process group, so the group alone
// is not enough). Freeze = SIGSTOP to all of them, Thaw = SIGCONT, Crash = SIGKILL to all.
//
// Thread-safety: one thread drives an HaCluster; the node agent and proxy run their own
// threads.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench/failover/writer.h"
#include "controller/kube_client.h"
#include "core/object.h"
#include "core/status.h"
#include "local/node_agent.h"
#include "local/service_proxy.h"

namespace petrel {

class Envtest;

enum class ReplicationMode { kAsync, kSync };
const char* ReplicationModeName(ReplicationMode m);  // "async" | "sync"

struct HaClusterOptions {
  std::string petrel_binary;       // the `petrel` to run as controller and instances
  std::string source_dir;          // for crds/*.yaml
  std::filesystem::path work_dir;  // state of the node agent (volumes, logs); must exist
  std::string name = "db";
  int replicas = 3;
  ReplicationMode mode = ReplicationMode::kAsync;
  std::string address_block;  // a free 127.x.y.0/24 (pods lower half, services upper half)
  std::string controller_log_level = "info";
};

// An instance as the API shows it.
struct InstanceView {
  std::string name;
  std::string pod_ip;
  bool ready = false;
  std::optional<pid_t> pid;  // the container's main process (petrel instance)
};

class HaCluster {
 public:
  // Creates a namespace, applies the CRDs, starts node agent, proxy and controller, and
  // creates the PostgresCluster (it does not wait for it: see WaitConverged).
  static Result<std::unique_ptr<HaCluster>> Start(Envtest& env, HaClusterOptions options);
  ~HaCluster();  // stops the controller, proxy and node agent (instances are stopped)
  HaCluster(const HaCluster&) = delete;
  HaCluster& operator=(const HaCluster&) = delete;

  KubeClient& client();
  const std::string& ns() const { return ns_; }
  const HaClusterOptions& options() const { return options_; }

  // The PostgresCluster object ({} when unreadable).
  Json Cluster();
  std::string CurrentPrimary();
  std::vector<InstanceView> Instances();
  std::optional<InstanceView> Instance(const std::string& name);

  // Connection targets (the superuser): the leader Service, an instance's own Service, or
  // an instance's Pod IP directly.
  Result<PgTarget> LeaderTarget();
  Result<PgTarget> InstanceServiceTarget(const std::string& instance);
  Result<PgTarget> PodTarget(const std::string& instance);

  // The backends the leader Service forwards to right now (Pod IPs), as the proxy serves it.
  std::vector<std::string> LeaderBackends();

  // Converged = every member ready (its Pod, and in the controller's status), no primary
  // change in progress, phase Healthy, currentPrimary accepts writes on its Pod IP and streams
  // to every other member, each of which is in recovery. On timeout the Status
  // says which part was missing.
  Status WaitConverged(std::chrono::seconds timeout);
  // The instance, asked directly on its Pod IP, is a primary that accepts a write (`false`
  // for a replica, an unreachable or a fenced instance). Bounded by ~2 s.
  bool AcceptsWrites(const PgTarget& target);
  // Names of instances that answer pg_is_in_recovery() = false on their Pod IP.
  std::vector<std::string> WritablePrimaries();

  // Every process of an instance: its container's main process and all descendants.
  Result<std::vector<pid_t>> InstanceProcesses(const std::string& instance);
  // SIGSTOP every process of the instance (repeated until no unstopped descendant is left).
  Status Freeze(const std::string& instance);
  // SIGCONT the processes frozen by the last Freeze (whichever still exist).
  void Thaw();
  // SIGKILL every process of the instance (`petrel instance`, postgres and its children).
  Status Crash(const std::string& instance);

  // Asks for a switchover the way users do: merge patch of status.targetPrimary.
  Status RequestSwitchover(const std::string& target);

  // The controller process: SIGKILL it, and start a new one.
  void KillController();
  Status StartController();
  bool ControllerRunning();

  // events.k8s.io Events in the namespace, oldest first (reason + note), for diagnostics and
  // for tests that check the story is told.
  std::vector<Json> Events();
  // Text for failure messages: the cluster's status and the recent events.
  std::string Describe();

 private:
  HaCluster(Envtest& env, HaClusterOptions options);
  Status Setup();
  Result<PgTarget> ServiceTarget(const std::string& service);
  Result<std::string> SuperuserPassword();

  Envtest& env_;
  HaClusterOptions options_;
  std::string ns_;
  std::unique_ptr<NodeAgent> agent_;
  std::unique_ptr<ServiceProxy> proxy_;
  pid_t controller_pid_ = -1;
  int controller_starts_ = 0;
  std::vector<pid_t> frozen_;
  std::string password_;  // cached superuser password
};

// Descendants of `root` (root included) from /proc, parents before children.
std::vector<pid_t> ProcessTree(pid_t root);

}  // namespace petrel
