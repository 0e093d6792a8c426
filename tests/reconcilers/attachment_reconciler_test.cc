// The attachment reconciler over in-memory twins of Kubernetes and Postgres.
#include "reconcilers/attachment_reconciler.h"

#include <gtest/gtest.h>

#include "tests/reconcilers/attachment_fakes.h"

namespace petrel {
namespace {

using namespace testing_attach;  // NOLINT

class AttachmentReconcilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kube_.Put(resources::kPostgresCluster,
              {{"metadata", {{"name", "db"}, {"namespace", "data"}}},
               {"spec", {{"attachments", {{"allowedNamespaces", {"shop"}}}}}}});
    kube_.Put(resources::kSecret, {{"metadata", {{"name", "db-superuser"}, {"namespace", "data"}}},
                                   {"data", {{"password", Base64Encode("superpw")}}}});
    AttachmentReconcilerDeps deps;
    deps.reader = &kube_;
    deps.client = &kube_;
    deps.events = &events_;
    deps.clock = &clock_;
    deps.pg_admin = FakePgAdminFactory(pg_);
    deps.resolve_service = KubernetesDnsResolver();
    deps.generate_password = [this]() -> Result<std::string> {
      return "generated-" + std::to_string(++passwords_);
    };
    reconciler_ = NewAttachmentReconciler(std::move(deps));
  }

  void AddAttachment(const std::string& ns, const std::string& name, Json spec,
                     const std::string& created = "2026-01-01T00:00:00Z") {
    kube_.Put(
        resources::kPostgresAttachment,
        {{"apiVersion", "petrel.dev/v1alpha1"},
         {"kind", "PostgresAttachment"},
         {"metadata",
          {{"name", name}, {"namespace", ns}, {"generation", 1}, {"creationTimestamp", created}}},
         {"spec", std::move(spec)}});
  }
  Result<ReconcileResult> Run(const std::string& ns, const std::string& name) {
    return reconciler_->Reconcile({ns, name});
  }
  Json Attachment(const std::string& ns, const std::string& name) {
    const Json* j = kube_.Find(resources::kPostgresAttachment, {ns, name});
    return j ? *j : Json();
  }
  Json Condition(const std::string& ns, const std::string& name, const std::string& type) {
    for (const auto& c :
         Attachment(ns, name).value("/status/conditions"_json_pointer, Json::array())) {
      if (c["type"] == type) return c;
    }
    return Json();
  }
  std::optional<std::string> SecretKey(const std::string& ns, const std::string& name,
                                       const std::string& key) {
    const Json* s = kube_.Find(resources::kSecret, {ns, name});
    return s ? SecretValue(*s, key) : std::nullopt;
  }
  void ExpectNoPasswordLeak(const std::string& password) {
    std::string status = Attachment("shop", "web").value("status", Json()).dump();
    EXPECT_EQ(status.find(password), std::string::npos);
    for (const auto& e : events_.events) EXPECT_EQ(e.note.find(password), std::string::npos);
  }

  FakeKube kube_;
  FakeEvents events_;
  FakePostgres pg_;
  FakeClock clock_;
  int passwords_ = 0;
  std::unique_ptr<Reconciler> reconciler_;
};

const Json kCrossNamespace = {{"clusterRef", {{"name", "db"}, {"namespace", "data"}}}};

TEST_F(AttachmentReconcilerTest, AttachCreatesRoleDatabaseAndOwnedSecretInAppNamespace) {
  AddAttachment("shop", "web", kCrossNamespace);
  auto r = Run("shop", "web");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(pg_.writes, (std::vector<std::string>{"CreateRole web", "CreateDatabase web",
                                                  "RevokePublicConnect web"}));
  ASSERT_TRUE(pg_.last_target.has_value());
  EXPECT_EQ(pg_.last_target->host, "db-rw.data.svc");
  EXPECT_EQ(pg_.last_target->password, "superpw");
  EXPECT_EQ(pg_.roles["web"].marker, RoleMarker({"shop", "web"}));

  const Json* secret = kube_.Find(resources::kSecret, {"shop", "web-database"});
  ASSERT_NE(secret, nullptr);
  EXPECT_EQ((*secret)["type"], "Opaque");
  auto owner = meta::ControllerOf(*secret);
  ASSERT_TRUE(owner.has_value());
  EXPECT_EQ(owner->uid, "uid-web");
  EXPECT_EQ(owner->kind, "PostgresAttachment");
  EXPECT_EQ(SecretKey("shop", "web-database", "DATABASE_URL"),
            "postgres://web:generated-1@db-rw.data.svc:5432/web?sslmode=disable");
  EXPECT_EQ(SecretKey("shop", "web-database", "DATABASE_READONLY_URL"),
            "postgres://web:generated-1@db-ro.data.svc:5432/web?sslmode=disable");
  EXPECT_EQ(pg_.roles["web"].password, "generated-1");

  Json a = Attachment("shop", "web");
  EXPECT_TRUE(meta::HasFinalizer(a, kDetachFinalizer));
  EXPECT_EQ(a["status"]["phase"], "Ready");
  EXPECT_EQ(a["status"]["roleName"], "web");
  EXPECT_EQ(a["status"]["databaseName"], "web");
  EXPECT_EQ(a["status"]["secretName"], "web-database");
  EXPECT_EQ(a["status"]["clusterNamespace"], "data");
  EXPECT_EQ(a["status"]["observedGeneration"], 1);
  EXPECT_FALSE(a["status"].contains("passwordRotation"));
  for (const char* type : {"RoleReady", "DatabaseReady", "SecretReady", "Ready"}) {
    EXPECT_EQ(Condition("shop", "web", type)["status"], "True") << type;
  }
  EXPECT_TRUE(events_.Has("Attached"));
  ExpectNoPasswordLeak("generated-1");
}

TEST_F(AttachmentReconcilerTest, SteadyStateMakesNoWrites) {
  AddAttachment("shop", "web", kCrossNamespace);
  ASSERT_TRUE(Run("shop", "web").ok());
  int kube_writes = kube_.writes;
  size_t pg_writes = pg_.writes.size();
  size_t events = events_.events.size();
  clock_.Advance(std::chrono::minutes(10));
  for (int i = 0; i < 3; ++i) {
    auto r = Run("shop", "web");
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(r->requeue_after.has_value());
  }
  EXPECT_EQ(kube_.writes, kube_writes);
  EXPECT_EQ(pg_.writes.size(), pg_writes);
  EXPECT_EQ(events_.events.size(), events);
  EXPECT_EQ(passwords_, 4);  // generated each time, never used
  EXPECT_EQ(pg_.roles["web"].password, "generated-1");
}

TEST_F(AttachmentReconcilerTest, DeletedSecretIsReissuedWithANewPassword) {
  AddAttachment("shop", "web", kCrossNamespace);
  ASSERT_TRUE(Run("shop", "web").ok());
  ASSERT_TRUE(kube_.Delete(resources::kSecret, {"shop", "web-database"}, {}).ok());
  ASSERT_TRUE(Run("shop", "web").ok());
  EXPECT_EQ(pg_.writes.back(), "SetPassword web");
  EXPECT_EQ(pg_.roles["web"].password, "generated-2");
  EXPECT_EQ(SecretKey("shop", "web-database", "password"), "generated-2");
}

TEST_F(AttachmentReconcilerTest, RenamedSecretMovesThePasswordAndRemovesTheOldOne) {
  AddAttachment("shop", "web", kCrossNamespace);
  ASSERT_TRUE(Run("shop", "web").ok());
  Json a = Attachment("shop", "web");
  a["spec"]["secretName"] = "web-pg";
  kube_.Put(resources::kPostgresAttachment, a);
  ASSERT_TRUE(Run("shop", "web").ok());
  EXPECT_EQ(kube_.Find(resources::kSecret, {"shop", "web-database"}), nullptr);
  EXPECT_EQ(SecretKey("shop", "web-pg", "user"), "web");
  EXPECT_EQ(Attachment("shop", "web")["status"]["secretName"], "web-pg");
  // The renamed Secret has no password yet: a new one is issued and set.
  EXPECT_EQ(pg_.roles["web"].password, SecretKey("shop", "web-pg", "password"));
}

TEST_F(AttachmentReconcilerTest, HandEditedRoleIsPutBack) {
  AddAttachment("shop", "web", kCrossNamespace);
  ASSERT_TRUE(Run("shop", "web").ok());
  pg_.roles["web"].attributes_ok = false;
  pg_.roles["web"].password = "changed-by-hand";
  pg_.databases["web"].public_connect = true;
  ASSERT_TRUE(Run("shop", "web").ok());
  EXPECT_EQ(pg_.roles["web"].password, "generated-1");
  EXPECT_TRUE(pg_.roles["web"].attributes_ok);
  EXPECT_FALSE(pg_.databases["web"].public_connect);
}

TEST_F(AttachmentReconcilerTest, RotationAnnotationIssuesANewPasswordAndIsEchoed) {
  AddAttachment("shop", "web", kCrossNamespace);
  ASSERT_TRUE(Run("shop", "web").ok());
  Json a = Attachment("shop", "web");
  a["metadata"]["annotations"]["petrel.dev/rotate-password"] = "r1";
  kube_.Put(resources::kPostgresAttachment, a);
  ASSERT_TRUE(Run("shop", "web").ok());
  EXPECT_EQ(pg_.roles["web"].password, "generated-2");
  EXPECT_EQ(SecretKey("shop", "web-database", "password"), "generated-2");
  a = Attachment("shop", "web");
  EXPECT_EQ(a["status"]["passwordRotation"]["observedRequest"], "r1");
  EXPECT_EQ(a["status"]["passwordRotation"]["rotatedAt"], "2026-01-01T00:00:00Z");
  EXPECT_TRUE(events_.Has("PasswordRotated"));
  // Done once: the same request value does not rotate again.
  ASSERT_TRUE(Run("shop", "web").ok());
  EXPECT_EQ(pg_.roles["web"].password, "generated-2");
  ExpectNoPasswordLeak("generated-2");
}

TEST_F(AttachmentReconcilerTest, CrossNamespaceAttachRefusedUnlessTheClusterAdmitsIt) {
  AddAttachment("blog", "blog", kCrossNamespace);
  auto r = Run("blog", "blog");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(pg_.writes.empty());
  EXPECT_EQ(kube_.Find(resources::kSecret, {"blog", "blog-database"}), nullptr);
  Json ready = Condition("blog", "blog", "Ready");
  EXPECT_EQ(ready["status"], "False");
  EXPECT_EQ(ready["reason"], "NotAdmitted");
  EXPECT_NE(ready["message"].get<std::string>().find(
                "add \"blog\" to spec.attachments.allowedNamespaces of PostgresCluster data/db"),
            std::string::npos);
  EXPECT_EQ(Attachment("blog", "blog")["status"]["phase"], "Refused");
  EXPECT_TRUE(events_.Has("NotAdmitted"));
  EXPECT_FALSE(meta::HasFinalizer(Attachment("blog", "blog"), kDetachFinalizer));

  // The cluster's owner labels-selects the namespace: now it is admitted.
  kube_.Put(resources::kNamespace,
            {{"metadata", {{"name", "blog"}, {"labels", {{"petrel.dev/attach", "data-db"}}}}}});
  Json cluster = *kube_.Find(resources::kPostgresCluster, {"data", "db"});
  cluster["spec"]["attachments"]["namespaceSelector"] = {
      {"matchLabels", {{"petrel.dev/attach", "data-db"}}}};
  kube_.Put(resources::kPostgresCluster, cluster);
  ASSERT_TRUE(Run("blog", "blog").ok());
  EXPECT_NE(kube_.Find(resources::kSecret, {"blog", "blog-database"}), nullptr);
  EXPECT_EQ(Condition("blog", "blog", "Ready")["status"], "True");
}

TEST_F(AttachmentReconcilerTest, WithdrawnConsentRevokesLoginAndSecretAndKeepsTheDatabase) {
  AddAttachment("shop", "web", kCrossNamespace);
  ASSERT_TRUE(Run("shop", "web").ok());
  ASSERT_EQ(Condition("shop", "web", "Ready")["status"], "True");
  Json cluster = *kube_.Find(resources::kPostgresCluster, {"data", "db"});
  cluster["spec"]["attachments"]["allowedNamespaces"] = Json::array();
  kube_.Put(resources::kPostgresCluster, cluster);

  auto r = Run("shop", "web");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(pg_.writes.back(), "RevokeLogin web");
  ASSERT_TRUE(pg_.roles.count("web")) << "the role keeps its grants for a later re-admission";
  EXPECT_FALSE(pg_.roles["web"].login);
  EXPECT_TRUE(pg_.databases.count("web")) << "the database must be kept";
  EXPECT_EQ(kube_.Find(resources::kSecret, {"shop", "web-database"}), nullptr);
  Json a = Attachment("shop", "web");
  EXPECT_EQ(a["status"]["phase"], "Refused");
  EXPECT_TRUE(meta::HasFinalizer(a, kDetachFinalizer)) << "deletion must still detach";
  Json ready = Condition("shop", "web", "Ready");
  EXPECT_EQ(ready["status"], "False");
  EXPECT_EQ(ready["reason"], "AccessRevoked");
  std::string message = ready["message"];
  for (const char* part :
       {"does not admit attachments from namespace shop", "role \"web\" can no longer log in",
        "Secret web-database was removed", "database \"web\" and its data are kept"}) {
    EXPECT_NE(message.find(part), std::string::npos) << part << " in: " << message;
  }
  EXPECT_EQ(Condition("shop", "web", "RoleReady")["reason"], "AccessRevoked");
  EXPECT_EQ(Condition("shop", "web", "SecretReady")["reason"], "SecretRemoved");
  EXPECT_TRUE(events_.Has("AccessRevoked"));

  // While refused, nothing more is written.
  int kube_writes = kube_.writes;
  size_t pg_writes = pg_.writes.size();
  size_t events = events_.events.size();
  ASSERT_TRUE(Run("shop", "web").ok());
  EXPECT_EQ(kube_.writes, kube_writes);
  EXPECT_EQ(pg_.writes.size(), pg_writes);
  EXPECT_EQ(events_.events.size(), events);

  // Consent again: login comes back with a new password in a new Secret.
  cluster["spec"]["attachments"]["allowedNamespaces"] = {"shop"};
  kube_.Put(resources::kPostgresCluster, cluster);
  ASSERT_TRUE(Run("shop", "web").ok());
  EXPECT_TRUE(pg_.roles["web"].login);
  EXPECT_EQ(Condition("shop", "web", "Ready")["status"], "True");
  auto password = SecretKey("shop", "web-database", "password");
  ASSERT_TRUE(password.has_value());
  EXPECT_NE(*password, "generated-1");
  EXPECT_EQ(pg_.roles["web"].password, *password);
}

TEST_F(AttachmentReconcilerTest, ConsentWithdrawnBeforeAnythingWasMadeRevokesNothing) {
  AddAttachment("blog", "blog", kCrossNamespace);
  ASSERT_TRUE(Run("blog", "blog").ok());
  ASSERT_TRUE(Run("blog", "blog").ok());
  EXPECT_TRUE(pg_.writes.empty());
  EXPECT_FALSE(pg_.last_target.has_value()) << "a never-admitted attachment needs no Postgres";
  EXPECT_EQ(Condition("blog", "blog", "Ready")["reason"], "NotAdmitted");
}

TEST_F(AttachmentReconcilerTest, PrivilegesCannotChangeAfterAttach) {
  AddAttachment("shop", "web", kCrossNamespace);
  ASSERT_TRUE(Run("shop", "web").ok());
  EXPECT_EQ(Attachment("shop", "web")["status"]["privileges"], "owner");
  size_t pg_writes = pg_.writes.size();
  Json a = Attachment("shop", "web");
  a["spec"]["privileges"] = "readOnly";
  a["metadata"]["generation"] = 2;
  kube_.Put(resources::kPostgresAttachment, a);
  ASSERT_TRUE(Run("shop", "web").ok());
  EXPECT_EQ(pg_.writes.size(), pg_writes) << "nothing changes in Postgres";
  Json ready = Condition("shop", "web", "Ready");
  EXPECT_EQ(ready["reason"], "ImmutableFieldChanged");
  EXPECT_NE(ready["message"].get<std::string>().find(
                "spec.privileges resolves to \"readOnly\" but this attachment was made with "
                "\"owner\""),
            std::string::npos)
      << ready["message"];
  EXPECT_NE(kube_.Find(resources::kSecret, {"shop", "web-database"}), nullptr);
}

TEST_F(AttachmentReconcilerTest, LaterClaimOnTheSameRoleGetsAConflict) {
  AddAttachment("shop", "web", kCrossNamespace, "2026-01-01T00:00:00Z");
  Json cluster = *kube_.Find(resources::kPostgresCluster, {"data", "db"});
  cluster["spec"]["attachments"]["allowedNamespaces"] = {"*"};
  kube_.Put(resources::kPostgresCluster, cluster);
  AddAttachment("blog", "web", kCrossNamespace, "2026-01-02T00:00:00Z");
  // The later one reconciles first: still refused, and creates nothing.
  ASSERT_TRUE(Run("blog", "web").ok());
  EXPECT_TRUE(pg_.writes.empty());
  EXPECT_EQ(Condition("blog", "web", "Ready")["reason"], "Conflict");
  ASSERT_TRUE(Run("shop", "web").ok());
  EXPECT_EQ(Condition("shop", "web", "Ready")["status"], "True");
}

TEST_F(AttachmentReconcilerTest, RoleNotCreatedByPetrelIsNeverTakenOver) {
  pg_.roles["web"] = {"theirs", -1, "created by the DBA", true};
  AddAttachment("shop", "web", kCrossNamespace);
  ASSERT_TRUE(Run("shop", "web").ok());
  EXPECT_TRUE(pg_.writes.empty());
  EXPECT_EQ(pg_.roles["web"].password, "theirs");
  EXPECT_EQ(Condition("shop", "web", "RoleReady")["reason"], "RoleNotManaged");
  EXPECT_EQ(kube_.Find(resources::kSecret, {"shop", "web-database"}), nullptr);
}

TEST_F(AttachmentReconcilerTest, ForeignSecretIsNotOverwritten) {
  kube_.Put(resources::kSecret, {{"metadata", {{"name", "web-database"}, {"namespace", "shop"}}},
                                 {"data", {{"x", "eQ=="}}}});
  AddAttachment("shop", "web", kCrossNamespace);
  ASSERT_TRUE(Run("shop", "web").ok());
  EXPECT_TRUE(pg_.writes.empty());
  EXPECT_EQ(Condition("shop", "web", "SecretReady")["reason"], "SecretNotOwned");
  EXPECT_EQ(SecretKey("shop", "web-database", "x"), "y");
}

TEST_F(AttachmentReconcilerTest, InvalidSpecIsReportedAndNothingHappens) {
  AddAttachment("shop", "web", {{"clusterRef", {{"name", "db"}}}, {"roleName", "a\";b"}});
  auto r = Run("shop", "web");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->requeue_after.has_value());
  EXPECT_EQ(Condition("shop", "web", "Ready")["reason"], "InvalidSpec");
  EXPECT_EQ(Attachment("shop", "web")["status"]["phase"], "Failed");
  EXPECT_TRUE(pg_.writes.empty());
}

TEST_F(AttachmentReconcilerTest, UnreachableClusterIsRetriedAndSaidInStatus) {
  pg_.reachable = false;
  AddAttachment("shop", "web", kCrossNamespace);
  auto r = Run("shop", "web");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  Json ready = Condition("shop", "web", "Ready");
  EXPECT_EQ(ready["reason"], "ClusterUnreachable");
  EXPECT_NE(ready["message"].get<std::string>().find("db-rw.data.svc:5432"), std::string::npos);
  EXPECT_EQ(ready["message"].get<std::string>().find("superpw"), std::string::npos);
}

TEST_F(AttachmentReconcilerTest, DeletionDetachesDeletesSecretAndReleasesTheObject) {
  AddAttachment("shop", "web", kCrossNamespace);
  ASSERT_TRUE(Run("shop", "web").ok());
  kube_.MarkDeleted(resources::kPostgresAttachment, {"shop", "web"});
  pg_.reachable = false;
  auto blocked = Run("shop", "web");
  ASSERT_FALSE(blocked.ok());
  EXPECT_EQ(Condition("shop", "web", "Ready")["reason"], "DetachPending");
  EXPECT_TRUE(pg_.roles.count("web"));
  pg_.reachable = true;
  auto r = Run("shop", "web");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(pg_.writes.back(), "DetachRole web");
  EXPECT_FALSE(pg_.roles.count("web"));
  EXPECT_TRUE(pg_.databases.count("web")) << "the database must be kept";
  EXPECT_EQ(kube_.Find(resources::kSecret, {"shop", "web-database"}), nullptr);
  EXPECT_EQ(kube_.Find(resources::kPostgresAttachment, {"shop", "web"}), nullptr);
  EXPECT_TRUE(events_.Has("Detached"));
}

TEST_F(AttachmentReconcilerTest, DetachWhenTheClusterIsGoneFinishesWithAWarning) {
  AddAttachment("shop", "web", kCrossNamespace);
  ASSERT_TRUE(Run("shop", "web").ok());
  ASSERT_TRUE(kube_.Delete(resources::kPostgresCluster, {"data", "db"}, {}).ok());
  kube_.MarkDeleted(resources::kPostgresAttachment, {"shop", "web"});
  ASSERT_TRUE(Run("shop", "web").ok());
  EXPECT_TRUE(events_.Has("ClusterGone"));
  EXPECT_EQ(kube_.Find(resources::kPostgresAttachment, {"shop", "web"}), nullptr);
}

TEST_F(AttachmentReconcilerTest, LoserOfAConflictNeverDropsTheWinnersRole) {
  Json cluster = *kube_.Find(resources::kPostgresCluster, {"data", "db"});
  cluster["spec"]["attachments"]["allowedNamespaces"] = {"*"};
  kube_.Put(resources::kPostgresCluster, cluster);
  AddAttachment("shop", "web", kCrossNamespace, "2026-01-01T00:00:00Z");
  ASSERT_TRUE(Run("shop", "web").ok());
  AddAttachment("blog", "web", kCrossNamespace, "2026-01-02T00:00:00Z");
  ASSERT_TRUE(Run("blog", "web").ok());
  // Pretend the loser once recorded the role name (e.g. status edited): the marker protects.
  Json loser = Attachment("blog", "web");
  loser["status"]["roleName"] = "web";
  loser["metadata"]["finalizers"] = {kDetachFinalizer};
  kube_.Put(resources::kPostgresAttachment, loser);
  kube_.MarkDeleted(resources::kPostgresAttachment, {"blog", "web"});
  ASSERT_TRUE(Run("blog", "web").ok());
  EXPECT_TRUE(pg_.roles.count("web"));
  EXPECT_TRUE(events_.Has("RoleNotManaged"));
}

TEST(ServiceObjectResolver, PrefersLocalAddressAnnotationThenClusterIp) {
  testing_attach::FakeKube kube;
  kube.Put(resources::kService,
           {{"metadata",
             {{"name", "db-rw"},
              {"namespace", "data"},
              {"annotations", {{"petrel.dev/local-address", "127.0.1.5:15432"}}}}},
            {"spec", {{"clusterIP", "10.0.0.9"}, {"ports", {{{"port", 5432}}}}}}});
  kube.Put(resources::kService,
           {{"metadata", {{"name", "db-ro"}, {"namespace", "data"}}},
            {"spec", {{"clusterIP", "10.0.0.10"}, {"ports", {{{"port", 5432}}}}}}});
  auto resolve = ServiceObjectResolver(kube);
  auto rw = resolve({"data", "db-rw"});
  ASSERT_TRUE(rw.ok());
  EXPECT_EQ(rw->host, "127.0.1.5");
  EXPECT_EQ(rw->port, 15432);
  auto ro = resolve({"data", "db-ro"});
  ASSERT_TRUE(ro.ok());
  EXPECT_EQ(ro->host, "10.0.0.10");
  EXPECT_EQ(resolve({"data", "nope"}).status().code(), Code::kNotFound);

  // The controller's default: the annotation when present, else the DNS name.
  auto by_default = DefaultServiceResolver(kube);
  EXPECT_EQ(by_default({"data", "db-rw"})->host, "127.0.1.5");
  EXPECT_EQ(by_default({"data", "db-ro"})->host, "db-ro.data.svc");
  EXPECT_EQ(by_default({"data", "nope"})->host, "nope.data.svc");
  kube.Put(resources::kService,
           {{"metadata", {{"name", "local-rw"}, {"namespace", "data"}}},
            {"spec", {{"clusterIP", "127.0.2.7"}, {"ports", {{{"port", 5432}}}}}}});
  EXPECT_EQ(by_default({"data", "local-rw"})->host, "127.0.2.7");
}

}  // namespace
}  // namespace petrel

namespace petrel {
namespace {

TEST(AttachmentMappers, ClusterAndNamespaceEventsFindTheirAttachments) {
  testing_attach::FakeKube kube;
  auto add = [&](std::string ns, std::string name, Json ref) {
    kube.Put(resources::kPostgresAttachment,
             {{"metadata", {{"name", name}, {"namespace", ns}}}, {"spec", {{"clusterRef", ref}}}});
  };
  add("data", "local", {{"name", "db"}});
  add("shop", "web", {{"name", "db"}, {"namespace", "data"}});
  add("shop", "other", {{"name", "db2"}, {"namespace", "data"}});
  add("shop", "same-name-own-ns", {{"name", "db"}});
  Json cluster = {{"metadata", {{"name", "db"}, {"namespace", "data"}}}};
  EXPECT_EQ(AttachmentsReferencingCluster(kube, cluster),
            (std::vector<ObjectKey>{{"data", "local"}, {"shop", "web"}}));
  Json ns = {{"metadata", {{"name", "shop"}}}};
  EXPECT_EQ(AttachmentsInNamespace(kube, ns).size(), 3u);
}

}  // namespace
}  // namespace petrel
