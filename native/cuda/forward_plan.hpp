// The cuda forward pass's plan, on the host: its fixed shapes (row buckets, slices), the graph
// key, the per-step parameter block and the tree-attention key sets it carries, the attention
// kernel's split of the keys and its online softmax, and the byte layouts of weights and
// scratch. Plain C++ (SPEC_HD is `inline` without nvcc): the cuda backend and its kernels include
// it, and test_model_math checks all of it on any machine, without a GPU or nvcc.
#pragma once

#include "../core/model_math.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace specula::mm {

// ---------------------------------------------------------------- shapes of the cuda forward

// Rows of one slice: inputs longer than this run in slices, and a call of n <= MAX_ROWS tokens
// runs as one slice padded to its bucket. It is also the largest tree (SPEC_MAX_TREE_NODES), so
// verification of any tree is one slice, one graph.
constexpr int32_t MAX_ROWS = 128;
static_assert(MAX_ROWS == SPEC_MAX_TREE_NODES, "a tree must fit one slice");

// The padded row count a slice of n tokens runs at: the next power of two (1, 2, 4, ..., 128).
// Padded rows write nothing to the KV cache and their outputs are never copied out.
SPEC_HD int32_t bucket_rows(int32_t n) {
    int32_t b = 1;
    while (b < n && b < MAX_ROWS) b *= 2;
    return b;
}

// Everything that fixes the sequence of launches of one slice, so one captured graph serves
// every step (and every kv cache of the model, and every mix of sequences) with the same key.
// Pointers and per-step numbers live in the parameter block instead. A slice's sequences share
// their exit configuration (the forward groups a batch by it); their logits modes may differ:
// the LM head runs over the rows that want logits, gathered (head_rows: their bucket, 0 = none).
struct GraphKey {
    int32_t rows = 1;       // bucket_rows of the slice
    int32_t head_rows = 0;  // bucket_rows of the rows the LM head runs over; 0 = no head
    int32_t exit_layer = 0; // 0 = none
    bool exit_hidden = false, exit_logits = false, stop_at_exit = false;
    bool final_hidden = false; // ABI 0.8: the rows after the output norm go out (StepSeq::final_hidden)

    uint64_t pack() const {
        return (uint64_t)(uint32_t)rows | (uint64_t)(uint32_t)head_rows << 16 | (uint64_t)(uint32_t)exit_layer << 32 |
               (uint64_t)exit_hidden << 56 | (uint64_t)exit_logits << 57 | (uint64_t)stop_at_exit << 58 |
               (uint64_t)final_hidden << 59;
    }
};

// ---------------------------------------------------------------- the per-step parameter block

constexpr int MASK_BITS = 128; // key slots a token's mask covers past its dense prefix

// One row (token) of a slice. Its keys, in its sequence's cache: every slot below dense_end (the
// committed prefix and the leading tokens of its call that are all its ancestors), and slot
// dense_end + b for each set bit b of mask (its other ancestors and itself).
struct StepRow {
    int32_t token, position, dense_end;
    int32_t seq; // its sequence: index into StepParams::seqs
    uint32_t mask[MASK_BITS / 32];
};

// One sequence's part of a slice (a slice of one spec_forward call has one; of a batch, up to
// one per row). Device addresses as integers (0 = no such output).
struct StepSeq {
    uint64_t kv;          // its cache: [n_layer][K, V][capacity][n_head_kv][head_dim]
    uint64_t layer_bytes; // capacity * slot bytes: one K (or V) of one layer
    uint64_t exit_hidden; // the exit_hidden row of its first row in the slice
    uint64_t exit_logits; // the exit_logits row of its first row in the slice
    int32_t first_row;    // its rows of the slice: [first_row, first_row + n_rows)
    int32_t n_rows;
    int32_t first_slot;   // the cache slot of row first_row: committed length + its index in the call
    int32_t tile0;        // its first attention tile (attn_seq_tiles of the sequences before it)
    uint64_t slot_positions; // ABI 0.8, sliding window: int32 [capacity], the position each cache slot's
                             // key was computed at (kv_positions_bytes; 0 without a window)
    uint64_t final_hidden; // the final_hidden row of its first row in the slice (0 = none)
};

struct StepHeader {
    int32_t n_rows;  // real rows in the slice (the rest of the bucket is padding)
    int32_t n_seqs;  // sequences with rows in the slice
    int32_t n_head;  // rows whose logits go out: head_src / head_dst [0, n_head)
    int32_t n_tiles; // attention tiles in use (attn_seq_tiles summed over the sequences)
};

struct StepParams {
    StepHeader h;
    StepRow rows[MAX_ROWS];
    StepSeq seqs[MAX_ROWS];
    int32_t head_src[MAX_ROWS];  // the slice rows the LM head runs over, in row order
    uint64_t head_dst[MAX_ROWS]; // where the logits of head row k go (a caller's logits row)
};
static_assert(sizeof(StepRow) == 32 && sizeof(StepSeq) == 64 && sizeof(StepHeader) == 16, "the block is uploaded as bytes");

// Bytes to upload for a slice: the whole block (13 KB), one copy.
SPEC_HD size_t step_upload_bytes() { return sizeof(StepParams); }

SPEC_HD bool key_allowed(const StepRow &r, int32_t slot) {
    if (slot < r.dense_end) return true;
    const uint32_t b = (uint32_t)(slot - r.dense_end);
    return b < (uint32_t)MASK_BITS && ((r.mask[b >> 5] >> (b & 31)) & 1u);
}

// Fills dense (the count of leading call tokens that are all ancestors-or-self of token i) and
// the mask of its other ancestors relative to slot committed + dense[i], for tokens [0, n) of a
// call (parents topological, -1 = root). Returns -1, or the first token whose ancestors reach
// further than MASK_BITS past its dense prefix (possible only for trees of more than MAX_ROWS
// tokens: such a call is unsupported).
inline int32_t build_key_sets(const int32_t *parents, int32_t n, int32_t *dense, uint32_t (*mask)[MASK_BITS / 32]) {
    for (int32_t i = 0; i < n; i++) {
        const int32_t p = parents[i];
        // anc*(i) = anc*(p) + {i}: the leading run grows only when it already reaches i.
        dense[i] = p < 0 ? (i == 0 ? 1 : 0) : (dense[p] == i ? i + 1 : dense[p]);
        for (int w = 0; w < MASK_BITS / 32; w++) mask[i][w] = 0;
        for (int32_t j = i; j >= dense[i]; j = parents[j]) {
            const int32_t b = j - dense[i];
            if (b >= MASK_BITS) return i;
            mask[i][b >> 5] |= 1u << (b & 31);
        }
    }
    return -1;
}

// The attention kernel's query rows are (token, query head of a kv head) pairs, ATT_ROWS per tile;
// a tile never mixes sequences (it reads one cache), so a sequence of n rows takes
// attn_seq_tiles(n, G) tiles (defined below with the kernel's other shapes).
SPEC_HD int32_t attn_seq_tiles(int32_t n_rows, int32_t G);

// One sequence of a forward call as the slice filler sees it: its arguments (parents and
// positions filled in), its key sets (build_key_sets over its tokens), its cache and outputs.
struct SeqCall {
    const int32_t *tokens = nullptr, *positions = nullptr, *dense = nullptr;
    const uint32_t (*mask)[MASK_BITS / 32] = nullptr;
    int32_t committed = 0, n_tokens = 0, logits_mode = SPEC_LOGITS_NONE;
    int32_t row0 = 0; // its first row among the call's concatenated rows
    // ABI 0.10 (an EAGLE layer's spec_eagle_forward_extend): the tokens follow this many pending tokens of earlier calls,
    // so token i takes cache slot committed + pending + i; dense and mask are then the whole pending tree's key sets
    // (build_extension_key_sets) from the call's first token on, relative to committed as always
    int32_t pending = 0;
    uint64_t kv = 0, layer_bytes = 0, logits = 0, exit_hidden = 0, exit_logits = 0;
    uint64_t slot_positions = 0, final_hidden = 0; // its cache's slot positions (sliding window), its final_hidden
};

// The parameter block of slice [u0, u0 + n_rows) of a call whose sequences' rows are concatenated
// (seqs in row order). G: query heads per kv head (for the attention tiles). The head rows: every
// row of an ALL sequence, and the last row of a LAST sequence when it lies in this slice.
inline void fill_step(StepParams &sp, const SeqCall *seqs, int32_t n_seqs, int32_t u0, int32_t n_rows, int64_t n_embd,
                      int64_t n_vocab, int32_t G) {
    sp.h.n_rows = n_rows;
    sp.h.n_seqs = 0;
    sp.h.n_head = 0;
    sp.h.n_tiles = 0;
    const uint64_t vrow = (uint64_t)n_vocab * 4, erow = (uint64_t)n_embd * 4;
    for (int32_t s = 0; s < n_seqs; s++) {
        const SeqCall &q = seqs[s];
        const int32_t lo = q.row0 > u0 ? q.row0 : u0, hi = q.row0 + q.n_tokens < u0 + n_rows ? q.row0 + q.n_tokens : u0 + n_rows;
        if (lo >= hi) continue;
        const int32_t idx = sp.h.n_seqs++, i0 = lo - q.row0; // i0: the sequence's own index of its first row here
        StepSeq &e = sp.seqs[idx];
        e.kv = q.kv;
        e.layer_bytes = q.layer_bytes;
        e.exit_hidden = q.exit_hidden ? q.exit_hidden + (uint64_t)i0 * erow : 0;
        e.exit_logits = q.exit_logits ? q.exit_logits + (uint64_t)i0 * vrow : 0;
        e.slot_positions = q.slot_positions;
        e.final_hidden = q.final_hidden ? q.final_hidden + (uint64_t)i0 * erow : 0;
        e.first_row = lo - u0;
        e.n_rows = hi - lo;
        e.first_slot = q.committed + q.pending + i0;
        e.tile0 = sp.h.n_tiles;
        sp.h.n_tiles += attn_seq_tiles(e.n_rows, G);
        for (int32_t i = i0; i < i0 + e.n_rows; i++) {
            StepRow &r = sp.rows[e.first_row + (i - i0)];
            r.token = q.tokens[i];
            r.position = q.positions[i];
            r.dense_end = q.committed + q.dense[i];
            r.seq = idx;
            for (int w = 0; w < MASK_BITS / 32; w++) r.mask[w] = q.mask[i][w];
            const bool head = q.logits && (q.logits_mode == SPEC_LOGITS_ALL || (q.logits_mode == SPEC_LOGITS_LAST && i == q.n_tokens - 1));
            if (head) {
                sp.head_src[sp.h.n_head] = e.first_row + (i - i0);
                sp.head_dst[sp.h.n_head++] = q.logits + (q.logits_mode == SPEC_LOGITS_ALL ? (uint64_t)i * vrow : 0);
            }
        }
    }
}

// An EAGLE extension's key sets (ABI 0.10): a call of n tokens after P pending ones, pending_parents the pending
// tokens' parents and parents the new tokens', both as whole-tree indices (-1: a root over the committed prefix). The
// key sets are those of one call over the whole tree (all_parents: [P + n]), so the new tokens see their pending
// ancestors; dense and mask get P + n entries, of which the call's rows read [P, P + n) (SeqCall::pending = P).
// Returns build_key_sets's answer for the whole tree (-1, or the first token it cannot describe).
inline int32_t build_extension_key_sets(const int32_t *pending_parents, int32_t P, const int32_t *parents, int32_t n,
                                        int32_t *all_parents, int32_t *dense, uint32_t (*mask)[MASK_BITS / 32]) {
    for (int32_t i = 0; i < P; i++) all_parents[i] = pending_parents[i];
    for (int32_t t = 0; t < n; t++) all_parents[P + t] = parents[t];
    return build_key_sets(all_parents, P + n, dense, mask);
}

// ---------------------------------------------------------------- attention

// The attention kernel: a block takes ATT_ROWS query rows (row = token * G + g: the G query
// heads of one kv head, then the next token) and one split of the keys, in tiles of ATT_KEYS.
constexpr int ATT_ROWS = 16;
constexpr int ATT_KEYS = 32;
constexpr int ATT_TARGET_BLOCKS = 264; // about two blocks per SM of an H100/H200
constexpr int ATT_MAX_SPLITS = 32;
constexpr int ATT_MAX_HEAD_DIM = 256;

SPEC_HD int32_t attn_tiles(int32_t rows, int32_t G) { return (rows * G + ATT_ROWS - 1) / ATT_ROWS; }
SPEC_HD int32_t attn_seq_tiles(int32_t n_rows, int32_t G) { return attn_tiles(n_rows, G); }

// The tiles a slice of `rows` rows (its bucket) may need, however its rows split into sequences:
// the attention grid's height, fixed per bucket. Each sequence rounds up by less than one tile,
// and a sequence has at least one row: at most attn_tiles(rows, G) + rows - 1; and no row needs
// more than ceil(G / ATT_ROWS) tiles of its own.
SPEC_HD int32_t attn_grid_tiles(int32_t rows, int32_t G) {
    const int32_t a = attn_tiles(rows, G) + rows - 1, b = rows * ((G + ATT_ROWS - 1) / ATT_ROWS);
    return a < b ? a : b;
}

// The sequence (index into StepParams::seqs) that attention tile `tile` (< h.n_tiles) belongs to.
SPEC_HD int32_t attn_tile_seq(const StepParams &p, int32_t tile) {
    int32_t s = 0;
    while (s + 1 < p.h.n_seqs && p.seqs[s + 1].tile0 <= tile) s++;
    return s;
}

// The kernel instance a head_dim runs on: head dims up to 32, 64, 128 or ATT_MAX_HEAD_DIM.
SPEC_HD int32_t attn_head_dim_bucket(int32_t head_dim) {
    return head_dim <= 32 ? 32 : head_dim <= 64 ? 64 : head_dim <= 128 ? 128 : ATT_MAX_HEAD_DIM;
}

// Dynamic shared memory of the attention kernel at head_dim D: Q rows, K tile (rows padded by
// one float), V tile, all f32.
SPEC_HD size_t attn_smem_bytes(int32_t D) {
    return sizeof(float) * ((size_t)ATT_ROWS * D + (size_t)ATT_KEYS * (D + 1) + (size_t)ATT_KEYS * D);
}

// Splits of the keys (flash decoding): enough blocks to fill the device when there are few rows,
// one split when the rows alone fill it. Fixed per bucket, so a graph's grid never changes;
// the split's share of the keys is computed from the step's key count.
SPEC_HD int32_t attn_splits(int32_t rows, int32_t G, int32_t n_head_kv) {
    const int32_t blocks = attn_tiles(rows, G) * n_head_kv;
    int32_t s = ATT_TARGET_BLOCKS / (blocks > 0 ? blocks : 1);
    return s < 1 ? 1 : (s > ATT_MAX_SPLITS ? ATT_MAX_SPLITS : s);
}

// Keys [k0, k1) of split s of n_keys keys: whole tiles, spread evenly.
SPEC_HD void split_range(int32_t n_keys, int32_t splits, int32_t s, int32_t &k0, int32_t &k1) {
    const int32_t tiles = (n_keys + ATT_KEYS - 1) / ATT_KEYS;
    const int32_t per = (tiles + splits - 1) / splits;
    k0 = s * per * ATT_KEYS;
    k1 = (s + 1) * per * ATT_KEYS;
    if (k0 > n_keys) k0 = n_keys;
    if (k1 > n_keys) k1 = n_keys;
}

// Online softmax: the factor an accumulator kept at running max m_old is rescaled by when the
// max becomes m_new (0 while nothing was accumulated).
SPEC_HD float softmax_rescale(float m_old, float m_new) {
    if (m_old == -INFINITY) return 0.0f;
#ifdef __CUDA_ARCH__
    return expf(m_old - m_new);
#else
    return std::exp(m_old - m_new);
#endif
}
SPEC_HD float softmax_weight(float score, float m) {
#ifdef __CUDA_ARCH__
    return expf(score - m);
#else
    return std::exp(score - m);
#endif
}

// Partial results of the splits of one query row: floats per (split, row) of the partial buffer.
SPEC_HD int64_t attn_partial_floats_per_row(int32_t head_dim) { return 2 + (int64_t)head_dim; }

// ---------------------------------------------------------------- device memory layouts

SPEC_HD uint64_t align256(uint64_t n) { return (n + 255) & ~(uint64_t)255; }

// Pieces placed one after another, each starting 256-byte aligned: how every device allocation here
// (scratch, EAGLE scratch, weights, heads) is laid out.
struct AlignedLayout {
    uint64_t at = 0; // the end of what is placed so far
    uint64_t place(uint64_t bytes) {
        const uint64_t off = align256(at);
        at = off + bytes;
        return off;
    }
    uint64_t bytes() const { return align256(at); }
};

// Matrices that multiply the same activations (a layer's q, k, v; its gate and up) are placed
// back to back and run as one matrix of all their rows, one weight-streaming launch instead of
// several, when they share dtype and columns and each one's bytes are a multiple of 16: every
// piece then starts 16-byte aligned, as a matrix of its own would (matmul.cuh's fast paths), and
// its rows are the stacked matrix's rows at an offset. Otherwise they stay separate matrices.
struct MatrixPiece {
    int32_t dtype;
    int64_t rows, cols;
    uint64_t bytes; // rows * the dtype's row bytes
};
inline bool can_stack(const MatrixPiece *pieces, int n) {
    for (int i = 0; i < n; i++) {
        if (pieces[i].dtype != pieces[0].dtype || pieces[i].cols != pieces[0].cols) return false;
        if (pieces[i].bytes % 16 != 0 || pieces[i].rows <= 0) return false;
    }
    return n > 0;
}

// Upper bound of the pieces of the weight allocation: every matrix (uploaded once even when
// tied), every norm and bias converted to f32 (biases counted for every layer, whether given or
// not), the rope frequencies; each piece 256-byte aligned. given_bytes: the sum of the nbytes
// given to spec_model_set_weight (the matrices inside it only shrink when vectors or tied
// matrices are counted there). Stacked matrices (can_stack) take one piece for several, and a
// tied matrix inside a stack is copied again, which given_bytes already counts: still a bound.
inline uint64_t weight_alloc_bytes(const spec_model_config &c, uint64_t given_bytes) {
    const uint64_t L = (uint64_t)c.n_layer, E = (uint64_t)c.n_embd;
    const uint64_t QD = (uint64_t)c.n_head * c.head_dim, KD = (uint64_t)c.n_head_kv * c.head_dim;
    const uint64_t D = (uint64_t)c.head_dim;
    // vectors: output norm; per layer two norms, three biases, q/k norms, post-attention / post-FFN norms
    const uint64_t matrices = 2 + 7 * L, vectors = 1 + 9 * L;
    const uint64_t vector_floats = E + L * (2 * E + QD + 2 * KD + 2 * D + 2 * E);
    const uint64_t rope_bytes = (uint64_t)(rope_dims(c) / 2) * 8;
    // the rope tables: the global one, and the local layers' one (rope_theta_local)
    return given_bytes + 256 * (matrices + vectors + 2) + 4 * vector_floats + 2 * rope_bytes;
}

// Device bytes of one KV cache: the cache itself (kv_cache_bytes, as on every backend) and, with a
// sliding window, the position of each slot's key (int32 [capacity], after the layers), which the
// attention kernel compares with the query's (key_in_window) and kv_commit moves with the slots.
inline uint64_t kv_positions_bytes(const spec_model_config &c, int32_t capacity) {
    return c.sliding_window > 0 ? 4 * (uint64_t)capacity : 0;
}

// The activation scratch of one model: fixed, for one slice of MAX_ROWS rows.
struct ScratchLayout {
    size_t params = 0, commit = 0;           // StepParams; kv_commit's (dst, src) pairs
    size_t x = 0, xn = 0, att = 0;
    size_t qkv = 0;                          // [rows][qkv_width]: q, k, v of a row side by side
    size_t gu = 0;                           // [rows][2 n_ff]: gate, up; silu(gate) * up in the gate half
    size_t rope = 0;                         // [rows][rope_dims / 2][cos, sin]
    size_t rope_local = 0;                   // the same for local layers (rope_theta_local; else empty)
    size_t head = 0;                         // [rows][n_vocab]: the LM head's output before it is copied out
    size_t part = 0;                         // attention partials
    size_t matmul = 0;                       // matmul()'s scratch
    size_t bytes = 0;
};

// Row strides of the q/k/v and gate/up activations: one matmul (stacked weights) or several
// (separate ones, written at column offsets) fill the same buffers, so everything downstream
// reads one layout. q at column 0, k at n_head * head_dim, v after k.
inline int64_t qkv_width(const spec_model_config &c) { return (int64_t)(c.n_head + 2 * c.n_head_kv) * c.head_dim; }
inline int64_t gu_width(const spec_model_config &c) { return 2 * (int64_t)c.n_ff; }

// Largest attention partial buffer over the buckets, in floats.
inline int64_t attn_partial_floats(const spec_model_config &c) {
    const int32_t G = c.n_head / c.n_head_kv;
    int64_t most = 0;
    for (int32_t rows = 1; rows <= MAX_ROWS; rows *= 2) {
        const int32_t s = attn_splits(rows, G, c.n_head_kv);
        if (s == 1) continue; // one split writes its output directly
        const int64_t f = (int64_t)s * attn_tiles(rows, G) * ATT_ROWS * c.n_head_kv * attn_partial_floats_per_row(c.head_dim);
        if (f > most) most = f;
    }
    return most;
}

// matmul_scratch: the most matmul() needs for any of the model's products at any bucket.
inline ScratchLayout scratch_layout(const spec_model_config &c, size_t matmul_scratch) {
    ScratchLayout s;
    AlignedLayout layout;
    auto add = [&](size_t n) { return (size_t)layout.place(n); };
    const size_t R = MAX_ROWS, E = (size_t)c.n_embd, QD = (size_t)c.n_head * c.head_dim, V = (size_t)c.n_vocab;
    s.params = add(sizeof(StepParams));
    s.commit = add(sizeof(int32_t) * 2 * MAX_ROWS);
    s.x = add(4 * R * E);
    s.xn = add(4 * R * E);
    s.qkv = add(4 * R * (size_t)qkv_width(c));
    s.att = add(4 * R * QD);
    s.gu = add(4 * R * (size_t)gu_width(c));
    s.rope = add(4 * R * (size_t)(rope_dims(c) / 2) * 2);
    s.rope_local = add(c.sliding_window > 0 && c.rope_theta_local > 0.0f ? 4 * R * (size_t)(rope_dims(c) / 2) * 2 : 0);
    s.head = add(4 * R * V);
    s.part = add(4 * (size_t)attn_partial_floats(c));
    s.matmul = add(matmul_scratch);
    s.bytes = (size_t)layout.bytes();
    return s;
}

// ---------------------------------------------------------------- EAGLE draft layers (ABI 0.9)

// An EAGLE layer's device memory beyond a model's (spec_model_set_eagle), in one allocation of its own: for one slice of
// MAX_ROWS rows, the fc's input rows [embd(t); feature] (f32 [MAX_ROWS][2 n_embd]) and each row's feature address
// (uint64 [MAX_ROWS], uploaded per slice), then the scratch of the fc's product (matmul_scratch: the most matmul()
// takes for 2 n_embd columns at any bucket, which the model's own scratch does not cover).
struct EagleLayout {
    size_t cat = 0, features = 0, matmul = 0;
    size_t bytes = 0;
};
inline EagleLayout eagle_layout(const spec_model_config &c, size_t matmul_scratch) {
    EagleLayout s;
    AlignedLayout layout;
    auto add = [&](size_t n) { return (size_t)layout.place(n); };
    s.cat = add(4 * (size_t)MAX_ROWS * 2 * (size_t)c.n_embd);
    s.features = add(8 * (size_t)MAX_ROWS);
    s.matmul = add(matmul_scratch);
    s.bytes = (size_t)layout.bytes();
    return s;
}

// The room an EAGLE layer's FC and its bias take in the weight allocation beyond their bytes as given (which count in
// weight_alloc_bytes' given_bytes like the model's own): a 256-byte aligned piece each, and the bias as f32.
inline uint64_t eagle_weight_extra_bytes(const spec_model_config &c, bool fc_bias) {
    return 256 + (fc_bias ? 256 + 4 * (uint64_t)c.n_embd : 0);
}

} // namespace specula::mm
