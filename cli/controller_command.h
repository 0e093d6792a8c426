// `petrel controller`: the operator's control plane against a kube-apiserver. Loads the
// kubeconfig (or in-cluster config), builds the Manager, runs every registered controller
// factory (controller/registry.h) and blocks until SIGTERM/SIGINT. Exit status: 0 after a
// clean shutdown, 1 on bad flags or configuration, on a start-up failure, or when leadership
// is lost.
#pragma once

#include <chrono>
#include <string>

#include <CLI/CLI.hpp>

namespace petrel {

void AddControllerCommand(CLI::App& app);

// Go-style durations as controller-runtime flags take them: "15s", "500ms", "1m30s", "2h";
// a bare number is seconds. False when malformed or negative.
bool ParseDuration(const std::string& text, std::chrono::milliseconds* out);

}  // namespace petrel
