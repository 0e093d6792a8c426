#include "cli/plugin/output.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <sstream>

namespace petrel::plugin {

Result<OutputFormat> ParseOutputFormat(const std::string& text) {
  if (text.empty() || text == "table" || text == "wide") return OutputFormat::kTable;
  if (text == "json") return OutputFormat::kJson;
  if (text == "yaml") return OutputFormat::kYaml;
  return InvalidError("unknown output format \"" + text + "\": use -o table, -o json or -o yaml");
}

std::string RenderTable(const Table& table) {
  std::vector<size_t> widths(table.headers.size(), 0);
  auto widen = [&widths](const std::vector<std::string>& cells) {
    if (cells.size() > widths.size()) widths.resize(cells.size(), 0);
    for (size_t i = 0; i < cells.size(); ++i) widths[i] = std::max(widths[i], cells[i].size());
  };
  widen(table.headers);
  for (const auto& row : table.rows) widen(row);

  std::string out;
  auto emit = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < cells.size(); ++i) {
      line += cells[i];
      if (i + 1 < cells.size()) line.append(widths[i] - cells[i].size() + 3, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  };
  emit(table.headers);
  for (const auto& row : table.rows) emit(row);
  return out;
}

std::string RenderJson(const Json& doc) { return doc.dump(2) + "\n"; }

namespace {

// Strings YAML 1.1/1.2 readers would turn into booleans, numbers or null.
bool NeedsQuotes(const std::string& s) {
  if (s.empty()) return true;
  static const char* const kWords[] = {"true", "false", "yes",   "no",  "on", "off", "null",
                                       "~",    "True",  "False", "Yes", "No", "On",  "Off",
                                       "Null", "TRUE",  "FALSE", "YES", "NO", "ON",  "OFF",
                                       "NULL", "y",     "n",     "Y",   "N"};
  for (const char* w : kWords) {
    if (s == w) return true;
  }
  bool numeric = std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E';
  });
  return numeric || s.front() == ' ' || s.back() == ' ';
}

void Emit(YAML::Emitter& out, const Json& value) {
  switch (value.type()) {
    case Json::value_t::object:
      out << YAML::BeginMap;
      for (const auto& [key, item] : value.items()) {
        out << YAML::Key << key << YAML::Value;
        Emit(out, item);
      }
      out << YAML::EndMap;
      break;
    case Json::value_t::array:
      out << YAML::BeginSeq;
      for (const auto& item : value) Emit(out, item);
      out << YAML::EndSeq;
      break;
    case Json::value_t::string: {
      const auto& s = value.get_ref<const std::string&>();
      if (NeedsQuotes(s)) out << YAML::DoubleQuoted;
      out << s;
      break;
    }
    case Json::value_t::boolean:
      out << value.get<bool>();
      break;
    case Json::value_t::null:
      out << YAML::Null;
      break;
    case Json::value_t::number_unsigned:
      out << value.get<uint64_t>();
      break;
    case Json::value_t::number_float:
      out << value.get<double>();
      break;
    default:
      out << value.get<int64_t>();
      break;
  }
}

}  // namespace

Result<std::string> RenderYaml(const Json& doc) {
  try {
    YAML::Emitter out;
    out.SetBoolFormat(YAML::TrueFalseBool);
    Emit(out, doc);
    if (!out.good()) return InternalError("rendering YAML: " + out.GetLastError());
    return std::string(out.c_str()) + "\n";
  } catch (const YAML::Exception& e) {
    return InternalError(std::string("rendering YAML: ") + e.what());
  }
}

Result<std::string> RenderDocument(const Json& doc, OutputFormat format) {
  if (format == OutputFormat::kYaml) return RenderYaml(doc);
  return RenderJson(doc);
}

}  // namespace petrel::plugin
