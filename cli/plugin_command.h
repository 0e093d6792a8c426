// `petrel kubectl …`: the kubectl plugin. The same binary runs as the plugin when it is
// invoked through a symlink named `kubectl-petrel` on PATH (kubectl's plugin discovery), so
// `kubectl petrel status db` and `petrel kubectl status db` are the same command.
//
// Commands: status, list, users list, db list, connect, attach, detach, create. Each fetches
// what it needs from the API (HttpKubeClient with the kubectl-style --kubeconfig, --context and
// -n flags), hands it to the pure builders in cli/plugin/views.h, and prints the result as a
// table, JSON or YAML (-o). Errors go to stderr and exit with status 1.
//
// Thread-safety: single-threaded command-line code.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace petrel {

// The name of the symlink kubectl discovers: `kubectl petrel …` runs `kubectl-petrel …`.
inline constexpr const char* kKubectlPluginName = "kubectl-petrel";

// Adds the `kubectl` subcommand tree to `app`; a failing command stores 1 in *exit_code.
void AddKubectlPluginCommands(CLI::App& app, int* exit_code);

// The arguments to parse: unchanged, except that when argv[0]'s base name is
// kubectl-petrel, "kubectl" is inserted after it so the plugin commands run.
std::vector<std::string> PluginArguments(int argc, char** argv);

}  // namespace petrel
