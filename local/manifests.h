// Manifests for `petrel local`: YAML (multi-document) or JSON files, or a directory of them,
// turned into API objects and checked before anything is started. A problem is reported with
// the file, the document's index (1-based), the field and the reason; kubectl-style `List`
// documents are expanded into their items.
//
// Thread-safety: pure functions of the files they read.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/object.h"
#include "core/status.h"

namespace petrel {

struct Manifest {
  std::filesystem::path file;
  int document = 0;  // 1-based index in the file
  Json object;       // with metadata.namespace defaulted to "default" for namespaced kinds
};

// `path` is a file, or a directory whose *.yaml, *.yml and *.json files are read in name
// order. Invalid (with one cause per problem) when a file cannot be parsed or an object is
// unusable: missing apiVersion/kind/metadata.name, a kind petrel local does not serve, a
// PostgresCluster or PostgresAttachment whose spec does not validate, or the same object twice.
Result<std::vector<Manifest>> LoadManifests(const std::vector<std::filesystem::path>& paths);

// The files LoadManifests would read (to watch their modification times).
std::vector<std::filesystem::path> ManifestFiles(const std::vector<std::filesystem::path>& paths);

// YAML text (one or more documents) to JSON values; Invalid with line/column on a syntax error.
Result<std::vector<Json>> ParseYamlDocuments(const std::string& text);

// The Postgres major version a PostgresCluster asks for: spec.postgresVersion, else the
// image tag's leading number (":15", ":15.4", ":15-bookworm"); 0 when neither says.
int RequestedPostgresMajor(const Json& cluster);

}  // namespace petrel
