// HttpKubeClient against a real kube-apiserver 1.20 + etcd (tests/support/envtest.h).
#include <atomic>
#include <future>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "controller/http_kube_client.h"
#include "tests/support/envtest.h"

namespace petrel {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

const ResourceType kWidget{"petrel.test", "v1", "widgets", "Widget", true};

Json ConfigMap(const std::string& ns, const std::string& name, Json data = Json::object()) {
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata", {{"namespace", ns}, {"name", name}, {"labels", {{"test", "yes"}}}}},
          {"data", data}};
}

Json Widget(const std::string& ns, const std::string& name, int size) {
  return {{"apiVersion", "petrel.test/v1"},
          {"kind", "Widget"},
          {"metadata", {{"namespace", ns}, {"name", name}}},
          {"spec", {{"size", size}}}};
}

// Installs the Widget CRD once per process and waits until the API serves it.
void InstallWidgetCrd(Envtest& env, const std::string& ns) {
  static bool installed = false;
  if (installed) return;
  Json crd = Json::parse(R"({
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.petrel.test"},
    "spec": {
      "group": "petrel.test", "scope": "Namespaced",
      "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
      "versions": [{
        "name": "v1", "served": true, "storage": true,
        "subresources": {"status": {}},
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
          "spec": {"type": "object", "properties": {
            "size": {"type": "integer", "minimum": 1},
            "color": {"type": "string"}}},
          "status": {"type": "object", "properties": {
            "phase": {"type": "string"},
            "observedGeneration": {"type": "integer"}}}}}}
      }]
    }})");
  auto created = env.Client().Create(resources::kCustomResourceDefinition, crd);
  ASSERT_TRUE(created.ok() || created.status().code() == Code::kAlreadyExists)
      << created.status().ToString();
  // Established, then actually served (discovery lags a little behind the condition).
  auto give_up = std::chrono::steady_clock::now() + 30s;
  while (true) {
    auto list = env.Client().List(kWidget, ns, {});
    if (list.ok()) break;
    ASSERT_LT(std::chrono::steady_clock::now(), give_up)
        << "Widget CRD not served: " << list.status().ToString();
    std::this_thread::sleep_for(200ms);
  }
  installed = true;
}

class HttpKubeClientEnvtest : public EnvtestTest {};

TEST_F(HttpKubeClientEnvtest, ConfigMapCrudWithOptimisticConcurrency) {
  auto created = client().Create(resources::kConfigMap, ConfigMap(ns_, "cm", {{"k", "v1"}}));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_FALSE(meta::Uid(*created).empty());

  auto again = client().Create(resources::kConfigMap, ConfigMap(ns_, "cm"));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kAlreadyExists);

  auto got = client().Get(resources::kConfigMap, {ns_, "cm"});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)["data"]["k"], "v1");

  Json first = *got;
  first["data"]["k"] = "v2";
  auto updated = client().Update(resources::kConfigMap, first);
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_EQ((*updated)["data"]["k"], "v2");

  Json stale = *got;  // still carries the old resourceVersion
  stale["data"]["k"] = "v3";
  auto conflict = client().Update(resources::kConfigMap, stale);
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.status().code(), Code::kConflict);

  DeleteOptions background;
  background.propagation = PropagationPolicy::kBackground;
  ASSERT_TRUE(client().Delete(resources::kConfigMap, {ns_, "cm"}, background).ok());
  auto gone = client().Get(resources::kConfigMap, {ns_, "cm"});
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), Code::kNotFound);
  EXPECT_EQ(client().Delete(resources::kConfigMap, {ns_, "cm"}).code(), Code::kNotFound);
}

TEST_F(HttpKubeClientEnvtest, SecretMergeAndJsonPatch) {
  Json secret = {{"apiVersion", "v1"},
                 {"kind", "Secret"},
                 {"metadata", {{"namespace", ns_}, {"name", "s"}}},
                 {"type", "Opaque"},
                 {"data", {{"password", "c2VjcmV0"}}}};
  ASSERT_TRUE(client().Create(resources::kSecret, secret).ok());

  auto merged = client().Patch(resources::kSecret, {ns_, "s"}, PatchType::kMerge,
                               {{"metadata", {{"labels", {{"app", "db"}}}}},
                                {"data", {{"user", "cG9zdGdyZXM="}}}});
  ASSERT_TRUE(merged.ok()) << merged.status().ToString();
  EXPECT_EQ((*merged)["metadata"]["labels"]["app"], "db");
  EXPECT_EQ((*merged)["data"]["password"], "c2VjcmV0");
  EXPECT_EQ((*merged)["data"]["user"], "cG9zdGdyZXM=");

  Json ops = Json::array({{{"op", "replace"}, {"path", "/data/password"}, {"value", "bmV3"}},
                          {{"op", "remove"}, {"path", "/data/user"}}});
  auto patched = client().Patch(resources::kSecret, {ns_, "s"}, PatchType::kJson, ops);
  ASSERT_TRUE(patched.ok()) << patched.status().ToString();
  EXPECT_EQ((*patched)["data"]["password"], "bmV3");
  EXPECT_FALSE((*patched)["data"].contains("user"));

  Json bad = Json::array({{{"op", "test"}, {"path", "/data/password"}, {"value", "wrong"}}});
  auto failed = client().Patch(resources::kSecret, {ns_, "s"}, PatchType::kJson, bad);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), Code::kInvalid) << failed.status().ToString();
}

TEST_F(HttpKubeClientEnvtest, ServerSideApplyConflictsUnlessForced) {
  PatchOptions alice;
  alice.field_manager = "alice";
  auto applied = client().Patch(resources::kConfigMap, {ns_, "cfg"}, PatchType::kApply,
                                ConfigMap(ns_, "cfg", {{"color", "red"}}), alice);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ((*applied)["data"]["color"], "red");

  PatchOptions bob;
  bob.field_manager = "bob";
  auto conflict = client().Patch(resources::kConfigMap, {ns_, "cfg"}, PatchType::kApply,
                                 ConfigMap(ns_, "cfg", {{"color", "blue"}}), bob);
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.status().code(), Code::kConflict);
  EXPECT_THAT(conflict.status().ToString(), HasSubstr("alice"));

  bob.force = true;
  auto forced = client().Patch(resources::kConfigMap, {ns_, "cfg"}, PatchType::kApply,
                               ConfigMap(ns_, "cfg", {{"color", "blue"}}), bob);
  ASSERT_TRUE(forced.ok()) << forced.status().ToString();
  EXPECT_EQ((*forced)["data"]["color"], "blue");
  std::set<std::string> managers;
  for (const auto& m : (*forced)["metadata"]["managedFields"]) managers.insert(m.value("manager", ""));
  EXPECT_TRUE(managers.count("bob"));

  // Applying the same intent again changes nothing.
  auto same = client().Patch(resources::kConfigMap, {ns_, "cfg"}, PatchType::kApply,
                             ConfigMap(ns_, "cfg", {{"color", "blue"}}), bob);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(meta::ResourceVersion(*same), meta::ResourceVersion(*forced));
}

TEST_F(HttpKubeClientEnvtest, CustomResourceStatusSubresourceAndValidation) {
  InstallWidgetCrd(env(), ns_);
  auto created = client().Create(kWidget, Widget(ns_, "w", 3));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(meta::Generation(*created), 1);

  Json with_status = *created;
  with_status["status"] = {{"phase", "Ready"}, {"observedGeneration", 1}};
  with_status["spec"]["size"] = 99;  // ignored by the status subresource
  auto status_updated = client().UpdateStatus(kWidget, with_status);
  ASSERT_TRUE(status_updated.ok()) << status_updated.status().ToString();
  EXPECT_EQ((*status_updated)["status"]["phase"], "Ready");
  EXPECT_EQ((*status_updated)["spec"]["size"], 3);
  EXPECT_EQ(meta::Generation(*status_updated), 1);

  // A plain update ignores status, and bumps the generation.
  Json spec_change = *status_updated;
  spec_change["spec"]["size"] = 4;
  spec_change["status"]["phase"] = "Changed";
  auto spec_updated = client().Update(kWidget, spec_change);
  ASSERT_TRUE(spec_updated.ok()) << spec_updated.status().ToString();
  EXPECT_EQ((*spec_updated)["status"]["phase"], "Ready");
  EXPECT_EQ(meta::Generation(*spec_updated), 2);

  PatchOptions on_status;
  on_status.subresource = "status";
  auto patched = client().Patch(kWidget, {ns_, "w"}, PatchType::kMerge,
                                {{"status", {{"phase", "Degraded"}}}}, on_status);
  ASSERT_TRUE(patched.ok()) << patched.status().ToString();
  EXPECT_EQ((*patched)["status"]["phase"], "Degraded");

  // Another manager applying status.phase, which the merge patch above took for "petrel".
  on_status.field_manager = "petrel-status";
  const Json status_intent = {{"apiVersion", "petrel.test/v1"},
                              {"kind", "Widget"},
                              {"metadata", {{"name", "w"}, {"namespace", ns_}}},
                              {"status", {{"phase", "Applied"}}}};
  auto contested = client().Patch(kWidget, {ns_, "w"}, PatchType::kApply, status_intent, on_status);
  ASSERT_FALSE(contested.ok());
  EXPECT_EQ(contested.status().code(), Code::kConflict);
  EXPECT_THAT(contested.status().message(), HasSubstr(".status.phase"));
  on_status.force = true;
  auto applied = client().Patch(kWidget, {ns_, "w"}, PatchType::kApply, status_intent, on_status);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ((*applied)["status"]["phase"], "Applied");

  auto list = client().List(kWidget, ns_, {});
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->items.size(), 1u);
  EXPECT_EQ(list->items[0]["kind"], "Widget");
  EXPECT_EQ(list->items[0]["apiVersion"], "petrel.test/v1");

  auto invalid = client().Create(kWidget, Widget(ns_, "tiny", 0));
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.status().code(), Code::kInvalid);
  EXPECT_THAT(invalid.status().message(), HasSubstr("spec.size"));
  EXPECT_THAT(invalid.status().message(), HasSubstr("greater than or equal to 1"));
  ASSERT_FALSE(invalid.status().causes().empty());
  EXPECT_EQ(invalid.status().causes()[0].field, "spec.size");
}

TEST_F(HttpKubeClientEnvtest, DeleteWithStalePreconditionsIsConflict) {
  auto created = client().Create(resources::kConfigMap, ConfigMap(ns_, "p"));
  ASSERT_TRUE(created.ok());
  DeleteOptions wrong_uid;
  wrong_uid.precondition_uid = "00000000-0000-0000-0000-000000000000";
  EXPECT_EQ(client().Delete(resources::kConfigMap, {ns_, "p"}, wrong_uid).code(), Code::kConflict);
  DeleteOptions wrong_version;
  wrong_version.precondition_resource_version = "1";
  EXPECT_EQ(client().Delete(resources::kConfigMap, {ns_, "p"}, wrong_version).code(),
            Code::kConflict);
  DeleteOptions right;
  right.precondition_uid = meta::Uid(*created);
  right.precondition_resource_version = meta::ResourceVersion(*created);
  EXPECT_TRUE(client().Delete(resources::kConfigMap, {ns_, "p"}, right).ok());
}

TEST_F(HttpKubeClientEnvtest, PagingWithLimitAndContinueReturnsEveryItem) {
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(client().Create(resources::kConfigMap, ConfigMap(ns_, "page-" + std::to_string(i))).ok());
  }
  ListOptions o;
  o.label_selector = "test=yes";
  o.limit = 3;
  std::set<std::string> names;
  int pages = 0;
  while (true) {
    auto page = client().List(resources::kConfigMap, ns_, o);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    ++pages;
    EXPECT_LE(page->items.size(), 3u);
    for (const auto& item : page->items) names.insert(meta::Name(item));
    if (page->continue_token.empty()) break;
    o.continue_token = page->continue_token;
    ASSERT_LT(pages, 10);
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(names.size(), 7u);
  ListOptions all;
  all.limit = 2;
  auto every = client().ListAll(resources::kConfigMap, ns_, all);
  ASSERT_TRUE(every.ok());
  EXPECT_EQ(every->items.size(), 7u);  // the namespace holds nothing else
}

TEST_F(HttpKubeClientEnvtest, CreateSubresourceBindsAPod) {
  Json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", {{"namespace", ns_}, {"name", "p"}}},
              {"spec", {{"containers", Json::array({{{"name", "c"}, {"image", "busybox"}}})}}}};
  ASSERT_TRUE(client().Create(resources::kPod, pod).ok());
  Json binding = {{"apiVersion", "v1"},
                  {"kind", "Binding"},
                  {"metadata", {{"name", "p"}, {"namespace", ns_}}},
                  {"target", {{"apiVersion", "v1"}, {"kind", "Node"}, {"name", "node-a"}}}};
  auto bound = client().CreateSubresource(resources::kPod, {ns_, "p"}, "binding", binding);
  ASSERT_TRUE(bound.ok()) << bound.status().ToString();
  auto got = client().Get(resources::kPod, {ns_, "p"});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)["spec"]["nodeName"], "node-a");
}

TEST_F(HttpKubeClientEnvtest, RbacDeniesOtherUsersAndBadTokens) {
  auto token = env().TokenFor("alice");
  ASSERT_TRUE(token.ok());
  auto alice = env().ClientAs(*token);
  ASSERT_TRUE(alice.ok());
  auto r = (*alice)->Get(resources::kConfigMap, {ns_, "any"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kForbidden);
  EXPECT_THAT(r.status().message(), HasSubstr("alice"));

  auto nobody = env().ClientAs("not-a-token");
  ASSERT_TRUE(nobody.ok());
  auto denied = (*nobody)->Get(resources::kConfigMap, {ns_, "any"});
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), Code::kUnauthorized);
}

TEST_F(HttpKubeClientEnvtest, KubeconfigWorksWithRealKubectl) {
  ASSERT_TRUE(client().Create(resources::kConfigMap, ConfigMap(ns_, "k", {{"x", "1"}})).ok());
  KubectlResult r = env().Kubectl({"get", "configmap", "k", "-n", ns_, "-o", "jsonpath={.data.x}"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1");
  auto alice = env().KubeconfigFor("alice");
  ASSERT_TRUE(alice.ok());
  r = env().KubectlWith(*alice, {"get", "configmap", "k", "-n", ns_});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("forbidden"));
}

WatchOptions FromVersionForTest(const std::string& rv) {
  WatchOptions o;
  o.resource_version = rv;
  return o;
}

// Reads events until `want` names have been ADDED or the stream stops; returns the status that
// stopped it (Ok when all arrived).
Status CollectAdded(WatchStream& w, size_t want, std::vector<std::string>* names,
                    std::string* last_rv) {
  auto give_up = std::chrono::steady_clock::now() + 60s;
  while (names->size() < want && std::chrono::steady_clock::now() < give_up) {
    WatchEvent e;
    Status s = w.Next(&e, 5s);
    if (s.code() == Code::kTimeout) continue;
    if (!s.ok()) return s;
    std::string rv = meta::ResourceVersion(e.object);
    if (!rv.empty()) *last_rv = rv;
    if (e.type == WatchEventType::kAdded) names->push_back(meta::Name(e.object));
  }
  return names->size() >= want ? Status::Ok() : TimeoutError("events missing");
}

TEST_F(HttpKubeClientEnvtest, WatchSeesAddModifyDelete) {
  auto w = client().Watch(resources::kConfigMap, ns_, WatchOptions{});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE(client().Create(resources::kConfigMap, ConfigMap(ns_, "w")).ok());
  ASSERT_TRUE(client().Patch(resources::kConfigMap, {ns_, "w"}, PatchType::kMerge,
                             {{"data", {{"a", "b"}}}}).ok());
  ASSERT_TRUE(client().Delete(resources::kConfigMap, {ns_, "w"}).ok());
  std::vector<WatchEventType> seen;
  while (seen.size() < 3) {
    WatchEvent e;
    Status s = (*w)->Next(&e, 20s);
    ASSERT_TRUE(s.ok()) << s.ToString();
    if (e.type == WatchEventType::kBookmark) continue;
    EXPECT_EQ(meta::Name(e.object), "w");
    seen.push_back(e.type);
  }
  EXPECT_EQ(seen, (std::vector<WatchEventType>{WatchEventType::kAdded, WatchEventType::kModified,
                                               WatchEventType::kDeleted}));
}

TEST_F(HttpKubeClientEnvtest, WatchResumesAfterApiServerRestartWithoutLosingEvents) {
  auto w = client().Watch(resources::kConfigMap, ns_, WatchOptions{});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client().Create(resources::kConfigMap, ConfigMap(ns_, "before-" + std::to_string(i))).ok());
  }
  std::vector<std::string> names;
  std::string last_rv;
  ASSERT_TRUE(CollectAdded(**w, 3, &names, &last_rv).ok());

  // A writer keeps creating while the server is down; the client retries until it is back.
  // A create cut off mid-flight is ambiguous, so the writer re-creates: AlreadyExists is fine.
  auto writer = std::async(std::launch::async, [&] {
    std::vector<Status> results;
    for (int i = 0; i < 5; ++i) {
      Status s;
      for (int attempt = 0; attempt < 3; ++attempt) {
        s = client().Create(resources::kConfigMap, ConfigMap(ns_, "during-" + std::to_string(i)))
                .status();
        if (s.ok() || s.code() == Code::kAlreadyExists) break;
      }
      results.push_back(s.code() == Code::kAlreadyExists ? Status::Ok() : s);
      std::this_thread::sleep_for(500ms);
    }
    return results;
  });
  ASSERT_TRUE(env().RestartApiServer().ok());
  for (const Status& s : writer.get()) EXPECT_TRUE(s.ok()) << s.ToString();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client().Create(resources::kConfigMap, ConfigMap(ns_, "after-" + std::to_string(i))).ok());
  }
  auto rest = client().List(resources::kConfigMap, ns_, {});
  ASSERT_TRUE(rest.ok());
  size_t total = rest->items.size();

  // The old stream broke; resume from the last version seen.
  WatchEvent e;
  Status s = (*w)->Next(&e, 30s);
  while (s.ok()) s = (*w)->Next(&e, 30s);  // a bookmark may still be buffered
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  auto resumed = client().Watch(resources::kConfigMap, ns_, FromVersionForTest(last_rv));
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  ASSERT_TRUE(CollectAdded(**resumed, total, &names, &last_rv).ok())
      << "saw " << names.size() << " of " << total;
  std::set<std::string> unique(names.begin(), names.end());
  EXPECT_EQ(unique.size(), names.size()) << "an event was delivered twice";
  EXPECT_EQ(unique.size(), total);
  EXPECT_TRUE(unique.count("after-2"));
  EXPECT_TRUE(unique.count("during-0"));
}

TEST_F(HttpKubeClientEnvtest, WatchFromCompactedVersionIsGone) {
  auto created = client().Create(resources::kConfigMap, ConfigMap(ns_, "old"));
  ASSERT_TRUE(created.ok());
  std::string old_rv = meta::ResourceVersion(*created);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client().Patch(resources::kConfigMap, {ns_, "old"}, PatchType::kMerge,
                               {{"data", {{"n", std::to_string(i)}}}}).ok());
  }
  ASSERT_TRUE(env().CompactEtcd().ok());
  WatchOptions o;
  o.resource_version = old_rv;
  auto w = client().Watch(resources::kConfigMap, ns_, o);
  Status s = w.ok() ? Status() : w.status();
  if (w.ok()) {
    WatchEvent e;
    s = (*w)->Next(&e, 20s);
  }
  EXPECT_EQ(s.code(), Code::kGone) << s.ToString();
}

}  // namespace
}  // namespace petrel

namespace petrel {
namespace {

class HttpKubeClientTlsEnvtest : public EnvtestTest {
 protected:
  KubeConfig AdminConfig() {
    auto c = LoadKubeconfigFiles({env().KubeconfigPath()});
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.value_or(KubeConfig{});
  }
  static HttpKubeClientOptions Quick() {
    HttpKubeClientOptions o;
    o.request_timeout = 10s;
    return o;
  }
};

TEST_F(HttpKubeClientTlsEnvtest, ServerCertificateIsVerifiedAgainstTheCa) {
  KubeConfig config = AdminConfig();
  config.ca_pem = env().UntrustedCaPem();
  auto client = HttpKubeClient::Create(config, Quick());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto r = (*client)->Get(resources::kNamespace, {"", ns_});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("not trusted"));
}

TEST_F(HttpKubeClientTlsEnvtest, ServerNameMustMatchTheCertificate) {
  KubeConfig config = AdminConfig();
  config.tls_server_name = "not-the-apiserver.example";
  auto client = HttpKubeClient::Create(config, Quick());
  ASSERT_TRUE(client.ok());
  auto r = (*client)->Get(resources::kNamespace, {"", ns_});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("hostname mismatch"));

  config.tls_server_name = "kubernetes.default.svc";  // a name the serving cert does carry
  auto named = HttpKubeClient::Create(config, Quick());
  ASSERT_TRUE(named.ok());
  EXPECT_TRUE((*named)->Get(resources::kNamespace, {"", ns_}).ok());
}

TEST_F(HttpKubeClientTlsEnvtest, InsecureSkipVerifyNeedsNoCa) {
  KubeConfig config = AdminConfig();
  config.ca_pem.clear();
  config.insecure_skip_tls_verify = true;
  auto client = HttpKubeClient::Create(config, Quick());
  ASSERT_TRUE(client.ok());
  auto r = (*client)->Get(resources::kNamespace, {"", ns_});
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

TEST_F(HttpKubeClientTlsEnvtest, ClientCertificateAuthenticates) {
  auto path = env().KubeconfigWithClientCert("carol", {"system:masters"});
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  auto config = LoadKubeconfigFiles({*path});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_TRUE(config->token.empty());
  auto client = HttpKubeClient::Create(*config, Quick());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto r = (*client)->Get(resources::kNamespace, {"", ns_});
  EXPECT_TRUE(r.ok()) << r.status().ToString();

  // A certificate without privileges authenticates but is not authorised.
  auto plain = env().KubeconfigWithClientCert("dave", {});
  ASSERT_TRUE(plain.ok());
  auto dave_config = LoadKubeconfigFiles({*plain});
  ASSERT_TRUE(dave_config.ok());
  auto dave = HttpKubeClient::Create(*dave_config, Quick());
  ASSERT_TRUE(dave.ok());
  auto denied = (*dave)->Get(resources::kNamespace, {"", ns_});
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), Code::kForbidden);
  EXPECT_THAT(denied.status().message(), HasSubstr("dave"));
}

TEST_F(HttpKubeClientTlsEnvtest, MismatchedClientKeyIsRejectedAtCreate) {
  auto carol = env().KubeconfigWithClientCert("erin", {});
  ASSERT_TRUE(carol.ok());
  auto config = LoadKubeconfigFiles({*carol});
  ASSERT_TRUE(config.ok());
  auto other = env().KubeconfigWithClientCert("frank", {});
  ASSERT_TRUE(other.ok());
  auto other_config = LoadKubeconfigFiles({*other});
  ASSERT_TRUE(other_config.ok());
  config->client_key_pem = other_config->client_key_pem;
  auto client = HttpKubeClient::Create(*config, Quick());
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), Code::kInvalid);
  EXPECT_THAT(client.status().message(), HasSubstr("client key"));
  EXPECT_THAT(client.status().message(), ::testing::Not(HasSubstr("PRIVATE KEY")));
}

}  // namespace
}  // namespace petrel
