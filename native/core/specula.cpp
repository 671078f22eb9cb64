// The ABI entry points: validate, dispatch to the context's backend, record errors.
// Nothing here throws past the ABI, aborts or prints.
#include "abi_guard.hpp"
#include "quant_blocks.hpp"
#include "../cpu/cpu_model.hpp"
#ifdef SPECULA_WITH_CUDA
#include "../cuda/model.cuh"
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <unordered_set>
#include <new>

#ifndef SPECULA_VERSION
#define SPECULA_VERSION "0.0.0-dev"
#endif

namespace specula {

Failure failure(spec_status status, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return Failure{status, buf};
}

uint64_t dtype_row_bytes(int32_t dtype, int64_t cols) {
    const int elems = qb::block_elems(dtype);
    if (cols <= 0 || elems == 0 || cols % elems != 0) return 0;
    return (uint64_t)(cols / elems) * (uint64_t)qb::block_bytes(dtype);
}

const char *dtype_name(int32_t dtype) {
    switch (dtype) {
    case SPEC_DTYPE_F32: return "F32";
    case SPEC_DTYPE_F16: return "F16";
    case SPEC_DTYPE_BF16: return "BF16";
    case SPEC_DTYPE_Q8_0: return "Q8_0";
    case SPEC_DTYPE_Q4_0: return "Q4_0";
    case SPEC_DTYPE_Q4_1: return "Q4_1";
    case SPEC_DTYPE_Q5_0: return "Q5_0";
    case SPEC_DTYPE_Q5_1: return "Q5_1";
    case SPEC_DTYPE_Q2_K: return "Q2_K";
    case SPEC_DTYPE_Q3_K: return "Q3_K";
    case SPEC_DTYPE_Q4_K: return "Q4_K";
    case SPEC_DTYPE_Q5_K: return "Q5_K";
    case SPEC_DTYPE_Q6_K: return "Q6_K";
    default: return "unknown";
    }
}

namespace {
thread_local std::string t_last_error;
std::mutex g_error_mutex; // context messages may be written from several threads
} // namespace

spec_status record(const spec_context *ctx, const Failure &f) {
    t_last_error = f.message;
    if (ctx) {
        std::lock_guard<std::mutex> lock(g_error_mutex);
        const_cast<spec_context *>(ctx)->last_error = f.message;
    }
    return f.status;
}

namespace {
// Never destroyed: a handle may be destroyed (a Java cleaner, say) after static destructors have run.
struct HandleRegistry {
    std::shared_mutex mu;
    std::unordered_set<const void *> live;
};
HandleRegistry &handle_registry() {
    static HandleRegistry *registry = new HandleRegistry();
    return *registry;
}
} // namespace

void handle_registry_add(const void *h) {
    HandleRegistry &r = handle_registry();
    std::unique_lock<std::shared_mutex> lock(r.mu);
    r.live.insert(h);
}

void handle_registry_remove(const void *h) {
    HandleRegistry &r = handle_registry();
    std::unique_lock<std::shared_mutex> lock(r.mu);
    r.live.erase(h);
}

bool handle_registry_has(const void *h) {
    HandleRegistry &r = handle_registry();
    std::shared_lock<std::shared_mutex> lock(r.mu);
    return r.live.count(h) != 0;
}

std::string live_objects_list(int32_t buffers, int32_t models, int32_t kvs, int32_t recyclers, int32_t heads) {
    const struct {
        int32_t n;
        const char *one, *many;
    } kinds[] = {{models, "model", "models"},
                 {kvs, "KV cache", "KV caches"},
                 {heads, "draft-heads object", "draft-heads objects"},
                 {recyclers, "recycler", "recyclers"},
                 {buffers, "buffer", "buffers"}};
    std::vector<std::string> parts;
    for (const auto &k : kinds)
        if (k.n > 0) parts.push_back(std::to_string(k.n) + " " + (k.n == 1 ? k.one : k.many));
    std::string out;
    for (size_t i = 0; i < parts.size(); i++) {
        if (i > 0) out += i + 1 == parts.size() ? " and " : ", ";
        out += parts[i];
    }
    return out;
}

} // namespace specula

using namespace specula;

namespace {

Backend *find_backend(const char *name) {
    if (!name) return nullptr;
    if (std::strcmp(name, "cpu") == 0) return cpu_backend();
#ifdef SPECULA_WITH_CUDA
    if (std::strcmp(name, "cuda") == 0) return cuda_backend();
#endif
    return nullptr;
}

spec_status write_string(const std::string &s, char *buf, uint64_t cap, Failure &err) {
    if (!buf) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "output buffer is null");
    if (cap == 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "output capacity is zero");
    if (s.size() + 1 > cap) {
        std::memcpy(buf, s.data(), cap - 1);
        buf[cap - 1] = 0;
        FAIL(err, SPEC_ERR_BUFFER_TOO_SMALL, "output needs %zu bytes, capacity is %llu", s.size() + 1,
             (unsigned long long)cap);
    }
    std::memcpy(buf, s.c_str(), s.size() + 1);
    return SPEC_OK;
}

spec_status check_range(const spec_buffer *b, uint64_t offset, uint64_t nbytes, const char *what, Failure &err) {
    if (nbytes == 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: byte count is zero", what);
    if (offset > b->size || nbytes > b->size - offset)
        FAIL(err, SPEC_ERR_OUT_OF_RANGE, "%s: bytes [%llu, %llu) run past the buffer's end (size %llu)", what,
             (unsigned long long)offset, (unsigned long long)offset + (unsigned long long)nbytes,
             (unsigned long long)b->size);
    return SPEC_OK;
}

bool is_global_role(int32_t role) {
    return role == SPEC_W_TOKEN_EMBD || role == SPEC_W_OUTPUT_NORM || role == SPEC_W_OUTPUT;
}

const char *role_name(int32_t role) {
    static const char *names[] = {"token_embd", "output_norm", "output",  "attn_norm", "attn_q",
                                  "attn_k",     "attn_v",      "attn_out", "attn_q_bias", "attn_k_bias",
                                  "attn_v_bias", "ffn_norm",   "ffn_gate", "ffn_up",    "ffn_down",
                                  "attn_q_norm", "attn_k_norm", "attn_post_norm", "ffn_post_norm"};
    static_assert(sizeof(names) / sizeof(names[0]) == SPEC_W_ROLE_COUNT, "a name per role");
    return role >= 0 && role < SPEC_W_ROLE_COUNT ? names[role] : "unknown";
}

// The one statement of the shape each role must have under a (validated) config: spec_weight_shape
// gives it to callers, spec_model_set_weight checks weights against it. Validates role and layer.
spec_status weight_shape(const spec_model_config &c, int32_t role, int32_t layer, int64_t *rows, int64_t *cols, Failure &err) {
    if (role < 0 || role >= SPEC_W_ROLE_COUNT)
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "unknown weight role %d (roles are 0..%d)", role, SPEC_W_ROLE_COUNT - 1);
    if (!is_global_role(role) && (layer < 0 || layer >= c.n_layer))
        FAIL(err, SPEC_ERR_OUT_OF_RANGE, "weight %s: layer %d is out of range (model has %d layers)", role_name(role), layer, c.n_layer);
    const int64_t q = (int64_t)c.n_head * c.head_dim, kv = (int64_t)c.n_head_kv * c.head_dim;
    switch (role) {
    case SPEC_W_TOKEN_EMBD: case SPEC_W_OUTPUT: *rows = c.n_vocab; *cols = c.n_embd; break;
    case SPEC_W_OUTPUT_NORM: case SPEC_W_ATTN_NORM: case SPEC_W_FFN_NORM: *rows = 1; *cols = c.n_embd; break;
    case SPEC_W_ATTN_Q: *rows = q; *cols = c.n_embd; break;
    case SPEC_W_ATTN_K: case SPEC_W_ATTN_V: *rows = kv; *cols = c.n_embd; break;
    case SPEC_W_ATTN_OUT: *rows = c.n_embd; *cols = q; break;
    case SPEC_W_ATTN_Q_BIAS: *rows = 1; *cols = q; break;
    case SPEC_W_ATTN_K_BIAS: case SPEC_W_ATTN_V_BIAS: *rows = 1; *cols = kv; break;
    case SPEC_W_FFN_GATE: case SPEC_W_FFN_UP: *rows = c.n_ff; *cols = c.n_embd; break;
    case SPEC_W_FFN_DOWN: *rows = c.n_embd; *cols = c.n_ff; break;
    case SPEC_W_ATTN_Q_NORM: case SPEC_W_ATTN_K_NORM: *rows = 1; *cols = c.head_dim; break;
    case SPEC_W_ATTN_POST_NORM: case SPEC_W_FFN_POST_NORM: *rows = 1; *cols = c.n_embd; break;
    default: FAIL(err, SPEC_ERR_INTERNAL, "weight role %d has no shape rule", role);
    }
    return SPEC_OK;
}

bool role_required(const spec_model_config &c, int32_t role) {
    switch (role) {
    case SPEC_W_ATTN_Q_BIAS: case SPEC_W_ATTN_K_BIAS: case SPEC_W_ATTN_V_BIAS: return c.arch == SPEC_ARCH_QWEN2;
    case SPEC_W_ATTN_Q_NORM: case SPEC_W_ATTN_K_NORM: return c.arch == SPEC_ARCH_QWEN3 || c.arch == SPEC_ARCH_GEMMA3;
    case SPEC_W_ATTN_POST_NORM: case SPEC_W_FFN_POST_NORM: return c.arch == SPEC_ARCH_GEMMA3;
    default: return true;
    }
}

// Whether an architecture has a role at all: q/k/v biases are optional on llama, required on qwen2;
// the norms of ABI 0.8 belong only to the architectures that require them (a weight an arch would
// silently ignore is refused instead).
bool role_allowed(const spec_model_config &c, int32_t role) {
    switch (role) {
    case SPEC_W_ATTN_Q_BIAS: case SPEC_W_ATTN_K_BIAS: case SPEC_W_ATTN_V_BIAS: return c.arch == SPEC_ARCH_LLAMA || c.arch == SPEC_ARCH_QWEN2;
    default: return role_required(c, role) || role < SPEC_W_ATTN_Q_NORM;
    }
}

// ABI 0.9: the norms an EAGLE layer may lack (EAGLE-1 has neither): layer 0's attention norm, the output norm.
bool eagle_optional(const spec_model *m, int32_t role, int32_t layer) {
    return m->eagle && (role == SPEC_W_OUTPUT_NORM || (role == SPEC_W_ATTN_NORM && layer == 0));
}

const char *arch_name(int32_t arch) {
    switch (arch) {
    case SPEC_ARCH_LLAMA: return "llama";
    case SPEC_ARCH_QWEN2: return "qwen2";
    case SPEC_ARCH_QWEN3: return "qwen3";
    case SPEC_ARCH_GEMMA3: return "gemma3";
    default: return "unknown";
    }
}

spec_status validate_config(const spec_model_config &c, Failure &err) {
    if (c.arch < SPEC_ARCH_LLAMA || c.arch > SPEC_ARCH_GEMMA3) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "unknown arch %d", c.arch);
    struct { const char *name; int32_t v; int32_t max; } dims[] = {
        {"n_vocab", c.n_vocab, 1 << 22}, {"n_embd", c.n_embd, 1 << 16}, {"n_layer", c.n_layer, 1024},
        {"n_head", c.n_head, 1024},       {"n_head_kv", c.n_head_kv, 1024}, {"head_dim", c.head_dim, 1024},
        {"n_ff", c.n_ff, 1 << 18},        {"n_ctx_train", c.n_ctx_train, 1 << 24}};
    for (auto &d : dims)
        if (d.v <= 0 || d.v > d.max) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "config %s = %d is out of range (1..%d)", d.name, d.v, d.max);
    if (c.n_head % c.n_head_kv) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "n_head %d is not a multiple of n_head_kv %d", c.n_head, c.n_head_kv);
    if (c.head_dim % 2) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "head_dim %d is odd", c.head_dim);
    if (c.rope_dims < 0 || c.rope_dims > c.head_dim || c.rope_dims % 2)
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "rope_dims %d must be even and at most head_dim %d", c.rope_dims, c.head_dim);
    if (!(c.rms_eps > 0.0f && c.rms_eps < 1.0f)) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "rms_eps %g is out of range (0, 1)", (double)c.rms_eps);
    if (!(c.rope_theta > 0.0f)) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "rope_theta %g must be positive", (double)c.rope_theta);
    if (c.rope_style != SPEC_ROPE_NORM && c.rope_style != SPEC_ROPE_NEOX) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "unknown rope_style %d", c.rope_style);
    if (c.rope_scaling < SPEC_ROPE_SCALING_NONE || c.rope_scaling > SPEC_ROPE_SCALING_LLAMA3)
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "unknown rope_scaling %d", c.rope_scaling);
    if (c.rope_scaling != SPEC_ROPE_SCALING_NONE && !(c.rope_factor > 0.0f))
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "rope_factor %g must be positive when scaling", (double)c.rope_factor);
    if (c.rope_scaling == SPEC_ROPE_SCALING_LLAMA3 &&
        (c.rope_orig_ctx <= 0 || !(c.rope_low_freq_factor > 0.0f) || !(c.rope_high_freq_factor > c.rope_low_freq_factor)))
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "llama3 rope scaling needs rope_orig_ctx > 0 and 0 < low_freq_factor < high_freq_factor");
    if (c.kv_dtype != SPEC_DTYPE_F32 && c.kv_dtype != SPEC_DTYPE_F16 && c.kv_dtype != SPEC_DTYPE_BF16)
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "kv_dtype %d must be F32, F16 or BF16", c.kv_dtype);
    if (c.sliding_window < 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "sliding_window %d is negative", c.sliding_window);
    if (c.swa_pattern < 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "swa_pattern %d is negative", c.swa_pattern);
    if (!(c.rope_theta_local >= 0.0f) || std::isinf(c.rope_theta_local))
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "rope_theta_local %g must be 0 or positive", (double)c.rope_theta_local);
    if (!(c.attn_scale >= 0.0f) || std::isinf(c.attn_scale))
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "attn_scale %g must be 0 or positive", (double)c.attn_scale);
    return SPEC_OK;
}

// ---------------------------------------------------------------- forward and kv helpers

// One sequence of a forward call, validated: the defaults filled in (parents, positions) and the
// logits seen from logits_offset on as a buffer of their own. Lives in place (args points into it).
struct PreparedForward {
    std::vector<int32_t> parents, positions;
    spec_buffer logits_view;
    spec_buffer final_view; // ABI 0.8: the final hidden rows from final_hidden_offset on
    spec_forward_args args{};
};

// Validates one sequence's forward of a finalized model; who prefixes every message.
spec_status prepare_forward(spec_model *model, spec_kv *kv, const spec_forward_args *args, const char *who, PreparedForward &out,
                            Failure &err) {
    if (!live_kv(kv)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: kv cache %s", who, handle_problem(kv));
    if (kv->model != model) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: kv cache belongs to another model", who);
    if (!args) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: args is null", who);
    const auto &c = model->config;
    const int32_t n = args->n_tokens;
    if (n <= 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: n_tokens %d must be positive", who, n);
    if (n > kv->capacity - kv->committed)
        FAIL(err, SPEC_ERR_OUT_OF_RANGE, "%s: %d tokens do not fit: %d committed of capacity %d", who, n, kv->committed, kv->capacity);
    if (!args->tokens) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: tokens is null", who);
    for (int32_t i = 0; i < n; i++)
        if (args->tokens[i] < 0 || args->tokens[i] >= c.n_vocab)
            FAIL(err, SPEC_ERR_OUT_OF_RANGE, "%s: token[%d] = %d is out of range (vocabulary %d)", who, i, args->tokens[i], c.n_vocab);
    std::vector<int32_t> &parents = out.parents, &positions = out.positions, depth((size_t)n);
    parents.resize((size_t)n);
    positions.resize((size_t)n);
    for (int32_t i = 0; i < n; i++) {
        int32_t p = args->parents ? args->parents[i] : i - 1;
        if (p < -1 || p >= i)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: parent[%d] = %d must be -1 or an earlier index (0..%d)", who, i, p, i - 1);
        parents[i] = p;
        depth[i] = p < 0 ? 0 : depth[p] + 1;
        positions[i] = args->positions ? args->positions[i] : kv->committed + depth[i];
        if (positions[i] < 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: position[%d] = %d is negative", who, i, positions[i]);
    }
    auto check_out = [&](const spec_buffer *b, uint64_t need, const char *what) -> spec_status {
        if (!live_buffer(b)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: %s buffer %s", who, what, handle_problem(b));
        if (b->ctx != model->ctx) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: %s buffer belongs to another context", who, what);
        if (b->size < need)
            FAIL(err, SPEC_ERR_BUFFER_TOO_SMALL, "%s: %s buffer holds %llu bytes, needs %llu", who, what, (unsigned long long)b->size,
                 (unsigned long long)need);
        return SPEC_OK;
    };
    if (args->logits_mode < SPEC_LOGITS_NONE || args->logits_mode > SPEC_LOGITS_LAST)
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: unknown logits_mode %d", who, args->logits_mode);
    if (args->logits_mode != SPEC_LOGITS_NONE) {
        uint64_t rows = args->logits_mode == SPEC_LOGITS_ALL ? (uint64_t)n : 1;
        uint64_t need = rows * (uint64_t)c.n_vocab * 4;
        if (check_out(args->logits, 1, "logits")) return err.status;
        if (args->logits_offset % 4 || args->logits_offset > args->logits->size || need > args->logits->size - args->logits_offset)
            FAIL(err, SPEC_ERR_BUFFER_TOO_SMALL, "%s: logits buffer of %llu bytes cannot hold %llu bytes at offset %llu", who,
                 (unsigned long long)args->logits->size, (unsigned long long)need, (unsigned long long)args->logits_offset);
        out.logits_view = *args->logits;
        out.logits_view.ptr = (char *)args->logits->ptr + args->logits_offset;
        out.logits_view.size = args->logits->size - args->logits_offset;
    } else if (args->logits_offset) {
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: logits_offset without logits", who);
    }
    if (args->exit_layer < 0 || args->exit_layer > c.n_layer)
        FAIL(err, SPEC_ERR_OUT_OF_RANGE, "%s: exit_layer %d is out of range (0..%d)", who, args->exit_layer, c.n_layer);
    if (args->exit_layer == 0 && (args->exit_hidden || args->exit_logits || args->stop_at_exit))
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: exit outputs or stop_at_exit given without an exit_layer", who);
    if (args->exit_hidden && check_out(args->exit_hidden, (uint64_t)n * c.n_embd * 4, "exit_hidden")) return err.status;
    if (args->exit_logits && check_out(args->exit_logits, (uint64_t)n * c.n_vocab * 4, "exit_logits")) return err.status;
    if (args->stop_at_exit && args->logits_mode != SPEC_LOGITS_NONE)
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: stop_at_exit runs no final layers, so logits_mode must be NONE (use exit_logits)", who);
    // ABI 0.8: the final hidden rows, also seen by the backend from their offset on.
    if (args->final_hidden) {
        if (args->stop_at_exit) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: stop_at_exit runs no final layers, so no final_hidden", who);
        const uint64_t need = (uint64_t)n * c.n_embd * 4;
        if (check_out(args->final_hidden, 1, "final_hidden")) return err.status;
        if (args->final_hidden_offset % 4 || args->final_hidden_offset > args->final_hidden->size ||
            need > args->final_hidden->size - args->final_hidden_offset)
            FAIL(err, SPEC_ERR_BUFFER_TOO_SMALL, "%s: final_hidden buffer of %llu bytes cannot hold %llu bytes at offset %llu", who,
                 (unsigned long long)args->final_hidden->size, (unsigned long long)need, (unsigned long long)args->final_hidden_offset);
        out.final_view = *args->final_hidden;
        out.final_view.ptr = (char *)args->final_hidden->ptr + args->final_hidden_offset;
        out.final_view.size = args->final_hidden->size - args->final_hidden_offset;
    } else if (args->final_hidden_offset) {
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: final_hidden_offset without final_hidden", who);
    }

    out.args = *args;
    if (args->final_hidden) out.args.final_hidden = &out.final_view;
    out.args.final_hidden_offset = 0;
    if (args->logits_mode != SPEC_LOGITS_NONE) out.args.logits = &out.logits_view;
    out.args.logits_offset = 0;
    out.args.parents = parents.data();
    out.args.positions = positions.data();
    return SPEC_OK;
}

// The backends that run EAGLE draft layers (ABI 0.9): the cpu, and cuda when it is built in.
bool eagle_supported(const Backend *b) {
#ifdef SPECULA_WITH_CUDA
    if (b == cuda_backend()) return true;
#endif
    return b == cpu_backend();
}

// An EAGLE layer's forward on its backend (cpu::eagle_forward, cuda::eagle_forward): features[i] is token i's feature
// row in the context's memory; pending_base > 0 extends kv's pending tree (ABI 0.10).
spec_status backend_eagle_forward(spec_model *model, spec_kv *kv, const spec_forward_args &args, const float *const *features,
                                  Failure &err, int32_t pending_base = 0) {
#ifdef SPECULA_WITH_CUDA
    if (model->ctx->backend == cuda_backend()) return cuda::eagle_forward(model, kv, args, features, err, pending_base);
#endif
    return cpu::eagle_forward(model, kv, args, features, err, pending_base);
}

// Runs validated sequences (prepared[i] over kvs[i]) through the backend in one call; each cache
// holds its tokens pending only when the whole call succeeded. features: an EAGLE layer's call (one
// sequence), its rows' features.
spec_status run_forward(spec_model *model, spec_kv *const *kvs, std::vector<PreparedForward> &prepared, Failure &err,
                        const float *const *features = nullptr) {
    const int32_t n_seq = (int32_t)prepared.size();
    std::vector<spec_forward_args> args((size_t)n_seq);
    for (int32_t i = 0; i < n_seq; i++) {
        args[(size_t)i] = prepared[(size_t)i].args;
        kvs[i]->pending = 0;
        kvs[i]->pending_parents.clear();
    }
    spec_status st = features ? backend_eagle_forward(model, kvs[0], args[0], features, err)
                              : model->ctx->backend->forward(model, n_seq, kvs, args.data(), err);
    if (st != SPEC_OK) return st;
    for (int32_t i = 0; i < n_seq; i++) {
        kvs[i]->pending = args[(size_t)i].n_tokens;
        kvs[i]->pending_parents = std::move(prepared[(size_t)i].parents);
    }
    return SPEC_OK;
}

// Every cache live and none twice (a batch call would otherwise run or commit one cache's tokens twice).
spec_status check_distinct_caches(const char *fn, int32_t n, spec_kv *const *kvs, Failure &err) {
    std::vector<std::pair<const spec_kv *, int32_t>> seen((size_t)n);
    for (int32_t i = 0; i < n; i++) {
        if (!live_kv(kvs[i])) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: sequence %d: kv cache %s", fn, i, handle_problem(kvs[i]));
        seen[(size_t)i] = {kvs[i], i};
    }
    std::sort(seen.begin(), seen.end());
    for (size_t i = 1; i < seen.size(); i++)
        if (seen[i].first == seen[i - 1].first)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: sequences %d and %d name the same kv cache", fn, std::min(seen[i - 1].second, seen[i].second),
                 std::max(seen[i - 1].second, seen[i].second));
    return SPEC_OK;
}

// spec_kv_commit's checks: the path is a root-to-node chain of kv's pending tree.
spec_status check_commit(const spec_kv *kv, int32_t n_path, const int32_t *path, const char *who, Failure &err) {
    if (!live_kv(kv)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: kv cache %s", who, handle_problem(kv));
    if (n_path < 0 || n_path > kv->pending)
        FAIL(err, SPEC_ERR_OUT_OF_RANGE, "%s: path length %d is out of range (0..%d pending)", who, n_path, kv->pending);
    if (n_path > 0 && !path) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: path is null", who);
    for (int32_t i = 0; i < n_path; i++) {
        int32_t node = path[i];
        if (node < 0 || node >= kv->pending)
            FAIL(err, SPEC_ERR_OUT_OF_RANGE, "%s: path[%d] = %d is not a pending token (0..%d)", who, i, node, kv->pending - 1);
        int32_t want = i == 0 ? -1 : path[i - 1];
        if (kv->pending_parents[node] != want)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: path[%d] = %d has parent %d, not %d: not a root-to-node chain", who, i, node,
                 kv->pending_parents[node], want);
    }
    return SPEC_OK;
}

spec_status apply_commit(spec_kv *kv, int32_t n_path, const int32_t *path, Failure &err) {
    spec_status st = kv->model->ctx->backend->kv_commit(kv, n_path, path, err);
    if (st != SPEC_OK) return st;
    kv->committed += n_path;
    kv->pending = 0;
    kv->pending_parents.clear();
    return SPEC_OK;
}

void truncate_kv(spec_kv *kv, int32_t new_length) {
    kv->committed = new_length;
    kv->pending = 0;
    kv->pending_parents.clear();
}

} // namespace

extern "C" {

SPEC_API spec_status spec_abi_version(uint32_t *out) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        if (!out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_abi_version: out is null");
        *out = (uint32_t)SPEC_ABI_VERSION_MAJOR << 16 | SPEC_ABI_VERSION_MINOR;
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_library_version(char *buf, uint64_t cap) {
    return guarded(nullptr, [&](Failure &err) { return write_string(SPECULA_VERSION, buf, cap, err); });
}

SPEC_API spec_status spec_backends_compiled(char *buf, uint64_t cap) {
    return guarded(nullptr, [&](Failure &err) {
#ifdef SPECULA_WITH_CUDA
        return write_string("cpu,cuda", buf, cap, err);
#else
        return write_string("cpu", buf, cap, err);
#endif
    });
}

SPEC_API spec_status spec_device_count(const char *backend, int32_t *out) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        if (!out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_device_count: out is null");
        Backend *b = find_backend(backend);
        if (!b) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "unknown backend '%s' (compiled: %s)", backend ? backend : "(null)",
#ifdef SPECULA_WITH_CUDA
                     "cpu,cuda"
#else
                     "cpu"
#endif
            );
        return b->device_count(out, err);
    });
}

SPEC_API spec_status spec_last_error(const spec_context *ctx, char *buf, uint64_t cap, uint64_t *len_out) {
    // Reading an error must not overwrite it, so failures here only return a status.
    if (!buf || cap == 0) return SPEC_ERR_INVALID_ARGUMENT;
    if (ctx && !live_context(ctx)) return SPEC_ERR_INVALID_HANDLE;
    std::string msg;
    if (ctx) {
        std::lock_guard<std::mutex> lock(g_error_mutex);
        msg = ctx->last_error;
    } else {
        msg = t_last_error;
    }
    uint64_t n = msg.size() < cap - 1 ? msg.size() : cap - 1;
    std::memcpy(buf, msg.data(), n);
    buf[n] = 0;
    if (len_out) *len_out = msg.size();
    return SPEC_OK;
}

SPEC_API spec_status spec_context_create(const char *backend, int32_t device, spec_context **out) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        if (!out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_context_create: out is null");
        *out = nullptr;
        Backend *b = find_backend(backend);
        if (!b) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "unknown backend '%s'", backend ? backend : "(null)");
        int32_t count = 0;
        spec_status st = b->device_count(&count, err);
        if (st != SPEC_OK) return st;
        if (device < 0 || device >= count)
            FAIL(err, SPEC_ERR_OUT_OF_RANGE, "device index %d is out of range: backend '%s' has %d device(s)", device,
                 b->name(), count);
        auto *ctx = new spec_context();
        ctx->backend = b;
        ctx->device = device;
        st = b->context_init(ctx, err);
        if (st != SPEC_OK) {
            retire(ctx);
            return st;
        }
        return hand_out(ctx, out);
    });
}

SPEC_API spec_status spec_context_destroy(spec_context *ctx) {
    return guarded(live_context(ctx) ? ctx : nullptr, [&](Failure &err) -> spec_status {
        if (!live_context(ctx)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_context_destroy: context %s", handle_problem(ctx));
        std::string live = live_objects_list(ctx->live);
        if (!live.empty())
            FAIL(err, SPEC_ERR_IN_USE, "spec_context_destroy: %s still live on this context; destroy them first (nothing was freed)",
                 live.c_str());
        ctx->backend->context_release(ctx);
        retire(ctx);
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_context_noop(spec_context *ctx) {
    if (!live_context(ctx))
        return record(nullptr, failure(SPEC_ERR_INVALID_HANDLE, "spec_context_noop: context %s", handle_problem(ctx)));
    return SPEC_OK;
}

SPEC_API spec_status spec_context_set_threads(spec_context *ctx, int32_t n_threads) {
    return guarded(live_context(ctx) ? ctx : nullptr, [&](Failure &err) -> spec_status {
        if (!live_context(ctx)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_context_set_threads: context %s", handle_problem(ctx));
        if (n_threads < 0 || n_threads > 1024)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "thread count %d is out of range (0..1024)", n_threads);
        ctx->n_threads = n_threads;
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_device_query(const spec_context *ctx, spec_device_info *out) {
    return guarded(live_context(ctx) ? ctx : nullptr, [&](Failure &err) -> spec_status {
        if (!live_context(ctx)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_device_query: context %s", handle_problem(ctx));
        if (!out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_device_query: out is null");
        std::memset(out, 0, sizeof *out);
        std::snprintf(out->backend, sizeof out->backend, "%s", ctx->backend->name());
        out->device_index = ctx->device;
        return ctx->backend->device_query(ctx, out, err);
    });
}

SPEC_API spec_status spec_buffer_alloc(spec_context *ctx, uint64_t nbytes, spec_buffer **out) {
    return guarded(live_context(ctx) ? ctx : nullptr, [&](Failure &err) -> spec_status {
        if (!live_context(ctx)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_buffer_alloc: context %s", handle_problem(ctx));
        if (!out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_buffer_alloc: out is null");
        *out = nullptr;
        if (nbytes == 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_buffer_alloc: size is zero");
        if (nbytes > (1ull << 48)) FAIL(err, SPEC_ERR_OUT_OF_MEMORY, "spec_buffer_alloc: %llu bytes is more than any device holds", (unsigned long long)nbytes);
        void *ptr = nullptr;
        spec_status st = ctx->backend->alloc(ctx, nbytes, &ptr, err);
        if (st != SPEC_OK) return st;
        auto *b = new spec_buffer();
        b->ctx = ctx;
        b->ptr = ptr;
        b->size = nbytes;
        ctx->live.buffers++;
        return hand_out(b, out);
    });
}

SPEC_API spec_status spec_buffer_free(spec_buffer *buf) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        if (!live_buffer(buf)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_buffer_free: buffer %s", handle_problem(buf));
        buf->ctx->backend->release(buf->ctx, buf->ptr);
        buf->ctx->live.buffers--;
        retire(buf);
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_buffer_size(const spec_buffer *buf, uint64_t *out) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        if (!live_buffer(buf)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_buffer_size: buffer %s", handle_problem(buf));
        if (!out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_buffer_size: out is null");
        *out = buf->size;
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_copy_h2d(spec_buffer *dst, uint64_t dst_offset, const void *src, uint64_t nbytes) {
    const spec_context *ctx = live_buffer(dst) ? dst->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_copy_h2d: destination buffer %s", handle_problem(dst));
        if (!src) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_copy_h2d: source pointer is null");
        if (check_range(dst, dst_offset, nbytes, "spec_copy_h2d destination", err)) return err.status;
        return dst->ctx->backend->copy(dst->ctx, (char *)dst->ptr + dst_offset, src, nbytes, Backend::Copy::HostToDevice, err);
    });
}

SPEC_API spec_status spec_copy_d2h(void *dst, const spec_buffer *src, uint64_t src_offset, uint64_t nbytes) {
    const spec_context *ctx = live_buffer(src) ? src->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_copy_d2h: source buffer %s", handle_problem(src));
        if (!dst) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_copy_d2h: destination pointer is null");
        if (check_range(src, src_offset, nbytes, "spec_copy_d2h source", err)) return err.status;
        return src->ctx->backend->copy(src->ctx, dst, (const char *)src->ptr + src_offset, nbytes, Backend::Copy::DeviceToHost, err);
    });
}

SPEC_API spec_status spec_copy_d2d(spec_buffer *dst, uint64_t dst_offset, const spec_buffer *src, uint64_t src_offset,
                                   uint64_t nbytes) {
    const spec_context *ctx = live_buffer(dst) ? dst->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_copy_d2d: destination buffer %s", handle_problem(dst));
        if (!live_buffer(src)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_copy_d2d: source buffer %s", handle_problem(src));
        if (src->ctx != dst->ctx) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_copy_d2d: buffers belong to different contexts");
        if (check_range(dst, dst_offset, nbytes, "spec_copy_d2d destination", err)) return err.status;
        if (check_range(src, src_offset, nbytes, "spec_copy_d2d source", err)) return err.status;
        return dst->ctx->backend->copy(dst->ctx, (char *)dst->ptr + dst_offset, (const char *)src->ptr + src_offset, nbytes,
                                       Backend::Copy::DeviceToDevice, err);
    });
}

/* ---------------------------------------------------------------- models */

SPEC_API spec_status spec_model_create(spec_context *ctx, const spec_model_config *config, spec_model **out) {
    return guarded(live_context(ctx) ? ctx : nullptr, [&](Failure &err) -> spec_status {
        if (!live_context(ctx)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_model_create: context %s", handle_problem(ctx));
        if (!config || !out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_model_create: config or out is null");
        *out = nullptr;
        if (validate_config(*config, err)) return err.status;
        auto *m = new spec_model();
        m->ctx = ctx;
        m->config = *config;
        if (m->config.rope_dims == 0) m->config.rope_dims = config->head_dim;
        m->weights.resize(SPEC_W_ROLE_COUNT);
        for (int r = 0; r < SPEC_W_ROLE_COUNT; r++) m->weights[r].resize(is_global_role(r) ? 1 : config->n_layer);
        ctx->live.models++;
        return hand_out(m, out);
    });
}

SPEC_API spec_status spec_model_destroy(spec_model *model) {
    return guarded(live_model(model) ? model->ctx : nullptr, [&](Failure &err) -> spec_status {
        if (!live_model(model)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_model_destroy: model %s", handle_problem(model));
        int32_t kvs = model->live_kvs.load(), heads = model->live_heads.load();
        if (kvs > 0 || heads > 0)
            FAIL(err, SPEC_ERR_IN_USE, "spec_model_destroy: %s still live on this model; destroy them first (nothing was freed)",
                 live_objects_list(0, 0, kvs, 0, heads).c_str());
        if (model->finalized) model->ctx->backend->model_release(model);
        model->ctx->live.models--;
        retire(model);
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_weight_shape(const spec_model_config *config, int32_t role, int32_t layer, int64_t *rows,
                                       int64_t *cols) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        if (!config || !rows || !cols) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_weight_shape: config, rows or cols is null");
        *rows = *cols = 0;
        if (validate_config(*config, err)) return err.status;
        return weight_shape(*config, role, layer, rows, cols, err);
    });
}

SPEC_API spec_status spec_model_set_weight(spec_model *model, int32_t role, int32_t layer, int32_t dtype, const void *data,
                                           uint64_t nbytes, int64_t rows, int64_t cols) {
    const spec_context *ctx = live_model(model) ? model->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_model_set_weight: model %s", handle_problem(model));
        if (model->finalized) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_model_set_weight: model is already finalized");
        int64_t er = 0, ec = 0;
        if (weight_shape(model->config, role, layer, &er, &ec, err)) return err.status;
        if (!data) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "weight %s: data is null", role_name(role));
        if (!role_allowed(model->config, role))
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "weight %s is not part of a %s model", role_name(role), arch_name(model->config.arch));
        if (rows != er || cols != ec)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "weight %s (layer %d): shape [%lld x %lld], expected [%lld x %lld]", role_name(role),
                 layer, (long long)rows, (long long)cols, (long long)er, (long long)ec);
        bool vector = rows == 1 && role != SPEC_W_TOKEN_EMBD && role != SPEC_W_OUTPUT;
        if (vector && dtype != SPEC_DTYPE_F32 && dtype != SPEC_DTYPE_F16 && dtype != SPEC_DTYPE_BF16)
            FAIL(err, SPEC_ERR_UNSUPPORTED, "weight %s: vectors must be F32, F16 or BF16, got %s", role_name(role), dtype_name(dtype));
        uint64_t row_bytes = dtype_row_bytes(dtype, cols);
        if (row_bytes == 0)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "weight %s: dtype %d (%s) cannot hold rows of %lld elements%s", role_name(role), dtype,
                 dtype_name(dtype), (long long)cols,
                 qb::block_elems(dtype) > 1 ? (qb::block_elems(dtype) == qb::QK_K ? " (not a multiple of 256)" : " (not a multiple of 32)") : "");
        if (nbytes != row_bytes * (uint64_t)rows)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "weight %s: %llu bytes given, %s [%lld x %lld] needs %llu", role_name(role),
                 (unsigned long long)nbytes, dtype_name(dtype), (long long)rows, (long long)cols,
                 (unsigned long long)(row_bytes * (uint64_t)rows));
        spec_weight &w = model->weights[role][is_global_role(role) ? 0 : layer];
        w.dtype = dtype;
        w.data = data;
        w.device_data = data;
        w.nbytes = nbytes;
        w.rows = rows;
        w.cols = cols;
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_model_finalize(spec_model *model) {
    const spec_context *ctx = live_model(model) ? model->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_model_finalize: model %s", handle_problem(model));
        if (model->finalized) return SPEC_OK;
        for (int r = 0; r < SPEC_W_ROLE_COUNT; r++) {
            if (!role_required(model->config, r)) continue;
            for (size_t l = 0; l < model->weights[r].size(); l++)
                if (!model->weights[r][l].data && !eagle_optional(model, r, (int32_t)l))
                    FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "model is missing weight %s%s%zu", role_name(r),
                         is_global_role(r) ? "" : " of layer ", is_global_role(r) ? (size_t)0 : l);
        }
        // Biases come as a set: either all three of a layer or none.
        for (int l = 0; l < model->config.n_layer; l++) {
            int n = !!model->weights[SPEC_W_ATTN_Q_BIAS][l].data + !!model->weights[SPEC_W_ATTN_K_BIAS][l].data +
                    !!model->weights[SPEC_W_ATTN_V_BIAS][l].data;
            if (n != 0 && n != 3) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "layer %d has %d of the 3 q/k/v biases", l, n);
        }
        if (model->eagle && !model->eagle_fc.data) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "EAGLE layer is missing its fc weight");
        if (model->eagle && model->eagle_config.fc_bias && !model->eagle_fc_bias.data)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "EAGLE layer is missing its fc bias (its config has fc_bias)");
        spec_status st = model->ctx->backend->model_finalize(model, err);
        if (st == SPEC_OK) model->finalized = true;
        return st;
    });
}

SPEC_API spec_status spec_kv_create(spec_model *model, int32_t capacity, spec_kv **out) {
    const spec_context *ctx = live_model(model) ? model->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_kv_create: model %s", handle_problem(model));
        if (!out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_kv_create: out is null");
        *out = nullptr;
        if (!model->finalized) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_kv_create: model is not finalized");
        if (capacity <= 0 || capacity > (1 << 24)) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_kv_create: capacity %d is out of range (1..16777216)", capacity);
        auto *kv = new spec_kv();
        kv->model = model;
        kv->capacity = capacity;
        spec_status st = model->ctx->backend->kv_init(kv, err);
        if (st != SPEC_OK) {
            retire(kv);
            return st;
        }
        model->live_kvs++;
        model->ctx->live.kvs++;
        return hand_out(kv, out);
    });
}

SPEC_API spec_status spec_kv_destroy(spec_kv *kv) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        if (!live_kv(kv)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_kv_destroy: kv cache %s", handle_problem(kv));
        kv->model->ctx->backend->kv_release(kv);
        kv->model->live_kvs--;
        kv->model->ctx->live.kvs--;
        retire(kv);
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_kv_length(const spec_kv *kv, int32_t *out) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        if (!live_kv(kv)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_kv_length: kv cache %s", handle_problem(kv));
        if (!out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_kv_length: out is null");
        *out = kv->committed;
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_kv_truncate(spec_kv *kv, int32_t new_length) {
    const spec_context *ctx = live_kv(kv) ? kv->model->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_kv_truncate: kv cache %s", handle_problem(kv));
        if (new_length < 0 || new_length > kv->committed)
            FAIL(err, SPEC_ERR_OUT_OF_RANGE, "spec_kv_truncate: length %d is out of range (0..%d committed)", new_length, kv->committed);
        truncate_kv(kv, new_length);
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_kv_commit(spec_kv *kv, int32_t n_path, const int32_t *path) {
    const spec_context *ctx = live_kv(kv) ? kv->model->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (check_commit(kv, n_path, path, "spec_kv_commit", err)) return err.status;
        return apply_commit(kv, n_path, path, err);
    });
}

SPEC_API spec_status spec_forward(spec_model *model, spec_kv *kv, const spec_forward_args *args) {
    const spec_context *ctx = live_model(model) ? model->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_forward: model %s", handle_problem(model));
        if (!model->finalized) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_forward: model is not finalized");
        if (model->eagle) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_forward: the model is an EAGLE draft layer: run it with spec_eagle_forward");
        std::vector<PreparedForward> prepared(1);
        if (prepare_forward(model, kv, args, "spec_forward", prepared[0], err)) return err.status;
        return run_forward(model, &kv, prepared, err);
    });
}

SPEC_API spec_status spec_forward_batch(spec_model *model, int32_t n_seq, spec_kv *const *kvs, const spec_forward_args *args) {
    const spec_context *ctx = live_model(model) ? model->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        const char *fn = "spec_forward_batch";
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: model %s", fn, handle_problem(model));
        if (!model->finalized) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: model is not finalized", fn);
        if (model->eagle) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: the model is an EAGLE draft layer: run it with spec_eagle_forward", fn);
        if (n_seq <= 0 || n_seq > SPEC_MAX_FORWARD_SEQUENCES)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: n_seq %d is out of range (1..%d)", fn, n_seq, SPEC_MAX_FORWARD_SEQUENCES);
        if (!kvs || !args) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: kvs and args must not be null", fn);
        if (check_distinct_caches(fn, n_seq, kvs, err)) return err.status;
        std::vector<PreparedForward> prepared((size_t)n_seq);
        char who[64];
        for (int32_t i = 0; i < n_seq; i++) {
            std::snprintf(who, sizeof who, "%s: sequence %d", fn, i);
            if (prepare_forward(model, kvs[i], &args[i], who, prepared[(size_t)i], err)) return err.status;
        }
        return run_forward(model, kvs, prepared, err);
    });
}

SPEC_API spec_status spec_kv_commit_batch(int32_t n_seq, spec_kv *const *kvs, const int32_t *n_path, const int32_t *const *paths) {
    const spec_context *ctx = n_seq > 0 && kvs && live_kv(kvs[0]) ? kvs[0]->model->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        const char *fn = "spec_kv_commit_batch";
        if (n_seq <= 0 || n_seq > SPEC_MAX_FORWARD_SEQUENCES)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: n_seq %d is out of range (1..%d)", fn, n_seq, SPEC_MAX_FORWARD_SEQUENCES);
        if (!kvs || !n_path || !paths) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: kvs, n_path and paths must not be null", fn);
        if (check_distinct_caches(fn, n_seq, kvs, err)) return err.status;
        char who[64];
        for (int32_t i = 0; i < n_seq; i++) {
            std::snprintf(who, sizeof who, "%s: sequence %d", fn, i);
            if (check_commit(kvs[i], n_path[i], paths[i], who, err)) return err.status;
        }
        for (int32_t i = 0; i < n_seq; i++)
            if (apply_commit(kvs[i], n_path[i], paths[i], err)) return err.status;
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_kv_truncate_batch(int32_t n_seq, spec_kv *const *kvs, const int32_t *new_lengths) {
    const spec_context *ctx = n_seq > 0 && kvs && live_kv(kvs[0]) ? kvs[0]->model->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        const char *fn = "spec_kv_truncate_batch";
        if (n_seq <= 0 || n_seq > SPEC_MAX_FORWARD_SEQUENCES)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: n_seq %d is out of range (1..%d)", fn, n_seq, SPEC_MAX_FORWARD_SEQUENCES);
        if (!kvs || !new_lengths) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: kvs and new_lengths must not be null", fn);
        if (check_distinct_caches(fn, n_seq, kvs, err)) return err.status;
        for (int32_t i = 0; i < n_seq; i++)
            if (new_lengths[i] < 0 || new_lengths[i] > kvs[i]->committed)
                FAIL(err, SPEC_ERR_OUT_OF_RANGE, "%s: sequence %d: length %d is out of range (0..%d committed)", fn, i, new_lengths[i],
                     kvs[i]->committed);
        for (int32_t i = 0; i < n_seq; i++) truncate_kv(kvs[i], new_lengths[i]);
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_memory_plan_compute(const char *backend, const spec_model_config *config,
                                              const spec_memory_request *request, spec_memory_plan *out) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        const char *fn = "spec_memory_plan_compute";
        if (!config || !request || !out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: config, request and out must not be null", fn);
        Backend *b = find_backend(backend);
        if (!b) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: unknown backend '%s'", fn, backend ? backend : "(null)");
        if (validate_config(*config, err)) return err.status;
        const spec_memory_request &r = *request;
        if (r.kv_capacity <= 0 || r.kv_capacity > (1 << 24))
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: kv_capacity %d is out of range (1..16777216)", fn, r.kv_capacity);
        if (r.n_sequences <= 0 || r.n_sequences > SPEC_KERNEL_MAX_BATCH)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: n_sequences %d is out of range (1..%d)", fn, r.n_sequences, SPEC_KERNEL_MAX_BATCH);
        if (r.max_tree_nodes < 0 || r.max_tree_nodes > SPEC_MAX_TREE_NODES)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: max_tree_nodes %d is out of range (0..%d)", fn, r.max_tree_nodes, SPEC_MAX_TREE_NODES);
        if (r.recycler_k < 0 || r.recycler_k > SPEC_RECYCLER_MAX_K || r.recycler_k > config->n_vocab)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: recycler_k %d is out of range (0..%d, at most n_vocab)", fn, r.recycler_k,
                 SPEC_RECYCLER_MAX_K);
        *out = spec_memory_plan{};
        if (b->memory_plan(*config, r, out, err)) return err.status;
        out->total = out->weights + out->kv_caches + out->model_scratch + out->kernel_scratch + out->recycler;
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_context_reserve(spec_context *ctx, int32_t batch, int32_t max_tree_nodes, int32_t n_vocab,
                                          int32_t recycler_k) {
    return guarded(live_context(ctx) ? ctx : nullptr, [&](Failure &err) -> spec_status {
        const char *fn = "spec_context_reserve";
        if (!live_context(ctx)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: context %s", fn, handle_problem(ctx));
        if (batch <= 0 || batch > SPEC_KERNEL_MAX_BATCH)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: batch %d is out of range (1..%d)", fn, batch, SPEC_KERNEL_MAX_BATCH);
        if (max_tree_nodes <= 0 || max_tree_nodes > SPEC_MAX_TREE_NODES)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: max_tree_nodes %d is out of range (1..%d)", fn, max_tree_nodes, SPEC_MAX_TREE_NODES);
        if (n_vocab <= 0 || n_vocab > (1 << 22)) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: n_vocab %d is out of range", fn, n_vocab);
        if (recycler_k < 0 || recycler_k > SPEC_RECYCLER_MAX_K)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: recycler_k %d is out of range (0..%d)", fn, recycler_k, SPEC_RECYCLER_MAX_K);
        return ctx->backend->reserve(ctx, batch, max_tree_nodes, n_vocab, recycler_k, err);
    });
}

/* ---------------------------------------------------------------- EAGLE draft layers (ABI 0.9) */

SPEC_API spec_status spec_model_set_eagle(spec_model *model, const spec_eagle_config *config) {
    const spec_context *ctx = live_model(model) ? model->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        const char *fn = "spec_model_set_eagle";
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: model %s", fn, handle_problem(model));
        if (!config) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: config is null", fn);
        if (!eagle_supported(model->ctx->backend))
            FAIL(err, SPEC_ERR_UNSUPPORTED, "%s: EAGLE draft layers are not implemented on the %s backend", fn,
                 model->ctx->backend->name());
        if (model->finalized) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: model is already finalized", fn);
        if (model->config.arch != SPEC_ARCH_LLAMA && model->config.arch != SPEC_ARCH_QWEN2)
            FAIL(err, SPEC_ERR_UNSUPPORTED, "%s: EAGLE layers of arch %s are not supported (llama and qwen2 only)", fn,
                 arch_name(model->config.arch));
        if (config->fc_bias != 0 && config->fc_bias != 1) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: fc_bias must be 0 or 1, got %d", fn, config->fc_bias);
        if (config->reserved != 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: reserved must be 0", fn);
        model->eagle = true;
        model->eagle_config = *config;
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_model_set_eagle_weight(spec_model *model, int32_t role, int32_t dtype, const void *data, uint64_t nbytes,
                                                 int64_t rows, int64_t cols) {
    const spec_context *ctx = live_model(model) ? model->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        const char *fn = "spec_model_set_eagle_weight";
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: model %s", fn, handle_problem(model));
        if (!model->eagle) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: the model is not an EAGLE layer (call spec_model_set_eagle first)", fn);
        if (model->finalized) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: model is already finalized", fn);
        if (role != SPEC_EW_FC && role != SPEC_EW_FC_BIAS) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: unknown role %d (0 = fc, 1 = fc bias)", fn, role);
        const char *name = role == SPEC_EW_FC ? "eagle fc" : "eagle fc bias";
        if (role == SPEC_EW_FC_BIAS && !model->eagle_config.fc_bias)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: %s given, but the layer's config has no fc bias", fn, name);
        if (!data) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: %s: data is null", fn, name);
        const int64_t E = model->config.n_embd, er = role == SPEC_EW_FC ? E : 1, ec = role == SPEC_EW_FC ? 2 * E : E;
        if (rows != er || cols != ec)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: %s: shape [%lld x %lld], expected [%lld x %lld]", fn, name, (long long)rows,
                 (long long)cols, (long long)er, (long long)ec);
        if (role == SPEC_EW_FC_BIAS && dtype != SPEC_DTYPE_F32 && dtype != SPEC_DTYPE_F16 && dtype != SPEC_DTYPE_BF16)
            FAIL(err, SPEC_ERR_UNSUPPORTED, "%s: %s must be F32, F16 or BF16, got %s", fn, name, dtype_name(dtype));
        const uint64_t row_bytes = dtype_row_bytes(dtype, cols);
        if (row_bytes == 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: %s: dtype %d cannot hold rows of %lld elements", fn, name, dtype, (long long)cols);
        if (nbytes != row_bytes * (uint64_t)rows)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: %s: %llu bytes given, %s [%lld x %lld] needs %llu", fn, name, (unsigned long long)nbytes,
                 dtype_name(dtype), (long long)rows, (long long)cols, (unsigned long long)(row_bytes * (uint64_t)rows));
        spec_weight &w = role == SPEC_EW_FC ? model->eagle_fc : model->eagle_fc_bias;
        w.dtype = dtype;
        w.data = data;
        w.device_data = data;
        w.nbytes = nbytes;
        w.rows = rows;
        w.cols = cols;
        return SPEC_OK;
    });
}

} // extern "C"

namespace {

// ABI 0.10: an extension's tree. Validates the call's parents against the whole pending tree (token i is
// pending token pending + i; NULL parents chain after the last pending token) and fills prepared's parents
// (whole-tree indices) and positions (committed + depth in the whole tree unless given).
spec_status prepare_extension(const spec_kv *kv, const spec_forward_args *args, const char *who, PreparedForward &prepared,
                              Failure &err) {
    const int32_t P = kv->pending, n = args->n_tokens;
    if (n > kv->capacity - kv->committed - P)
        FAIL(err, SPEC_ERR_OUT_OF_RANGE, "%s: %d tokens do not fit after %d pending: %d committed of capacity %d", who, n, P,
             kv->committed, kv->capacity);
    if (kv->model->config.sliding_window > 0)
        FAIL(err, SPEC_ERR_UNSUPPORTED, "%s: layers with a sliding window cannot extend a pending tree", who);
    std::vector<int32_t> depth((size_t)(P + n));
    for (int32_t i = 0; i < P; i++) {
        const int32_t p = kv->pending_parents[(size_t)i];
        depth[(size_t)i] = p < 0 ? 0 : depth[(size_t)p] + 1;
    }
    std::vector<int32_t> &parents = prepared.parents, &positions = prepared.positions;
    parents.resize((size_t)n);
    positions.resize((size_t)n);
    for (int32_t t = 0; t < n; t++) {
        const int32_t i = P + t;
        const int32_t p = args->parents ? args->parents[t] : i - 1;
        if (p < -1 || p >= i)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: parent[%d] = %d must be -1 or an earlier pending token (0..%d)", who, t, p, i - 1);
        parents[(size_t)t] = p;
        depth[(size_t)i] = p < 0 ? 0 : depth[(size_t)p] + 1;
        positions[(size_t)t] = args->positions ? args->positions[t] : kv->committed + depth[(size_t)i];
        if (positions[(size_t)t] < 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: position[%d] = %d is negative", who, t, positions[(size_t)t]);
    }
    prepared.args.parents = parents.data();
    prepared.args.positions = positions.data();
    return SPEC_OK;
}

// spec_eagle_forward (extend false) and spec_eagle_forward_extend (extend true).
spec_status eagle_forward_call(spec_model *model, spec_kv *kv, const spec_eagle_forward_args *args, bool extend, const char *fn) {
    const spec_context *ctx = live_model(model) ? model->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: model %s", fn, handle_problem(model));
        if (!model->finalized) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: model is not finalized", fn);
        if (!model->eagle) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: the model is not an EAGLE layer (use spec_forward)", fn);
        if (!args || !args->forward) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: args or args->forward is null", fn);
        std::vector<PreparedForward> prepared(1);
        if (!extend) {
            if (prepare_forward(model, kv, args->forward, fn, prepared[0], err)) return err.status;
        } else {
            // the checks of every other field as a plain call's, its tree taken as roots (the whole tree's below); a
            // bad handle or token count fails there first, before the count sizes anything
            const int32_t n0 = args->forward->n_tokens;
            if (n0 <= 0 || !live_kv(kv) || kv->model != model || n0 > kv->capacity - kv->committed)
                if (prepare_forward(model, kv, args->forward, fn, prepared[0], err)) return err.status;
            spec_forward_args roots = *args->forward;
            std::vector<int32_t> minus_one((size_t)roots.n_tokens, -1), zeros((size_t)roots.n_tokens, 0);
            roots.parents = minus_one.data();
            roots.positions = zeros.data();
            if (prepare_forward(model, kv, &roots, fn, prepared[0], err)) return err.status;
            if (prepare_extension(kv, args->forward, fn, prepared[0], err)) return err.status;
        }
        const spec_buffer *f = args->features;
        if (!live_buffer(f)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: features buffer %s", fn, handle_problem(f));
        if (f->ctx != model->ctx) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: features buffer belongs to another context", fn);
        if (args->features_offset % 4) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: features_offset %llu is not a multiple of 4", fn,
                                            (unsigned long long)args->features_offset);
        const int32_t n = args->forward->n_tokens;
        const uint64_t row_bytes = (uint64_t)model->config.n_embd * 4;
        // the final_hidden rows this call writes, which no feature may overlap (they are read as the rows are run)
        const spec_forward_args &fa = *args->forward;
        const bool same = fa.final_hidden == f;
        const uint64_t w0 = fa.final_hidden_offset, w1 = w0 + (uint64_t)n * row_bytes;
        std::vector<const float *> rows((size_t)n);
        for (int32_t i = 0; i < n; i++) {
            const int64_t r = args->feature_rows ? args->feature_rows[i] : i;
            if (r < 0) FAIL(err, SPEC_ERR_OUT_OF_RANGE, "%s: feature_rows[%d] = %lld is negative", fn, i, (long long)r);
            const uint64_t at = args->features_offset + (uint64_t)r * row_bytes;
            if (args->features_offset > f->size || (uint64_t)r * row_bytes > f->size - args->features_offset ||
                row_bytes > f->size - at)
                FAIL(err, SPEC_ERR_OUT_OF_RANGE, "%s: feature row %lld of token %d runs past the features buffer's end (%llu bytes)", fn,
                     (long long)r, i, (unsigned long long)f->size);
            if (same && at < w1 && at + row_bytes > w0)
                FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: feature row %lld of token %d overlaps the final_hidden rows this call writes", fn,
                     (long long)r, i);
            rows[(size_t)i] = (const float *)((const char *)f->ptr + at);
        }
        if (!extend) return run_forward(model, &kv, prepared, err, rows.data());
        const int32_t P = kv->pending;
        spec_status st = backend_eagle_forward(model, kv, prepared[0].args, rows.data(), err, P);
        if (st != SPEC_OK) { // its key sets and slots may be half written: the whole tree goes
            kv->pending = 0;
            kv->pending_parents.clear();
            return st;
        }
        kv->pending = P + n;
        kv->pending_parents.insert(kv->pending_parents.end(), prepared[0].parents.begin(), prepared[0].parents.end());
        return SPEC_OK;
    });
}

} // namespace

extern "C" {

SPEC_API spec_status spec_eagle_forward(spec_model *model, spec_kv *kv, const spec_eagle_forward_args *args) {
    return eagle_forward_call(model, kv, args, false, "spec_eagle_forward");
}

SPEC_API spec_status spec_eagle_forward_extend(spec_model *model, spec_kv *kv, const spec_eagle_forward_args *args) {
    return eagle_forward_call(model, kv, args, true, "spec_eagle_forward_extend");
}

SPEC_API spec_status spec_eagle_forward_extend_summarize(spec_model *model, spec_kv *kv, const spec_eagle_forward_args *args, int32_t k,
                                                         spec_logits_summary *out) {
    const char *fn = "spec_eagle_forward_extend_summarize";
    spec_context *ctx = live_model(model) ? model->ctx : nullptr;
    spec_status st = guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: model %s", fn, handle_problem(model));
        if (!out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: out is null", fn);
        if (k < 1 || k > SPEC_SUMMARY_MAX_K) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: k = %d is out of range (1..%d)", fn, k, SPEC_SUMMARY_MAX_K);
        if (!args || !args->forward) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: args or args->forward is null", fn);
        if (args->forward->logits_mode != SPEC_LOGITS_ALL)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: args->forward->logits_mode must be SPEC_LOGITS_ALL (each row's logits are summarized)", fn);
        return SPEC_OK;
    });
    if (st != SPEC_OK) return st;
    st = eagle_forward_call(model, kv, args, true, fn);
    if (st != SPEC_OK) return st;
    // the call checked the logits buffer for its rows, so only the summary itself is left
    const spec_forward_args &fa = *args->forward;
    const int32_t V = model->config.n_vocab;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        const float *first = (const float *)((const char *)fa.logits->ptr + fa.logits_offset);
        return ctx->backend->logits_summarize(ctx, first, fa.n_tokens, V, V, k, out, err);
    });
}

} // extern "C"

/* ---------------------------------------------------------------- memory a backend makes of the weights (ABI 0.11) */

extern "C" {

SPEC_API spec_status spec_memory_plan_weights(const char *backend, const spec_model_config *config, int32_t eagle, int32_t n_weights,
                                              const spec_weight_plan *weights, spec_weights_memory *out) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        const char *fn = "spec_memory_plan_weights";
        if (!config || !out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: config and out must not be null", fn);
        *out = spec_weights_memory{};
        Backend *b = find_backend(backend);
        if (!b) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: unknown backend '%s'", fn, backend ? backend : "(null)");
        if (validate_config(*config, err)) return err.status;
        if (eagle != 0 && eagle != 1) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: eagle must be 0 or 1, got %d", fn, eagle);
        if (eagle && !eagle_supported(b))
            FAIL(err, SPEC_ERR_UNSUPPORTED, "%s: EAGLE draft layers are not implemented on the %s backend", fn, b->name());
        if (n_weights < 0 || n_weights > (1 << 20))
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: n_weights %d is out of range (0..1048576)", fn, n_weights);
        if (n_weights > 0 && !weights) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: weights is null", fn);
        // A model never created through the ABI: the weights' shapes and dtypes as spec_model_set_weight and
        // spec_model_set_eagle_weight would keep them, their data a placeholder that is never read.
        // Each its own placeholder byte: the cpu copy plan tells matrices apart by their memory, as finalize does.
        std::vector<uint8_t> placeholders((size_t)n_weights + 1);
        spec_model shape;
        shape.tag = TAG_DEAD;
        shape.config = *config;
        if (shape.config.rope_dims == 0) shape.config.rope_dims = config->head_dim;
        shape.weights.resize(SPEC_W_ROLE_COUNT);
        for (int r = 0; r < SPEC_W_ROLE_COUNT; r++) shape.weights[r].resize(is_global_role(r) ? 1 : config->n_layer);
        shape.eagle = eagle != 0;
        const int64_t E = config->n_embd;
        for (int32_t i = 0; i < n_weights; i++) {
            const spec_weight_plan &p = weights[i];
            int64_t rows = 0, cols = 0;
            spec_weight *w = nullptr;
            if (p.eagle_role >= 0) {
                if (!eagle) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: weight %d has an EAGLE role, but the model is not an EAGLE layer", fn, i);
                if (p.eagle_role != SPEC_EW_FC && p.eagle_role != SPEC_EW_FC_BIAS)
                    FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: weight %d: unknown EAGLE role %d (0 = fc, 1 = fc bias)", fn, i, p.eagle_role);
                rows = p.eagle_role == SPEC_EW_FC ? E : 1;
                cols = p.eagle_role == SPEC_EW_FC ? 2 * E : E;
                w = p.eagle_role == SPEC_EW_FC ? &shape.eagle_fc : &shape.eagle_fc_bias;
            } else {
                if (p.eagle_role != -1)
                    FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: weight %d: eagle_role %d is neither -1 nor an EAGLE role", fn, i, p.eagle_role);
                if (weight_shape(*config, p.role, p.layer, &rows, &cols, err)) return err.status;
                if (!role_allowed(*config, p.role))
                    FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: weight %s is not part of a %s model", fn, role_name(p.role), arch_name(config->arch));
                w = &shape.weights[p.role][is_global_role(p.role) ? 0 : p.layer];
            }
            const uint64_t row_bytes = dtype_row_bytes(p.dtype, cols);
            if (row_bytes == 0)
                FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: weight %d: dtype %d cannot hold rows of %lld elements", fn, i, p.dtype, (long long)cols);
            w->dtype = p.dtype;
            w->data = &placeholders[(size_t)i];
            w->device_data = &placeholders[(size_t)i];
            w->nbytes = row_bytes * (uint64_t)rows;
            w->rows = rows;
            w->cols = cols;
        }
        if (b->weights_memory_plan(shape, out, err)) return err.status;
        out->total = out->prepacked + out->eagle_scratch + out->weight_copy;
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_model_memory(const spec_model *model, spec_weights_memory *out) {
    const spec_context *ctx = live_model(model) ? model->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        const char *fn = "spec_model_memory";
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: model %s", fn, handle_problem(model));
        if (!out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: out is null", fn);
        *out = spec_weights_memory{};
        if (!model->finalized) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: model is not finalized", fn);
        if (model->ctx->backend->model_memory(model, out, err)) return err.status;
        out->total = out->prepacked + out->eagle_scratch + out->weight_copy;
        return SPEC_OK;
    });
}

} // extern "C"
