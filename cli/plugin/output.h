// How `petrel kubectl …` prints what it found: aligned tables (the default, like kubectl),
// JSON, or YAML. Every command first builds a JSON document (the machine-readable answer) and
// then renders it; tables are built from the same document, so `-o json` and the table never
// disagree. Pure functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "core/object.h"
#include "core/status.h"

namespace petrel::plugin {

enum class OutputFormat { kTable, kJson, kYaml };

// "table" (or ""), "json", "yaml"; anything else is Invalid with the accepted values.
Result<OutputFormat> ParseOutputFormat(const std::string& text);

struct Table {
  std::vector<std::string> headers;
  std::vector<std::vector<std::string>> rows;
};

// Columns padded to their widest cell and separated by three spaces, headers in upper case as
// given, no trailing blanks; "No resources found." style text is left to the caller.
std::string RenderTable(const Table& table);

// Pretty JSON with a trailing newline.
std::string RenderJson(const Json& doc);

// Block-style YAML of the same document (yaml-cpp emitter); strings that YAML would read as
// another type ("true", "1", "null", "") are quoted so the YAML round-trips to the same JSON.
Result<std::string> RenderYaml(const Json& doc);

// RenderJson or RenderYaml by format; kTable falls back to JSON (callers render tables).
Result<std::string> RenderDocument(const Json& doc, OutputFormat format);

}  // namespace petrel::plugin
