#include "local/manifests.h"

#include <fstream>

#include <gtest/gtest.h>

#include "tests/local/local_test_util.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;

TEST(ParseYamlDocumentsTest, ScalarsFollowTheCoreSchemaAndQuotesStayStrings) {
  auto docs = ParseYamlDocuments(R"(a: 1
b: "1"
c: true
d: 'false'
e: ~
f: 1.5
g: 15.4-bookworm
h: [x, 2]
---
---
second: doc
)");
  ASSERT_TRUE(docs.ok()) << docs.status().ToString();
  ASSERT_EQ(docs->size(), 3u);
  const Json& d = (*docs)[0];
  EXPECT_EQ(d["a"], 1);
  EXPECT_EQ(d["b"], "1");
  EXPECT_EQ(d["c"], true);
  EXPECT_EQ(d["d"], "false");
  EXPECT_TRUE(d["e"].is_null());
  EXPECT_EQ(d["f"], 1.5);
  EXPECT_EQ(d["g"], "15.4-bookworm");
  EXPECT_EQ(d["h"], Json::array({"x", 2}));
  EXPECT_TRUE((*docs)[1].is_null());
  EXPECT_EQ((*docs)[2]["second"], "doc");
}

TEST(ParseYamlDocumentsTest, SyntaxErrorsGiveLineAndColumn) {
  auto docs = ParseYamlDocuments("a: 1\nb: [2\n");
  ASSERT_EQ(docs.status().code(), Code::kInvalid);
  EXPECT_NE(docs.status().message().find("line "), std::string::npos);
}

TEST(RequestedPostgresMajorTest, FromVersionOrImageTag) {
  struct Case {
    Json spec;
    int major;
  };
  std::vector<Case> cases = {
      {{{"postgresVersion", 16}}, 16},
      {{{"image", "ghcr.io/petrel-dev/postgres:15.4"}}, 15},
      {{{"image", "postgres:14-bookworm"}}, 14},
      {{{"image", "localhost:5000/postgres"}}, 0},
      {{{"image", "postgres:latest"}}, 0},
      {Json::object(), 0},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(RequestedPostgresMajor({{"spec", c.spec}}), c.major) << c.spec.dump();
  }
}

class LoadManifestsTest : public ::testing::Test {
 protected:
  fs::path Write(const std::string& name, const std::string& text) {
    fs::path p = dir_.path() / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p;
  }
  testing::TempDir dir_;
};

TEST_F(LoadManifestsTest, ReadsADirectoryInNameOrderAndExpandsLists) {
  Write("d/b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: second}\n");
  Write("d/a.yml", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n"
                   "  metadata: {name: first, namespace: apps}\n");
  Write("d/c.json", R"({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "third"}})");
  Write("d/notes.txt", "ignored");
  auto loaded = LoadManifests({dir_.path() / "d"});
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ASSERT_EQ(loaded->size(), 3u);
  EXPECT_EQ(meta::Name((*loaded)[0].object), "first");
  EXPECT_EQ(meta::Namespace((*loaded)[0].object), "apps");
  EXPECT_EQ(meta::Name((*loaded)[1].object), "second");
  EXPECT_EQ(meta::Namespace((*loaded)[1].object), "default");
  EXPECT_EQ(meta::Name((*loaded)[2].object), "third");
}

TEST_F(LoadManifestsTest, EveryProblemIsReportedWithFileDocumentAndField) {
  fs::path f = Write("bad.yaml", R"(apiVersion: v1
kind: ConfigMap
metadata: {name: ok}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ok}
---
apiVersion: v1
kind: ConfigMap
metadata: {}
---
- just
- a list
---
apiVersion: petrel.dev/v1alpha1
kind: PostgresAttachment
metadata: {name: app}
spec: {}
)");
  auto loaded = LoadManifests({f});
  ASSERT_EQ(loaded.status().code(), Code::kInvalid);
  const std::string& m = loaded.status().message();
  EXPECT_NE(m.find("bad.yaml: document 2: metadata.name: ConfigMap default/ok is defined twice"),
            std::string::npos) << m;
  EXPECT_NE(m.find("bad.yaml: document 3: metadata.name: is required"), std::string::npos) << m;
  EXPECT_NE(m.find("bad.yaml: document 4: is not a mapping"), std::string::npos) << m;
  EXPECT_NE(m.find("bad.yaml: document 5: spec.clusterRef"), std::string::npos) << m;
}

TEST_F(LoadManifestsTest, MissingPathIsAnError) {
  auto loaded = LoadManifests({dir_.path() / "nope.yaml"});
  EXPECT_EQ(loaded.status().code(), Code::kInvalid);
}

}  // namespace
}  // namespace petrel
