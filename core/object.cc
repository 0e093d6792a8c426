#include "core/object.h"

#include <algorithm>
#include <sstream>

namespace petrel {
namespace meta {
namespace {
const Json& Metadata(const Json& obj) {
  static const Json kEmpty = Json::object();
  if (!obj.is_object()) return kEmpty;
  auto it = obj.find("metadata");
  return it != obj.end() && it->is_object() ? *it : kEmpty;
}
std::string StringAt(const Json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}
}  // namespace

std::string Name(const Json& obj) { return StringAt(Metadata(obj), "name"); }
std::string Namespace(const Json& obj) { return StringAt(Metadata(obj), "namespace"); }
ObjectKey Key(const Json& obj) { return ObjectKey{Namespace(obj), Name(obj)}; }
std::string Uid(const Json& obj) { return StringAt(Metadata(obj), "uid"); }
std::string ResourceVersion(const Json& obj) {
  return StringAt(Metadata(obj), "resourceVersion");
}
int64_t Generation(const Json& obj) {
  const Json& m = Metadata(obj);
  auto it = m.find("generation");
  return it != m.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}
std::map<std::string, std::string> Labels(const Json& obj) {
  std::map<std::string, std::string> out;
  const Json& m = Metadata(obj);
  auto it = m.find("labels");
  if (it == m.end() || !it->is_object()) return out;
  for (auto& [k, v] : it->items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}
static std::string MapEntry(const Json& obj, const char* field, const std::string& key) {
  const Json& m = Metadata(obj);
  auto it = m.find(field);
  if (it == m.end() || !it->is_object()) return {};
  auto v = it->find(key);
  return v != it->end() && v->is_string() ? v->get<std::string>() : std::string();
}
std::string Label(const Json& obj, const std::string& key) { return MapEntry(obj, "labels", key); }
std::string Annotation(const Json& obj, const std::string& key) {
  return MapEntry(obj, "annotations", key);
}
bool IsBeingDeleted(const Json& obj) {
  const Json& m = Metadata(obj);
  auto it = m.find("deletionTimestamp");
  return it != m.end() && !it->is_null();
}
bool HasFinalizer(const Json& obj, const std::string& finalizer) {
  const Json& m = Metadata(obj);
  auto it = m.find("finalizers");
  if (it == m.end() || !it->is_array()) return false;
  return std::any_of(it->begin(), it->end(),
                     [&](const Json& f) { return f.is_string() && f.get<std::string>() == finalizer; });
}
std::vector<OwnerRef> OwnerRefs(const Json& obj) {
  std::vector<OwnerRef> out;
  const Json& m = Metadata(obj);
  auto it = m.find("ownerReferences");
  if (it == m.end() || !it->is_array()) return out;
  for (const Json& r : *it) {
    if (!r.is_object()) continue;
    OwnerRef ref{StringAt(r, "apiVersion"), StringAt(r, "kind"), StringAt(r, "name"),
                 StringAt(r, "uid"), r.value("controller", false)};
    out.push_back(std::move(ref));
  }
  return out;
}
std::optional<OwnerRef> ControllerOf(const Json& obj) {
  for (auto& r : OwnerRefs(obj)) {
    if (r.controller) return r;
  }
  return std::nullopt;
}
Json ControllerRefTo(const Json& owner) {
  return Json{{"apiVersion", owner.value("apiVersion", "")},
              {"kind", owner.value("kind", "")},
              {"name", Name(owner)},
              {"uid", Uid(owner)},
              {"controller", true},
              {"blockOwnerDeletion", true}};
}
}  // namespace meta

LabelSelector LabelSelector::FromMap(const std::map<std::string, std::string>& equals) {
  LabelSelector s;
  for (auto& [k, v] : equals) s.terms_.push_back(Term{k, Op::kEquals, {v}});
  return s;
}

LabelSelector LabelSelector::FromJson(const Json& selector) {
  LabelSelector s;
  if (!selector.is_object()) return s;
  if (auto it = selector.find("matchLabels"); it != selector.end() && it->is_object()) {
    for (auto& [k, v] : it->items()) {
      if (v.is_string()) s.terms_.push_back(Term{k, Op::kEquals, {v.get<std::string>()}});
    }
  }
  if (auto it = selector.find("matchExpressions"); it != selector.end() && it->is_array()) {
    for (const Json& e : *it) {
      Term t{e.value("key", ""), Op::kIn, {}};
      std::string op = e.value("operator", "");
      if (op == "In") t.op = Op::kIn;
      else if (op == "NotIn") t.op = Op::kNotIn;
      else if (op == "Exists") t.op = Op::kExists;
      else if (op == "DoesNotExist") t.op = Op::kNotExists;
      else continue;
      if (auto v = e.find("values"); v != e.end() && v->is_array()) {
        for (const Json& x : *v) {
          if (x.is_string()) t.values.push_back(x.get<std::string>());
        }
      }
      s.terms_.push_back(std::move(t));
    }
  }
  return s;
}

static std::string Trim(std::string s) {
  auto b = s.find_first_not_of(" \t");
  auto e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

bool LabelSelector::Parse(const std::string& text, LabelSelector* out) {
  LabelSelector s;
  // Split on commas that are not inside parentheses.
  std::vector<std::string> parts;
  std::string cur;
  int depth = 0;
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == ',' && depth == 0) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) parts.push_back(cur);
  for (std::string p : parts) {
    p = Trim(p);
    if (p.empty()) return false;
    auto set_op = [&](const std::string& word, Op op) -> int {
      auto pos = p.find(" " + word + " ");
      if (pos == std::string::npos) return 0;
      Term t{Trim(p.substr(0, pos)), op, {}};
      std::string rest = Trim(p.substr(pos + word.size() + 2));
      if (rest.size() < 2 || rest.front() != '(' || rest.back() != ')') return -1;
      std::stringstream vs(rest.substr(1, rest.size() - 2));
      std::string v;
      while (std::getline(vs, v, ',')) t.values.push_back(Trim(v));
      s.terms_.push_back(std::move(t));
      return 1;
    };
    int r = set_op("notin", Op::kNotIn);
    if (r == 0) r = set_op("in", Op::kIn);
    if (r < 0) return false;
    if (r > 0) continue;
    if (auto pos = p.find("!="); pos != std::string::npos) {
      s.terms_.push_back(Term{Trim(p.substr(0, pos)), Op::kNotEquals, {Trim(p.substr(pos + 2))}});
    } else if (auto pos2 = p.find("=="); pos2 != std::string::npos) {
      s.terms_.push_back(Term{Trim(p.substr(0, pos2)), Op::kEquals, {Trim(p.substr(pos2 + 2))}});
    } else if (auto pos3 = p.find('='); pos3 != std::string::npos) {
      s.terms_.push_back(Term{Trim(p.substr(0, pos3)), Op::kEquals, {Trim(p.substr(pos3 + 1))}});
    } else if (p[0] == '!') {
      s.terms_.push_back(Term{Trim(p.substr(1)), Op::kNotExists, {}});
    } else {
      s.terms_.push_back(Term{p, Op::kExists, {}});
    }
  }
  *out = std::move(s);
  return true;
}

bool LabelSelector::Matches(const std::map<std::string, std::string>& labels) const {
  for (const Term& t : terms_) {
    auto it = labels.find(t.key);
    bool has = it != labels.end();
    auto in_values = [&] {
      return has && std::find(t.values.begin(), t.values.end(), it->second) != t.values.end();
    };
    switch (t.op) {
      case Op::kEquals:
        if (!has || it->second != t.values[0]) return false;
        break;
      case Op::kNotEquals:
        if (has && it->second == t.values[0]) return false;
        break;
      case Op::kIn:
        if (!in_values()) return false;
        break;
      case Op::kNotIn:
        if (in_values()) return false;
        break;
      case Op::kExists:
        if (!has) return false;
        break;
      case Op::kNotExists:
        if (has) return false;
        break;
    }
  }
  return true;
}

std::string LabelSelector::ToString() const {
  std::string out;
  for (const Term& t : terms_) {
    if (!out.empty()) out += ",";
    auto join = [&] {
      std::string v;
      for (auto& x : t.values) v += (v.empty() ? "" : ",") + x;
      return "(" + v + ")";
    };
    switch (t.op) {
      case Op::kEquals: out += t.key + "=" + t.values[0]; break;
      case Op::kNotEquals: out += t.key + "!=" + t.values[0]; break;
      case Op::kIn: out += t.key + " in " + join(); break;
      case Op::kNotIn: out += t.key + " notin " + join(); break;
      case Op::kExists: out += t.key; break;
      case Op::kNotExists: out += "!" + t.key; break;
    }
  }
  return out;
}

}  // namespace petrel
