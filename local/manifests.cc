#include "local/manifests.h"

#include <algorithm>
#include <cctype>
#include <set>

#include <yaml-cpp/yaml.h>

#include "api/attachment.h"
#include "api/cluster.h"
#include "local/files.h"
#include "local/store.h"

namespace petrel {

namespace fs = std::filesystem;

namespace {

bool IsInteger(const std::string& s) {
  size_t i = (s.size() > 1 && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (i == s.size()) return false;
  return std::all_of(s.begin() + i, s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

bool IsFloat(const std::string& s) {
  if (s.empty() || s.find_first_of("0123456789") == std::string::npos) return false;
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return end != nullptr && *end == '\0' && s.find_first_not_of("+-0123456789.eE") == std::string::npos;
}

// YAML 1.2 core schema for plain scalars; quoted scalars (tag "!") stay strings.
Json ScalarToJson(const YAML::Node& node) {
  const std::string& v = node.Scalar();
  if (node.Tag() == "!") return v;
  if (v.empty() || v == "~" || v == "null" || v == "Null" || v == "NULL") return nullptr;
  if (v == "true" || v == "True" || v == "TRUE") return true;
  if (v == "false" || v == "False" || v == "FALSE") return false;
  if (IsInteger(v)) {
    try {
      return std::stoll(v);
    } catch (const std::exception&) {
      return v;
    }
  }
  if (IsFloat(v)) return std::stod(v);
  return v;
}

Json NodeToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar:
      return ScalarToJson(node);
    case YAML::NodeType::Sequence: {
      Json out = Json::array();
      for (const auto& item : node) out.push_back(NodeToJson(item));
      return out;
    }
    case YAML::NodeType::Map: {
      Json out = Json::object();
      for (const auto& kv : node) out[kv.first.as<std::string>()] = NodeToJson(kv.second);
      return out;
    }
  }
  return nullptr;
}

bool IsManifestFile(const fs::path& p) {
  std::string ext = p.extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

}  // namespace

Result<std::vector<Json>> ParseYamlDocuments(const std::string& text) {
  try {
    std::vector<Json> out;
    for (const YAML::Node& doc : YAML::LoadAll(text)) out.push_back(NodeToJson(doc));
    return out;
  } catch (const YAML::Exception& e) {
    return InvalidError("YAML syntax error at line " + std::to_string(e.mark.line + 1) +
                        ", column " + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
}

int RequestedPostgresMajor(const Json& cluster) {
  const Json spec = cluster.value("spec", Json::object());
  if (spec.contains("postgresVersion") && spec["postgresVersion"].is_number_integer()) {
    return spec["postgresVersion"].get<int>();
  }
  std::string image = spec.value("image", "");
  auto colon = image.rfind(':');
  if (colon == std::string::npos || image.find('/', colon) != std::string::npos) return 0;
  std::string tag = image.substr(colon + 1);
  size_t digits = 0;
  while (digits < tag.size() && std::isdigit(static_cast<unsigned char>(tag[digits]))) ++digits;
  if (digits == 0 || digits > 3) return 0;
  return std::stoi(tag.substr(0, digits));
}

std::vector<fs::path> ManifestFiles(const std::vector<fs::path>& paths) {
  std::vector<fs::path> files;
  for (const fs::path& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> in_dir;
      for (const auto& entry : fs::directory_iterator(p, ec)) {
        if (entry.is_regular_file() && IsManifestFile(entry.path())) in_dir.push_back(entry.path());
      }
      std::sort(in_dir.begin(), in_dir.end());
      files.insert(files.end(), in_dir.begin(), in_dir.end());
    } else {
      files.push_back(p);
    }
  }
  return files;
}

Result<std::vector<Manifest>> LoadManifests(const std::vector<fs::path>& paths) {
  std::vector<Manifest> out;
  std::vector<StatusCause> problems;
  auto problem = [&](const fs::path& file, int doc, const std::string& field,
                     const std::string& reason) {
    std::string where = file.string() + (doc > 0 ? ": document " + std::to_string(doc) : "");
    problems.push_back({where + (field.empty() ? "" : ": " + field), "FieldValueInvalid", reason});
  };
  std::vector<fs::path> files = ManifestFiles(paths);
  if (files.empty()) {
    problem(paths.empty() ? fs::path("-f") : paths[0], 0, "",
            "no manifest files (*.yaml, *.yml, *.json) found");
  }
  std::set<std::string> seen;
  for (const fs::path& file : files) {
    auto text = ReadFile(file);
    if (!text.ok()) {
      problem(file, 0, "", text.status().message());
      continue;
    }
    std::vector<Json> docs;
    if (file.extension() == ".json") {
      try {
        docs.push_back(Json::parse(*text));
      } catch (const Json::exception& e) {
        problem(file, 0, "", std::string("JSON syntax error: ") + e.what());
        continue;
      }
    } else {
      auto parsed = ParseYamlDocuments(*text);
      if (!parsed.ok()) {
        problem(file, 0, "", parsed.status().message());
        continue;
      }
      docs = std::move(parsed).value();
    }
    int index = 0;
    for (Json& doc : docs) {
      ++index;
      if (doc.is_null()) continue;  // an empty document between ---
      std::vector<Json> objects;
      if (doc.is_object() && doc.value("kind", "") == "List" && doc.contains("items")) {
        for (const Json& item : doc["items"]) objects.push_back(item);
      } else {
        objects.push_back(doc);
      }
      for (Json& object : objects) {
        if (!object.is_object()) {
          problem(file, index, "", "is not a mapping (an object with apiVersion, kind, metadata)");
          continue;
        }
        std::string api_version = object.value("apiVersion", "");
        std::string kind = object.value("kind", "");
        if (api_version.empty() || kind.empty()) {
          problem(file, index, api_version.empty() ? "apiVersion" : "kind", "is required");
          continue;
        }
        const ResourceType* type = resources::FindByKind(api_version, kind);
        if (type == nullptr || LocalStoreServedType(*type) == nullptr) {
          problem(file, index, "kind",
                  api_version + " " + kind + " is not served by petrel local; use "
                  "PostgresCluster or PostgresAttachment (petrel.dev/v1alpha1), Secret or "
                  "ConfigMap (v1)");
          continue;
        }
        Json metadata = object.value("metadata", Json::object());
        if (!metadata.is_object() || metadata.value("name", "").empty()) {
          problem(file, index, "metadata.name", "is required");
          continue;
        }
        if (type->namespaced && metadata.value("namespace", "").empty()) {
          object["metadata"]["namespace"] = "default";
        }
        Status valid = Status::Ok();
        if (*type == resources::kPostgresAttachment) valid = ParseAttachment(object).status();
        if (*type == resources::kPostgresCluster) {
          valid = ParseClusterSpec(object.value("spec", Json::object())).status();
        }
        if (!valid.ok()) {
          if (valid.causes().empty()) problem(file, index, "", valid.message());
          for (const StatusCause& c : valid.causes()) problem(file, index, c.field, c.message);
          continue;
        }
        std::string id = type->GroupResource() + "/" + meta::Key(object).ToString();
        if (!seen.insert(id).second) {
          problem(file, index, "metadata.name",
                  kind + " " + meta::Key(object).ToString() + " is defined twice");
          continue;
        }
        out.push_back(Manifest{file, index, std::move(object)});
      }
    }
  }
  if (!problems.empty()) {
    std::string message = "invalid manifests:";
    for (const StatusCause& c : problems) message += "\n  " + c.field + ": " + c.message;
    return InvalidError(message).WithCauses(problems);
  }
  return out;
}

}  // namespace petrel
