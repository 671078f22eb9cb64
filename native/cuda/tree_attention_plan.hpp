// How the cuda tree attention (tree_attention.cu) lays its blocks over a launch grid, on the host:
// plain C++, so test_model_math checks it on any machine. A block takes TA_ROWS query rows of one
// (sequence, kv head) pair and one chunk of that sequence's keys.
//   grid.x: the (sequence, kv head) pairs, up to SPEC_KERNEL_MAX_BATCH x 256 = 262144, more than
//           grid.y or grid.z may hold (65535): only grid.x reaches 2^31 - 1;
//   grid.y: row tiles of the longest tree (at most 128 tokens x 256 query heads per kv head / 64);
//   grid.z: key chunks (about two blocks per SM in all, so a few hundred at most).
#pragma once

#include <algorithm>
#include <cstdint>

namespace specula::cuda {

constexpr int TA_ROWS = 64;         // query rows per block
constexpr int TA_KEYS = 32;         // keys per tile: one per lane
constexpr int TA_MIN_CHUNK = 256;   // keys; smaller chunks cost more in merging than they gain
constexpr int64_t GRID_X_MAX = 2147483647;
constexpr int64_t GRID_YZ_MAX = 65535;

struct TreeAttentionGrid {
    int32_t chunk = 0;    // keys per chunk, a multiple of TA_KEYS
    int32_t n_chunks = 0; // chunks of the longest sequence's keys
    int64_t x = 0, y = 0, z = 0;
    bool fits() const { return x >= 1 && x <= GRID_X_MAX && y >= 1 && y <= GRID_YZ_MAX && z >= 1 && z <= GRID_YZ_MAX; }
};

// B sequences of n_head_kv kv heads; rows_max: the most query rows of a sequence (tree tokens x
// query heads per kv head); keys_max: the most keys of a sequence (prefix + tree). The keys are
// split so that the grid covers the GPU about twice, no chunk under TA_MIN_CHUNK.
inline TreeAttentionGrid plan_tree_attention(int64_t B, int64_t n_head_kv, int64_t rows_max, int64_t keys_max,
                                             int64_t sm_count) {
    TreeAttentionGrid g;
    const int64_t row_tiles = (rows_max + TA_ROWS - 1) / TA_ROWS;
    const int64_t base_blocks = std::max<int64_t>(1, row_tiles * B * n_head_kv);
    int64_t want = (2 * sm_count + base_blocks - 1) / base_blocks;
    const int64_t max_chunks = std::max<int64_t>(1, (keys_max + TA_MIN_CHUNK - 1) / TA_MIN_CHUNK);
    want = std::max<int64_t>(1, std::min(want, max_chunks));
    int64_t chunk = (keys_max + want - 1) / want;
    chunk = std::max<int64_t>(TA_KEYS, (chunk + TA_KEYS - 1) / TA_KEYS * TA_KEYS);
    g.chunk = (int32_t)chunk;
    g.n_chunks = (int32_t)std::max<int64_t>(1, (keys_max + chunk - 1) / chunk);
    g.x = B * n_head_kv;
    g.y = row_tiles;
    g.z = g.n_chunks;
    return g;
}

} // namespace specula::cuda
