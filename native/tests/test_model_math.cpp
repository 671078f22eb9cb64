/* The shared transformer arithmetic (native/core/model_math.hpp) and the host plan of the cuda
 * forward pass (native/cuda/forward_plan.hpp), on the host, without nvcc: rope frequencies
 * against the cpu backend's former code for every scaling mode, the rotation's index mapping, rmsnorm's scale, silu, exact
 * dequantization of every dtype, row buckets, graph keys, the per-token key sets of tree
 * attention against brute-force ancestry, the parameter block of a slice (of one sequence or of
 * a batch's), a host emulation of the attention kernel's splits / tiles / online softmax / combine against a
 * two-pass reference, which matrices stack into one launch, the byte layouts of weights
 * (stacked or not) and scratch, and the tree attention kernel's launch grid at the ABI's limits. */
#include <stdint.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "check.h"
#include "../core/model_math.hpp"
#include "../cuda/forward_plan.hpp"
#include "../cuda/copy_plan.hpp"
#include "../cuda/tree_attention_plan.hpp"
#include "test_random.hpp"

using namespace specula;

static uint64_t g_state = 0x1234;
static uint64_t next_u64() {
    return splitmix64(g_state);
}
static int below(int n) { return (int)(next_u64() % (uint64_t)n); }
static float sym(float a) { return uniform(g_state) * a; }

static spec_model_config base(void) {
    spec_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = SPEC_ARCH_LLAMA;
    c.n_vocab = 1000;
    c.n_embd = 256;
    c.n_layer = 4;
    c.n_head = 8;
    c.n_head_kv = 2;
    c.head_dim = 32;
    c.n_ff = 640;
    c.rms_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.kv_dtype = SPEC_DTYPE_F16;
    return c;
}

/* ---------------------------------------------------------------- rope */

/* The cpu backend's rope table before it moved into model_math.hpp, verbatim. */
static std::vector<double> old_inv_freq(const spec_model_config &c) {
    const int rd = c.rope_dims > 0 ? c.rope_dims : c.head_dim;
    std::vector<double> inv_freq(rd / 2);
    for (int i = 0; i < rd / 2; i++) {
        double theta = std::pow((double)c.rope_theta, -2.0 * i / rd);
        if (c.rope_scaling == SPEC_ROPE_SCALING_LLAMA3) {
            const double pi = 3.14159265358979323846;
            const double wavelen = 2.0 * pi / theta;
            const double low_wl = c.rope_orig_ctx / (double)c.rope_low_freq_factor;
            const double high_wl = c.rope_orig_ctx / (double)c.rope_high_freq_factor;
            if (wavelen < high_wl) {
            } else if (wavelen > low_wl) {
                theta /= c.rope_factor;
            } else {
                const double smooth = (c.rope_orig_ctx / wavelen - c.rope_low_freq_factor) /
                                      ((double)c.rope_high_freq_factor - c.rope_low_freq_factor);
                theta = (1.0 - smooth) * theta / c.rope_factor + smooth * theta;
            }
        }
        inv_freq[i] = theta;
    }
    return inv_freq;
}

static void test_rope(void) {
    int checked = 0;
    for (int scaling : {SPEC_ROPE_SCALING_NONE, SPEC_ROPE_SCALING_LINEAR, SPEC_ROPE_SCALING_LLAMA3})
        for (int hd : {16, 64, 128})
            for (int rd : {0, 8, 32})
                for (float theta : {10000.0f, 500000.0f, 1000000.0f}) {
                    spec_model_config c = base();
                    c.head_dim = hd;
                    c.rope_dims = rd > hd ? 0 : rd;
                    c.rope_theta = theta;
                    c.rope_scaling = scaling;
                    c.rope_factor = scaling == SPEC_ROPE_SCALING_LINEAR ? 4.0f : 8.0f;
                    c.rope_low_freq_factor = 1.0f;
                    c.rope_high_freq_factor = 4.0f;
                    c.rope_orig_ctx = scaling == SPEC_ROPE_SCALING_LLAMA3 ? 8192 : 0;
                    std::vector<double> want = old_inv_freq(c);
                    CHECK((int)want.size() == mm::rope_dims(c) / 2);
                    for (size_t i = 0; i < want.size(); i++) {
                        CHECK(mm::rope_inv_freq(c, (int)i) == want[i]);
                        checked++;
                    }
                    const double ps = mm::rope_pos_scale(c);
                    CHECK(ps == (scaling == SPEC_ROPE_SCALING_LINEAR ? 1.0 / c.rope_factor : 1.0));
                    for (int pos : {0, 1, 300, 131071})
                        CHECK(mm::rope_angle(pos, ps, want.back()) == (double)pos * ps * want.back());
                }
    /* llama3 scaling actually changes low frequencies and keeps high ones */
    spec_model_config c = base();
    c.head_dim = 128;
    c.rope_theta = 500000.0f;
    c.rope_scaling = SPEC_ROPE_SCALING_LLAMA3;
    c.rope_factor = 8.0f;
    c.rope_low_freq_factor = 1.0f;
    c.rope_high_freq_factor = 4.0f;
    c.rope_orig_ctx = 8192;
    spec_model_config plain = c;
    plain.rope_scaling = SPEC_ROPE_SCALING_NONE;
    CHECK(mm::rope_inv_freq(c, 0) == mm::rope_inv_freq(plain, 0));
    CHECK(std::fabs(mm::rope_inv_freq(c, 63) - mm::rope_inv_freq(plain, 63) / 8.0) < 1e-30);

    /* rotating a head: NORM pairs (2i, 2i+1), NEOX pairs (i, i + half); dims past rope_dims untouched */
    for (bool neox : {false, true}) {
        const int D = 16, RD = 12, half = RD / 2;
        float x[D], y[D];
        for (int i = 0; i < D; i++) x[i] = y[i] = sym(2.0f);
        std::set<int> touched;
        for (int i = 0; i < half; i++) {
            int a, b;
            mm::rope_pair(i, half, neox, a, b);
            CHECK(a == (neox ? i : 2 * i) && b == (neox ? i + half : 2 * i + 1));
            touched.insert(a);
            touched.insert(b);
            const double ang = 0.37 * (i + 1);
            const float cs = (float)std::cos(ang), sn = (float)std::sin(ang);
            mm::rope_rotate(y[a], y[b], cs, sn, y[a], y[b]);
            const double w0 = (double)x[a] * cs - (double)x[b] * sn, w1 = (double)x[a] * sn + (double)x[b] * cs;
            CHECK(std::fabs(y[a] - w0) < 1e-6 && std::fabs(y[b] - w1) < 1e-6);
            CHECK(y[a] == x[a] * cs - x[b] * sn); /* no fused multiply-add */
        }
        CHECK((int)touched.size() == RD);
        for (int i = 0; i < D; i++)
            if (!touched.count(i)) CHECK(y[i] == x[i]);
    }
    printf("  rope: %d frequencies identical to the cpu backend's former table\n", checked);
}

/* ---------------------------------------------------------------- elementwise */

static void test_elementwise(void) {
    for (int n : {1, 7, 64, 4096}) {
        for (float eps : {1e-5f, 1e-6f}) {
            const double ss = 0.3 * n + 1e-3;
            CHECK(mm::rms_scale(ss, n, eps) == (float)(1.0 / std::sqrt(ss / (double)n + (double)eps)));
        }
    }
    double worst = 0.0;
    for (int i = -2000; i <= 2000; i++) {
        const float x = i * 0.01f;
        const double want = x / (1.0 + std::exp(-(double)x));
        worst = std::max(worst, std::fabs(mm::silu(x) - want) / std::max(1e-3, std::fabs(want)));
    }
    CHECK(worst < 1e-6);
    CHECK(mm::silu(0.0f) == 0.0f);

    /* dequantization: every dtype, exactly, from a misaligned row */
    std::vector<uint8_t> buf(1 + 4 * 64);
    uint8_t *row = buf.data() + 1;
    float vals[64];
    for (int k = 0; k < 64; k++) vals[k] = sym(3.0f);
    for (int k = 0; k < 64; k++) memcpy(row + 4 * k, &vals[k], 4);
    for (int k = 0; k < 64; k++) CHECK(mm::dequant_element(SPEC_DTYPE_F32, row, k) == vals[k]);
    for (int k = 0; k < 64; k++) {
        const uint16_t h = km::f32_to_f16(vals[k]);
        row[2 * k] = (uint8_t)h;
        row[2 * k + 1] = (uint8_t)(h >> 8);
    }
    for (int k = 0; k < 64; k++) CHECK(mm::dequant_element(SPEC_DTYPE_F16, row, k) == km::f16_to_f32(km::f32_to_f16(vals[k])));
    for (int k = 0; k < 64; k++) {
        const uint16_t h = km::f32_to_bf16(vals[k]);
        row[2 * k] = (uint8_t)h;
        row[2 * k + 1] = (uint8_t)(h >> 8);
    }
    for (int k = 0; k < 64; k++) CHECK(mm::dequant_element(SPEC_DTYPE_BF16, row, k) == km::bf16_to_f32(km::f32_to_bf16(vals[k])));
    /* Q8_0: two blocks of (f16 d, 32 x int8) */
    const float d8[2] = {0.0125f, 0.5f};
    int8_t q8[64];
    for (int b = 0; b < 2; b++) {
        const uint16_t h = km::f32_to_f16(d8[b]);
        row[34 * b] = (uint8_t)h;
        row[34 * b + 1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 32; j++) {
            q8[32 * b + j] = (int8_t)(below(255) - 127);
            row[34 * b + 2 + j] = (uint8_t)q8[32 * b + j];
        }
    }
    for (int k = 0; k < 64; k++)
        CHECK(mm::dequant_element(SPEC_DTYPE_Q8_0, row, k) == (float)q8[k] * km::f16_to_f32(km::f32_to_f16(d8[k / 32])));
    /* Q4_0: (f16 d, 16 bytes: element j low nibble of byte j, element j + 16 its high nibble) */
    int nib[64];
    for (int b = 0; b < 2; b++) {
        const uint16_t h = km::f32_to_f16(d8[b]);
        row[18 * b] = (uint8_t)h;
        row[18 * b + 1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 32; j++) nib[32 * b + j] = below(16);
        for (int j = 0; j < 16; j++) row[18 * b + 2 + j] = (uint8_t)(nib[32 * b + j] | nib[32 * b + j + 16] << 4);
    }
    for (int k = 0; k < 64; k++)
        CHECK(mm::dequant_element(SPEC_DTYPE_Q4_0, row, k) == (float)(nib[k] - 8) * km::f16_to_f32(km::f32_to_f16(d8[k / 32])));
    printf("  rms_scale, silu (max rel err %.1e), dequantization of 5 dtypes\n", worst);
}

/* ---------------------------------------------------------------- ABI 0.8 architectures (qwen3, gemma3, windows) */

/* The cpu backend's rmsnorm (native/cpu/cpu_model.cpp), written out as it reads there. */
static void cpu_rmsnorm(const float *x, const float *w, float *out, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float s = mm::rms_scale(ss, n, eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * s * w[i];
}

/* gemma's gelu as the cpu backend computed it before it moved to model_math.hpp. */
static float former_gelu_tanh(float x) {
    const float sqrt_2_over_pi = 0.79788456080286535588f;
    return 0.5f * x * (1.0f + std::tanh(sqrt_2_over_pi * x * (1.0f + 0.044715f * x * x)));
}

static void test_arch_math(void) {
    /* the per-head q/k norm (one thread per head on the device) is the cpu's rmsnorm bit for bit */
    int rows = 0;
    for (int n : {1, 2, 10, 16, 24, 64, 128, 256}) {
        for (int trial = 0; trial < 20; trial++) {
            std::vector<float> x((size_t)n), w((size_t)n), want((size_t)n), got((size_t)n);
            const float amp = trial % 3 == 0 ? 1e-3f : trial % 3 == 1 ? 1.0f : 300.0f;
            for (float &v : x) v = sym(amp);
            for (float &v : w) v = 1.0f + sym(0.5f);
            cpu_rmsnorm(x.data(), w.data(), want.data(), n, 1e-6f);
            mm::rmsnorm_row(x.data(), w.data(), got.data(), n, 1e-6f);
            CHECK(memcmp(want.data(), got.data(), 4 * (size_t)n) == 0);
            mm::rmsnorm_row(x.data(), w.data(), x.data(), n, 1e-6f); /* in place, as qkv_post runs it */
            CHECK(memcmp(want.data(), x.data(), 4 * (size_t)n) == 0);
            rows++;
        }
    }
    /* gelu_tanh: the former cpu expression exactly, and the tanh form in double closely */
    double worst = 0.0;
    int same = 0, total = 0;
    for (int i = -40000; i <= 40000; i++) {
        const float x = i * 2.5e-4f * (1 + (i & 7));
        const float got = mm::gelu_tanh(x), former = former_gelu_tanh(x);
        same += memcmp(&got, &former, 4) == 0;
        total++;
        /* error relative to max(1, |x|): for x well below 0, 1 + tanh cancels in float */
        const double xd = x, want = 0.5 * xd * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (xd + 0.044715 * xd * xd * xd)));
        worst = std::max(worst, std::fabs(got - want) / std::max(1.0, std::fabs(xd)));
    }
    CHECK(same == total);
    CHECK(worst < 1e-6);
    CHECK(mm::gelu_tanh(0.0f) == 0.0f);
    /* the window predicate against its definition, positions at the int32 extremes included */
    const int32_t edge[] = {0, 1, 2, 5, 100, 4095, 4096, 1 << 30, 2147483647, -1, -2147483647 - 1};
    int pairs = 0;
    for (int32_t kp : edge)
        for (int32_t qp : edge)
            for (int32_t w : {0, 1, 2, 3, 4096, 2147483647}) {
                const bool want = w <= 0 || (long long)kp > (long long)qp - (long long)w;
                CHECK(mm::key_in_window(kp, qp, w) == want);
                pairs++;
            }
    for (int t = 0; t < 20000; t++) {
        const int32_t kp = below(5000), qp = below(5000), w = below(300);
        CHECK(mm::key_in_window(kp, qp, w) == (w == 0 || kp > qp - w));
    }
    CHECK(mm::key_in_window(7, 7, 1) && !mm::key_in_window(6, 7, 1)); /* a window of 1: the token itself */
    /* local / global layers and the rope each takes: gemma3's pattern of 6, every layer local, no window */
    spec_model_config c = base();
    CHECK(!mm::is_local_layer(c, 0) && !mm::uses_local_rope(c, 0));
    c.sliding_window = 512;
    for (int l = 0; l < 12; l++) CHECK(mm::is_local_layer(c, l) && !mm::uses_local_rope(c, l)); /* swa_pattern 0: all local */
    c.swa_pattern = 6;
    c.rope_theta_local = 10000.0f;
    for (int l = 0; l < 12; l++) {
        const bool global = l == 5 || l == 11;
        CHECK(mm::is_local_layer(c, l) == !global && mm::uses_local_rope(c, l) == !global);
    }
    c.rope_theta = 1000000.0f;
    c.rope_scaling = SPEC_ROPE_SCALING_LINEAR;
    c.rope_factor = 8.0f;
    const spec_model_config lc = mm::local_rope_config(c);
    CHECK(lc.rope_theta == 10000.0f && mm::rope_pos_scale(lc) == 1.0 && mm::rope_pos_scale(c) == 0.125);
    CHECK(mm::rope_inv_freq(lc, 1) == std::pow(10000.0, -2.0 / mm::rope_dims(c)));
    /* embeddings: sqrt(n_embd) rounded to float first on gemma3, exactly 1 elsewhere */
    c.n_embd = 640;
    CHECK(mm::embedding_scale(c) == 1.0f);
    c.arch = SPEC_ARCH_QWEN3;
    CHECK(mm::embedding_scale(c) == 1.0f);
    c.arch = SPEC_ARCH_GEMMA3;
    CHECK(mm::embedding_scale(c) == std::sqrt(640.0f));
    /* the softmax scale: 1/sqrt(head_dim) unless the model gives one (gemma3's query_pre_attn_scalar) */
    c.head_dim = 256;
    CHECK(mm::attention_scale(c) == 1.0f / 16.0f);
    c.attn_scale = 0.0625f * 0.5f;
    CHECK(mm::attention_scale(c) == 0.03125f);
    /* the heads' residual blocks per element: the cpu's heads_forward expressions, bit for bit */
    int head_elems = 0;
    for (int trial = 0; trial < 4000; trial++) {
        const float wx = sym(6.0f), r = sym(3.0f), x = sym(3.0f), y = sym(2.0f);
        const float bias[1] = {sym(1.0f)}, res_bias[1] = {sym(1.0f)};
        const bool with_bias = trial % 2 == 0;
        const float v = wx + (with_bias ? bias[0] : 0.0f), cpu_act = v / (1.0f + std::exp(-v));
        const float act = mm::head_activation(wx, with_bias ? bias : nullptr, 0);
        CHECK(memcmp(&act, &cpu_act, 4) == 0);
        const float cpu_res = r + (with_bias ? res_bias[0] : 0.0f) + y, got_res = mm::head_residual(r, with_bias ? res_bias : nullptr, 0, y);
        CHECK(memcmp(&cpu_res, &got_res, 4) == 0);
        const float cpu_id = x + y, got_id = mm::head_residual(x, nullptr, 0, y);
        CHECK(memcmp(&cpu_id, &got_id, 4) == 0);
        head_elems++;
    }
    /* kv positions: only with a window */
    c.sliding_window = 0;
    CHECK(mm::kv_positions_bytes(c, 1000) == 0);
    c.sliding_window = 4;
    CHECK(mm::kv_positions_bytes(c, 1000) == 4000);
    printf("  qwen3/gemma3/windows: per-head rmsnorm = cpu's (%d rows), gelu_tanh = cpu's (%d inputs, err %.1e), "
           "window predicate (%d edge cases), local layers and their rope, heads' blocks (%d elements)\n",
           rows, total, worst, pairs, head_elems);
}

/* ---------------------------------------------------------------- shapes */

static void test_shapes(void) {
    std::set<int> buckets;
    for (int n = 1; n <= 300; n++) {
        const int b = mm::bucket_rows(n);
        buckets.insert(b);
        CHECK((b & (b - 1)) == 0 && b <= mm::MAX_ROWS);
        if (n <= mm::MAX_ROWS) CHECK(b >= n && (b == 1 || b / 2 < n));
        else CHECK(b == mm::MAX_ROWS);
    }
    CHECK(buckets.size() == 8); /* 1, 2, 4, ..., 128 */

    std::set<uint64_t> keys;
    int count = 0;
    for (int rows : buckets)
        for (int head_rows = 0; head_rows <= rows; head_rows = head_rows ? head_rows * 2 : 1)
            for (int exit_layer = 0; exit_layer <= 80; exit_layer++)
                for (int flags = 0; flags < 8; flags++) {
                    mm::GraphKey k;
                    k.rows = rows;
                    k.head_rows = head_rows;
                    k.exit_layer = exit_layer;
                    k.exit_hidden = flags & 1;
                    k.exit_logits = (flags >> 1) & 1;
                    k.stop_at_exit = (flags >> 2) & 1;
                    keys.insert(k.pack());
                    count++;
                }
    CHECK((int)keys.size() == count);
    CHECK(mm::step_upload_bytes() == sizeof(mm::StepParams));
    printf("  buckets, head row buckets, %d distinct graph keys\n", count);
}

/* ---------------------------------------------------------------- key sets and the parameter block */

static bool is_ancestor_or_self(const std::vector<int32_t> &parents, int anc, int i) {
    for (int j = i; j >= 0; j = parents[j])
        if (j == anc) return true;
    return false;
}

static std::vector<int32_t> random_tree(int n, int roots_every) {
    std::vector<int32_t> p(n);
    for (int i = 0; i < n; i++) p[i] = (i == 0 || below(roots_every) == 0) ? -1 : below(i);
    return p;
}

static void check_key_sets(const std::vector<int32_t> &parents, int32_t C) {
    const int n = (int)parents.size();
    std::vector<int32_t> dense(n);
    std::vector<uint32_t> mask((size_t)n * 4);
    auto *m = reinterpret_cast<uint32_t(*)[4]>(mask.data());
    CHECK(mm::build_key_sets(parents.data(), n, dense.data(), m) == -1);
    for (int i = 0; i < n; i++) {
        mm::StepRow r;
        r.dense_end = C + dense[i];
        for (int w = 0; w < 4; w++) r.mask[w] = m[i][w];
        for (int s = 0; s < C; s++)
            if (!mm::key_allowed(r, s)) {
                CHECK(false);
                break;
            }
        for (int j = 0; j < n + mm::MASK_BITS + 2; j++) {
            const bool want = j < n && is_ancestor_or_self(parents, j, i);
            if (mm::key_allowed(r, C + j) != want) {
                fprintf(stderr, "  token %d key %d: got %d want %d\n", i, j, !want, want);
                CHECK(false);
                return;
            }
        }
    }
}

static void test_key_sets(void) {
    for (int trial = 0; trial < 200; trial++) {
        const int n = 1 + below(128);
        check_key_sets(random_tree(n, 1 + below(20)), below(3) ? below(5000) : 0);
    }
    /* chains: everything dense, no mask */
    std::vector<int32_t> chain(1000);
    for (int i = 0; i < 1000; i++) chain[i] = i - 1;
    std::vector<int32_t> dense(1000);
    std::vector<uint32_t> mask(4000);
    auto *m = reinterpret_cast<uint32_t(*)[4]>(mask.data());
    CHECK(mm::build_key_sets(chain.data(), 1000, dense.data(), m) == -1);
    bool dense_only = true;
    for (int i = 0; i < 1000; i++) dense_only = dense_only && dense[i] == i + 1 && !m[i][0] && !m[i][1] && !m[i][2] && !m[i][3];
    CHECK(dense_only);
    check_key_sets(chain, 17);
    /* a long prompt then a tree hanging off its end: supported */
    std::vector<int32_t> tail = chain;
    tail.resize(300);
    for (int i = 300; i < 420; i++) tail.push_back(i < 305 ? 299 : 300 + below(i - 300));
    check_key_sets(tail, 3);
    /* 200 roots: token 128 would need a mask bit 128 past its dense prefix */
    std::vector<int32_t> roots(200, -1);
    CHECK(mm::build_key_sets(roots.data(), 200, dense.data(), m) == 128);
    printf("  key sets: 200 random trees, chains and a prompt+tree match brute-force ancestry\n");
}

static void test_fill_step(void) {
    const std::vector<int32_t> parents = {-1, 0, 0, 1, 2, 1, 3, -1, 7, 4, 4, 6};
    const int n = (int)parents.size(), C = 5;
    std::vector<int32_t> tokens(n), positions(n), dense(n);
    std::vector<uint32_t> mask((size_t)n * 4);
    auto *m = reinterpret_cast<uint32_t(*)[4]>(mask.data());
    for (int i = 0; i < n; i++) {
        tokens[i] = 100 + i;
        positions[i] = C + (parents[i] < 0 ? 0 : positions[parents[i]] - C + 1);
    }
    CHECK(mm::build_key_sets(parents.data(), n, dense.data(), m) == -1);
    static mm::StepParams sp;
    memset(&sp, 0xff, sizeof sp);
    mm::SeqCall q;
    q.tokens = tokens.data();
    q.positions = positions.data();
    q.dense = dense.data();
    q.mask = m;
    q.committed = C;
    q.n_tokens = n;
    q.logits_mode = SPEC_LOGITS_ALL;
    q.kv = 0xabc00;
    q.layer_bytes = 4096;
    q.logits = 0x10000;
    q.exit_hidden = 0x20000;
    mm::fill_step(sp, &q, 1, 0, n, 64, 50, 4);
    CHECK(sp.h.n_rows == n && sp.h.n_seqs == 1 && sp.h.n_head == n && sp.h.n_tiles == mm::attn_tiles(n, 4));
    const mm::StepSeq &e = sp.seqs[0];
    CHECK(e.kv == 0xabc00 && e.layer_bytes == 4096 && e.first_row == 0 && e.n_rows == n && e.first_slot == C && e.tile0 == 0);
    CHECK(e.exit_hidden == 0x20000 && e.exit_logits == 0);
    for (int i = 0; i < n; i++) {
        CHECK(sp.rows[i].token == 100 + i && sp.rows[i].position == positions[i] && sp.rows[i].seq == 0);
        CHECK(sp.head_src[i] == i && sp.head_dst[i] == 0x10000 + (uint64_t)i * 50 * 4);
        for (int j = 0; j < n; j++) CHECK(mm::key_allowed(sp.rows[i], C + j) == is_ancestor_or_self(parents, j, i));
        CHECK(mm::key_allowed(sp.rows[i], C - 1));
    }
    CHECK(sp.rows[6].position == C + 3); /* 0 -> 1 -> 3 -> 6 */
    /* slice 3 of a 300-token chain: rows 256.., outputs offset by rows for ALL, not for LAST */
    std::vector<int32_t> chain(300), toks(300), pos(300), d(300);
    std::vector<uint32_t> mk(1200);
    auto *m2 = reinterpret_cast<uint32_t(*)[4]>(mk.data());
    for (int i = 0; i < 300; i++) chain[i] = i - 1, toks[i] = i, pos[i] = 7 + i;
    CHECK(mm::build_key_sets(chain.data(), 300, d.data(), m2) == -1);
    mm::SeqCall p = q;
    p.tokens = toks.data();
    p.positions = pos.data();
    p.dense = d.data();
    p.mask = m2;
    p.committed = 7;
    p.n_tokens = 300;
    mm::fill_step(sp, &p, 1, 256, 44, 64, 50, 4);
    CHECK(sp.seqs[0].first_slot == 7 + 256 && sp.h.n_rows == 44 && sp.rows[0].token == 256 && sp.rows[43].position == 7 + 299);
    CHECK(sp.head_dst[0] == 0x10000 + 256ull * 50 * 4 && sp.seqs[0].exit_hidden == 0x20000 + 256ull * 64 * 4);
    CHECK(sp.rows[10].dense_end == 7 + 267); /* every earlier slot, itself included */
    p.logits_mode = SPEC_LOGITS_LAST;
    mm::fill_step(sp, &p, 1, 256, 44, 64, 50, 4);
    CHECK(sp.h.n_head == 1 && sp.head_src[0] == 43 && sp.head_dst[0] == 0x10000);
    mm::fill_step(sp, &p, 1, 128, 128, 64, 50, 4); /* the middle slice of a LAST call: no head */
    CHECK(sp.h.n_head == 0);

    /* a batch: the 12-node tree (ALL), the chain (LAST), the tree again (NONE) in a slice that
     * starts inside the chain: rows [300, 428) of the concatenation 12 + 300 + 12 */
    mm::SeqCall batch[3] = {q, p, q};
    batch[0].row0 = 0;
    batch[1].row0 = 12;
    batch[1].kv = 0x5000;
    batch[2].row0 = 312;
    batch[2].kv = 0x9000;
    batch[2].logits_mode = SPEC_LOGITS_NONE;
    batch[2].logits = 0;
    batch[2].exit_hidden = 0;
    mm::fill_step(sp, batch, 3, 0, 128, 64, 50, 4); /* the tree, then the chain's first 116 tokens */
    CHECK(sp.h.n_seqs == 2 && sp.seqs[1].first_row == 12 && sp.seqs[1].n_rows == 116 && sp.seqs[1].first_slot == 7);
    CHECK(sp.seqs[1].tile0 == mm::attn_tiles(12, 4) && sp.h.n_tiles == mm::attn_tiles(12, 4) + mm::attn_tiles(116, 4));
    CHECK(sp.h.n_head == 12 && sp.rows[12].seq == 1 && sp.rows[12].token == 0 && sp.rows[11].seq == 0);
    mm::fill_step(sp, batch, 3, 256, 68, 64, 50, 4); /* the chain's last 56 tokens, then the tree */
    CHECK(sp.h.n_seqs == 2 && sp.seqs[0].first_row == 0 && sp.seqs[0].n_rows == 56 && sp.seqs[0].first_slot == 7 + 244);
    CHECK(sp.seqs[0].kv == 0x5000 && sp.seqs[1].kv == 0x9000 && sp.seqs[1].first_row == 56 && sp.seqs[1].first_slot == C);
    CHECK(sp.h.n_head == 1 && sp.head_src[0] == 55 && sp.head_dst[0] == 0x10000); /* the chain's last row only */
    CHECK(sp.rows[56].seq == 1 && sp.rows[56].dense_end == C + dense[0] && sp.rows[67].token == 111);
    printf("  parameter block of a 12-node tree, of a prompt's slices, and of a batch's slices\n");
}

/* An EAGLE extension (ABI 0.10): a tree grown in pieces, each call's rows filled with SeqCall::pending and the whole
 * pending tree's key sets (build_extension_key_sets), gives the parameter rows and cache slots of one call over the
 * whole tree: same tokens, positions, keys and slots. */
static void test_extension_step(void) {
    for (int trial = 0; trial < 100; trial++) {
        const int n = 2 + below(100), C = below(3) ? below(300) : 0;
        const std::vector<int32_t> parents = random_tree(n, 1 + below(12));
        std::vector<int32_t> tokens(n), positions(n), dense(n);
        std::vector<uint32_t> mask((size_t)n * 4);
        auto *m = reinterpret_cast<uint32_t(*)[4]>(mask.data());
        for (int i = 0; i < n; i++) {
            tokens[i] = below(1000);
            positions[i] = C + (parents[i] < 0 ? 0 : positions[parents[i]] - C + 1);
        }
        CHECK(mm::build_key_sets(parents.data(), n, dense.data(), m) == -1);
        static mm::StepParams whole, part;
        mm::SeqCall q;
        q.tokens = tokens.data();
        q.positions = positions.data();
        q.dense = dense.data();
        q.mask = m;
        q.committed = C;
        q.n_tokens = n;
        q.logits_mode = SPEC_LOGITS_ALL;
        q.kv = 0x4000;
        q.logits = 0x10000;
        q.final_hidden = 0x30000;
        mm::fill_step(whole, &q, 1, 0, n, 64, 50, 4);
        /* the same tree in pieces: each piece's tokens after the earlier ones, pending */
        std::vector<int32_t> all(n), ext_dense(n);
        std::vector<uint32_t> ext_mask((size_t)n * 4);
        auto *em = reinterpret_cast<uint32_t(*)[4]>(ext_mask.data());
        bool same = true;
        for (int P = 0; P < n;) {
            const int len = std::min(n - P, 1 + below(8));
            CHECK(mm::build_extension_key_sets(parents.data(), P, parents.data() + P, len, all.data(), ext_dense.data(), em) == -1);
            mm::SeqCall e = q;
            e.tokens = tokens.data() + P;
            e.positions = positions.data() + P;
            e.dense = ext_dense.data() + P;
            e.mask = em + P;
            e.n_tokens = len;
            e.pending = P;
            mm::fill_step(part, &e, 1, 0, len, 64, 50, 4);
            same = same && part.h.n_rows == len && part.h.n_head == len && part.seqs[0].first_slot == C + P;
            for (int j = 0; j < len; j++) {
                const mm::StepRow &a = part.rows[j], &b = whole.rows[P + j];
                same = same && a.token == b.token && a.position == b.position && a.dense_end == b.dense_end &&
                       std::memcmp(a.mask, b.mask, sizeof a.mask) == 0;
                /* the slot row j's key lands in is the whole call's row P + j's */
                same = same && part.seqs[0].first_slot + j == whole.seqs[0].first_slot + P + j;
                for (int k = 0; k < C + n; k++) same = same && mm::key_allowed(a, k) == mm::key_allowed(b, k);
            }
            P += len;
        }
        CHECK(same);
    }
    /* a wide tree's pending tokens: refused where the whole tree would be (a token 128 past its dense prefix) */
    std::vector<int32_t> roots(140, -1), all(140), dense(140);
    std::vector<uint32_t> mask(140 * 4);
    auto *m = reinterpret_cast<uint32_t(*)[4]>(mask.data());
    CHECK(mm::build_extension_key_sets(roots.data(), 120, roots.data(), 20, all.data(), dense.data(), m) == 128);
    printf("  EAGLE extension: 100 random trees grown in pieces give one call's parameter rows and slots\n");
}

/* spec_copy_d2d on cuda within one buffer: the pieces of an overlapping copy, each copied as a device copy would
 * (memcpy of ranges that must not overlap), in their order, give memmove's bytes; or 0 pieces for a tiny shift. */
static void test_copy_pieces(void) {
    int pieces_runs = 0, temporaries = 0;
    for (int trial = 0; trial < 2000; trial++) {
        const uint64_t size = 64 + (uint64_t)below(4000);
        const uint64_t n = 1 + (uint64_t)below((int)size);
        const uint64_t src = (uint64_t)below((int)(size - n + 1)), dst = (uint64_t)below((int)(size - n + 1));
        if (src == dst) continue;
        std::vector<uint8_t> want(size), got(size);
        for (uint64_t i = 0; i < size; i++) want[i] = got[i] = (uint8_t)below(256);
        memmove(want.data() + dst, want.data() + src, n);
        bool disjoint = true;
        const uint64_t count = specula::cuda::copy_pieces(dst, src, n, [&](uint64_t d, uint64_t s, uint64_t b) {
            disjoint = disjoint && (d + b <= s || s + b <= d) && b > 0;
            memcpy(got.data() + d, got.data() + s, b);
        });
        if (count == 0) {
            const uint64_t shift = dst > src ? dst - src : src - dst;
            CHECK(shift < n && (n + shift - 1) / shift > specula::cuda::MAX_COPY_PIECES);
            temporaries++;
            continue;
        }
        pieces_runs++;
        CHECK(disjoint && count <= specula::cuda::MAX_COPY_PIECES);
        CHECK(got == want);
    }
    CHECK(pieces_runs > 1000 && temporaries > 0);
    printf("  overlapping device copies: %d split into pieces equal memmove, %d need a temporary\n", pieces_runs, temporaries);
}

/* An EAGLE layer's own device memory: its pieces in order, aligned, and the room FC and its bias take. */
static void test_eagle_layout(void) {
    spec_model_config c = base();
    for (size_t mm_scratch : {(size_t)0, (size_t)12345}) {
        const mm::EagleLayout s = mm::eagle_layout(c, mm_scratch);
        const std::pair<size_t, size_t> pieces[] = {{s.cat, 4 * (size_t)mm::MAX_ROWS * 2 * c.n_embd}, {s.features, 8 * (size_t)mm::MAX_ROWS},
                                                    {s.matmul, mm_scratch}};
        size_t end = 0;
        for (const auto &p : pieces) {
            CHECK(p.first % 256 == 0 && p.first >= end);
            end = p.first + p.second;
        }
        CHECK(s.bytes >= end && s.bytes % 256 == 0);
    }
    CHECK(mm::eagle_weight_extra_bytes(c, false) == 256);
    CHECK(mm::eagle_weight_extra_bytes(c, true) == 512 + 4 * (uint64_t)c.n_embd);
    printf("  EAGLE layout: input rows, feature addresses, fc scratch\n");
}

/* ---------------------------------------------------------------- attention: kernel order vs two passes */

/* One sequence of an attention emulation: its cache (slots [0, C + n)) in f32. */
struct EmuSeq {
    std::vector<float> K, V; /* [slot][Hkv][D] */
    std::vector<int32_t> pos; /* [slot]: the position each slot's key was computed at (the sliding window's) */
};

/* Emulates attention_kernel + combine_kernel for one slice: blocks (split, tile, kv head), each
 * tile one sequence's rows (mm::attn_tile_seq), tiles of ATT_KEYS keys, the online softmax of
 * each row, then the merge of the splits. */
static void emulate_attention(int rows, int G, int Hkv, int D, const mm::StepParams &sp, const std::vector<float> &q,
                              const std::vector<EmuSeq> &seqs, float scale, std::vector<float> &out, int window = 0) {
    const int Hq = G * Hkv, splits = mm::attn_splits(rows, G, Hkv);
    const int part_rows = mm::attn_tiles(rows, G) * mm::ATT_ROWS, grid_tiles = mm::attn_grid_tiles(rows, G);
    const int64_t stride = mm::attn_partial_floats_per_row(D);
    std::vector<float> part((size_t)splits * part_rows * Hkv * stride, NAN);
    out.assign((size_t)rows * Hq * D, NAN);
    CHECK(sp.h.n_tiles <= grid_tiles);
    for (int split = 0; split < splits; split++)
        for (int tile = 0; tile < grid_tiles; tile++)
            for (int kvh = 0; kvh < Hkv; kvh++) {
                if (tile >= sp.h.n_tiles) {
                    if (splits == 1 && tile == sp.h.n_tiles)
                        for (int t = sp.h.n_rows; t < rows; t++)
                            for (int g = 0; g < G; g++)
                                for (int d = 0; d < D; d++) out[((size_t)t * Hq + kvh * G + g) * D + d] = 0.0f;
                    continue;
                }
                const int s_idx = mm::attn_tile_seq(sp, tile);
                const mm::StepSeq &sq = sp.seqs[s_idx];
                const EmuSeq &cache = seqs[(size_t)s_idx];
                const int row0 = (tile - sq.tile0) * mm::ATT_ROWS, seq_rows = sq.n_rows * G, base = sq.first_row * G;
                const int last_row = std::min(row0 + mm::ATT_ROWS, seq_rows) - 1;
                const int n_keys = sq.first_slot + last_row / G + 1;
                int k0, k1;
                mm::split_range(n_keys, splits, split, k0, k1);
                for (int r = 0; r < mm::ATT_ROWS; r++) {
                    const int rl = row0 + r, rg = base + rl, t = rg / G, g = rg % G;
                    if (rl >= seq_rows) continue;
                    float m = -INFINITY, l = 0.0f;
                    std::vector<float> acc(D, 0.0f);
                    for (int kt = k0; kt < k1; kt += mm::ATT_KEYS) {
                        float s[mm::ATT_KEYS], tmax = -INFINITY;
                        for (int j = 0; j < mm::ATT_KEYS; j++) {
                            const int slot = kt + j;
                            s[j] = -INFINITY;
                            if (slot < k1 && mm::key_allowed(sp.rows[t], slot) &&
                                (window <= 0 || mm::key_in_window(cache.pos[(size_t)slot], sp.rows[t].position, window))) {
                                float dot = 0.0f;
                                for (int d = 0; d < D; d++)
                                    dot = std::fma(q[((size_t)t * Hq + kvh * G + g) * D + d], cache.K[((size_t)slot * Hkv + kvh) * D + d], dot);
                                s[j] = dot * scale;
                            }
                            tmax = std::max(tmax, s[j]);
                        }
                        const float m_new = std::max(m, tmax);
                        if (m_new == -INFINITY) continue;
                        const float alpha = mm::softmax_rescale(m, m_new);
                        float psum = 0.0f, p[mm::ATT_KEYS];
                        for (int j = 0; j < mm::ATT_KEYS; j++) psum += (p[j] = s[j] == -INFINITY ? 0.0f : mm::softmax_weight(s[j], m_new));
                        l = l * alpha + psum;
                        for (int d = 0; d < D; d++) {
                            acc[d] *= alpha;
                            for (int j = 0; j < mm::ATT_KEYS; j++)
                                if (kt + j < k1) acc[d] = std::fma(p[j], cache.V[((size_t)(kt + j) * Hkv + kvh) * D + d], acc[d]);
                        }
                        m = m_new;
                    }
                    if (splits == 1) {
                        for (int d = 0; d < D; d++) out[((size_t)t * Hq + kvh * G + g) * D + d] = acc[d] / l;
                    } else {
                        float *pp = &part[(((size_t)split * part_rows + rg) * Hkv + kvh) * stride];
                        pp[0] = m;
                        pp[1] = l;
                        for (int d = 0; d < D; d++) pp[2 + d] = acc[d];
                    }
                }
            }
    if (splits == 1) return;
    for (int t = 0; t < rows; t++)
        for (int hq = 0; hq < Hq; hq++) {
            float *o = &out[((size_t)t * Hq + hq) * D];
            if (t >= sp.h.n_rows) {
                for (int d = 0; d < D; d++) o[d] = 0.0f;
                continue;
            }
            const int kvh = hq / G, rg = t * G + hq % G;
            auto partial = [&](int s) { return &part[(((size_t)s * part_rows + rg) * Hkv + kvh) * stride]; };
            float M = -INFINITY;
            for (int s = 0; s < splits; s++) M = std::max(M, partial(s)[0]);
            float L = 0.0f;
            std::vector<float> w(splits);
            for (int s = 0; s < splits; s++) L += partial(s)[1] * (w[s] = mm::softmax_rescale(partial(s)[0], M));
            for (int d = 0; d < D; d++) {
                float a = 0.0f;
                for (int s = 0; s < splits; s++)
                    if (w[s] != 0.0f) a = std::fma(w[s], partial(s)[2 + d], a);
                o[d] = a * (1.0f / L);
            }
        }
}

/* Slices of one sequence (n_seqs 1) and of batches (the n rows split among n_seqs sequences, each
 * with its own committed length, tree and cache) against a two-pass reference in double. */
static void test_attention_order(void) {
    struct Case {
        int n, G, Hkv, D, C, roots_every, n_seqs, window; /* window 0: none */
    } cases[] = {{1, 4, 2, 16, 0, 1, 1, 0},    {1, 4, 8, 64, 700, 1, 1, 0},  {3, 2, 2, 10, 33, 100, 1, 0}, {12, 4, 2, 32, 5, 4, 1, 0},
                 {64, 4, 8, 64, 300, 6, 1, 0}, {128, 1, 4, 16, 90, 9, 1, 0}, {100, 8, 1, 24, 1, 3, 1, 0},  {17, 3, 3, 40, 64, 2, 1, 0},
                 {120, 8, 4, 16, 40, 5, 1, 0}, {8, 4, 2, 16, 50, 100, 8, 0}, {5, 16, 1, 16, 20, 3, 3, 0},  {37, 4, 2, 32, 70, 4, 6, 0},
                 {128, 1, 4, 16, 90, 9, 40, 0}, {100, 8, 2, 24, 10, 3, 100, 0}, {64, 5, 1, 8, 0, 2, 9, 0},
                 /* sliding windows (ABI 0.8): shorter than the prefix, than the tree, than one key tile */
                 {12, 4, 2, 32, 5, 4, 1, 3},   {64, 4, 8, 64, 300, 6, 1, 40}, {128, 1, 4, 16, 90, 9, 1, 1},
                 {37, 4, 2, 32, 70, 4, 6, 17}, {100, 8, 2, 24, 10, 3, 100, 2}, {120, 8, 4, 16, 700, 5, 1, 100}};
    double worst = 0.0;
    for (const Case &cs : cases) {
        const int rows = mm::bucket_rows(cs.n), Hq = cs.G * cs.Hkv, D = cs.D;
        /* split the n rows among the sequences: each at least one */
        std::vector<int> len(cs.n_seqs, 1);
        for (int extra = cs.n - cs.n_seqs; extra > 0; extra--) len[below(cs.n_seqs)]++;
        std::vector<std::vector<int32_t>> parents(cs.n_seqs), dense(cs.n_seqs), toks(cs.n_seqs), pos(cs.n_seqs);
        std::vector<std::vector<uint32_t>> masks(cs.n_seqs);
        std::vector<mm::SeqCall> calls(cs.n_seqs);
        std::vector<EmuSeq> caches(cs.n_seqs);
        std::vector<int> committed(cs.n_seqs);
        int row = 0;
        for (int s = 0; s < cs.n_seqs; s++) {
            const int n = len[s];
            committed[s] = cs.n_seqs == 1 ? cs.C : below(cs.C + 1);
            parents[s] = random_tree(n, cs.roots_every);
            if (cs.roots_every == 100)
                for (int i = 0; i < n; i++) parents[s][i] = i - 1;
            dense[s].resize(n);
            toks[s].assign(n, 0);
            pos[s].assign(n, 0);
            masks[s].resize((size_t)n * 4);
            auto *m = reinterpret_cast<uint32_t(*)[4]>(masks[s].data());
            CHECK(mm::build_key_sets(parents[s].data(), n, dense[s].data(), m) == -1);
            mm::SeqCall &q = calls[s];
            q.tokens = toks[s].data();
            q.positions = pos[s].data();
            q.dense = dense[s].data();
            q.mask = m;
            q.committed = committed[s];
            q.n_tokens = n;
            q.row0 = row;
            row += n;
            const size_t slots = (size_t)committed[s] + n;
            /* positions: the prefix at its slots, each tree token at the committed length + its depth */
            caches[s].pos.resize(slots);
            for (int slot = 0; slot < committed[s]; slot++) caches[s].pos[(size_t)slot] = slot;
            for (int i = 0; i < n; i++) {
                pos[s][i] = parents[s][i] < 0 ? committed[s] : pos[s][parents[s][i]] + 1;
                caches[s].pos[(size_t)committed[s] + i] = pos[s][i];
            }
            caches[s].K.resize(slots * cs.Hkv * D);
            caches[s].V.resize(slots * cs.Hkv * D);
            for (auto &x : caches[s].K) x = sym(2.0f);
            for (auto &x : caches[s].V) x = sym(1.0f);
        }
        static mm::StepParams sp;
        mm::fill_step(sp, calls.data(), cs.n_seqs, 0, cs.n, 8, 8, cs.G);
        CHECK(sp.h.n_seqs == cs.n_seqs && sp.h.n_rows == cs.n);
        std::vector<float> q((size_t)rows * Hq * D);
        for (auto &x : q) x = sym(2.0f);
        const float scale = 1.0f / std::sqrt((float)D);
        std::vector<float> got;
        emulate_attention(rows, cs.G, cs.Hkv, D, sp, q, caches, scale, got, cs.window);
        double err = 0.0;
        for (int t = 0; t < rows; t++)
            for (int hq = 0; hq < Hq; hq++) {
                const int kvh = hq / cs.G;
                const float *o = &got[((size_t)t * Hq + hq) * D];
                if (t >= cs.n) {
                    for (int d = 0; d < D; d++) CHECK(o[d] == 0.0f);
                    continue;
                }
                int s = 0;
                while (calls[s].row0 + calls[s].n_tokens <= t) s++;
                const int i = t - calls[s].row0, C = committed[s];
                const EmuSeq &cache = caches[s];
                /* two passes in double over the token's key set in its own cache */
                std::vector<double> sc;
                std::vector<int> slots;
                double mx = -1e300;
                for (int slot = 0; slot < C + len[s]; slot++) {
                    const bool vis = slot < C || is_ancestor_or_self(parents[s], slot - C, i);
                    if (!vis) continue;
                    /* the window by its definition: keys at positions above the query's minus the window */
                    if (cs.window > 0 && !(cache.pos[(size_t)slot] > pos[s][i] - cs.window)) continue;
                    double dot = 0.0;
                    for (int d = 0; d < D; d++) dot += (double)q[((size_t)t * Hq + hq) * D + d] * cache.K[((size_t)slot * cs.Hkv + kvh) * D + d];
                    sc.push_back(dot * scale);
                    slots.push_back(slot);
                    mx = std::max(mx, sc.back());
                }
                double sum = 0.0;
                for (double &e : sc) sum += (e = std::exp(e - mx));
                for (int d = 0; d < D; d++) {
                    double want = 0.0;
                    for (size_t k = 0; k < sc.size(); k++) want += sc[k] / sum * cache.V[((size_t)slots[k] * cs.Hkv + kvh) * D + d];
                    if (!(std::fabs(o[d] - want) <= 1e30)) err = 1e30; /* NaN: a row nobody wrote */
                    else err = std::max(err, std::fabs(o[d] - want));
                }
            }
        worst = std::max(worst, err);
        /* the splits cover the keys exactly once */
        const int splits = mm::attn_splits(rows, cs.G, cs.Hkv), n_slots = cs.C + cs.n;
        int covered = 0, prev_end = 0;
        for (int s = 0; s < splits; s++) {
            int k0, k1;
            mm::split_range(n_slots, splits, s, k0, k1);
            CHECK(k0 == prev_end || k0 == k1);
            CHECK(k0 % mm::ATT_KEYS == 0 || k0 == n_slots);
            covered += k1 - k0;
            if (k1 > k0) prev_end = k1;
        }
        CHECK(covered == n_slots);
    }
    /* the grid's tiles suffice for any split of any bucket into sequences, and leave one spare
     * tile (which zeroes the padding rows) whenever the slice has padding */
    for (int G : {1, 2, 3, 4, 5, 8, 16, 17, 32, 64})
        for (int rows = 1; rows <= mm::MAX_ROWS; rows *= 2)
            for (int n = 1; n <= rows; n++) {
                const int worst_tiles = n * mm::attn_seq_tiles(1, G) < mm::attn_seq_tiles(n, G) + n - 1 ? n * mm::attn_seq_tiles(1, G)
                                                                                                       : mm::attn_seq_tiles(n, G) + n - 1;
                CHECK(worst_tiles <= mm::attn_grid_tiles(rows, G));
                if (n < rows) CHECK(worst_tiles < mm::attn_grid_tiles(rows, G));
            }
    printf("  attention: kernel order (sequences' tiles, splits, online softmax, merge) vs two passes, %zu slices: max abs err %.2e\n",
           sizeof cases / sizeof cases[0], worst);
    CHECK(worst < 2e-6);
}

/* ---------------------------------------------------------------- layouts */

/* model.cu's placement of the weights: matrices (tied ones once; q, k, v and gate, up stacked
 * when mm::can_stack allows and `stack`), then f32 vectors, then the rope table. */
static uint64_t place_weights(const spec_model_config &c, const int *mat_dtype, int vec_dtype, bool tied, bool biases, bool stack,
                              uint64_t *given, int *stacks = nullptr, bool qk_norms = false, bool post_norms = false) {
    auto row_bytes = [](int dt, int64_t cols) -> uint64_t {
        switch (dt) {
        case SPEC_DTYPE_F32: return (uint64_t)cols * 4;
        case SPEC_DTYPE_F16: case SPEC_DTYPE_BF16: return (uint64_t)cols * 2;
        case SPEC_DTYPE_Q8_0: return (uint64_t)cols / 32 * 34;
        default: return (uint64_t)cols / 32 * 18;
        }
    };
    const int64_t E = c.n_embd, QD = (int64_t)c.n_head * c.head_dim, KD = (int64_t)c.n_head_kv * c.head_dim, F = c.n_ff;
    uint64_t at = 0;
    *given = 0;
    auto put = [&](uint64_t bytes) { at = mm::align256(at) + bytes; };
    auto mat = [&](int role, int64_t rows, int64_t cols, bool upload) {
        const uint64_t b = row_bytes(mat_dtype[role], cols) * (uint64_t)rows;
        *given += b;
        if (upload) put(b);
    };
    auto vec = [&](int64_t cols) {
        *given += (uint64_t)cols * (vec_dtype == SPEC_DTYPE_F32 ? 4 : 2);
        put((uint64_t)cols * 4);
    };
    /* several matrices of E columns: one piece when stackable, else one each */
    auto group = [&](std::initializer_list<std::pair<int, int64_t>> parts) {
        mm::MatrixPiece p[3];
        int n = 0;
        uint64_t total = 0;
        for (const auto &r : parts) {
            p[n++] = mm::MatrixPiece{mat_dtype[r.first], r.second, E, row_bytes(mat_dtype[r.first], E) * (uint64_t)r.second};
            total += p[n - 1].bytes;
        }
        if (stack && mm::can_stack(p, n)) {
            *given += total;
            put(total);
            if (stacks) (*stacks)++;
        } else {
            for (const auto &r : parts) mat(r.first, r.second, E, true);
        }
    };
    mat(SPEC_W_TOKEN_EMBD, c.n_vocab, E, true);
    mat(SPEC_W_OUTPUT, c.n_vocab, E, !tied);
    for (int l = 0; l < c.n_layer; l++) {
        group({{SPEC_W_ATTN_Q, QD}, {SPEC_W_ATTN_K, KD}, {SPEC_W_ATTN_V, KD}});
        mat(SPEC_W_ATTN_OUT, E, QD, true);
        group({{SPEC_W_FFN_GATE, F}, {SPEC_W_FFN_UP, F}});
        mat(SPEC_W_FFN_DOWN, E, F, true);
    }
    vec(E);
    for (int l = 0; l < c.n_layer; l++) {
        vec(E);
        vec(E);
        if (biases) {
            vec(QD);
            vec(KD);
            vec(KD);
        }
        if (qk_norms) {
            vec(c.head_dim);
            vec(c.head_dim);
        }
        if (post_norms) {
            vec(E);
            vec(E);
        }
    }
    bool local_rope = false;
    for (int l = 0; l < c.n_layer; l++) local_rope = local_rope || mm::uses_local_rope(c, l);
    if (local_rope) put((uint64_t)(mm::rope_dims(c) / 2) * 8);
    put((uint64_t)(mm::rope_dims(c) / 2) * 8);
    return at;
}

static void check_layout(const spec_model_config &c, size_t mm_scratch) {
    const mm::ScratchLayout s = mm::scratch_layout(c, mm_scratch);
    const size_t R = mm::MAX_ROWS, E = c.n_embd, QD = (size_t)c.n_head * c.head_dim, KD = (size_t)c.n_head_kv * c.head_dim;
    CHECK(mm::qkv_width(c) == (int64_t)(QD + 2 * KD) && mm::gu_width(c) == 2 * (int64_t)c.n_ff);
    const std::pair<size_t, size_t> pieces[] = {
        {s.params, sizeof(mm::StepParams)}, {s.commit, 8 * R}, {s.x, 4 * R * E}, {s.xn, 4 * R * E},
        {s.qkv, 4 * R * (QD + 2 * KD)}, {s.att, 4 * R * QD}, {s.gu, 4 * R * 2 * (size_t)c.n_ff},
        {s.rope, 4 * R * (size_t)(mm::rope_dims(c) / 2) * 2},
        {s.rope_local, c.sliding_window > 0 && c.rope_theta_local > 0.0f ? 4 * R * (size_t)(mm::rope_dims(c) / 2) * 2 : 0},
        {s.head, 4 * R * c.n_vocab},
        {s.part, 4 * (size_t)mm::attn_partial_floats(c)}, {s.matmul, mm_scratch}};
    size_t end = 0;
    for (const auto &p : pieces) {
        CHECK(p.first % 256 == 0);
        CHECK(p.first >= end);
        end = p.first + p.second;
    }
    CHECK(s.bytes >= end && s.bytes % 256 == 0);
    /* the partials hold every bucket's splits */
    const int G = c.n_head / c.n_head_kv;
    for (int rows = 1; rows <= mm::MAX_ROWS; rows *= 2) {
        const int sp = mm::attn_splits(rows, G, c.n_head_kv);
        if (sp > 1)
            CHECK((int64_t)sp * mm::attn_tiles(rows, G) * mm::ATT_ROWS * c.n_head_kv * (c.head_dim + 2) <= mm::attn_partial_floats(c));
    }
}

static void test_layouts(void) {
    spec_model_config c = base();
    check_layout(c, 0);
    check_layout(c, 12345);
    spec_model_config gemma = c;
    gemma.sliding_window = 8;
    gemma.rope_theta_local = 10000.0f;
    check_layout(gemma, 0);
    CHECK(mm::scratch_layout(gemma, 0).bytes > mm::scratch_layout(c, 0).bytes); /* the local rope table */
    const size_t b0 = mm::scratch_layout(c, 0).bytes;
    spec_model_config bigger = c;
    bigger.n_vocab *= 2;
    CHECK(mm::scratch_layout(bigger, 0).bytes > b0);
    bigger = c;
    bigger.n_ff += 64;
    CHECK(mm::scratch_layout(bigger, 0).bytes > b0);
    CHECK(mm::scratch_layout(c, 1 << 20).bytes >= b0 + (1 << 20));
    /* a 1B llama: the figures the memory plan reports */
    spec_model_config big = base();
    big.n_vocab = 128256;
    big.n_embd = 2048;
    big.n_layer = 16;
    big.n_head = 32;
    big.n_head_kv = 8;
    big.head_dim = 64;
    big.n_ff = 8192;
    check_layout(big, 0);
    printf("  scratch of a 1B llama (without matmul's): %.1f MiB (LM head rows %.1f MiB)\n", mm::scratch_layout(big, 0).bytes / 1048576.0,
           4.0 * mm::MAX_ROWS * big.n_vocab / 1048576.0);

    int mixes = 0, stacks = 0;
    for (int trial = 0; trial < 300; trial++) {
        spec_model_config w = base();
        w.n_layer = 1 + below(6);
        w.n_embd = 32 * (1 + below(8));
        w.n_ff = 32 * (1 + below(12));
        w.head_dim = 8 * (1 + below(16));
        w.n_head_kv = 1 + below(4);
        w.n_head = w.n_head_kv * (1 + below(4));
        w.n_vocab = 1 + below(3000);
        int dts[SPEC_W_ROLE_COUNT];
        for (int &d : dts) d = below(5);
        if (below(2)) /* mostly one dtype, as most model files: then q/k/v and gate/up stack */
            for (int &d : dts) d = dts[0];
        const int vdt = below(3);
        const bool tied = below(2), biases = below(2);
        const int arch = below(3); /* llama-like, qwen3 (q/k norms), gemma3 (and post-block norms, local rope) */
        if (arch == 2) {
            w.sliding_window = 1 + below(100);
            w.swa_pattern = below(4);
            w.rope_theta_local = 10000.0f;
        }
        uint64_t given = 0, given_stacked = 0;
        const uint64_t need = place_weights(w, dts, vdt, tied, biases, false, &given, nullptr, arch >= 1, arch == 2);
        const uint64_t need_stacked = place_weights(w, dts, vdt, tied, biases, true, &given_stacked, &stacks, arch >= 1, arch == 2);
        CHECK(given_stacked == given); /* the caller's figure does not depend on how the backend places them */
        CHECK(need <= mm::weight_alloc_bytes(w, given));
        CHECK(need_stacked <= need && need_stacked <= mm::weight_alloc_bytes(w, given));
        CHECK(mm::weight_alloc_bytes(w, given + 1) == mm::weight_alloc_bytes(w, given) + 1);
        mixes++;
    }
    CHECK(stacks > 100);
    printf("  weight allocation bound holds for %d random dtype / tied / bias mixes, stacked (%d stacks) or not\n", mixes, stacks);
}

/* Stacking (one launch for q, k, v or gate, up): same dtype and columns, and every piece a
 * multiple of 16 bytes, so each starts 16-byte aligned as it would alone. */
static void test_can_stack(void) {
    const mm::MatrixPiece bf16_q{SPEC_DTYPE_BF16, 2048, 2048, 2048 * 4096ull}, bf16_k{SPEC_DTYPE_BF16, 512, 2048, 512 * 4096ull};
    const mm::MatrixPiece qkv[3] = {bf16_q, bf16_k, bf16_k};
    CHECK(mm::can_stack(qkv, 3));
    CHECK(mm::can_stack(qkv, 1));
    CHECK(!mm::can_stack(qkv, 0));
    mm::MatrixPiece mixed[3] = {bf16_q, bf16_k, bf16_k};
    mixed[1].dtype = SPEC_DTYPE_F16; /* same bytes, another dtype */
    CHECK(!mm::can_stack(mixed, 3));
    mixed[1] = bf16_k;
    mixed[2].cols = 1024;
    mixed[2].bytes = 512 * 2048ull;
    CHECK(!mm::can_stack(mixed, 3));
    /* Q8_0 [4 x 32]: 4 blocks of 34 bytes = 136, not a multiple of 16: the next piece would start 8-byte aligned */
    const mm::MatrixPiece q8_small{SPEC_DTYPE_Q8_0, 4, 32, 136}, q8_ok{SPEC_DTYPE_Q8_0, 8, 32, 272};
    const mm::MatrixPiece a[2] = {q8_small, q8_ok}, b[2] = {q8_ok, q8_ok};
    CHECK(!mm::can_stack(a, 2));
    CHECK(mm::can_stack(b, 2));
    /* Q4_0 of a 1B llama: 64 blocks of 18 bytes per row, 1152 bytes, stacks */
    const mm::MatrixPiece q4[2] = {{SPEC_DTYPE_Q4_0, 8192, 2048, 8192 * 1152ull}, {SPEC_DTYPE_Q4_0, 8192, 2048, 8192 * 1152ull}};
    CHECK(mm::can_stack(q4, 2));
}

/* The attention kernel's shared-memory attribute is set once per kernel instance (head_dim
 * bucket), so it must be the bucket's largest need: every head_dim of the bucket launches with at
 * most that, whichever model set it last. */
static void test_attention_smem(void) {
    for (int D = 2; D <= mm::ATT_MAX_HEAD_DIM; D += 2) {
        const int b = mm::attn_head_dim_bucket(D);
        CHECK(b >= D && b <= mm::ATT_MAX_HEAD_DIM && (b == 32 || mm::attn_head_dim_bucket(b / 2) == b / 2));
        CHECK(mm::attn_smem_bytes(D) <= mm::attn_smem_bytes(b));
        CHECK(mm::attn_head_dim_bucket(b) == b);
    }
    CHECK(mm::attn_smem_bytes(mm::ATT_MAX_HEAD_DIM) + sizeof(mm::StepRow) * mm::ATT_ROWS <= 227 * 1024); /* sm_90 opt-in */
}

/* The tree attention grid (tree_attention_plan.hpp): within CUDA's grid limits for every shape
 * the ABI accepts (B up to SPEC_KERNEL_MAX_BATCH, n_head_kv up to 256, n_head up to 256, trees
 * up to 128 tokens), every (sequence, kv head) pair, row and key covered, chunks whole tiles. */
static void test_tree_attention_grid(void) {
    int bad = 0, cases = 0;
    const int64_t batches[] = {1, 2, 7, 64, 1024};
    const int64_t kv_heads[] = {1, 2, 8, 64, 255, 256};
    const int64_t groups[] = {1, 4, 256};
    const int64_t trees[] = {1, 17, 128};
    const int64_t keys[] = {1, 31, 256, 4096, 1 << 20};
    const int64_t sms[] = {1, 132, 1024};
    for (int64_t B : batches)
        for (int64_t Hkv : kv_heads)
            for (int64_t G : groups) {
                if (G * Hkv > 256) continue; /* n_head at most 256 */
                for (int64_t T : trees)
                    for (int64_t L : keys)
                        for (int64_t sm : sms) {
                            if (L < T) continue;
                            cases++;
                            const cuda::TreeAttentionGrid g = cuda::plan_tree_attention(B, Hkv, T * G, L, sm);
                            const bool ok = g.fits() && g.x == B * Hkv && g.y * cuda::TA_ROWS >= T * G &&
                                            (g.y - 1) * cuda::TA_ROWS < T * G && g.chunk % cuda::TA_KEYS == 0 &&
                                            (int64_t)g.chunk * g.n_chunks >= L && (int64_t)g.chunk * (g.n_chunks - 1) < L &&
                                            g.z == g.n_chunks && g.n_chunks <= std::max<int64_t>(1, 2 * sm);
                            if (!ok && bad++ < 5)
                                fprintf(stderr, "  B %lld Hkv %lld rows %lld keys %lld sm %lld: grid %lld x %lld x %lld chunk %d\n",
                                        (long long)B, (long long)Hkv, (long long)(T * G), (long long)L, (long long)sm,
                                        (long long)g.x, (long long)g.y, (long long)g.z, g.chunk);
                        }
            }
    CHECK(bad == 0);
    /* the case the CUDA review found: B x n_head_kv past 65535 sits in grid.x */
    const cuda::TreeAttentionGrid worst = cuda::plan_tree_attention(SPEC_KERNEL_MAX_BATCH, 256, 128, 1 << 20, 132);
    CHECK(worst.x == 262144 && worst.x > cuda::GRID_YZ_MAX && worst.fits());
    /* and a grid past the limits says so */
    cuda::TreeAttentionGrid over = worst;
    over.y = cuda::GRID_YZ_MAX + 1;
    CHECK(!over.fits());
    printf("  tree attention grid: %d shapes within CUDA's limits\n", cases);
}

int main(void) {
    (void)error_mentions;
    test_attention_smem();
    test_can_stack();
    test_rope();
    test_elementwise();
    test_arch_math();
    test_shapes();
    test_key_sets();
    test_fill_step();
    test_extension_step();
    test_eagle_layout();
    test_copy_pieces();
    test_attention_order();
    test_layouts();
    test_tree_attention_grid();
    return check_finish("test_model_math");
}
