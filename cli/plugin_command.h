// `petrel kubectl …`: the kubectl plugin. The same binary runs as the plugin when it is
// invoked through a symlink named `kubectl-petrel` on PATH (kubectl's plugin discovery), so
// `kubectl petrel status db` and `petrel kubectl status db` are the same command.
//
// Commands: status, list, users list, db list, checks list, connect, switchover, logs, attach,
// detach, create. Each fetches what it needs from the API (HttpKubeClient with the kubectl-style
// --kubeconfig, --context and -n flags), hands it to the pure builders in cli/plugin/views.h,
// and prints the result as a table, JSON or YAML (-o). Errors go to stderr and exit with
// status 1.
//
// Thread-safety: command-line code; `logs --follow` reads several Pods on threads of its own.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace petrel {

// The name of the symlink kubectl discovers: `kubectl petrel …` runs `kubectl-petrel …`.
inline constexpr const char* kKubectlPluginName = "kubectl-petrel";

// Adds the `kubectl` subcommand tree to `app`; a failing command stores 1 in *exit_code.
// kubectl's rules pick the kubeconfig: --kubeconfig, else $KUBECONFIG, else ~/.kube/config.
void AddKubectlPluginCommands(CLI::App& app, int* exit_code);

// Adds the same commands at the top level (`petrel status db`), for `petrel local`: the
// kubeconfig is --kubeconfig, else $KUBECONFIG, else the one `petrel local up` wrote into its
// state directory (--state-dir or the default), which reaches its loopback Kubernetes API.
void AddLocalPluginCommands(CLI::App& app, int* exit_code);

// The arguments to parse: unchanged, except that when argv[0]'s base name is
// kubectl-petrel, "kubectl" is inserted after it so the plugin commands run.
std::vector<std::string> PluginArguments(int argc, char** argv);

}  // namespace petrel
