// How the local node agent turns a Pod into local processes, as a pure function: which
// argv, environment and working directory each container gets, and how its readiness is
// probed. The agent (node_agent.h) does the I/O: it resolves volumes to directories and
// Secret/ConfigMap references to values, then calls PlanPod.
//
// There are no images and no mount namespaces here, so two substitutions stand in for them:
// - Commands: a container's command[0] named `petrel` (bare or any path ending in /petrel)
//   runs the agent's own petrel binary; other commands run from the host as they are. A
//   container without a command cannot run (an image's entrypoint is unknown).
// - Mounts: every volumeMounts[].mountPath is rewritten to its volume's host directory
//   wherever it appears as a path prefix in args, command, env values and workingDir
//   (e.g. "--data=/var/lib/postgresql/data/pgdata" becomes
//   "--data=<state>/volumes/default/db-1/pgdata"). A program that builds such paths at run
//   time from constants of its own would not see the substitution.
//
// Environment: a minimal host base (PATH, HOME, LANG, LC_ALL, TZ, TMPDIR when set), then
// HOSTNAME=<pod name>, then the container's env in order: `value` with $(VAR) expansion as the
// kubelet does it, valueFrom.secretKeyRef / configMapKeyRef (optional honoured), fieldRef for
// metadata.name, metadata.namespace, metadata.uid, spec.nodeName, status.podIP,
// status.hostIP, metadata.labels['k'], metadata.annotations['k']; envFrom secretRef and
// configMapRef.
//
// Thread-safety: pure functions.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/object.h"
#include "core/status.h"

namespace petrel {

enum class RestartPolicy { kAlways, kOnFailure, kNever };

struct ProbePlan {
  enum class Kind { kNone, kHttpGet, kTcpSocket };
  Kind kind = Kind::kNone;
  std::string host;  // the pod IP unless the probe names a host
  uint16_t port = 0;
  std::string path = "/";
  std::chrono::seconds initial_delay{0};
  std::chrono::seconds period{10};   // liveness only: readiness is polled every ~1 s
  std::chrono::seconds timeout{1};
  int failure_threshold = 3;
  int success_threshold = 1;
};

struct ContainerPlan {
  std::string name;
  std::string image;
  std::vector<std::string> argv;  // argv[0] is absolute or to be resolved on PATH
  std::vector<std::pair<std::string, std::string>> env;  // in order, later wins
  std::string working_dir;        // "" = the pod's own directory
  ProbePlan readiness;
  ProbePlan liveness;  // failing failureThreshold times in a row restarts the container
};

struct PodPlan {
  std::vector<ContainerPlan> init_containers;  // run one after another to completion
  std::vector<ContainerPlan> containers;
  RestartPolicy restart_policy = RestartPolicy::kAlways;
  std::chrono::seconds grace_period{30};
};

// What the agent resolved for one Pod.
struct PodEnvironment {
  std::string pod_ip;
  std::string host_ip;
  std::string petrel_binary;  // absolute path of the binary `petrel` commands run
  // Volume name -> host directory (PVC directory, emptyDir, materialised secret, ...).
  std::map<std::string, std::string> volume_dirs;
  // The host environment entries passed through (see the header comment).
  std::vector<std::pair<std::string, std::string>> base_env;
  // A key of a Secret or ConfigMap in the Pod's namespace. NotFound when the object or key is
  // missing. Values never appear in returned messages.
  std::function<Result<std::string>(const std::string& secret, const std::string& key)>
      secret_value;
  std::function<Result<std::string>(const std::string& config_map, const std::string& key)>
      config_map_value;
  // Every key of a Secret / ConfigMap (for envFrom); NotFound when missing.
  std::function<Result<std::map<std::string, std::string>>(const std::string& name)> secret_data;
  std::function<Result<std::map<std::string, std::string>>(const std::string& name)>
      config_map_data;
};

// Invalid (with the container and field in the message) when the Pod cannot run here;
// NotFound when a referenced Secret/ConfigMap key is missing (may appear later: retry).
Result<PodPlan> PlanPod(const Json& pod, const PodEnvironment& env);

// Replaces each mount path (longest first) where it appears as a whole path prefix: at the
// start of `text` or after one of ` =:,;'"`, and followed by the end, '/', or one of those.
std::string RewriteMountPaths(const std::string& text,
                              const std::vector<std::pair<std::string, std::string>>& mounts);

// Kubernetes $(VAR) expansion: defined names are replaced, $$ escapes a '$', anything else is
// left as written.
std::string ExpandEnvReferences(const std::string& text,
                                const std::map<std::string, std::string>& vars);

}  // namespace petrel
