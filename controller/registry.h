// Where reconcilers plug into `petrel controller` without the CLI knowing each one.
//
// A reconciler's folder registers a factory that, given the Manager, builds its reconciler
// (with mgr.client(), mgr.reader(), ...), adds a controller and declares its watches:
//
//   PETREL_REGISTER_CONTROLLER(postgrescluster, [](Manager& mgr) -> Status {
//     auto& c = mgr.AddController("postgrescluster", std::make_shared<ClusterReconciler>(...));
//     mgr.Watch(c, resources::kPostgresCluster, EnqueueSelf());
//     mgr.Watch(c, resources::kPod, EnqueueControllerOwner("PostgresCluster"));
//     return Status::Ok();
//   });
//
// `petrel controller` runs every registered factory, in name order, before Manager::Run().
// Registration happens in static initialisers, which a linker drops from a static library
// unless the object file is referenced: link the library holding a registration into
// `petrel` whole, in cli/CMakeLists.txt:
//   target_link_libraries(petrel PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,petrel_x_reconciler>")
//
// Thread-safety: register during static initialisation (or before ControllerFactories() is
// first used); reading is safe afterwards.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "core/status.h"

namespace petrel {

class Manager;

using ControllerFactory = std::function<Status(Manager&)>;

// Returns true so that it can initialise a static. A second factory with the same name
// replaces the first (and logs that it did).
bool RegisterControllerFactory(const std::string& name, ControllerFactory factory);
// Every registered factory by name.
const std::map<std::string, ControllerFactory>& ControllerFactories();

}  // namespace petrel

#define PETREL_REGISTER_CONTROLLER(name, ...)                                              \
  static const bool petrel_controller_registered_##name [[maybe_unused]] = \
      ::petrel::RegisterControllerFactory(#name, __VA_ARGS__)
