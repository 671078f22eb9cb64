// Random small models built through the ABI, shared by the model tests (test_forward: the cpu
// backend against a double-precision reference; test_cuda_model: cuda against cpu): weights of
// every dtype with the values they mean, model specs, loading, and running a forward.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "quant_reference.hpp"
#include "test_random.hpp"

namespace {

// ------------------------------------------------------------------ conversions (independent)

float h2f(uint16_t h) {
    const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0) v = std::ldexp((double)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = std::ldexp(1024.0 + m, e - 25);
    return (float)(s ? -v : v);
}

uint16_t f2h(float f) { // round to nearest even, by search over the exact value (slow, obvious)
    const double x = std::fabs((double)f);
    const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
    if (x >= 65520.0) return sign | 0x7c00;
    // candidates: the largest half <= x and the next one
    uint16_t lo = 0;
    for (int step = 1 << 14; step; step >>= 1)
        if (lo + step < 0x7c00 && h2f((uint16_t)(lo + step)) <= x) lo = (uint16_t)(lo + step);
    const double a = h2f(lo), b = h2f((uint16_t)(lo + 1));
    uint16_t r = lo;
    if (x - a > b - x || (x - a == b - x && (lo & 1))) r = (uint16_t)(lo + 1);
    return sign | r;
}

float bf2f(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}

uint16_t f2bf(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    b += 0x7fff + ((b >> 16) & 1);
    return (uint16_t)(b >> 16);
}

// ------------------------------------------------------------------ random models

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
    uint64_t next() { return splitmix64(s); }
    double uniform() { return (double)(next() >> 11) / 9007199254740992.0; } // [0, 1)
    double sym(double a) { return (2.0 * uniform() - 1.0) * a; }
    int below(int n) { return (int)(next() % (uint64_t)n); }
};

struct Weight {
    int dtype = -1;
    std::vector<uint8_t> bytes; // bytes[0] is padding, so the weight sits at an odd address
    const uint8_t *data() const { return bytes.data() + 1; }
    uint64_t size() const { return bytes.size() - 1; }
    int64_t rows = 0, cols = 0;
    std::vector<double> dense; // the values the bytes mean
};

void put16(std::vector<uint8_t> &b, uint16_t v) {
    b.push_back((uint8_t)(v & 255));
    b.push_back((uint8_t)(v >> 8));
}

Weight make_weight(Rng &r, int dtype, int64_t rows, int64_t cols, double amp, double center = 0.0) {
    Weight w;
    w.dtype = dtype;
    w.rows = rows;
    w.cols = cols;
    w.bytes.push_back(0xA5); // misaligns the weight: the kernels must not assume alignment
    for (int64_t i = 0; i < rows; i++) {
        if (dtype == SPEC_DTYPE_Q8_0 || dtype == SPEC_DTYPE_Q4_0) {
            for (int64_t b = 0; b < cols / 32; b++) {
                const bool q8 = dtype == SPEC_DTYPE_Q8_0;
                const uint16_t dh = f2h((float)(amp / (q8 ? 127.0 : 8.0) * (0.5 + r.uniform())));
                const double d = h2f(dh);
                put16(w.bytes, dh);
                if (q8) {
                    for (int j = 0; j < 32; j++) {
                        const int q = r.below(255) - 127;
                        w.bytes.push_back((uint8_t)(int8_t)q);
                        w.dense.push_back(q * d);
                    }
                } else {
                    uint8_t nib[32];
                    for (int j = 0; j < 32; j++) nib[j] = (uint8_t)r.below(16);
                    for (int j = 0; j < 16; j++) w.bytes.push_back((uint8_t)(nib[j] | nib[j + 16] << 4));
                    for (int j = 0; j < 32; j++) w.dense.push_back((nib[j] - 8) * d);
                }
            }
        } else if (quant_ref::bytes(dtype) > 0) {
            // The other GGML formats: random quants and sub-scales, f16 scales that keep the
            // weights near amp; the values from the independent reference decoder.
            const int be = quant_ref::elems(dtype), bb = quant_ref::bytes(dtype);
            int d_at, min_at;
            quant_ref::scale_offsets(dtype, &d_at, &min_at);
            for (int64_t b = 0; b < cols / be; b++) {
                uint8_t blk[256];
                float vals[256];
                for (int i = 0; i < bb; i++) blk[i] = (uint8_t)r.next();
                const uint16_t dh = f2h((float)(2.0 * amp / quant_ref::d_reach(dtype) * (0.5 + r.uniform())));
                blk[d_at] = (uint8_t)dh, blk[d_at + 1] = (uint8_t)(dh >> 8);
                if (min_at >= 0) {
                    const uint16_t mh = f2h((float)(amp / quant_ref::min_reach(dtype) * (dtype == SPEC_DTYPE_Q4_1 || dtype == SPEC_DTYPE_Q5_1 ? -1.0 : 1.0) *
                                                    (0.5 + r.uniform())));
                    blk[min_at] = (uint8_t)mh, blk[min_at + 1] = (uint8_t)(mh >> 8);
                }
                quant_ref::dequant_block(dtype, blk, vals);
                w.bytes.insert(w.bytes.end(), blk, blk + bb);
                for (int j = 0; j < be; j++) w.dense.push_back(vals[j]);
            }
        } else {
            for (int64_t j = 0; j < cols; j++) {
                const float f = (float)(center + r.sym(amp));
                if (dtype == SPEC_DTYPE_F32) {
                    uint8_t b[4];
                    std::memcpy(b, &f, 4);
                    w.bytes.insert(w.bytes.end(), b, b + 4);
                    w.dense.push_back(f);
                } else if (dtype == SPEC_DTYPE_F16) {
                    const uint16_t h = f2h(f);
                    put16(w.bytes, h);
                    w.dense.push_back(h2f(h));
                } else {
                    const uint16_t h = f2bf(f);
                    put16(w.bytes, h);
                    w.dense.push_back(bf2f(h));
                }
            }
        }
    }
    return w;
}

struct ModelSpec {
    const char *name;
    spec_model_config cfg;
    int mat_dtype[SPEC_W_ROLE_COUNT]; // per role; vectors use vec_dtype
    int vec_dtype;
    bool tied;
    uint64_t seed;
};

spec_model_config base_config() {
    spec_model_config c;
    std::memset(&c, 0, sizeof c);
    c.arch = SPEC_ARCH_LLAMA;
    c.n_vocab = 50;
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 16;
    c.n_ff = 96;
    c.n_ctx_train = 1024;
    c.rms_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.rope_style = SPEC_ROPE_NORM;
    c.kv_dtype = SPEC_DTYPE_F32;
    return c;
}

// Sizes that fit no vector width, one kv head for all query heads: the shape both backends' odd-size tests use.
inline spec_model_config odd_sizes_config() {
    spec_model_config c = base_config();
    c.n_embd = 40;
    c.head_dim = 10;
    c.n_head = 4;
    c.n_head_kv = 1;
    c.n_ff = 58;
    c.n_vocab = 37;
    c.n_layer = 3;
    c.kv_dtype = SPEC_DTYPE_F16;
    return c;
}

ModelSpec spec_all(const char *name, spec_model_config c, int mat_dtype, int vec_dtype, bool tied, uint64_t seed) {
    ModelSpec s;
    s.name = name;
    s.cfg = c;
    for (int r = 0; r < SPEC_W_ROLE_COUNT; r++) s.mat_dtype[r] = mat_dtype;
    s.vec_dtype = vec_dtype;
    s.tied = tied;
    s.seed = seed;
    return s;
}

bool is_vector_role(int r) {
    return r == SPEC_W_OUTPUT_NORM || r == SPEC_W_ATTN_NORM || r == SPEC_W_FFN_NORM || r == SPEC_W_ATTN_Q_BIAS ||
           r == SPEC_W_ATTN_K_BIAS || r == SPEC_W_ATTN_V_BIAS || r == SPEC_W_ATTN_Q_NORM || r == SPEC_W_ATTN_K_NORM ||
           r == SPEC_W_ATTN_POST_NORM || r == SPEC_W_FFN_POST_NORM;
}

// Whether the fixture gives a model this role: biases on qwen2 only, the ABI 0.8 norms where the arch has them.
bool fixture_has_role(const spec_model_config &c, int r) {
    switch (r) {
    case SPEC_W_ATTN_Q_BIAS: case SPEC_W_ATTN_K_BIAS: case SPEC_W_ATTN_V_BIAS: return c.arch == SPEC_ARCH_QWEN2;
    case SPEC_W_ATTN_Q_NORM: case SPEC_W_ATTN_K_NORM: return c.arch == SPEC_ARCH_QWEN3 || c.arch == SPEC_ARCH_GEMMA3;
    case SPEC_W_ATTN_POST_NORM: case SPEC_W_FFN_POST_NORM: return c.arch == SPEC_ARCH_GEMMA3;
    default: return true;
    }
}
bool is_global_role(int r) { return r == SPEC_W_TOKEN_EMBD || r == SPEC_W_OUTPUT_NORM || r == SPEC_W_OUTPUT; }

struct TestModel {
    ModelSpec spec;
    std::vector<Weight> w[SPEC_W_ROLE_COUNT]; // [role][layer]; OUTPUT empty when tied

    const Weight &get(int role, int layer = 0) const {
        if (role == SPEC_W_OUTPUT && spec.tied) return w[SPEC_W_TOKEN_EMBD][0];
        return w[role][is_global_role(role) ? 0 : layer];
    }
    bool has(int role) const { return !w[role].empty(); }
};

TestModel make_model(const ModelSpec &s) {
    TestModel m;
    m.spec = s;
    Rng r(s.seed);
    const spec_model_config &c = s.cfg;
    for (int role = 0; role < SPEC_W_ROLE_COUNT; role++) {
        const bool bias = role == SPEC_W_ATTN_Q_BIAS || role == SPEC_W_ATTN_K_BIAS || role == SPEC_W_ATTN_V_BIAS;
        if (!fixture_has_role(c, role)) continue;
        if (role == SPEC_W_OUTPUT && s.tied) continue;
        const int n = is_global_role(role) ? 1 : c.n_layer;
        int64_t rows = 0, cols = 0;
        CHECK_OK(spec_weight_shape(&c, role, 0, &rows, &cols)); // the ABI's own rule: one statement of it
        for (int l = 0; l < n; l++) {
            if (is_vector_role(role)) {
                const bool norm = !bias;
                m.w[role].push_back(make_weight(r, s.vec_dtype, rows, cols, norm ? 0.25 : 0.5, norm ? 1.0 : 0.0));
            } else {
                const double amp = role == SPEC_W_TOKEN_EMBD ? 1.0 : std::sqrt(3.0 / (double)cols) * 1.5;
                m.w[role].push_back(make_weight(r, s.mat_dtype[role], rows, cols, amp));
            }
        }
    }
    return m;
}

spec_model *load_model(spec_context *ctx, const TestModel &m) {
    spec_model *model = NULL;
    CHECK_OK(spec_model_create(ctx, &m.spec.cfg, &model));
    if (!model) return NULL;
    for (int role = 0; role < SPEC_W_ROLE_COUNT; role++) {
        if (!fixture_has_role(m.spec.cfg, role)) continue;
        const int n = is_global_role(role) ? 1 : m.spec.cfg.n_layer;
        for (int l = 0; l < n; l++) {
            const Weight &w = m.get(role, l);
            // tied: OUTPUT is the very same memory as TOKEN_EMBD
            spec_status st = spec_model_set_weight(model, role, l, w.dtype, w.data(), w.size(), w.rows, w.cols);
            if (st != SPEC_OK) {
                char msg[512];
                spec_last_error(ctx, msg, sizeof msg, NULL);
                fprintf(stderr, "  set_weight(%s): %s\n", m.spec.name, msg);
            }
            CHECK(st == SPEC_OK);
        }
    }
    CHECK_OK(spec_model_finalize(model));
    return model;
}

// ------------------------------------------------------------------ running through the ABI

struct Out {
    std::vector<float> logits, exit_hidden, exit_logits;
    spec_status status = SPEC_OK;
};

spec_buffer *alloc_buf(spec_context *ctx, uint64_t n_floats) {
    spec_buffer *b = NULL;
    CHECK_OK(spec_buffer_alloc(ctx, n_floats * 4, &b));
    return b;
}

Out forward(spec_context *ctx, spec_model *model, spec_kv *kv, const spec_model_config &c, const std::vector<int> &tokens,
            const int *parents = NULL, const int *positions = NULL, int mode = SPEC_LOGITS_ALL, int exit_layer = 0,
            bool want_hidden = false, bool want_exit_logits = false, bool stop = false) {
    Out o;
    const int n = (int)tokens.size();
    spec_forward_args a;
    std::memset(&a, 0, sizeof a);
    a.n_tokens = n;
    a.tokens = tokens.data();
    a.parents = parents;
    a.positions = positions;
    a.logits_mode = mode;
    const uint64_t rows = mode == SPEC_LOGITS_ALL ? (uint64_t)n : 1;
    if (mode != SPEC_LOGITS_NONE) a.logits = alloc_buf(ctx, rows * c.n_vocab);
    a.exit_layer = exit_layer;
    if (want_hidden) a.exit_hidden = alloc_buf(ctx, (uint64_t)n * c.n_embd);
    if (want_exit_logits) a.exit_logits = alloc_buf(ctx, (uint64_t)n * c.n_vocab);
    a.stop_at_exit = stop;
    o.status = spec_forward(model, kv, &a);
    if (o.status != SPEC_OK) {
        char msg[512];
        spec_last_error(ctx, msg, sizeof msg, NULL);
        fprintf(stderr, "  forward failed (%d): %s\n", o.status, msg);
    }
    auto take = [&](spec_buffer *b, std::vector<float> &dst, uint64_t count) {
        if (!b) return;
        dst.resize(count);
        if (o.status == SPEC_OK) CHECK_OK(spec_copy_d2h(dst.data(), b, 0, count * 4));
        spec_buffer_free(b);
    };
    take(a.logits, o.logits, rows * c.n_vocab);
    take(a.exit_hidden, o.exit_hidden, (uint64_t)n * c.n_embd);
    take(a.exit_logits, o.exit_logits, (uint64_t)n * c.n_vocab);
    return o;
}

void commit_chain(spec_kv *kv, int n) {
    std::vector<int> path(n);
    for (int i = 0; i < n; i++) path[i] = i;
    CHECK_OK(spec_kv_commit(kv, n, path.data()));
}

// max |a - b| over a row, relative to the row's largest |b|
double row_err(const float *a, const double *b, int n) {
    double d = 0.0, mx = 1e-3;
    for (int i = 0; i < n; i++) {
        d = std::max(d, std::fabs((double)a[i] - b[i]));
        mx = std::max(mx, std::fabs(b[i]));
    }
    return d / mx;
}

double row_err_f(const float *a, const float *b, int n) {
    std::vector<double> bd(b, b + n);
    return row_err(a, bd.data(), n);
}

std::vector<int> random_tokens(Rng &r, int n, int vocab) {
    std::vector<int> t(n);
    for (auto &e : t) e = r.below(vocab);
    return t;
}

std::vector<int> path_to(const std::vector<int> &parents, int node) {
    std::vector<int> p;
    for (int i = node; i >= 0; i = parents[i]) p.insert(p.begin(), i);
    return p;
}

} // namespace
