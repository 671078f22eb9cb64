/*
 * specula.h: the C ABI of Specula's native core, the only door between Java and native code.
 *
 * Habits every function keeps:
 *   - It returns a spec_status. SPEC_OK is zero; anything else has a message that
 *     spec_last_error() returns (per context, and per calling thread for calls without one).
 *   - It validates its arguments before touching memory or launching work.
 *   - It never aborts, exits or prints.
 *   - Handles are opaque; sizes and counts are explicit fixed-width integers.
 *   - Threads: calls may come from several threads at once, on one context too. Calls on one model
 *     run one at a time; on the cpu backend, every model and kernel of a context shares the context's
 *     one thread pool (spec_context_set_threads), and a call's parallel work waits while another
 *     call's runs on it. What a call writes (a KV cache, a recycler, an output buffer) must not be
 *     used by another call at the same time, and no handle may be destroyed while a call uses it.
 *   - A handle used after its destroy (or destroyed twice), or a pointer that was never a handle, is refused
 *     with SPEC_ERR_INVALID_HANDLE without its memory being read: every call looks handles up among those
 *     handed out and not yet destroyed.
 *
 * The Java bindings in java/src/main/java/dev/specula/ffi are generated from this file by
 * jextract/generate.sh. After changing it, regenerate them.
 */
#ifndef SPECULA_H
#define SPECULA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SPEC_API __declspec(dllexport)
#else
#define SPEC_API __attribute__((visibility("default")))
#endif

/* ABI version: major changes break callers, minor changes only add. */
#define SPEC_ABI_VERSION_MAJOR 0
#define SPEC_ABI_VERSION_MINOR 12

typedef int32_t spec_status;

enum spec_status_code {
    SPEC_OK = 0,
    SPEC_ERR_INVALID_ARGUMENT = 1,  /* a null pointer, a bad size, an unknown name or enum value */
    SPEC_ERR_INVALID_HANDLE = 2,    /* a null, destroyed or foreign handle */
    SPEC_ERR_OUT_OF_RANGE = 3,      /* an index or a byte range past the end of what it names */
    SPEC_ERR_OUT_OF_MEMORY = 4,
    SPEC_ERR_BACKEND_UNAVAILABLE = 5, /* e.g. cuda without a driver or a GPU */
    SPEC_ERR_UNSUPPORTED = 6,       /* valid, but not implemented by this backend or build */
    SPEC_ERR_DEVICE = 7,            /* the device reported an error */
    SPEC_ERR_BUFFER_TOO_SMALL = 8,  /* an output buffer cannot hold the result */
    SPEC_ERR_INTERNAL = 9,
    /* ABI 0.12: the handle still has objects made on it (a context its buffers, models, KV caches, recyclers and
     * heads; a model its KV caches and heads). Destroy those first; the refused call frees nothing. */
    SPEC_ERR_IN_USE = 10
};

/* Opaque handles. */
typedef struct spec_context spec_context; /* one backend on one device */
typedef struct spec_buffer spec_buffer;   /* memory on a context's device */
typedef struct spec_model spec_model;     /* weights and shape of one transformer */
typedef struct spec_kv spec_kv;           /* one sequence's KV cache for one model */

/* ---------------------------------------------------------------- library */

/* Packs SPEC_ABI_VERSION_MAJOR << 16 | SPEC_ABI_VERSION_MINOR into *out. */
SPEC_API spec_status spec_abi_version(uint32_t *out);

/* Writes the library version string, NUL-terminated, into buf (capacity cap bytes). */
SPEC_API spec_status spec_library_version(char *buf, uint64_t cap);

/* Writes the backends compiled into this library as a comma-separated list ("cpu,cuda"). */
SPEC_API spec_status spec_backends_compiled(char *buf, uint64_t cap);

/* How many devices a backend sees. When the backend cannot run here (no driver, no GPU),
 * returns SPEC_ERR_BACKEND_UNAVAILABLE with the reason as the thread's last error. */
SPEC_API spec_status spec_device_count(const char *backend, int32_t *out);

/* The last error message of a context, or of the calling thread when ctx is NULL.
 * Writes at most cap bytes including the NUL; *len_out (optional) gets the full length. */
SPEC_API spec_status spec_last_error(const spec_context *ctx, char *buf, uint64_t cap, uint64_t *len_out);

/* ---------------------------------------------------------------- contexts */

/* backend: "cpu" or "cuda"; device: 0-based index below spec_device_count. */
SPEC_API spec_status spec_context_create(const char *backend, int32_t device, spec_context **out);
/* Destroys a context that nothing lives on any more. While a buffer, model (EAGLE layers included), KV cache,
 * recycler or draft-heads object made on it lives, it returns SPEC_ERR_IN_USE with a message that counts each kind,
 * and frees nothing: the context and everything on it stay usable (ABI 0.12; before, that was a use after free). */
SPEC_API spec_status spec_context_destroy(spec_context *ctx);

/* Does nothing but validate the handle: the floor cost of one call through the ABI. */
SPEC_API spec_status spec_context_noop(spec_context *ctx);

/* Sets how many CPU threads the cpu backend uses (0 = all cores): the size of the context's one
 * thread pool, the calling thread included, taken from the next call that starts parallel work.
 * Idle workers sleep shortly after a call returns. Other backends ignore it. */
SPEC_API spec_status spec_context_set_threads(spec_context *ctx, int32_t n_threads);

typedef struct spec_device_info {
    char name[256];
    char backend[16];
    uint64_t total_memory;  /* bytes */
    uint64_t free_memory;   /* bytes */
    int32_t compute_major;  /* CUDA compute capability; 0 for cpu */
    int32_t compute_minor;
    int32_t multiprocessors; /* SMs for cuda, logical cores for cpu */
    int32_t device_index;
} spec_device_info;

SPEC_API spec_status spec_device_query(const spec_context *ctx, spec_device_info *out);

/* ---------------------------------------------------------------- buffers */

SPEC_API spec_status spec_buffer_alloc(spec_context *ctx, uint64_t nbytes, spec_buffer **out);
SPEC_API spec_status spec_buffer_free(spec_buffer *buf);
SPEC_API spec_status spec_buffer_size(const spec_buffer *buf, uint64_t *out);

/* Copies between host memory and buffers. Offsets and counts are in bytes; a range past
 * either end is SPEC_ERR_OUT_OF_RANGE and nothing is copied. Buffers of a d2d copy must
 * belong to the same context; its ranges may overlap (it moves the bytes as memmove does). */
SPEC_API spec_status spec_copy_h2d(spec_buffer *dst, uint64_t dst_offset, const void *src, uint64_t nbytes);
SPEC_API spec_status spec_copy_d2h(void *dst, const spec_buffer *src, uint64_t src_offset, uint64_t nbytes);
SPEC_API spec_status spec_copy_d2d(spec_buffer *dst, uint64_t dst_offset, const spec_buffer *src,
                                   uint64_t src_offset, uint64_t nbytes);

/* ---------------------------------------------------------------- models */

enum spec_dtype {
    SPEC_DTYPE_F32 = 0,
    SPEC_DTYPE_F16 = 1,
    SPEC_DTYPE_BF16 = 2,
    SPEC_DTYPE_Q8_0 = 3, /* blocks of 32: one f16 scale, 32 int8 (GGML layout) */
    SPEC_DTYPE_Q4_0 = 4, /* blocks of 32: one f16 scale, 16 bytes of nibbles (GGML layout) */
    /* ABI 0.7: the other GGML formats real GGUF mixes hold, in GGML's block layouts. Matrices only;
     * a row's length must be a multiple of the block (32, or 256 for the k-quant super-blocks). */
    SPEC_DTYPE_Q4_1 = 5, /* blocks of 32: f16 scale and min, 16 bytes of nibbles */
    SPEC_DTYPE_Q5_0 = 6, /* blocks of 32: f16 scale, 4 bytes of fifth bits, 16 bytes of nibbles */
    SPEC_DTYPE_Q5_1 = 7, /* blocks of 32: f16 scale and min, fifth bits, nibbles */
    SPEC_DTYPE_Q2_K = 8, /* super-blocks of 256, 84 bytes */
    SPEC_DTYPE_Q3_K = 9, /* super-blocks of 256, 110 bytes */
    SPEC_DTYPE_Q4_K = 10, /* super-blocks of 256, 144 bytes */
    SPEC_DTYPE_Q5_K = 11, /* super-blocks of 256, 176 bytes */
    SPEC_DTYPE_Q6_K = 12  /* super-blocks of 256, 210 bytes */
};

enum spec_arch {
    SPEC_ARCH_LLAMA = 0,  /* also Mistral and SmolLM */
    SPEC_ARCH_QWEN2 = 1,  /* q/k/v biases */
    /* ABI 0.8 (architectures): */
    SPEC_ARCH_QWEN3 = 2,  /* llama's layout plus a per-head RMSNorm of q and k (ATTN_Q_NORM, ATTN_K_NORM) before RoPE */
    SPEC_ARCH_GEMMA3 = 3  /* embeddings scaled by sqrt(n_embd); q/k norms; post-attention and post-FFN norms
                           * (ATTN_POST_NORM, FFN_POST_NORM) applied to each block's output before the residual add;
                           * FFN gelu_tanh(gate) * up. Norm weights are used as given: GGUF files already hold
                           * gemma's 1 + w (llama.cpp's converter adds the 1), a Hugging Face loader adds it. */
};

enum spec_rope_style {
    SPEC_ROPE_NORM = 0, /* rotates adjacent pairs (x[2i], x[2i+1]): GGUF llama layout */
    SPEC_ROPE_NEOX = 1  /* rotates halves (x[i], x[i + d/2]): qwen2 and HF layout */
};

enum spec_rope_scaling {
    SPEC_ROPE_SCALING_NONE = 0,
    SPEC_ROPE_SCALING_LINEAR = 1,
    SPEC_ROPE_SCALING_LLAMA3 = 2
};

typedef struct spec_model_config {
    int32_t arch;          /* spec_arch */
    int32_t n_vocab;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;
    int32_t n_ff;
    int32_t n_ctx_train;
    float rms_eps;
    float rope_theta;
    int32_t rope_style;    /* spec_rope_style */
    int32_t rope_dims;     /* rotated dims per head; 0 means head_dim */
    int32_t rope_scaling;  /* spec_rope_scaling */
    float rope_factor;
    float rope_low_freq_factor;
    float rope_high_freq_factor;
    int32_t rope_orig_ctx;
    int32_t kv_dtype;      /* F32, F16 or BF16 */
    /* ---- ABI 0.8 (architectures): sliding-window attention and per-layer attention settings.
     * All zero keeps the behaviour of 0.7 (full attention in every layer, one RoPE). */
    int32_t sliding_window; /* 0 = none; else in a local layer a token at position p attends only to keys at
                             * positions > p - sliding_window (tree tokens and verification alike) */
    int32_t swa_pattern;    /* which layers are local when sliding_window > 0: 0 = every layer; n >= 1 = every
                             * layer but those with (layer + 1) % n == 0, which attend globally (gemma3: 6) */
    float rope_theta_local; /* 0 = local layers rotate as global ones; else their RoPE base, without scaling */
    float attn_scale;       /* softmax scale of q.k; 0 = 1 / sqrt(head_dim) */
} spec_model_config;

/* Which weight a pointer is. Matrices are row-major [rows = out features][cols = in features],
 * as GGUF and safetensors store them. TOKEN_EMBD is [n_vocab][n_embd]. */
enum spec_weight_role {
    SPEC_W_TOKEN_EMBD = 0,
    SPEC_W_OUTPUT_NORM = 1,
    SPEC_W_OUTPUT = 2,      /* the LM head; may be the same memory as TOKEN_EMBD (tied) */
    SPEC_W_ATTN_NORM = 3,
    SPEC_W_ATTN_Q = 4,
    SPEC_W_ATTN_K = 5,
    SPEC_W_ATTN_V = 6,
    SPEC_W_ATTN_OUT = 7,
    SPEC_W_ATTN_Q_BIAS = 8,
    SPEC_W_ATTN_K_BIAS = 9,
    SPEC_W_ATTN_V_BIAS = 10,
    SPEC_W_FFN_NORM = 11,
    SPEC_W_FFN_GATE = 12,
    SPEC_W_FFN_UP = 13,
    SPEC_W_FFN_DOWN = 14,
    /* ABI 0.8 (architectures): */
    SPEC_W_ATTN_Q_NORM = 15,    /* [1][head_dim], shared by every head: qwen3, gemma3 */
    SPEC_W_ATTN_K_NORM = 16,    /* [1][head_dim]: qwen3, gemma3 */
    SPEC_W_ATTN_POST_NORM = 17, /* [1][n_embd], on the attention block's output: gemma3 */
    SPEC_W_FFN_POST_NORM = 18,  /* [1][n_embd], on the FFN block's output: gemma3 */
    SPEC_W_ROLE_COUNT = 19
};

SPEC_API spec_status spec_model_create(spec_context *ctx, const spec_model_config *config, spec_model **out);
/* ABI 0.12: refused with SPEC_ERR_IN_USE, freeing nothing, while KV caches or draft heads made on the model live. */
SPEC_API spec_status spec_model_destroy(spec_model *model);

/* The shape [rows][cols] a weight of role must have under config: the rule spec_model_set_weight
 * checks, stated only here. Matrices are [out features][in features]; vectors (norms, biases) have
 * rows = 1. layer must be below n_layer for per-layer roles and is ignored for TOKEN_EMBD,
 * OUTPUT_NORM and OUTPUT. The config is validated as spec_model_create validates it; an unknown
 * role is SPEC_ERR_INVALID_ARGUMENT, a layer out of range SPEC_ERR_OUT_OF_RANGE. Needs no context. */
SPEC_API spec_status spec_weight_shape(const spec_model_config *config, int32_t role, int32_t layer, int64_t *rows,
                                       int64_t *cols);

/* Hands over one weight. data points at host memory (typically a mapped model file) that must
 * stay valid while the model lives; a backend may copy it to its device. layer is ignored for
 * TOKEN_EMBD, OUTPUT_NORM and OUTPUT. rows x cols must be what spec_weight_shape gives for that role. */
SPEC_API spec_status spec_model_set_weight(spec_model *model, int32_t role, int32_t layer, int32_t dtype,
                                           const void *data, uint64_t nbytes, int64_t rows, int64_t cols);

/* Checks that every weight the config needs was given. Forward calls fail before this. */
SPEC_API spec_status spec_model_finalize(spec_model *model);

/* One sequence's KV cache with room for capacity positions (committed plus pending). */
SPEC_API spec_status spec_kv_create(spec_model *model, int32_t capacity, spec_kv **out);
SPEC_API spec_status spec_kv_destroy(spec_kv *kv);

/* Committed length: the positions every later token attends to. */
SPEC_API spec_status spec_kv_length(const spec_kv *kv, int32_t *out);

/* Drops committed positions at and after new_length (and any pending tree tokens). */
SPEC_API spec_status spec_kv_truncate(spec_kv *kv, int32_t new_length);

/* Keeps only the pending tree tokens path[0..n_path) of the last forward, in that order, as the
 * next committed positions, and drops the other pending tokens. path must be a root-to-node
 * chain of the last forward's tree (each element the parent of the next). */
SPEC_API spec_status spec_kv_commit(spec_kv *kv, int32_t n_path, const int32_t *path);

enum spec_logits_mode {
    SPEC_LOGITS_NONE = 0,
    SPEC_LOGITS_ALL = 1,  /* one row per token */
    SPEC_LOGITS_LAST = 2  /* only the last token's row */
};

typedef struct spec_forward_args {
    int32_t n_tokens;
    const int32_t *tokens;    /* host, n_tokens ids below n_vocab */
    const int32_t *parents;   /* host, n_tokens; NULL means a chain. parents[i] < i, -1 = a root
                               * that follows the committed prefix directly */
    const int32_t *positions; /* host, n_tokens; NULL means committed length + depth in the tree */
    int32_t logits_mode;      /* spec_logits_mode */
    spec_buffer *logits;      /* f32 [rows][n_vocab], rows per logits_mode */
    int32_t exit_layer;       /* 0 = none; else also write the state after layers [0, exit_layer) */
    spec_buffer *exit_hidden; /* f32 [n_tokens][n_embd], optional when exit_layer > 0 */
    spec_buffer *exit_logits; /* f32 [n_tokens][n_vocab] through the output norm and LM head, optional */
    int32_t stop_at_exit;     /* nonzero: run only layers [0, exit_layer) (early-exit drafting);
                               * the pending tokens then hold KV for those layers only */
    uint64_t logits_offset;   /* byte offset of the first row in logits, so that the trees of a batch can
                               * write their rows into one [B][max_tree_nodes][n_vocab] buffer for spec_verify */
    /* ABI 0.8, draft heads: each token's FINAL hidden state, after the output norm (what the LM head reads). */
    spec_buffer *final_hidden;       /* f32 [n_tokens][n_embd] from final_hidden_offset on, optional; not with
                                      * stop_at_exit */
    uint64_t final_hidden_offset;    /* byte offset of the first row in final_hidden */
} spec_forward_args;

/* Runs n_tokens new tokens over the committed prefix of kv. Token i attends to every committed
 * position, to its ancestors in the tree, and to itself (tree attention). The tokens stay
 * pending in kv until spec_kv_commit keeps a path of them; a new forward first drops earlier
 * pending tokens. */
SPEC_API spec_status spec_forward(spec_model *model, spec_kv *kv, const spec_forward_args *args);

/* ---- ABI 0.8: several sequences in one forward (continuous batching) */

#define SPEC_MAX_FORWARD_SEQUENCES 1024 /* sequences per spec_forward_batch / spec_kv_*_batch call */

/* Runs n_seq sequences' forwards as one: sequence i runs args[i] over kvs[i] exactly as
 * spec_forward(model, kvs[i], &args[i]) would (its own tokens, tree, positions, logits mode and
 * destination, exit layer and outputs), and its logits, exit hidden and exit logits are
 * bit-identical to that call's on the cpu backend. The sequences' rows are concatenated for the
 * matrix products, so each weight is read once per slice of rows instead of once per sequence;
 * attention runs per sequence over its own cache and tree. The kvs must be n_seq distinct caches
 * of this model (1 <= n_seq <= SPEC_MAX_FORWARD_SEQUENCES). Every sequence is validated before
 * anything runs, and a refusal names the sequence and changes no cache; a failure inside the
 * backend drops the caches' pending tokens (as spec_forward's does), never committed ones. On
 * success each cache holds its sequence's tokens pending, as after spec_forward. The call needs no
 * memory beyond the model's scratch (spec_memory_plan: model_scratch): the concatenated rows run
 * in slices, as a long prompt does. On cuda the outputs agree with the solo calls' within the
 * usual tolerance but not bit for bit (a batch's larger slices choose other matrix-product and
 * attention splits), and sequences with different exit options (exit_layer, exit outputs,
 * stop_at_exit) run in separate groups of slices. */
SPEC_API spec_status spec_forward_batch(spec_model *model, int32_t n_seq, spec_kv *const *kvs, const spec_forward_args *args);

/* spec_kv_commit for n_seq distinct caches (of any models) in one call: cache i keeps
 * paths[i][0..n_path[i]) (paths[i] may be NULL when n_path[i] is 0). Every path is checked first;
 * on a failure (it names the sequence) no cache changes. */
SPEC_API spec_status spec_kv_commit_batch(int32_t n_seq, spec_kv *const *kvs, const int32_t *n_path,
                                          const int32_t *const *paths);

/* spec_kv_truncate for n_seq distinct caches in one call, checked first as above. */
SPEC_API spec_status spec_kv_truncate_batch(int32_t n_seq, spec_kv *const *kvs, const int32_t *new_lengths);

/* ---- speculative kernels: tree attention, verification, token recycling */

/* Trees. A draft tree of one sequence is n nodes in an array: tokens[i] and parents[i], with
 * parents[i] = -1 or an earlier index (topological order). Verification and token recycling use
 * one convention for node 0: it is the ROOT, the last token already decided (the previous step's
 * bonus token, not yet in the KV cache); parents[0] = -1 and every other node has a parent in
 * [0, i). The target's logits at node i predict node i's children, so a tree run through
 * spec_forward (tokens and parents as given) yields every logits row verification needs, and
 * the accepted path [0, a1, a2, ...] is the path spec_kv_commit takes. */
#define SPEC_MAX_TREE_NODES 128   /* nodes per tree (tree tokens per sequence) */
#define SPEC_KERNEL_MAX_BATCH 1024 /* sequences per call */

/* Tree attention of the verify phase, for B sequences at once. Query t of sequence b (head h,
 * kv head h / (n_head / n_head_kv)) attends to the sequence's prefix_len[b] committed KV slots
 * and to the tree tokens that are t itself or its ancestors; the tree tokens' own K/V sit at
 * slots prefix_len[b] .. prefix_len[b] + tree_len[b] - 1. Here a tree may have several roots
 * (parents[i] = -1 anywhere), as spec_forward allows. Softmax in fp32 with fp32 accumulation on
 * both backends; the results of cpu and cuda agree within 1e-4 relative to max |V| of the
 * attended rows (different summation order and exp). */
typedef struct spec_tree_attention_args {
    int32_t batch;        /* B, 1..SPEC_KERNEL_MAX_BATCH */
    int32_t n_head;       /* query heads, a multiple of n_head_kv (GQA), at most 256 */
    int32_t n_head_kv;
    int32_t head_dim;     /* 64 or 128 */
    int32_t max_tree_nodes; /* Tmax: row stride of q, out and the per-node host arrays, 1..SPEC_MAX_TREE_NODES */
    int32_t max_ctx;      /* slots per sequence in k_cache and v_cache */
    int32_t kv_dtype;     /* SPEC_DTYPE_F32, F16 or BF16 */
    float scale;          /* softmax scale; 0 means 1/sqrt(head_dim) */
    const int32_t *prefix_len; /* host [B], >= 0 */
    const int32_t *tree_len;   /* host [B]: T_b, 1..max_tree_nodes, prefix_len[b] + T_b <= max_ctx */
    const int32_t *parents;    /* host [B][max_tree_nodes]: -1 or an earlier index; entries at and past T_b are ignored */
    spec_buffer *q;       /* f32 [B][max_tree_nodes][n_head][head_dim] */
    spec_buffer *k_cache; /* kv_dtype [B][max_ctx][n_head_kv][head_dim] */
    spec_buffer *v_cache; /* kv_dtype [B][max_ctx][n_head_kv][head_dim] */
    spec_buffer *out;     /* f32 [B][max_tree_nodes][n_head][head_dim]; rows t >= T_b are left untouched */
} spec_tree_attention_args;

SPEC_API spec_status spec_tree_attention(spec_context *ctx, const spec_tree_attention_args *args);

/* ---- ABI 0.9: tree attention with a sliding window */

/* spec_tree_attention with the forward's sliding window (spec_model_config.sliding_window, as a
 * local layer applies it): prefix slot j holds the key of position j, tree token t sits at position
 * prefix_len[b] + depth(t) (depth: its number of ancestors, the positions spec_forward gives a tree
 * by default), and query t attends only to those of its keys whose position is > its own -
 * sliding_window. sliding_window 0 is spec_tree_attention exactly; a negative one is refused. The
 * cpu backend runs it; cuda answers SPEC_ERR_UNSUPPORTED for sliding_window > 0 (as spec_model_finalize
 * refuses a model with a window there). */
SPEC_API spec_status spec_tree_attention_windowed(spec_context *ctx, const spec_tree_attention_args *args,
                                                  int32_t sliding_window);

/* How one sequence's target distribution is shaped, exactly as plain sampling shapes it:
 * softmax(logits / temperature), then keep the top_k most likely tokens, then keep the smallest
 * set of the most likely remaining tokens whose mass reaches top_p, then renormalize. Tokens are
 * ranked by logit, ties broken by the lower token id (NaN ranks as -inf). */
typedef struct spec_sampling_params {
    uint64_t seed;       /* with spec_verify_args.step, names this sequence's random stream */
    float temperature;   /* 0 = greedy (argmax; top_k and top_p unused but still checked); else > 0 */
    float top_p;         /* (0, 1]; 1 = off */
    int32_t top_k;       /* 0 = off */
    int32_t reserved;    /* must be 0 */
} spec_sampling_params;

enum spec_depth_flag {
    SPEC_DEPTH_NOT_REACHED = -1, /* the walk stopped earlier, or the node there had no children */
    SPEC_DEPTH_REJECTED = 0,     /* every child at this depth was tested and rejected */
    SPEC_DEPTH_ACCEPTED = 1      /* a child at this depth was accepted */
};

typedef struct spec_verify_result {
    int32_t n_accepted;  /* draft tokens accepted (the path's length without the root) */
    int32_t last_node;   /* the path's last node (0 when none accepted) */
    int32_t bonus_token; /* the token that follows the path: the next step's root */
    int32_t reserved;
    int32_t path[SPEC_MAX_TREE_NODES];        /* [0] = 0 (the root), then the accepted nodes; n_accepted + 1
                                               * entries, the rest -1: the path spec_kv_commit takes */
    int32_t depth_flags[SPEC_MAX_TREE_NODES]; /* [d] for depth d >= 1: spec_depth_flag; [0] = ACCEPTED (the root) */
} spec_verify_result;

/* Verifies B draft trees against the target's logits at every node (node 0 = the root, see
 * above). Per sequence, by its params:
 *   greedy (temperature 0): the accepted path is the deepest node whose every node on the way
 *     down has the token the target's argmax picks at its parent (argmax ties: lowest token id;
 *     several deepest nodes: lowest node index wins); bonus = argmax at the path's last node.
 *   sampling: recursive rejection sampling across siblings (SpecInfer's multi-draft speculative
 *     sampling), lossless: at node n with shaped target p, its children in index order are each
 *     accepted with probability min(1, p(x) / q(x)); after a rejection p becomes
 *     norm(max(p - q, 0)). When a child is accepted the walk moves into it; when all are rejected
 *     (or n has none) the bonus is drawn from the current p. q is draft_probs' row of node n,
 *     the distribution n's children were drawn from independently; without draft_probs the
 *     drafter is deterministic: q is a point mass at each child's token, so a rejected token's
 *     probability is zeroed and p renormalized.
 * Random numbers come from Philox-4x32-10 keyed by the sequence's seed with counter
 * (node, draw, step): both backends draw the same numbers and compute the same integer
 * (fixed-point) probabilities, so they return identical results. All work runs on the
 * context's device; only the results travel back. */
typedef struct spec_verify_args {
    int32_t batch;            /* B, 1..SPEC_KERNEL_MAX_BATCH */
    int32_t max_tree_nodes;   /* row stride of the node arrays, logits and draft_probs, 1..SPEC_MAX_TREE_NODES */
    int32_t n_vocab;
    int32_t reserved;         /* must be 0 */
    const int32_t *n_nodes;   /* host [B]: nodes of each tree, 1..max_tree_nodes */
    const int32_t *tokens;    /* host [B][max_tree_nodes], ids below n_vocab */
    const int32_t *parents;   /* host [B][max_tree_nodes]: [0] = -1, else 0 <= parents[i] < i */
    const spec_sampling_params *params; /* host [B] */
    spec_buffer *logits;      /* f32 [B][max_tree_nodes][n_vocab]: row i = the target's logits after node i */
    spec_buffer *draft_probs; /* NULL, or f32 [B][max_tree_nodes][n_vocab]: row i = the draft distribution of node i's children */
    uint64_t step;            /* counter for the random streams; change it every step */
    spec_verify_result *results; /* host [B] */
} spec_verify_args;

SPEC_API spec_status spec_verify(spec_context *ctx, const spec_verify_args *args);

/* Token Recycling (arXiv 2408.08696): an adjacency matrix int32 [n_vocab][k] on the device,
 * row t = candidate next tokens after token t, best first. */
typedef struct spec_recycler spec_recycler;

#define SPEC_RECYCLER_DEFAULT_K 8
#define SPEC_RECYCLER_MAX_K 32
#define SPEC_RECYCLER_DEFAULT_TEMPLATE_NODES 81 /* the root plus the paper's 80 nodes over depth 6 */

enum spec_recycler_fill {
    SPEC_RECYCLER_FILL_ZERO = 0, /* every candidate is token 0 */
    SPEC_RECYCLER_FILL_SELF = 1, /* row t holds t k times */
    SPEC_RECYCLER_FILL_RANK = 2  /* row t holds 0, 1, ..., k-1 */
};

/* Creates a matrix of n_vocab rows of k candidates (1 <= k <= SPEC_RECYCLER_MAX_K, k <= n_vocab),
 * filled with SPEC_RECYCLER_FILL_ZERO. */
SPEC_API spec_status spec_recycler_create(spec_context *ctx, int32_t n_vocab, int32_t k, spec_recycler **out);
SPEC_API spec_status spec_recycler_destroy(spec_recycler *rec);
SPEC_API spec_status spec_recycler_shape(const spec_recycler *rec, int32_t *n_vocab, int32_t *k);
SPEC_API spec_status spec_recycler_fill(spec_recycler *rec, int32_t fill);

/* Copies the whole matrix to or from host memory: n_elements must be n_vocab * k. load checks
 * every id is below n_vocab before it changes anything. */
SPEC_API spec_status spec_recycler_save(const spec_recycler *rec, int32_t *dst, uint64_t n_elements);
SPEC_API spec_status spec_recycler_load(spec_recycler *rec, const int32_t *src, uint64_t n_elements);

/* After a verification: for every node of every tree (rejected branches too), the k most likely
 * tokens of its logits row (ties: lowest id first) become the row of the node's token. All rows
 * are computed first and then written, so one call is one atomic step; when several nodes carry
 * the same token the last one wins (sequences in batch order, then node index). The arrays have
 * spec_verify_args' layout, so the same ones can be passed. */
typedef struct spec_recycler_update_args {
    int32_t batch;          /* B, 1..SPEC_KERNEL_MAX_BATCH */
    int32_t max_tree_nodes; /* row stride, 1..SPEC_MAX_TREE_NODES */
    const int32_t *n_nodes; /* host [B]: 1..max_tree_nodes */
    const int32_t *tokens;  /* host [B][max_tree_nodes], ids below n_vocab */
    spec_buffer *logits;    /* f32 [B][max_tree_nodes][n_vocab] */
} spec_recycler_update_args;

SPEC_API spec_status spec_recycler_update(spec_recycler *rec, const spec_recycler_update_args *args);

/* Expands a static tree template from each sequence's root token by BFS over the matrix: node i
 * of the template takes candidate ranks[i] of its parent's token's row. The template is data:
 * parents[0] = -1 (the root), 0 <= parents[i] < i, 0 <= ranks[i] < k for i >= 1 (ranks[0] is
 * ignored). Writes each tree's tokens (tokens[b][0] = root_tokens[b]) and, when asked, its
 * parents: the layout spec_forward, spec_tree_attention and spec_verify take. */
typedef struct spec_recycler_draft_args {
    int32_t batch;                   /* B, 1..SPEC_KERNEL_MAX_BATCH */
    int32_t n_template;              /* template nodes including the root, 1..SPEC_MAX_TREE_NODES */
    const int32_t *template_parents; /* host [n_template] */
    const int32_t *template_ranks;   /* host [n_template] */
    const int32_t *root_tokens;      /* host [B], ids below n_vocab */
    int32_t *tokens;                 /* host out [B][n_template] */
    int32_t *parents;                /* host out [B][n_template], optional (NULL) */
} spec_recycler_draft_args;

SPEC_API spec_status spec_recycler_draft(spec_recycler *rec, const spec_recycler_draft_args *args);

/* A default template of the paper's shape: SPEC_RECYCLER_DEFAULT_TEMPLATE_NODES nodes (the root and 80
 * drafts, depth at most 6, up to 8 children per node), breadth-first, built by best-first expansion under
 * a prior on how often each candidate rank is accepted. *n_out (optional) gets the node
 * count; cap smaller than it is SPEC_ERR_BUFFER_TOO_SMALL. Needs k >= 8. */
SPEC_API spec_status spec_recycler_default_template(int32_t *parents, int32_t *ranks, int32_t cap, int32_t *n_out);

/* ---- logits summaries: what a drafter needs of its next-token distribution */

/* A drafter deciding what to propose usually needs a few numbers per logits row, not the row: its
 * most likely tokens, their probabilities and the distribution's entropy. spec_logits_summarize
 * computes them on the context's device, so that only these few bytes cross to the host. */
#define SPEC_SUMMARY_MAX_K 8

typedef struct spec_logits_summary {
    int32_t top[SPEC_SUMMARY_MAX_K]; /* the k most likely ids below limit, best first, ranked as spec_verify ranks
                                      * (by logit, ties by the lower id, NaN as -inf); -1 past k
                                      * (and past limit when k > limit) */
    float prob[SPEC_SUMMARY_MAX_K];  /* their probabilities under softmax at temperature 1 over the ids below limit
                                      * (NaN logits have none; a row of only NaN is a point mass at top[0]); 0 past k */
    float entropy;                   /* of that distribution, in nats */
    int32_t reserved;                /* written as 0 */
} spec_logits_summary;

/* Summarizes rows logits rows: row r is the f32 vector at offset_bytes + r * row_stride * 4 of logits,
 * of which the ids below limit count (ids at and past it, e.g. a vocabulary's padding, are left out).
 * Probabilities and entropy are summed in double on both backends; the ids are identical on both and
 * the numbers agree within 1e-5 relative (different summation order and exp). */
SPEC_API spec_status spec_logits_summarize(spec_context *ctx, const spec_buffer *logits, uint64_t offset_bytes,
                                           int32_t rows,       /* 1..SPEC_KERNEL_MAX_BATCH * SPEC_MAX_TREE_NODES */
                                           int64_t row_stride, /* floats between rows' starts, >= limit */
                                           int32_t limit,      /* ids below it count: 1..row_stride */
                                           int32_t k,          /* 1..SPEC_SUMMARY_MAX_K */
                                           spec_logits_summary *out /* host [rows] */);

/* ---------------------------------------------------------------- draft heads (ABI 0.8) */

/* Medusa- and Hydra-style draft heads over a target model's final hidden state (spec_forward_args'
 * final_hidden), on the target's context and with its matrix kernels. Head i reads one input row:
 *   unconditioned (Medusa): x = h
 *   conditioned (Hydra):    x = [h; embd(t_0); ...; embd(t_i)], t_0 the token the target chose after h
 *                           (the tree's root) and t_1..t_i the tokens drafted before head i, embd the
 *                           target's token embedding
 * then n_blocks residual blocks x = R_b x + silu(W_b x + c_b), where R_b is the identity when block b's
 * input is n_embd wide and the linear map RES_b (with its bias) when it is wider (a conditioned head's
 * first block), and finally logits = P x (+ p when the heads have projection biases), n_vocab wide. A head
 * given no P uses the target's own LM head (its SPEC_W_OUTPUT weight) as P.
 * Both backends run them (cuda with its own matrix kernels, agreeing with the cpu within their usual tolerance). */
typedef struct spec_heads spec_heads;

typedef struct spec_heads_config {
    int32_t n_heads;      /* 1..SPEC_HEADS_MAX */
    int32_t n_blocks;     /* residual blocks per head, 0..16 (a conditioned head needs at least 1) */
    int32_t conditioned;  /* 0: Medusa; 1: Hydra (head i also reads the embeddings of i + 1 tokens) */
    int32_t proj_bias;    /* nonzero: each vocabulary projection has a bias */
} spec_heads_config;

#define SPEC_HEADS_MAX 16

enum spec_head_weight_role {
    SPEC_HW_BLOCK = 0,          /* W_b of head h: [n_embd][in_b], in_b = n_embd * (1 + (conditioned && b == 0 ? h + 1 : 0)) */
    SPEC_HW_BLOCK_BIAS = 1,     /* c_b: [1][n_embd] */
    SPEC_HW_BLOCK_RES = 2,      /* RES_b, only where in_b > n_embd: [n_embd][in_b] */
    SPEC_HW_BLOCK_RES_BIAS = 3, /* its bias: [1][n_embd] */
    SPEC_HW_PROJ = 4,           /* P: [n_vocab][n_embd] (block is ignored); optional: the target's LM head if not given */
    SPEC_HW_PROJ_BIAS = 5,      /* p: [1][n_vocab], only with proj_bias (block is ignored) */
    SPEC_HW_ROLE_COUNT = 6
};

SPEC_API spec_status spec_heads_create(spec_model *target, const spec_heads_config *config, spec_heads **out);
SPEC_API spec_status spec_heads_destroy(spec_heads *heads);

/* The shape [rows][cols] of a head weight for heads of config over a target of n_embd and n_vocab;
 * *rows = 0 when that weight does not exist (a RES role of an n_embd-wide block, a projection bias
 * without proj_bias). Needs no context. */
SPEC_API spec_status spec_head_weight_shape(const spec_heads_config *config, int32_t n_embd, int32_t n_vocab, int32_t role,
                                            int32_t head, int32_t block, int64_t *rows, int64_t *cols);

/* Hands over one head weight (F32, F16 or BF16), as spec_model_set_weight does: data must stay valid while
 * the heads live. */
SPEC_API spec_status spec_heads_set_weight(spec_heads *heads, int32_t role, int32_t head, int32_t block, int32_t dtype,
                                           const void *data, uint64_t nbytes, int64_t rows, int64_t cols);

/* Checks that every weight but the optional P was given (the target must be finalized). */
SPEC_API spec_status spec_heads_finalize(spec_heads *heads);

/* Runs head `head` over n_rows inputs that share one hidden state h and differ in their tokens. */
typedef struct spec_heads_forward_args {
    int32_t head;            /* 0..n_heads-1 */
    int32_t n_rows;          /* 1..SPEC_MAX_TREE_NODES */
    const spec_buffer *hidden; /* f32 h: n_embd floats at hidden_offset (e.g. a row of final_hidden) */
    uint64_t hidden_offset;
    const int32_t *tokens;   /* host [n_rows][head + 1] ids below n_vocab when conditioned; NULL otherwise */
    spec_buffer *logits;     /* f32 [n_rows][n_vocab] at logits_offset */
    uint64_t logits_offset;
} spec_heads_forward_args;

SPEC_API spec_status spec_heads_forward(spec_heads *heads, const spec_heads_forward_args *args);

/* ---------------------------------------------------------------- EAGLE draft layers (ABI 0.9) */

/* An EAGLE draft layer (EAGLE-1, arXiv 2401.15077) extrapolates the target's feature sequence, the feature being the
 * target's final hidden state (spec_forward_args' final_hidden). It is a spec_model of its own (usually n_layer = 1)
 * made one by spec_model_set_eagle before it is finalized. Then:
 *   - a token t with feature f enters as x = FC [embd(t); f] (+ the FC bias) instead of embd(t), FC being
 *     [n_embd][2 n_embd] (spec_model_set_eagle_weight);
 *   - ATTN_NORM of layer 0 and OUTPUT_NORM become optional, and an absent one is skipped (EAGLE-1 has neither: layer 0
 *     reads x as it is, and its output goes straight to the LM head);
 *   - TOKEN_EMBD and OUTPUT are the target's: hand over the same memory.
 * Its KV caches, commits, truncation and tree attention are a model's. It runs only through spec_eagle_forward, which
 * gives each token its feature (spec_forward and spec_forward_batch refuse it). Its final_hidden rows are the layer's
 * outputs (after OUTPUT_NORM when there is one): the features it predicts, which its LM head reads.
 * The cpu and cuda backends run them (cuda with its model's kernels, agreeing with the cpu within their usual
 * tolerance; a layer handed the same TOKEN_EMBD and OUTPUT memory as a finalized cuda model on its device reads that
 * model's device copies instead of uploading its own). Other backends answer SPEC_ERR_UNSUPPORTED. */
typedef struct spec_eagle_config {
    int32_t fc_bias;  /* nonzero: FC has a bias [1][n_embd] */
    int32_t reserved; /* must be 0 */
} spec_eagle_config;

/* Marks a model (created, not yet finalized, on the cpu or cuda backend) as an EAGLE draft layer. */
SPEC_API spec_status spec_model_set_eagle(spec_model *model, const spec_eagle_config *config);

enum spec_eagle_weight_role {
    SPEC_EW_FC = 0,      /* [n_embd][2 n_embd], columns [0, n_embd) read the embedding, [n_embd, 2 n_embd) the feature */
    SPEC_EW_FC_BIAS = 1  /* [1][n_embd], only with fc_bias */
};

/* Hands over FC (any dtype a model matrix may have) or its bias (F32, F16 or BF16), as spec_model_set_weight does. */
SPEC_API spec_status spec_model_set_eagle_weight(spec_model *model, int32_t role, int32_t dtype, const void *data, uint64_t nbytes,
                                                 int64_t rows, int64_t cols);

typedef struct spec_eagle_forward_args {
    const spec_forward_args *forward; /* tokens, tree, positions and outputs, as spec_forward takes them */
    const spec_buffer *features;      /* f32 rows of n_embd on the model's context */
    uint64_t features_offset;         /* byte offset of row 0 */
    const int32_t *feature_rows;      /* host [n_tokens]: token i's feature is row feature_rows[i]; NULL: row i. Those rows
                                       * must not overlap the final_hidden rows this call writes */
} spec_eagle_forward_args;

/* spec_forward for an EAGLE draft layer, each token entering with its feature. */
SPEC_API spec_status spec_eagle_forward(spec_model *model, spec_kv *kv, const spec_eagle_forward_args *args);

/* ---------------------------------------------------------------- EAGLE tree extension (ABI 0.10) */

/* spec_eagle_forward that keeps kv's pending tokens (those the previous spec_eagle_forward or
 * spec_eagle_forward_extend calls on kv left) and adds its n_tokens after them, so that a drafter grows its tree one
 * depth per call and each new node costs one row instead of re-running its ancestors. Token i of the call becomes
 * pending token pending + i; its parent (args->forward->parents[i]) is -1 (a root over the committed prefix) or any
 * earlier pending token, 0 .. pending + i - 1; NULL parents chain the tokens after the last pending one. Positions
 * default to committed + depth in the whole pending tree. Features, logits and final_hidden rows are this call's
 * tokens', as spec_eagle_forward's, and on the cpu backend bit-identical to the same rows of one spec_eagle_forward
 * over the whole tree. spec_kv_commit then keeps a root-to-node path of the whole tree, and spec_kv_truncate (or a
 * plain spec_eagle_forward) drops it. A refusal changes nothing; a failure inside the backend drops every pending
 * token. Layers with a sliding window are refused (SPEC_ERR_UNSUPPORTED). */
SPEC_API spec_status spec_eagle_forward_extend(spec_model *model, spec_kv *kv, const spec_eagle_forward_args *args);

/* ---------------------------------------------------------------- EAGLE extension with summaries (ABI 0.11) */

/* spec_eagle_forward_extend, then spec_logits_summarize of each new token's logits row into out[i] (k ids each), so
 * that a drafter growing its tree gets a depth's candidates in one call. args->forward must ask for every row's logits
 * (SPEC_LOGITS_ALL); they are still written there. The ids and numbers are spec_logits_summarize's for those rows
 * (limit and row stride n_vocab). Bad k or out is refused before anything runs; otherwise as spec_eagle_forward_extend. */
SPEC_API spec_status spec_eagle_forward_extend_summarize(spec_model *model, spec_kv *kv, const spec_eagle_forward_args *args,
                                                         int32_t k, /* 1..SPEC_SUMMARY_MAX_K */
                                                         spec_logits_summary *out /* host [args->forward->n_tokens] */);

/* ---------------------------------------------------------------- memory planning */

/* A use of one model that a caller wants to budget before allocating anything (SpecMemo): the
 * model's weights, n_sequences KV caches, and the speculative kernels' per-step scratch. */
typedef struct spec_memory_request {
    uint64_t weight_bytes; /* the sum of nbytes that spec_model_set_weight will be given */
    int32_t kv_capacity;   /* positions per KV cache, >= 1 */
    int32_t n_sequences;   /* KV caches (the batch), >= 1 */
    int32_t max_tree_nodes; /* tree nodes per sequence that spec_verify / spec_recycler_* will see; 0 = none */
    int32_t recycler_k;    /* candidates per row of a recycler over this model's vocabulary; 0 = none */
} spec_memory_request;

/* What that use takes of the backend's memory (device memory for cuda, host memory for cpu), in
 * bytes. The backend allocates by the same arithmetic: a model finalized, caches created and a
 * context reserved (spec_context_reserve) within the plan need no further memory while they run. */
typedef struct spec_memory_plan {
    uint64_t weights;        /* the backend's copy of the weights (cpu: 0, it reads the caller's memory) */
    uint64_t kv_caches;      /* n_sequences caches of kv_capacity positions */
    uint64_t model_scratch;  /* one forward call's activations; fixed per model, long inputs run in slices */
    uint64_t kernel_scratch; /* spec_verify, spec_recycler_* and spec_logits_summarize for n_sequences trees of max_tree_nodes */
    uint64_t recycler;       /* the adjacency matrix */
    uint64_t total;
} spec_memory_plan;

/* Plans request for a model of config on backend ("cpu" or "cuda"). Needs no device: the plan
 * is arithmetic, so it can be printed and checked on any machine. */
SPEC_API spec_status spec_memory_plan_compute(const char *backend, const spec_model_config *config,
                                              const spec_memory_request *request, spec_memory_plan *out);

/* Makes the context's kernel scratch large enough, now, for spec_verify and spec_recycler_* on
 * batch trees of max_tree_nodes nodes over n_vocab tokens (with sampling), a recycler of recycler_k
 * (0 = none) and spec_logits_summarize of up to batch * max_tree_nodes rows, so that those calls never
 * allocate later. */
SPEC_API spec_status spec_context_reserve(spec_context *ctx, int32_t batch, int32_t max_tree_nodes, int32_t n_vocab,
                                          int32_t recycler_k);

/* ---------------------------------------------------------------- memory a backend makes of the weights (ABI 0.11) */

/* Beyond spec_memory_plan, a backend may make memory of a model's weights when it finalizes the model, and some
 * forwards keep scratch that depends on what the model is. These calls state those bytes where the backend allocates
 * them, so that a memory budget reads them instead of restating the backend's layouts:
 *   - prepacked:     cpu: the Q8_0 matrices prepacked once for the int8 kernels, in whole 2 MiB pages (0 with
 *                    SPECULA_CPU_PREPACK=0, or where the kernel set has no prepacked path);
 *   - eagle_scratch: cpu: an EAGLE draft layer's fc input rows ([embd(t); feature] per row, f32) at their largest, one
 *                    forward slice; cuda: the layer's device memory for those rows (one 128-row slice), their feature
 *                    addresses and its fc product's scratch, allocated at finalize, plus the room FC and its bias take
 *                    in the weight allocation beyond the bytes given (alignment, the bias as f32). 0 for other models.
 *                    On cuda a layer that reads its target's embedding and LM head (see spec_model_set_eagle) does
 *                    not copy them: leave them out of spec_memory_plan's weight_bytes.
 * An EAGLE layer's LM head is its target's (the same memory): the cpu layer reads the target's prepacked or copied
 * form while a finalized model in this process offers one (keeping it mapped while the layer lives), else reads it in
 * place; it never places a copy of its own, so neither its plan nor its spec_model_memory counts the head. */
typedef struct spec_weights_memory {
    uint64_t prepacked;
    uint64_t eagle_scratch;
    uint64_t total; /* prepacked + eagle_scratch + weight_copy */
    /* ---- ABI 0.12 */
    uint64_t weight_copy;     /* cpu, SPECULA_CPU_WEIGHTS=copy: the product matrices not prepacked (the token embeddings
                               * are looked up in place), copied once into whole 2 MiB pages; 0 otherwise */
    uint64_t forward_scratch; /* spec_model_memory only (0 in a plan, where spec_memory_plan's model_scratch counts it):
                               * the forward scratch the model holds now, never past that model_scratch for its largest
                               * KV cache at the context's thread count up to this machine's cores; not in total */
} spec_weights_memory;

/* One weight a model will be handed, for spec_memory_plan_weights: its shape is the one spec_model_set_weight (or, with
 * eagle_role >= 0, spec_model_set_eagle_weight) requires. */
typedef struct spec_weight_plan {
    int32_t role;       /* a spec_weight_role; ignored when eagle_role >= 0 */
    int32_t layer;      /* as spec_model_set_weight takes it; ignored for global roles */
    int32_t eagle_role; /* -1, or a spec_eagle_weight_role (an EAGLE layer's FC or its bias) */
    int32_t dtype;
} spec_weight_plan;

/* What finalizing a model of config on backend ("cpu" or "cuda") and running its forwards will take beyond
 * spec_memory_plan, handed the n_weights weights described (eagle nonzero: a model made an EAGLE layer by
 * spec_model_set_eagle). Reads no weight data and needs no device; on the cpu backend it uses this machine's kernel
 * set and SPECULA_CPU_PREPACK, as finalize does. */
SPEC_API spec_status spec_memory_plan_weights(const char *backend, const spec_model_config *config, int32_t eagle,
                                              int32_t n_weights, const spec_weight_plan *weights, spec_weights_memory *out);

/* What a finalized model holds of those now, by the backend's own accounting: prepacked as allocated at finalize,
 * eagle_scratch as far as its forwards have grown it (at most the plan's). */
SPEC_API spec_status spec_model_memory(const spec_model *model, spec_weights_memory *out);

#ifdef __cplusplus
}
#endif

#endif /* SPECULA_H */
