// The draft heads' ABI entry points (ABI 0.8): validate, then run on the target's backend (cpu, or
// cuda when it is built in; any other answers SPEC_ERR_UNSUPPORTED at creation).
#include "abi_guard.hpp"
#include "../cpu/cpu_model.hpp"
#ifdef SPECULA_WITH_CUDA
#include "../cuda/model.cuh"
#endif

namespace specula {
namespace {

const char *head_role_name(int32_t role) {
    static const char *const names[] = {"BLOCK", "BLOCK_BIAS", "BLOCK_RES", "BLOCK_RES_BIAS", "PROJ", "PROJ_BIAS"};
    return role >= 0 && role < SPEC_HW_ROLE_COUNT ? names[role] : "unknown";
}

// The target backend's heads functions.
bool heads_supported(const Backend *b) {
#ifdef SPECULA_WITH_CUDA
    if (b == cuda_backend()) return true;
#endif
    return b == cpu_backend();
}
[[maybe_unused]] bool on_cpu(const spec_heads *h) { return h->target->ctx->backend == cpu_backend(); }
Status backend_heads_finalize(spec_heads *h, Failure &err) {
#ifdef SPECULA_WITH_CUDA
    if (!on_cpu(h)) return cuda::heads_finalize(h, err);
#endif
    return cpu::heads_finalize(h, err);
}
void backend_heads_release(spec_heads *h) {
#ifdef SPECULA_WITH_CUDA
    if (!on_cpu(h)) return cuda::heads_release(h);
#endif
    cpu::heads_release(h);
}
Status backend_heads_forward(spec_heads *h, const spec_heads_forward_args &a, Failure &err) {
#ifdef SPECULA_WITH_CUDA
    if (!on_cpu(h)) return cuda::heads_forward(h, a, err);
#endif
    return cpu::heads_forward(h, a, err);
}

spec_status validate_heads_config(const spec_heads_config &c, Failure &err) {
    if (c.n_heads < 1 || c.n_heads > SPEC_HEADS_MAX)
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "heads config: n_heads %d is out of range (1..%d)", c.n_heads, SPEC_HEADS_MAX);
    if (c.n_blocks < 0 || c.n_blocks > 16) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "heads config: n_blocks %d is out of range (0..16)", c.n_blocks);
    if (c.conditioned != 0 && c.conditioned != 1) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "heads config: conditioned must be 0 or 1, got %d", c.conditioned);
    if (c.conditioned && c.n_blocks == 0)
        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "heads config: conditioned heads need at least one block to reduce their input");
    if (c.proj_bias != 0 && c.proj_bias != 1) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "heads config: proj_bias must be 0 or 1, got %d", c.proj_bias);
    return SPEC_OK;
}

// Block b's input width for head h.
int64_t block_in(const spec_heads_config &c, int32_t n_embd, int32_t head, int32_t block) {
    return (int64_t)n_embd * (1 + (c.conditioned && block == 0 ? head + 1 : 0));
}

spec_status head_weight_shape(const spec_heads_config &c, int32_t n_embd, int32_t n_vocab, int32_t role, int32_t head, int32_t block,
                              int64_t *rows, int64_t *cols, Failure &err) {
    *rows = *cols = 0;
    if (role < 0 || role >= SPEC_HW_ROLE_COUNT) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "unknown head weight role %d (roles are 0..%d)", role, SPEC_HW_ROLE_COUNT - 1);
    if (head < 0 || head >= c.n_heads) FAIL(err, SPEC_ERR_OUT_OF_RANGE, "head weight %s: head %d is out of range (0..%d)", head_role_name(role), head, c.n_heads - 1);
    const bool proj = role == SPEC_HW_PROJ || role == SPEC_HW_PROJ_BIAS;
    if (!proj && (block < 0 || block >= c.n_blocks))
        FAIL(err, SPEC_ERR_OUT_OF_RANGE, "head weight %s: block %d is out of range (heads have %d blocks)", head_role_name(role), block, c.n_blocks);
    const int64_t in = proj ? n_embd : block_in(c, n_embd, head, block);
    switch (role) {
    case SPEC_HW_BLOCK: *rows = n_embd, *cols = in; break;
    case SPEC_HW_BLOCK_BIAS: *rows = 1, *cols = n_embd; break;
    case SPEC_HW_BLOCK_RES: if (in > n_embd) *rows = n_embd, *cols = in; break;
    case SPEC_HW_BLOCK_RES_BIAS: if (in > n_embd) *rows = 1, *cols = n_embd; break;
    case SPEC_HW_PROJ: *rows = n_vocab, *cols = n_embd; break;
    case SPEC_HW_PROJ_BIAS: if (c.proj_bias) *rows = 1, *cols = n_vocab; break;
    }
    return SPEC_OK;
}

} // namespace
} // namespace specula

using namespace specula;

extern "C" {

SPEC_API spec_status spec_heads_create(spec_model *target, const spec_heads_config *config, spec_heads **out) {
    const spec_context *ctx = live_model(target) ? target->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_heads_create: target model %s", handle_problem(target));
        if (!config || !out) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_heads_create: config or out is null");
        *out = nullptr;
        if (!heads_supported(target->ctx->backend))
            FAIL(err, SPEC_ERR_UNSUPPORTED, "spec_heads_create: draft heads are not implemented on the %s backend",
                 target->ctx->backend->name());
        if (validate_heads_config(*config, err)) return err.status;
        auto *h = new spec_heads();
        h->target = target;
        h->config = *config;
        h->weights.assign(SPEC_HW_ROLE_COUNT, std::vector<std::vector<spec_weight>>(config->n_heads,
                                                                                   std::vector<spec_weight>(std::max(1, config->n_blocks))));
        target->live_heads++;
        target->ctx->live.heads++;
        return hand_out(h, out);
    });
}

SPEC_API spec_status spec_heads_destroy(spec_heads *heads) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        if (!live_heads(heads)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_heads_destroy: heads %s", handle_problem(heads));
        if (heads->finalized) backend_heads_release(heads);
        heads->target->live_heads--;
        heads->target->ctx->live.heads--;
        retire(heads);
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_head_weight_shape(const spec_heads_config *config, int32_t n_embd, int32_t n_vocab, int32_t role,
                                            int32_t head, int32_t block, int64_t *rows, int64_t *cols) {
    return guarded(nullptr, [&](Failure &err) -> spec_status {
        if (!config || !rows || !cols) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_head_weight_shape: config, rows or cols is null");
        *rows = *cols = 0;
        if (n_embd <= 0 || n_vocab <= 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_head_weight_shape: n_embd %d and n_vocab %d must be positive", n_embd, n_vocab);
        if (validate_heads_config(*config, err)) return err.status;
        return head_weight_shape(*config, n_embd, n_vocab, role, head, block, rows, cols, err);
    });
}

SPEC_API spec_status spec_heads_set_weight(spec_heads *heads, int32_t role, int32_t head, int32_t block, int32_t dtype,
                                           const void *data, uint64_t nbytes, int64_t rows, int64_t cols) {
    const spec_context *ctx = live_heads(heads) ? heads->target->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_heads_set_weight: heads %s", handle_problem(heads));
        if (heads->finalized) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_heads_set_weight: heads are already finalized");
        const spec_model_config &tc = heads->target->config;
        int64_t er = 0, ec = 0;
        if (head_weight_shape(heads->config, tc.n_embd, tc.n_vocab, role, head, block, &er, &ec, err)) return err.status;
        if (er == 0) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "head weight %s of head %d block %d does not exist in these heads", head_role_name(role), head, block);
        if (!data) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "head weight %s: data is null", head_role_name(role));
        if (rows != er || cols != ec)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "head weight %s (head %d, block %d): shape [%lld x %lld], expected [%lld x %lld]",
                 head_role_name(role), head, block, (long long)rows, (long long)cols, (long long)er, (long long)ec);
        if (dtype != SPEC_DTYPE_F32 && dtype != SPEC_DTYPE_F16 && dtype != SPEC_DTYPE_BF16)
            FAIL(err, SPEC_ERR_UNSUPPORTED, "head weight %s: heads take F32, F16 or BF16, got %s", head_role_name(role), dtype_name(dtype));
        const uint64_t row_bytes = dtype_row_bytes(dtype, cols);
        if (nbytes != row_bytes * (uint64_t)rows)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "head weight %s: %llu bytes given, %s [%lld x %lld] needs %llu", head_role_name(role),
                 (unsigned long long)nbytes, dtype_name(dtype), (long long)rows, (long long)cols, (unsigned long long)(row_bytes * (uint64_t)rows));
        const bool proj = role == SPEC_HW_PROJ || role == SPEC_HW_PROJ_BIAS;
        spec_weight &w = heads->weights[role][head][proj ? 0 : block];
        w.dtype = dtype;
        w.data = data;
        w.device_data = data;
        w.nbytes = nbytes;
        w.rows = rows;
        w.cols = cols;
        return SPEC_OK;
    });
}

SPEC_API spec_status spec_heads_finalize(spec_heads *heads) {
    const spec_context *ctx = live_heads(heads) ? heads->target->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "spec_heads_finalize: heads %s", handle_problem(heads));
        if (heads->finalized) return SPEC_OK;
        if (!heads->target->finalized) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "spec_heads_finalize: the target model is not finalized");
        const spec_heads_config &c = heads->config;
        const spec_model_config &tc = heads->target->config;
        for (int32_t role = 0; role < SPEC_HW_ROLE_COUNT; role++) {
            const bool proj = role == SPEC_HW_PROJ || role == SPEC_HW_PROJ_BIAS;
            for (int32_t h = 0; h < c.n_heads; h++)
                for (int32_t b = 0; b < (proj ? 1 : c.n_blocks); b++) {
                    int64_t r = 0, cols = 0;
                    if (head_weight_shape(c, tc.n_embd, tc.n_vocab, role, h, b, &r, &cols, err)) return err.status;
                    if (r > 0 && role != SPEC_HW_PROJ && !heads->weights[role][h][b].data)
                        FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "heads are missing weight %s of head %d%s%d", head_role_name(role), h,
                             proj ? "" : " block ", proj ? 0 : b);
                }
        }
        spec_status st = backend_heads_finalize(heads, err);
        if (st == SPEC_OK) heads->finalized = true;
        return st;
    });
}

SPEC_API spec_status spec_heads_forward(spec_heads *heads, const spec_heads_forward_args *args) {
    const spec_context *ctx = live_heads(heads) ? heads->target->ctx : nullptr;
    return guarded(ctx, [&](Failure &err) -> spec_status {
        const char *fn = "spec_heads_forward";
        if (!ctx) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: heads %s", fn, handle_problem(heads));
        if (!heads->finalized) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: heads are not finalized", fn);
        if (!args) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: args is null", fn);
        const spec_heads_config &c = heads->config;
        const spec_model_config &tc = heads->target->config;
        if (args->head < 0 || args->head >= c.n_heads) FAIL(err, SPEC_ERR_OUT_OF_RANGE, "%s: head %d is out of range (0..%d)", fn, args->head, c.n_heads - 1);
        if (args->n_rows < 1 || args->n_rows > SPEC_MAX_TREE_NODES)
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: n_rows %d is out of range (1..%d)", fn, args->n_rows, SPEC_MAX_TREE_NODES);
        auto check_buf = [&](const spec_buffer *b, uint64_t offset, uint64_t need, const char *what) -> spec_status {
            if (!live_buffer(b)) FAIL(err, SPEC_ERR_INVALID_HANDLE, "%s: %s buffer %s", fn, what, handle_problem(b));
            if (b->ctx != heads->target->ctx) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: %s buffer belongs to another context", fn, what);
            if (offset % 4 || offset > b->size || need > b->size - offset)
                FAIL(err, SPEC_ERR_BUFFER_TOO_SMALL, "%s: %s buffer of %llu bytes cannot hold %llu bytes at offset %llu", fn, what,
                     (unsigned long long)b->size, (unsigned long long)need, (unsigned long long)offset);
            return SPEC_OK;
        };
        if (check_buf(args->hidden, args->hidden_offset, (uint64_t)tc.n_embd * 4, "hidden")) return err.status;
        if (check_buf(args->logits, args->logits_offset, (uint64_t)args->n_rows * tc.n_vocab * 4, "logits")) return err.status;
        if (c.conditioned) {
            if (!args->tokens) FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: conditioned heads need tokens", fn);
            const int64_t n = (int64_t)args->n_rows * (args->head + 1);
            for (int64_t i = 0; i < n; i++)
                if (args->tokens[i] < 0 || args->tokens[i] >= tc.n_vocab)
                    FAIL(err, SPEC_ERR_OUT_OF_RANGE, "%s: tokens[%lld] = %d is out of range (vocabulary %d)", fn, (long long)i, args->tokens[i], tc.n_vocab);
        } else if (args->tokens) {
            FAIL(err, SPEC_ERR_INVALID_ARGUMENT, "%s: unconditioned (Medusa) heads take no tokens", fn);
        }
        return backend_heads_forward(heads, *args, err);
    });
}

} // extern "C"
