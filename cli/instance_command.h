// `petrel instance`: the per-pod instance manager (see instance/run.h). This file only maps
// flags and environment variables onto InstanceOptions.
#pragma once

#include <CLI/CLI.hpp>

namespace petrel {

void AddInstanceCommand(CLI::App& app);

}  // namespace petrel
