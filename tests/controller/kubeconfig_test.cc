#include "controller/kubeconfig.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace petrel {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

class KubeconfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/petrel-kubeconfig-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& content) {
    std::string path = dir_ + "/" + name;
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << content;
    return path;
  }

  std::string dir_;
};

// "-----BEGIN CERTIFICATE-----\nCA\n" in base64
constexpr const char* kCaData = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkNBCg==";

constexpr const char* kTwoContexts = R"(
apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: prod
  cluster:
    server: https://10.1.2.3:6443
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkNBCg==
- name: dev
  cluster:
    server: https://dev.example:443
    insecure-skip-tls-verify: true
users:
- name: ops
  user:
    token: prod-token
- name: me
  user:
    tokenFile: secrets/token
contexts:
- name: prod
  context: {cluster: prod, user: ops, namespace: databases}
- name: dev
  context: {cluster: dev, user: me}
)";

TEST_F(KubeconfigTest, CurrentContextWithTokenFileRelativeToTheKubeconfig) {
  Write("secrets/token", "file-token\n");
  std::string path = Write("config", kTwoContexts);
  auto c = LoadKubeconfigFiles({path});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://dev.example:443");
  EXPECT_TRUE(c->insecure_skip_tls_verify);
  EXPECT_EQ(c->ca_pem, "");
  EXPECT_EQ(c->token, "");
  EXPECT_EQ(c->token_file, dir_ + "/secrets/token");
  EXPECT_EQ(c->namespace_, "default");
  EXPECT_THAT(c->source, HasSubstr("\"dev\""));
}

TEST_F(KubeconfigTest, NamedContextWithCaDataTokenAndNamespace) {
  std::string path = Write("config", kTwoContexts);
  Write("secrets/token", "x");
  auto c = LoadKubeconfigFiles({path}, "prod");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://10.1.2.3:6443");
  EXPECT_EQ(c->ca_pem, "-----BEGIN CERTIFICATE-----\nCA\n");
  EXPECT_FALSE(c->insecure_skip_tls_verify);
  EXPECT_EQ(c->token, "prod-token");
  EXPECT_EQ(c->namespace_, "databases");
}

TEST_F(KubeconfigTest, CertificatesFromFilesAndFromData) {
  Write("pki/ca.crt", "CA FROM FILE");
  Write("pki/client.crt", "CERT FROM FILE");
  std::string path = Write("config", std::string(R"(
current-context: c
clusters:
- name: k
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: pki/ca.crt}
users:
- name: u
  user:
    client-certificate: pki/client.crt
    client-key-data: )") + kCaData + R"(
contexts:
- name: c
  context: {cluster: k, user: u}
)");
  auto c = LoadKubeconfigFiles({path});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ca_pem, "CA FROM FILE");
  EXPECT_EQ(c->client_cert_pem, "CERT FROM FILE");
  EXPECT_EQ(c->client_key_pem, "-----BEGIN CERTIFICATE-----\nCA\n");
}

TEST_F(KubeconfigTest, MergesKubeconfigListFirstDefinitionWins) {
  std::string a = Write("a", R"(
current-context: ctx
clusters:
- name: k
  cluster: {server: "https://first:1"}
)");
  std::string b = Write("b", R"(
current-context: other
clusters:
- name: k
  cluster: {server: "https://second:2"}
users:
- name: u
  user: {token: from-b}
contexts:
- name: ctx
  context: {cluster: k, user: u, namespace: ns-b}
)");
  ::setenv("KUBECONFIG", (dir_ + "/missing:" + a + ":" + b).c_str(), 1);
  auto c = LoadKubeconfig();
  ::unsetenv("KUBECONFIG");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://first:1");
  EXPECT_EQ(c->token, "from-b");
  EXPECT_EQ(c->namespace_, "ns-b");
}

TEST_F(KubeconfigTest, ErrorsSayWhatIsMissingAndWhere) {
  struct Case {
    std::string name;
    std::string yaml;
    std::string context;
    Code code;
    std::vector<std::string> message_has;
  };
  const std::vector<Case> cases = {
      {"no current context", "clusters: []\n", "", Code::kInvalid, {"no current-context"}},
      {"unknown context",
       "contexts:\n- name: a\n  context: {cluster: k}\n", "b", Code::kNotFound,
       {"context \"b\" not found", "known: a"}},
      {"undefined cluster",
       "current-context: a\ncontexts:\n- name: a\n  context: {cluster: k}\n", "",
       Code::kNotFound, {"cluster \"k\"", "not defined"}},
      {"cluster without server",
       "current-context: a\nclusters:\n- name: k\n  cluster: {insecure-skip-tls-verify: true}\n"
       "contexts:\n- name: a\n  context: {cluster: k}\n",
       "", Code::kInvalid, {"cluster \"k\" has no \"server\""}},
      {"bad base64",
       "current-context: a\nclusters:\n- name: k\n  cluster: {server: 'https://h', "
       "certificate-authority-data: '!!notbase64'}\ncontexts:\n- name: a\n  context: {cluster: "
       "k}\n",
       "", Code::kInvalid, {"certificate-authority-data", "base64"}},
      {"missing CA file",
       "current-context: a\nclusters:\n- name: k\n  cluster: {server: 'https://h', "
       "certificate-authority: nope.crt}\ncontexts:\n- name: a\n  context: {cluster: k}\n",
       "", Code::kNotFound, {"nope.crt", "cluster \"k\""}},
      {"certificate without key",
       "current-context: a\nclusters:\n- name: k\n  cluster: {server: 'https://h'}\nusers:\n- "
       "name: u\n  user: {client-certificate-data: " + std::string(kCaData) +
           "}\ncontexts:\n- name: a\n  context: {cluster: k, user: u}\n",
       "", Code::kInvalid, {"user \"u\"", "no client-key"}},
      {"exec plugin",
       "current-context: a\nclusters:\n- name: k\n  cluster: {server: 'https://h'}\nusers:\n- "
       "name: u\n  user: {exec: {command: aws}}\ncontexts:\n- name: a\n  context: {cluster: k, "
       "user: u}\n",
       "", Code::kInvalid, {"exec", "token"}},
      {"missing token file",
       "current-context: a\nclusters:\n- name: k\n  cluster: {server: 'https://h'}\nusers:\n- "
       "name: u\n  user: {tokenFile: /nonexistent/token}\ncontexts:\n- name: a\n  context: "
       "{cluster: k, user: u}\n",
       "", Code::kNotFound, {"/nonexistent/token"}},
      {"server without scheme",
       "current-context: a\nclusters:\n- name: k\n  cluster: {server: 'h:6443'}\n"
       "contexts:\n- name: a\n  context: {cluster: k}\n",
       "", Code::kInvalid, {"https://"}},
      {"insecure flag not a bool",
       "current-context: a\nclusters:\n- name: k\n  cluster: {server: 'https://h', "
       "insecure-skip-tls-verify: maybe}\ncontexts:\n- name: a\n  context: {cluster: k}\n",
       "", Code::kInvalid, {"insecure-skip-tls-verify must be true or false"}},
      {"not yaml", "clusters: [unclosed\n", "", Code::kInvalid, {"not valid YAML"}},
  };
  for (const auto& c : cases) {
    std::string path = Write("config", c.yaml);
    auto r = LoadKubeconfigFiles({path}, c.context);
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.status().code(), c.code) << c.name << ": " << r.status().ToString();
    EXPECT_THAT(r.status().message(), HasSubstr(path)) << c.name;
    for (const auto& want : c.message_has) {
      EXPECT_THAT(r.status().message(), HasSubstr(want)) << c.name;
    }
  }
}

TEST_F(KubeconfigTest, NoFileAtAllNamesThePathsTried) {
  auto r = LoadKubeconfigFiles({dir_ + "/a", dir_ + "/b"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_THAT(r.status().message(), AllOf(HasSubstr(dir_ + "/a"), HasSubstr(dir_ + "/b")));
}

TEST_F(KubeconfigTest, TokensNeverAppearInErrors) {
  std::string path = Write("config", R"(
current-context: a
clusters:
- name: k
  cluster: {server: "https://h", certificate-authority: missing.crt}
users:
- name: u
  user: {token: s3cr3t-token}
contexts:
- name: a
  context: {cluster: k, user: u}
)");
  auto r = LoadKubeconfigFiles({path});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr("s3cr3t")));
}

class InClusterTest : public KubeconfigTest {
 protected:
  void TearDown() override {
    ::unsetenv("KUBERNETES_SERVICE_HOST");
    ::unsetenv("KUBERNETES_SERVICE_PORT");
    KubeconfigTest::TearDown();
  }
};

TEST_F(InClusterTest, ReadsTheServiceAccountMount) {
  Write("sa/token", "sa-token\n");
  Write("sa/ca.crt", "SA CA");
  Write("sa/namespace", "petrel-system\n");
  ::setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto c = LoadInClusterConfig(dir_ + "/sa");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://10.0.0.1:443");
  EXPECT_EQ(c->token_file, dir_ + "/sa/token");
  EXPECT_EQ(c->ca_pem, "SA CA");
  EXPECT_EQ(c->namespace_, "petrel-system");

  ::setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  c = LoadInClusterConfig(dir_ + "/sa");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->server, "https://[fd00::1]:443");
}

TEST_F(InClusterTest, OutsideAPodOrWithoutTokenIsAClearError) {
  auto r = LoadInClusterConfig(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("KUBERNETES_SERVICE_HOST"));

  ::setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  r = LoadInClusterConfig(dir_ + "/nothing");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr(dir_ + "/nothing/token"));
}


}  // namespace
}  // namespace petrel
