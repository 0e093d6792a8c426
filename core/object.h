// Kubernetes objects are nlohmann::json values (the wire format) with small accessors for
// the metadata every layer touches. Pure functions; thread-safe on distinct values.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/types.h"

namespace petrel {

using Json = nlohmann::json;

namespace meta {
std::string Name(const Json& obj);
std::string Namespace(const Json& obj);
ObjectKey Key(const Json& obj);
std::string Uid(const Json& obj);
std::string ResourceVersion(const Json& obj);
int64_t Generation(const Json& obj);
std::map<std::string, std::string> Labels(const Json& obj);
std::string Label(const Json& obj, const std::string& key);
std::string Annotation(const Json& obj, const std::string& key);
bool IsBeingDeleted(const Json& obj);  // metadata.deletionTimestamp set
bool HasFinalizer(const Json& obj, const std::string& finalizer);

// The ownerReference with controller=true, if any.
struct OwnerRef {
  std::string api_version, kind, name, uid;
  bool controller = false;
};
std::vector<OwnerRef> OwnerRefs(const Json& obj);
std::optional<OwnerRef> ControllerOf(const Json& obj);
// An ownerReference entry (controller=true, blockOwnerDeletion=true) pointing at `owner`.
Json ControllerRefTo(const Json& owner);
}  // namespace meta

// A parsed label selector: equality terms plus set-based terms (In, NotIn, Exists,
// DoesNotExist), as in metav1.LabelSelector and the `labelSelector` query string.
class LabelSelector {
 public:
  LabelSelector() = default;  // matches everything
  static LabelSelector FromMap(const std::map<std::string, std::string>& equals);
  // From a metav1.LabelSelector JSON object ({matchLabels, matchExpressions}).
  static LabelSelector FromJson(const Json& selector);
  // From the query-string form: "a=b,c!=d,e in (x,y),!f"; false when malformed.
  static bool Parse(const std::string& text, LabelSelector* out);

  bool Matches(const std::map<std::string, std::string>& labels) const;
  bool Empty() const { return terms_.empty(); }
  std::string ToString() const;  // query-string form

 private:
  enum class Op { kEquals, kNotEquals, kIn, kNotIn, kExists, kNotExists };
  struct Term {
    std::string key;
    Op op;
    std::vector<std::string> values;
  };
  std::vector<Term> terms_;
};

}  // namespace petrel
