#pragma once

namespace petrel {
inline constexpr const char* kVersion = "0.1.0-dev";
}
