// NodeAgent: a minimal kubelet (plus scheduler and volume provisioner) that runs Petrel's
// Pods as local processes. It works against any KubeClient — the LocalStore of
// `petrel local`, or a real kube-apiserver through HttpKubeClient, which is how end-to-end
// tests get running Postgres pods without a container runtime.
//
// What it does:
// - Watches Pods labelled app.kubernetes.io/managed-by=petrel (never any other Pod), binds
//   unbound ones to its node (pods/binding), and runs those bound to it.
// - Gives each Pod its own loopback address from `pod_block` (reusing the one in status.podIP
//   when it is still free, so addresses survive an agent restart).
// - Runs each container as a Process (own process group) as described in pod_plan.h: the
//   `petrel` command runs the agent's own binary, env is resolved like the kubelet does, and
//   mount paths are rewritten to host directories (the agent's substitute for mounts).
//   Volumes: persistentVolumeClaim -> <state>/volumes/<ns>/<claim> (outlives the Pod),
//   emptyDir -> <state>/pods/<ns>/<pod uid>/volumes/<name>, secret and configMap -> files
//   written there (defaultMode honoured), hostPath -> the path itself.
// - stdout/stderr of every container go to <state>/logs/<ns>/<pod>.log.
// - Reports status: phase Pending -> Running -> Succeeded/Failed, podIP, hostIP, startTime,
//   containerStatuses (state, restartCount, ready), conditions PodScheduled, Initialized,
//   ContainersReady and Ready. Readiness comes from the readinessProbe (httpGet or tcpSocket
//   on the pod IP), polled every `probe_period`; a container without one is ready once
//   running. A livenessProbe (httpGet or tcpSocket, every periodSeconds) failing
//   failureThreshold times in a row stops the container (SIGTERM, grace, SIGKILL).
// - Restarts exited containers per restartPolicy with exponential backoff.
// - On Pod deletion: SIGTERM to each container's main process, up to the grace period
//   (deletionGracePeriodSeconds, else terminationGracePeriodSeconds, default 30, capped at
//   `max_grace_period`), then SIGKILL to its group; then, for a Pod still present with a
//   deletionTimestamp, the final Delete (grace 0), as the kubelet does.
// - Binds PersistentVolumeClaims labelled managed-by=petrel: creates their directory and sets
//   status Bound with capacity = the storage request (there is no provisioner here). Claims
//   with a VolumeSnapshot dataSource are restored and bound by the SnapshotDriver it runs
//   (snapshot_driver.h), which also takes the VolumeSnapshots of the claims it hosts; Pods
//   using a claim that is not bound yet wait (Pending).
// - Stop() stops every container (SIGTERM, grace, SIGKILL) and leaves the Pods in the API.
//
// Thread-safety: Start/Stop from one thread; the agent runs its own threads (one loop plus one
// per Pod).
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "controller/kube_client.h"
#include "local/addresses.h"
#include "local/pod_plan.h"
#include "local/watch_loop.h"

namespace petrel {

inline constexpr const char* kManagedByLabel = "app.kubernetes.io/managed-by";
inline constexpr const char* kManagedByValue = "petrel";

struct NodeAgentOptions {
  std::string node_name = "petrel-local";
  std::string pod_block = "127.0.10.0/25";
  std::filesystem::path state_dir;  // volumes/, pods/, logs/ (required)
  std::string petrel_binary;        // "" = this process's own executable
  std::string host_ip = "127.0.0.1";
  std::chrono::seconds max_grace_period{60};
  bool bind_claims = true;          // see the header comment
  std::chrono::milliseconds resync{1000};
  std::chrono::milliseconds probe_period{1000};
  std::chrono::milliseconds restart_backoff_initial{1000};
  std::chrono::milliseconds restart_backoff_max{30000};
};

class PodWorker;
class SnapshotDriver;

class NodeAgent {
 public:
  NodeAgent(KubeClient& client, NodeAgentOptions options);
  ~NodeAgent();
  NodeAgent(const NodeAgent&) = delete;
  NodeAgent& operator=(const NodeAgent&) = delete;

  // Checks the options, creates the state sub-directories and starts the loop.
  Status Start();
  // Stops every Pod's processes (in parallel, each within its grace period) and the loop.
  void Stop();

  const NodeAgentOptions& options() const { return options_; }

 private:
  void Reconcile();
  void BindClaims();
  void FinalDelete(const Json& pod);
  std::string AllocatePodIp(const Json& pod);

  KubeClient& client_;
  NodeAgentOptions options_;
  std::unique_ptr<AddressAllocator> ips_;
  std::unique_ptr<SnapshotDriver> snapshots_;  // VolumeSnapshots and restores (snapshot_driver.h)
  std::unique_ptr<WatchLoop> loop_;  // runs Reconcile (local/watch_loop.h)
  bool stopped_ = false;

  // Owned by the loop thread.
  std::map<std::string, std::unique_ptr<PodWorker>> workers_;  // by pod uid
  std::map<std::string, std::string> pod_ips_;                 // uid -> address
  std::set<std::string> finished_;  // uids whose Pod reached Succeeded/Failed
};

// One probe attempt with a bounded timeout: HTTP GET answered 200-399, or a TCP connect.
bool ProbeOnce(const ProbePlan& probe, std::chrono::milliseconds timeout);

}  // namespace petrel
