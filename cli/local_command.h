// `petrel local`: Petrel on one machine with no Kubernetes.
//
//   petrel local up -f FILE|DIR [-f ...] [--state-dir DIR] [--address-block CIDR]
//     Checks everything first (manifests, Postgres binaries, the state directory lock, the
//     ports the instances and Services need) and starts nothing when something is wrong.
//     Then runs the LocalStore, the node agent, the service proxy and the controller manager
//     with every registered controller, applies the manifests, prints progress and, once a
//     cluster is ready, its endpoints (and each attachment's DATABASE_URL, password masked,
//     with the file that holds the full value). It stays in the foreground, re-applying the
//     manifest files when they change (so editing `replicas` scales the cluster), until
//     SIGINT/SIGTERM or `petrel local down`; stopping keeps all data.
//     Removing a document from the files does not delete its object (as `kubectl apply`
//     without --prune).
//   petrel local status [--state-dir DIR]   clusters and instances of the running one
//   petrel local down [--state-dir DIR] [--delete-data]
//
// The running `up` serves a small HTTP API on 127.0.0.1 (GET /status, POST /shutdown with a
// bearer token) and records its address and token in <state>/local.json (mode 0600).
#pragma once

#include <CLI/CLI.hpp>

namespace petrel {

void AddLocalCommand(CLI::App& app);

}  // namespace petrel
