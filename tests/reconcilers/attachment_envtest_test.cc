// PostgresAttachment against a real kube-apiserver: the CRD installs, the schema refuses bad
// attachments with the server's own message, and the reconciler (with a fake PgAdmin: the
// Postgres side is covered by the e2e tier) writes the Secret into the app's namespace only when
// the cluster admits it.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "reconcilers/attachment_reconciler.h"
#include "tests/reconcilers/attachment_fakes.h"
#include "tests/reconcilers/client_object_reader.h"
#include "tests/support/envtest.h"

namespace petrel {
namespace {

using testing_attach::FakeEvents;
using testing_attach::FakePgAdminFactory;
using testing_attach::FakePostgres;

class AttachmentEnvtest : public EnvtestTest {
 protected:
  void SetUp() override {
    EnvtestTest::SetUp();
    ASSERT_NE(env_, nullptr);
    reader_ = std::make_unique<ClientObjectReader>(client());
    for (const char* file : {"postgresattachment.yaml", "postgrescluster.yaml"}) {
      auto applied = env().Kubectl({"apply", "-f", SourcePath("crds/" + std::string(file))});
      ASSERT_EQ(applied.exit_code, 0) << applied.err;
    }
    auto established =
        env().Kubectl({"wait", "--for", "condition=established", "--timeout=60s",
                       "crd/postgresattachments.petrel.dev", "crd/postgresclusters.petrel.dev"});
    ASSERT_EQ(established.exit_code, 0) << established.err;
  }

  Json Cluster(const std::string& ns, Json attachments) {
    return {{"apiVersion", "petrel.dev/v1alpha1"},
            {"kind", "PostgresCluster"},
            {"metadata", {{"name", "db"}, {"namespace", ns}}},
            {"spec",
             {{"image", "postgres:15"},
              {"storage", {{"size", "1Gi"}}},
              {"attachments", std::move(attachments)}}}};
  }
  Json AttachmentObject(const std::string& ns, const std::string& name,
                        const std::string& cluster_ns) {
    return {{"apiVersion", "petrel.dev/v1alpha1"},
            {"kind", "PostgresAttachment"},
            {"metadata", {{"name", name}, {"namespace", ns}}},
            {"spec", {{"clusterRef", {{"name", "db"}, {"namespace", cluster_ns}}}}}};
  }
  std::unique_ptr<Reconciler> NewReconciler() {
    AttachmentReconcilerDeps deps;
    deps.reader = reader_.get();
    deps.client = &client();
    deps.events = &events_;
    deps.clock = &Clock::Real();
    deps.pg_admin = FakePgAdminFactory(pg_);
    deps.resolve_service = KubernetesDnsResolver();
    deps.generate_password = []() -> Result<std::string> { return std::string("pw-envtest-1"); };
    return NewAttachmentReconciler(std::move(deps));
  }
  void CreateSuperuserSecret(const std::string& ns) {
    auto s = client().Create(resources::kSecret,
                             {{"apiVersion", "v1"},
                              {"kind", "Secret"},
                              {"metadata", {{"name", "db-superuser"}, {"namespace", ns}}},
                              {"type", "kubernetes.io/basic-auth"},
                              {"stringData", {{"username", "postgres"}, {"password", "su"}}}});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
  }

  std::unique_ptr<ClientObjectReader> reader_;
  FakeEvents events_;
  FakePostgres pg_;
};

TEST_F(AttachmentEnvtest, SchemaRejectsInvalidAttachmentsWithTheServersMessage) {
  const std::string bad = R"(apiVersion: petrel.dev/v1alpha1
kind: PostgresAttachment
metadata: {name: bad, namespace: )" +
                          ns_ + R"(}
spec:
  clusterRef: {name: db}
  roleName: "x\"; DROP ROLE postgres; --"
  databaseName: "Bad-Name"
  privileges: superuser
  connectionLimit: -5
)";
  auto r = env().Kubectl({"apply", "-f", "-"}, bad);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("spec.roleName in body should match '^[a-z_][a-z0-9_]*$'"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("spec.databaseName in body should match"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Unsupported value: \"superuser\""), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("spec.connectionLimit in body should be greater than or equal to -1"),
            std::string::npos)
      << r.err;

  // Through the client: Invalid with field causes; missing clusterRef is refused too.
  Json no_ref = AttachmentObject(ns_, "noref", ns_);
  no_ref["spec"].erase("clusterRef");
  auto created = client().Create(resources::kPostgresAttachment, no_ref);
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), Code::kInvalid);
  EXPECT_NE(created.status().ToString().find("spec.clusterRef"), std::string::npos)
      << created.status().ToString();
  // Nothing was stored.
  EXPECT_EQ(client().Get(resources::kPostgresAttachment, {ns_, "bad"}).status().code(),
            Code::kNotFound);
}

TEST_F(AttachmentEnvtest, ValidAttachmentKeepsSpecAsWrittenAndPrintsColumns) {
  auto created = client().Create(resources::kPostgresAttachment, AttachmentObject(ns_, "web", ns_));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ((*created)["spec"], (Json{{"clusterRef", {{"name", "db"}, {"namespace", ns_}}}}))
      << "no defaults are written into spec";
  // Discovery of a just-established CRD can lag behind; kubectl may need a few tries.
  auto kubectl_eventually = [this](const std::vector<std::string>& args) {
    KubectlResult r;
    for (int attempt = 0; attempt < 20; ++attempt) {
      r = env().Kubectl(args);
      if (r.exit_code == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    return r;
  };
  auto get = kubectl_eventually({"get", "pga", "-n", ns_});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  for (const char* column : {"CLUSTER", "DATABASE", "ROLE", "READY", "AGE"}) {
    EXPECT_NE(get.out.find(column), std::string::npos) << get.out;
  }
  auto explain = kubectl_eventually({"explain", "pga.spec.detachPolicy.ownedObjects"});
  EXPECT_EQ(explain.exit_code, 0) << explain.err;
  EXPECT_NE(explain.out.find("REASSIGN OWNED"), std::string::npos);
}

TEST_F(AttachmentEnvtest, ReconcilerWritesOwnedSecretInAppNamespaceOnlyWhenAdmitted) {
  auto data_ns = env().NewNamespace("data");
  ASSERT_TRUE(data_ns.ok());
  ASSERT_TRUE(client().Create(resources::kPostgresCluster, Cluster(*data_ns, Json::object())).ok());
  CreateSuperuserSecret(*data_ns);
  auto created =
      client().Create(resources::kPostgresAttachment, AttachmentObject(ns_, "web", *data_ns));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  auto reconciler = NewReconciler();

  // Not admitted: a condition that names the field, no Secret, nothing in Postgres.
  auto r = reconciler->Reconcile({ns_, "web"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto refused = client().Get(resources::kPostgresAttachment, {ns_, "web"});
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ((*refused)["status"]["phase"], "Refused");
  std::string message;
  for (const auto& c : (*refused)["status"]["conditions"]) {
    if (c["type"] == "Ready") message = c["message"];
  }
  EXPECT_NE(message.find("add \"" + ns_ +
                         "\" to spec.attachments.allowedNamespaces of "
                         "PostgresCluster " +
                         *data_ns + "/db"),
            std::string::npos)
      << message;
  EXPECT_EQ(client().Get(resources::kSecret, {ns_, "web-database"}).status().code(),
            Code::kNotFound);
  EXPECT_TRUE(pg_.writes.empty());

  // The cluster admits the namespace by label.
  auto ns_obj = client().Get(resources::kNamespace, {"", ns_});
  ASSERT_TRUE(ns_obj.ok());
  Json labelled = *ns_obj;
  labelled["metadata"]["labels"]["petrel.dev/attach-to"] = "db";
  ASSERT_TRUE(client().Update(resources::kNamespace, labelled).ok());
  auto cluster = client().Get(resources::kPostgresCluster, {*data_ns, "db"});
  ASSERT_TRUE(cluster.ok());
  Json admitting = *cluster;
  admitting["spec"]["attachments"]["namespaceSelector"] = {
      {"matchLabels", {{"petrel.dev/attach-to", "db"}}}};
  ASSERT_TRUE(client().Update(resources::kPostgresCluster, admitting).ok());

  r = reconciler->Reconcile({ns_, "web"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto attachment = client().Get(resources::kPostgresAttachment, {ns_, "web"});
  ASSERT_TRUE(attachment.ok());
  EXPECT_EQ((*attachment)["status"]["phase"], "Ready") << (*attachment)["status"].dump();
  EXPECT_TRUE(meta::HasFinalizer(*attachment, kDetachFinalizer));
  auto secret = client().Get(resources::kSecret, {ns_, "web-database"});
  ASSERT_TRUE(secret.ok()) << secret.status().ToString();
  auto owner = meta::ControllerOf(*secret);
  ASSERT_TRUE(owner.has_value());
  EXPECT_EQ(owner->uid, meta::Uid(*attachment));
  EXPECT_EQ(owner->kind, "PostgresAttachment");
  EXPECT_EQ((*secret)["type"], "Opaque");
  EXPECT_EQ(SecretValue(*secret, "DATABASE_URL"),
            "postgres://web:pw-envtest-1@db-rw." + *data_ns + ".svc:5432/web?sslmode=disable");
  EXPECT_EQ(pg_.last_target->password, "su");

  // Steady state: a second reconcile leaves the objects' resourceVersions alone.
  std::string attachment_rv = meta::ResourceVersion(*attachment);
  std::string secret_rv = meta::ResourceVersion(*secret);
  ASSERT_TRUE(reconciler->Reconcile({ns_, "web"}).ok());
  EXPECT_EQ(meta::ResourceVersion(*client().Get(resources::kPostgresAttachment, {ns_, "web"})),
            attachment_rv);
  EXPECT_EQ(meta::ResourceVersion(*client().Get(resources::kSecret, {ns_, "web-database"})),
            secret_rv);

  // Delete: detach runs, the Secret and then the attachment go.
  ASSERT_TRUE(client().Delete(resources::kPostgresAttachment, {ns_, "web"}).ok());
  ASSERT_TRUE(reconciler->Reconcile({ns_, "web"}).ok());
  EXPECT_EQ(pg_.writes.back(), "DetachRole web");
  EXPECT_EQ(client().Get(resources::kSecret, {ns_, "web-database"}).status().code(),
            Code::kNotFound);
  EXPECT_EQ(client().Get(resources::kPostgresAttachment, {ns_, "web"}).status().code(),
            Code::kNotFound);
}

}  // namespace
}  // namespace petrel
