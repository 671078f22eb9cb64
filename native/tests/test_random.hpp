// Seeded random inputs for the native tests and benchmarks: splitmix64, so every run of a test
// sees the same numbers, and a failure can be replayed from its seed.
#pragma once

#include <cstdint>

inline uint64_t splitmix64(uint64_t &s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
// Uniform in [-1, 1), 24 random bits.
inline float uniform(uint64_t &s) { return (float)((splitmix64(s) >> 40) * 0x1.0p-24) * 2.0f - 1.0f; }
// Uniform in [lo, hi), 24 random bits.
inline float uniform(uint64_t &s, float lo, float hi) { return lo + (hi - lo) * (float)((splitmix64(s) >> 40) * 0x1.0p-24); }
// Uniform in [0, 1), 53 random bits.
inline double unit(uint64_t &s) { return (double)(splitmix64(s) >> 11) * 0x1.0p-53; }
