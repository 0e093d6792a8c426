// Small filesystem helpers shared by the local store, the node agent and `petrel local`:
// crash-safe file replacement and private directories. Thread-compatible (no shared state).
#pragma once

#include <filesystem>
#include <string>

#include "core/status.h"

namespace petrel {

// Replaces `path` with `content`: writes a temporary file in the same directory with `mode`,
// fsyncs it, renames it over `path` and fsyncs the directory. Readers see the old or the new
// file, never a mix.
Status WriteFileAtomically(const std::filesystem::path& path, const std::string& content,
                           std::filesystem::perms mode);
// Creates `dir` and missing parents; sets `mode` on `dir` itself.
Status MakeDirectory(const std::filesystem::path& dir, std::filesystem::perms mode);
// The whole file; NotFound when it does not exist.
Result<std::string> ReadFile(const std::filesystem::path& path);

}  // namespace petrel
