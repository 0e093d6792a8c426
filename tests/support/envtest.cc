#include "tests/support/envtest.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "net/http.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free_all(b); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

std::string ToPem(const std::function<int(BIO*)>& write) {
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get()) != 1) return "";
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

PkeyPtr ReadKeyPem(const std::string& pem) {
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return PkeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

X509Ptr ReadCertPem(const std::string& pem) {
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

bool AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A certificate for `key` with CN=common_name and O=each organization, signed by the issuer
// (self-signed when issuer is null). Returns the PEM, "" on failure.
std::string MakeCertificate(EVP_PKEY* key, const std::string& common_name,
                            const std::vector<std::string>& organizations, bool is_ca,
                            X509* issuer, EVP_PKEY* issuer_key) {
  static std::atomic<long> serial{1};
  X509Ptr cert(X509_new());
  if (!cert) return "";
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7L * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  for (const auto& o : organizations) {
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(o.c_str()), -1, -1, 0);
  }
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  bool ok = is_ca ? AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE") &&
                        AddExtension(cert.get(), signer, NID_key_usage,
                                     "critical,keyCertSign,cRLSign,digitalSignature")
                  : AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE") &&
                        AddExtension(cert.get(), signer, NID_key_usage,
                                     "critical,digitalSignature,keyEncipherment") &&
                        AddExtension(cert.get(), signer, NID_ext_key_usage, "clientAuth");
  if (!ok) return "";
  if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) {
    return "";
  }
  return ToPem([&](BIO* b) { return PEM_write_bio_X509(b, cert.get()); });
}

std::string KeyToPem(EVP_PKEY* key) {
  return ToPem([&](BIO* b) {
    return PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
}

// Directories of earlier runs whose test process died before it could clean up.
void RemoveAbandonedDirs() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/tmp", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("petrel-envtest-", 0) != 0) continue;
    std::ifstream in(entry.path() / "owner.pid");
    long pid = 0;
    if (!(in >> pid) || pid <= 0) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      fs::remove_all(entry.path(), ec);
    }
  }
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) {
    for (auto& b : buf) b = static_cast<unsigned char>(std::rand());
  }
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : buf) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

Status WriteFile(const std::string& path, const std::string& content, mode_t mode = 0600) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) return InternalError("cannot write " + path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return done == content.size() ? Status::Ok() : InternalError("short write to " + path);
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Tail(const std::string& path, size_t bytes = 3000) {
  std::string all = ReadFileOrEmpty(path);
  return all.size() > bytes ? "..." + all.substr(all.size() - bytes) : all;
}

// A free loopback port: bind to port 0, read it back, release it.
Result<uint16_t> FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return InternalError("socket: " + std::string(std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return InternalError("no free loopback port: " + std::string(std::strerror(errno)));
  }
  ::close(fd);
  return static_cast<uint16_t>(ntohs(addr.sin_port));
}

// Starts argv[0] in its own process group, output to `log`, killed if this process dies.
Result<pid_t> Spawn(const std::vector<std::string>& args, const std::string& log,
                    const std::string& input_path = "") {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) return InternalError("cannot open " + log + ": " + std::strerror(errno));
  int in = ::open(input_path.empty() ? "/dev/null" : input_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    ::close(out);
    return InternalError("cannot open stdin for " + args[0]);
  }
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out);
    ::close(in);
    return InternalError("fork: " + std::string(std::strerror(errno)));
  }
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  ::close(out);
  ::close(in);
  return pid;
}

void KillGroup(int* pid) {
  if (*pid <= 0) return;
  ::kill(-*pid, SIGKILL);
  ::kill(*pid, SIGKILL);
  ::waitpid(*pid, nullptr, 0);
  *pid = -1;
}

bool Exited(int pid) {
  int status;
  return ::waitpid(pid, &status, WNOHANG) == pid;
}

Result<std::string> FindAssets() {
  std::string dir;
  const char* env = std::getenv("KUBEBUILDER_ASSETS");
  if (env != nullptr && *env != '\0') {
    dir = env;
  } else {
    const char* src = std::getenv("PETREL_SOURCE_DIR");
    if (src == nullptr || *src == '\0') {
      return UnavailableError(
          "envtest: KUBEBUILDER_ASSETS is not set and PETREL_SOURCE_DIR is unknown; run "
          "`bash scripts/envtest-assets.sh` and export KUBEBUILDER_ASSETS=<its output>");
    }
    std::string cmd = "bash '" + std::string(src) + "/scripts/envtest-assets.sh'";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return UnavailableError("envtest: cannot run " + cmd);
    char buf[4096];
    std::string out;
    while (fgets(buf, sizeof buf, p) != nullptr) out += buf;
    int rc = ::pclose(p);
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    size_t nl = out.rfind('\n');
    dir = nl == std::string::npos ? out : out.substr(nl + 1);
    if (rc != 0 || dir.empty()) {
      return UnavailableError("envtest: `" + cmd + "` failed (exit " + std::to_string(rc) +
                              "); envtest tests need its assets (see docs/envtest.md)");
    }
  }
  for (const char* bin : {"kube-apiserver", "etcd", "kubectl"}) {
    if (::access((dir + "/" + bin).c_str(), X_OK) != 0) {
      return UnavailableError("envtest: " + dir + "/" + bin +
                              " is missing or not executable; rerun scripts/envtest-assets.sh");
    }
  }
  return dir;
}

Status GenerateServiceAccountKeys(const std::string& key_path, const std::string& pub_path) {
  std::unique_ptr<EVP_PKEY, PkeyDeleter> key(EVP_RSA_gen(2048));
  if (!key) return InternalError("envtest: RSA key generation failed");
  std::unique_ptr<BIO, BioDeleter> priv(BIO_new_file(key_path.c_str(), "w"));
  std::unique_ptr<BIO, BioDeleter> pub(BIO_new_file(pub_path.c_str(), "w"));
  if (!priv || !pub) return InternalError("envtest: cannot write service-account keys");
  if (PEM_write_bio_PrivateKey(priv.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
      PEM_write_bio_PUBKEY(pub.get(), key.get()) != 1) {
    return InternalError("envtest: cannot encode service-account keys");
  }
  return Status::Ok();
}

std::mutex g_mu;
Envtest* g_shared = nullptr;
EnvtestOptions g_options;
bool g_started = false;

void StopSharedAtExit() {
  if (g_shared != nullptr) g_shared->Stop();
}

}  // namespace

Status Envtest::Configure(const EnvtestOptions& options) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_started) return InvalidError("envtest: Configure() after the server started");
  g_options = options;
  return Status::Ok();
}

Result<Envtest*> Envtest::Shared() {
  std::lock_guard<std::mutex> lock(g_mu);
  static Status failure;
  if (g_shared != nullptr) return g_shared;
  if (!failure.ok()) return failure;  // do not retry a 10 s start-up in every test
  g_started = true;
  auto env = std::unique_ptr<Envtest>(new Envtest());
  Status s = env->Start(g_options);
  if (!s.ok()) {
    env->Stop();
    failure = s;
    return s;
  }
  g_shared = env.release();  // lives until exit; StopSharedAtExit kills the processes
  std::atexit(StopSharedAtExit);
  return g_shared;
}

Envtest::~Envtest() { Stop(); }

Status Envtest::Start(const EnvtestOptions& options) {
  PETREL_ASSIGN_OR_RETURN(assets_, FindAssets());
  RemoveAbandonedDirs();
  char tmpl[] = "/tmp/petrel-envtest-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return InternalError("envtest: mkdtemp failed");
  dir_ = tmpl;
  PETREL_RETURN_IF_ERROR(WriteFile(dir_ + "/owner.pid", std::to_string(::getpid()) + "\n"));
  std::fprintf(stderr, "envtest: starting etcd and kube-apiserver in %s\n", dir_.c_str());

  users_.push_back({EnvtestUser{"admin", {"system:masters"}}, RandomHex(16)});
  for (const auto& u : options.users) users_.push_back({u, RandomHex(16)});
  std::string tokens;
  for (const auto& [user, token] : users_) {
    std::string groups;
    for (const auto& g : user.groups) groups += (groups.empty() ? "" : ",") + g;
    tokens += token + "," + user.name + "," + user.name + (groups.empty() ? "" : ",\"" + groups + "\"") + "\n";
  }
  PETREL_RETURN_IF_ERROR(WriteFile(dir_ + "/tokens.csv", tokens));
  PETREL_RETURN_IF_ERROR(GenerateServiceAccountKeys(dir_ + "/sa.key", dir_ + "/sa.pub"));
  // A CA for client certificates, so certificate authentication is testable too.
  PkeyPtr ca_key(EVP_RSA_gen(2048));
  if (!ca_key) return InternalError("envtest: RSA key generation failed");
  client_ca_key_pem_ = KeyToPem(ca_key.get());
  client_ca_pem_ = MakeCertificate(ca_key.get(), "envtest-client-ca", {}, true, nullptr, nullptr);
  if (client_ca_pem_.empty() || client_ca_key_pem_.empty()) {
    return InternalError("envtest: cannot make the client CA");
  }
  PETREL_RETURN_IF_ERROR(WriteFile(dir_ + "/client-ca.crt", client_ca_pem_));

  // Ports are picked then bound by the children; a lost race is retried with new ports.
  Status s;
  for (int attempt = 0; attempt < 3; ++attempt) {
    s = StartEtcd();
    if (s.ok()) break;
  }
  PETREL_RETURN_IF_ERROR(s);
  for (int attempt = 0; attempt < 3; ++attempt) {
    PETREL_ASSIGN_OR_RETURN(api_port_, FreePort());
    server_url_ = "https://127.0.0.1:" + std::to_string(api_port_);
    apiserver_args_ = {
        assets_ + "/kube-apiserver",
        "--etcd-servers=" + etcd_url_,
        "--cert-dir=" + dir_ + "/certs",
        "--secure-port=" + std::to_string(api_port_),
        "--insecure-port=0",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        "--authorization-mode=RBAC",
        "--token-auth-file=" + dir_ + "/tokens.csv",
        "--client-ca-file=" + dir_ + "/client-ca.crt",
        "--service-account-issuer=https://kubernetes.default.svc",
        "--service-account-key-file=" + dir_ + "/sa.pub",
        "--service-account-signing-key-file=" + dir_ + "/sa.key",
        "--disable-admission-plugins=ServiceAccount",
        "--watch-cache=false",
        "--endpoint-reconciler-type=none",
    };
    s = StartApiServer();
    if (s.ok()) break;
    KillGroup(&apiserver_pid_);
  }
  PETREL_RETURN_IF_ERROR(s);
  std::fprintf(stderr, "envtest: kube-apiserver ready at %s\n", server_url_.c_str());
  return Status::Ok();
}

Status Envtest::StartEtcd() {
  PETREL_ASSIGN_OR_RETURN(uint16_t client_port, FreePort());
  PETREL_ASSIGN_OR_RETURN(uint16_t peer_port, FreePort());
  if (client_port == peer_port) return UnavailableError("envtest: port picked twice");
  etcd_url_ = "http://127.0.0.1:" + std::to_string(client_port);
  std::string peer = "http://127.0.0.1:" + std::to_string(peer_port);
  std::error_code ec;
  fs::remove_all(dir_ + "/etcd-data", ec);
  PETREL_ASSIGN_OR_RETURN(etcd_pid_,
                          Spawn({assets_ + "/etcd", "--name=envtest",
                                 "--data-dir=" + dir_ + "/etcd-data",
                                 "--listen-client-urls=" + etcd_url_,
                                 "--advertise-client-urls=" + etcd_url_,
                                 "--listen-peer-urls=" + peer,
                                 "--initial-advertise-peer-urls=" + peer,
                                 "--initial-cluster=envtest=" + peer,
                                 "--logger=zap", "--log-outputs=stderr"},
                                dir_ + "/etcd.log"));
  auto give_up = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < give_up) {
    if (Exited(etcd_pid_)) {
      etcd_pid_ = -1;
      return UnavailableError("envtest: etcd exited at start-up; its log:\n" +
                              Tail(dir_ + "/etcd.log"));
    }
    HttpCallOptions o;
    o.timeout = 1s;
    auto r = HttpCall("GET", etcd_url_ + "/health", "", o);
    if (r.ok() && r->status == 200 && r->body.find("true") != std::string::npos) {
      return Status::Ok();
    }
    std::this_thread::sleep_for(100ms);
  }
  KillGroup(&etcd_pid_);
  return UnavailableError("envtest: etcd not healthy within 30 s; its log:\n" +
                          Tail(dir_ + "/etcd.log"));
}

Status Envtest::StartApiServer() {
  PETREL_ASSIGN_OR_RETURN(apiserver_pid_, Spawn(apiserver_args_, dir_ + "/kube-apiserver.log"));
  return WaitApiServerReady();
}

Status Envtest::WaitApiServerReady() {
  auto give_up = std::chrono::steady_clock::now() + 90s;
  const std::string cert = dir_ + "/certs/apiserver.crt";
  while (std::chrono::steady_clock::now() < give_up) {
    if (Exited(apiserver_pid_)) {
      apiserver_pid_ = -1;
      return UnavailableError("envtest: kube-apiserver exited at start-up; its log:\n" +
                              Tail(dir_ + "/kube-apiserver.log"));
    }
    // The server writes its self-signed certificate before it serves.
    if (!client_ && fs::exists(cert)) {
      kubeconfig_path_ = dir_ + "/admin.kubeconfig";
      PETREL_RETURN_IF_ERROR(WriteKubeconfig(kubeconfig_path_, "admin",
                                             "    token: " + users_[0].second + "\n"));
      auto config = LoadKubeconfigFiles({kubeconfig_path_});
      if (!config.ok()) return config.status().Annotate("envtest: own kubeconfig");
      HttpKubeClientOptions o;
      o.request_timeout = 2s;
      o.max_attempts = 1;
      auto c = HttpKubeClient::Create(*config, o);
      if (!c.ok()) return c.status().Annotate("envtest: admin client");
      probe_client_ = std::move(c).value();
    }
    if (probe_client_) {
      auto r = probe_client_->RawGet("/readyz");
      if (r.ok() && *r == "ok") {
        if (!client_) {
          auto config = LoadKubeconfigFiles({kubeconfig_path_});
          auto c = HttpKubeClient::Create(*config);
          if (!c.ok()) return c.status().Annotate("envtest: admin client");
          client_ = std::move(c).value();
        }
        return Status::Ok();
      }
    }
    std::this_thread::sleep_for(200ms);
  }
  return UnavailableError("envtest: kube-apiserver not ready within 90 s; its log:\n" +
                          Tail(dir_ + "/kube-apiserver.log"));
}

Result<std::string> Envtest::KubeconfigWithClientCert(const std::string& user,
                                                      const std::vector<std::string>& groups) {
  PkeyPtr ca_key = ReadKeyPem(client_ca_key_pem_);
  X509Ptr ca = ReadCertPem(client_ca_pem_);
  PkeyPtr key(EVP_RSA_gen(2048));
  if (!ca_key || !ca || !key) return InternalError("envtest: client CA unusable");
  std::string cert = MakeCertificate(key.get(), user, groups, false, ca.get(), ca_key.get());
  if (cert.empty()) return InternalError("envtest: cannot sign a client certificate");
  std::string base = dir_ + "/" + user + "-cert";
  PETREL_RETURN_IF_ERROR(WriteFile(base + ".crt", cert));
  PETREL_RETURN_IF_ERROR(WriteFile(base + ".key", KeyToPem(key.get())));
  std::string path = base + ".kubeconfig";
  PETREL_RETURN_IF_ERROR(WriteKubeconfig(path, user,
                                         "    client-certificate: " + base + ".crt\n"
                                         "    client-key: " + base + ".key\n"));
  return path;
}

Status Envtest::WriteKubeconfig(const std::string& path, const std::string& user,
                                const std::string& credentials) {
  std::string yaml =
      "apiVersion: v1\n"
      "kind: Config\n"
      "clusters:\n"
      "- name: envtest\n"
      "  cluster:\n"
      "    server: " + server_url_ + "\n"
      "    certificate-authority: " + dir_ + "/certs/apiserver.crt\n"
      "users:\n"
      "- name: " + user + "\n"
      "  user:\n" + credentials +
      "contexts:\n"
      "- name: envtest\n"
      "  context:\n"
      "    cluster: envtest\n"
      "    user: " + user + "\n"
      "    namespace: default\n"
      "current-context: envtest\n";
  return WriteFile(path, yaml);
}

HttpKubeClient& Envtest::Client() { return *client_; }

Result<std::unique_ptr<HttpKubeClient>> Envtest::ClientAs(const std::string& token) {
  PETREL_ASSIGN_OR_RETURN(KubeConfig config, LoadKubeconfigFiles({kubeconfig_path_}));
  config.token = token;
  return HttpKubeClient::Create(config);
}

Result<std::string> Envtest::TokenFor(const std::string& user) const {
  for (const auto& [u, token] : users_) {
    if (u.name == user) return token;
  }
  return NotFoundError("envtest: no user \"" + user + "\"; add it with Envtest::Configure");
}

Result<std::string> Envtest::KubeconfigFor(const std::string& user) {
  PETREL_ASSIGN_OR_RETURN(std::string token, TokenFor(user));
  std::string path = dir_ + "/" + user + ".kubeconfig";
  PETREL_RETURN_IF_ERROR(WriteKubeconfig(path, user, "    token: " + token + "\n"));
  return path;
}

Result<std::string> Envtest::NewNamespace(const std::string& prefix) {
  static std::atomic<int> counter{0};
  std::string name = prefix + "-" + std::to_string(++counter) + "-" + RandomHex(3);
  Json ns = {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", name}}}};
  auto created = client_->Create(resources::kNamespace, ns);
  if (!created.ok()) return created.status().Annotate("envtest: creating namespace " + name);
  return name;
}

KubectlResult Envtest::Kubectl(const std::vector<std::string>& args, const std::string& input) {
  return KubectlWith(kubeconfig_path_, args, input);
}

KubectlResult Envtest::KubectlWith(const std::string& kubeconfig,
                                   const std::vector<std::string>& args,
                                   const std::string& input) {
  static std::atomic<int> counter{0};
  KubectlResult result;
  std::string base = dir_ + "/kubectl-" + std::to_string(++counter);
  std::vector<std::string> argv = {assets_ + "/kubectl", "--kubeconfig=" + kubeconfig};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string input_path;
  if (!input.empty()) {
    input_path = base + ".in";
    if (!WriteFile(input_path, input).ok()) {
      result.err = "envtest: cannot write kubectl input";
      return result;
    }
  }
  // stdout and stderr apart: a shell keeps them apart for us.
  std::string script = "exec \"$@\" 2>'" + base + ".err'";
  std::vector<std::string> shell = {"/bin/sh", "-c", script, "kubectl"};
  shell.insert(shell.end(), argv.begin(), argv.end());
  auto pid = Spawn(shell, base + ".out", input_path);
  if (!pid.ok()) {
    result.err = pid.status().ToString();
    return result;
  }
  auto give_up = std::chrono::steady_clock::now() + 60s;
  int status = 0;
  bool done = false;
  while (std::chrono::steady_clock::now() < give_up) {
    if (::waitpid(*pid, &status, WNOHANG) == *pid) {
      done = true;
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  if (!done) {
    int p = *pid;
    KillGroup(&p);
    result.err = "envtest: kubectl did not finish within 60 s\n";
  } else {
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  result.out = ReadFileOrEmpty(base + ".out");
  result.err += ReadFileOrEmpty(base + ".err");
  std::error_code ec;
  for (const char* ext : {".out", ".err", ".in"}) fs::remove(base + ext, ec);
  return result;
}

Status Envtest::RestartApiServer() {
  KillGroup(&apiserver_pid_);
  return StartApiServer();
}

Status Envtest::CompactEtcd() {
  // etcd 3.4 serves its v3 API as JSON through the gRPC gateway on the client port.
  HttpCallOptions o;
  o.timeout = 10s;
  auto range = HttpCall("POST", etcd_url_ + "/v3/kv/range", R"({"key":"AA=="})", o);
  if (!range.ok()) return range.status().Annotate("envtest: reading etcd's revision");
  Json j = Json::parse(range->body, nullptr, false);
  if (range->status != 200 || !j.is_object() || !j.contains("header")) {
    return InternalError("envtest: etcd range answered " + std::to_string(range->status) + ": " +
                         range->body);
  }
  std::string revision = j["header"].value("revision", "");
  Json body = {{"revision", revision}, {"physical", true}};
  auto compact = HttpCall("POST", etcd_url_ + "/v3/kv/compaction", body.dump(), o);
  if (!compact.ok()) return compact.status().Annotate("envtest: compacting etcd");
  if (compact->status != 200) {
    return InternalError("envtest: etcd compaction answered " + std::to_string(compact->status) +
                         ": " + compact->body);
  }
  return Status::Ok();
}

void Envtest::Stop() {
  client_.reset();
  probe_client_.reset();
  KillGroup(&apiserver_pid_);
  KillGroup(&etcd_pid_);
  if (!dir_.empty() && std::getenv("PETREL_KEEP_ENVTEST") == nullptr) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  dir_.clear();
}

std::string SourcePath(const std::string& path) {
  const char* dir = std::getenv("PETREL_SOURCE_DIR");
  return std::string(dir ? dir : ".") + "/" + path;
}

void EnvtestTest::InstallOnce(const std::vector<std::string>& paths,
                              const std::vector<std::string>& established) {
  static std::mutex mu;
  static std::set<std::vector<std::string>> installed;
  std::vector<std::string> key = paths;
  key.insert(key.end(), established.begin(), established.end());
  std::lock_guard<std::mutex> l(mu);
  if (installed.count(key)) return;
  for (const auto& path : paths) {
    auto r = env().Kubectl({"apply", "-f", SourcePath(path)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::vector<std::string> wait = {"wait", "--for", "condition=established", "--timeout=60s"};
  wait.insert(wait.end(), established.begin(), established.end());
  auto r = env().Kubectl(wait);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  installed.insert(key);
}

void EnvtestTest::SetUp() {
  auto env = Envtest::Shared();
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  env_ = *env;
  auto ns = env_->NewNamespace();
  ASSERT_TRUE(ns.ok()) << ns.status().ToString();
  ns_ = *ns;
}

}  // namespace petrel
