// Tuning overrides read from the environment (each once per process, where it is used): SPECULA_POOL_*_SPIN_US,
// SPECULA_PLAIN_*_BLOCK_BYTES, SPECULA_EAGLE_CALLER_ROWS. They are for measuring, so a value that is not a whole
// number in range is ignored rather than reported.
#pragma once

#include <cstdint>
#include <cstdlib>

namespace specula {

// name's value as a whole number in [lo, hi]; fallback when unset, empty, not a whole number or out of range.
inline int64_t env_int64(const char *name, int64_t fallback, int64_t lo, int64_t hi) {
    const char *s = std::getenv(name);
    if (!s || !*s) return fallback;
    char *end = nullptr;
    const long long v = std::strtoll(s, &end, 10);
    return (*end == 0 && v >= lo && v <= hi) ? (int64_t)v : fallback;
}

} // namespace specula
