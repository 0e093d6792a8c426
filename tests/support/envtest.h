// Envtest: a real kube-apiserver 1.20 and etcd on loopback for tests, one per test binary.
//
// Assets come from $KUBEBUILDER_ASSETS, or from `bash $PETREL_SOURCE_DIR/scripts/
// envtest-assets.sh` when it is unset; if neither yields kube-apiserver, etcd and kubectl,
// Shared() fails with a message saying so (tests then fail, never skip).
//
// The server starts on first use (about 10 s) and is shared by every test of the binary, so
// each test works in its own namespace (NewNamespace). RBAC is on; the admin user has a token
// in group system:masters, and further users (EnvtestOptions::users) have tokens but no
// permissions until a test grants them. Service-account keys are generated at start-up, the
// ServiceAccount admission plugin is off (no controller-manager creates tokens), and the watch
// cache is off so a watch reads etcd directly: resuming after a restart works and compacting
// etcd (CompactEtcd) makes old resourceVersions Gone, as on a long-running cluster.
//
// Processes run in their own process groups with PR_SET_PDEATHSIG, and are killed at exit,
// so a crashing or failing test leaves no etcd or kube-apiserver behind. Logs go to
// <dir>/etcd.log and <dir>/kube-apiserver.log (the directory is printed at start).
//
// Thread-safety: Shared() must first be called from the main thread (the children's
// death signal follows the thread that started them); afterwards all methods are safe from any
// thread, except that RestartApiServer() and Stop() must not race with each other.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "controller/http_kube_client.h"
#include "core/status.h"

namespace petrel {

struct EnvtestUser {
  std::string name;
  std::vector<std::string> groups;
};

struct EnvtestOptions {
  // Users with bearer tokens besides "admin" (system:masters).
  std::vector<EnvtestUser> users = {{"alice", {}}, {"bob", {}}, {"viewer", {"viewers"}}};
};

struct KubectlResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

class Envtest {
 public:
  // Options for the shared server; only before its first use (else Invalid).
  static Status Configure(const EnvtestOptions& options);
  // The process-wide server, started on first call.
  static Result<Envtest*> Shared();

  ~Envtest();
  Envtest(const Envtest&) = delete;
  Envtest& operator=(const Envtest&) = delete;

  // The admin client (shared; thread-safe).
  HttpKubeClient& Client();
  // A new client that authenticates with `token` (see TokenFor).
  Result<std::unique_ptr<HttpKubeClient>> ClientAs(const std::string& token);
  // The bearer token of a configured user ("admin" included).
  Result<std::string> TokenFor(const std::string& user) const;

  // An admin kubeconfig file for kubectl and HttpKubeClient.
  const std::string& KubeconfigPath() const { return kubeconfig_path_; }
  // A kubeconfig file for a configured user (written on first request).
  Result<std::string> KubeconfigFor(const std::string& user);
  // A kubeconfig that authenticates with a fresh client certificate (CN=user, O=groups) signed
  // by the server's client CA; certificate and key are files next to it.
  Result<std::string> KubeconfigWithClientCert(const std::string& user,
                                               const std::vector<std::string>& groups);
  // PEM of a CA the server does not trust for serving (handy to test CA verification).
  const std::string& UntrustedCaPem() const { return client_ca_pem_; }
  const std::string& ServerUrl() const { return server_url_; }
  const std::string& EtcdUrl() const { return etcd_url_; }
  const std::string& AssetsDir() const { return assets_; }
  const std::string& Dir() const { return dir_; }

  // Creates a namespace named "<prefix>-<n>-<random>", unique for this process and run.
  Result<std::string> NewNamespace(const std::string& prefix = "test");

  // Runs kubectl 1.20 from the assets with the admin kubeconfig (or `kubeconfig`), stdin from
  // `input`; killed after 60 s.
  KubectlResult Kubectl(const std::vector<std::string>& args, const std::string& input = "");
  KubectlResult KubectlWith(const std::string& kubeconfig, const std::vector<std::string>& args,
                            const std::string& input = "");

  // SIGKILLs kube-apiserver and starts it again on the same port against the same etcd;
  // returns once /readyz answers ok.
  Status RestartApiServer();
  // Compacts etcd's history up to its current revision: watches and lists from any older
  // resourceVersion then get 410 Gone.
  Status CompactEtcd();

  // Kills both processes and removes the directory. Idempotent; also runs at exit.
  void Stop();

 private:
  Envtest() = default;
  Status Start(const EnvtestOptions& options);
  Status StartEtcd();
  Status StartApiServer();
  Status WaitApiServerReady();
  // `credentials`: the indented YAML lines of the user entry.
  Status WriteKubeconfig(const std::string& path, const std::string& user,
                         const std::string& credentials);

  std::string assets_;
  std::string dir_;
  std::string etcd_url_;
  std::string server_url_;
  uint16_t api_port_ = 0;
  int etcd_pid_ = -1;
  int apiserver_pid_ = -1;
  std::vector<std::string> apiserver_args_;
  std::vector<std::pair<EnvtestUser, std::string>> users_;  // with tokens; admin first
  std::string kubeconfig_path_;
  std::string client_ca_pem_;
  std::string client_ca_key_pem_;
  std::unique_ptr<HttpKubeClient> client_;
  std::unique_ptr<HttpKubeClient> probe_client_;  // short timeouts, no retries: for /readyz
};

// A path in Petrel's source tree (ctest sets PETREL_SOURCE_DIR; else the working directory).
std::string SourcePath(const std::string& path);

// A test fixture with the shared Envtest and a fresh namespace per test.
class EnvtestTest : public ::testing::Test {
 protected:
  void SetUp() override;
  Envtest& env() { return *env_; }
  KubeClient& client() { return env_->Client(); }
  // Applies `paths` (files or directories of Petrel's source tree) and waits until the CRDs
  // `established` (e.g. "crd/postgresclusters.petrel.dev") are served: once per test process
  // for the same arguments (the apiserver is shared).
  void InstallOnce(const std::vector<std::string>& paths,
                   const std::vector<std::string>& established);

  Envtest* env_ = nullptr;
  std::string ns_;
};

}  // namespace petrel
