#include "controller/registry.h"

#include <spdlog/spdlog.h>

namespace petrel {
namespace {
// A function-local static: registrations from other translation units' static initialisers
// may run before this file's statics would have been constructed.
std::map<std::string, ControllerFactory>& Factories() {
  static auto* factories = new std::map<std::string, ControllerFactory>();
  return *factories;
}
}  // namespace

bool RegisterControllerFactory(const std::string& name, ControllerFactory factory) {
  if (Factories().count(name)) spdlog::warn("controller factory {} registered twice", name);
  Factories()[name] = std::move(factory);
  return true;
}

const std::map<std::string, ControllerFactory>& ControllerFactories() { return Factories(); }

}  // namespace petrel
