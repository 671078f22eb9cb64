// The cpu backend's transformer (llama / qwen2 conventions, as llama.cpp runs them):
//
//   x = embd[token]; per layer: n = rmsnorm(x)*attn_norm; q,k,v = W n (+ bias); rope(q, k);
//   x += Wo attention(q, K, V); n = rmsnorm(x)*ffn_norm; x += Wdown(silu(Wgate n) * Wup n);
//   logits = Woutput (rmsnorm(x)*output_norm)
//
// Weights are read in place from the caller's memory (only norms and biases, which are tiny,
// are converted to f32 once). Every matrix product reads each weight row once per call, for
// all of the call's tokens; a task owns a range of output rows:
//   - up to kernels().tmax tokens (decode): the rows stream four at a time through tile(), which
//     dequantizes in registers, while the next four rows are prefetched into L2;
//   - more tokens (tree verification, prompts): the task's rows are dequantized once into an f32
//     scratch that stays in L2, then gemm() runs gemm_t tokens at a time against them.
// Q8_0 and Q4_0 weights take the int8 path instead (int8_dot.hpp): each token's activations are
// quantized per row in blocks of 32 once per product, the task's weight rows are packed into
// the kernel set's int8 layout (a few rows for few tokens, up to INT8_PACK_BYTES for many), and
// the int8 gemm runs over them. The k-quants (Q2_K..Q6_K) do the same over super-blocks of 256
// (kquant_dot.hpp: activations quantized as llama.cpp's q8_K, rows unpacked to int8). F32/F16/BF16
// keep f32 activations; each output keeps one f32 accumulator whose fma sequence is the same in
// both of their paths. Either way a token's logits
// do not depend on how many tokens shared its call, on its place in a tree, or on the thread
// count: a tree verification gives exactly the logits that decoding its paths token by token gives.
//
// Threads (a small persistent pool, thread_pool.hpp) split matrix rows, attention (token, kv
// head) pairs, and per-token elementwise work. Long prompts run in slices of MAX_UBATCH tokens.
#include "cpu_model.hpp"

#include "int8_dot.hpp"
#include "kernels.hpp"
#include "kquant_dot.hpp"
#include "../core/model_math.hpp"
#include "thread_pool.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

#include <sys/mman.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

namespace specula::cpu {
namespace {

// Long prompts run in slices of this many tokens, which bounds the activation scratch.
constexpr int32_t MAX_UBATCH = 512;

struct Mat {
    const uint8_t *data = nullptr;
    int32_t dtype = SPEC_DTYPE_F32;
    int64_t rows = 0, cols = 0;
    uint64_t row_bytes = 0;
    const uint8_t *row(int64_t r) const { return data + (uint64_t)r * row_bytes; }
};

struct Layer {
    Mat wq, wk, wv, wo, gate, up, down;
    const float *attn_norm = nullptr, *ffn_norm = nullptr;
    const float *bq = nullptr, *bk = nullptr, *bv = nullptr;
};

struct ThreadScratch {
    std::vector<float> deq;    // a task's dequantized weight rows
    std::vector<float> acc;    // gemm's partial sums
    std::vector<float> scores; // attention scores of one query-head group
    std::vector<uint8_t> packed; // a task's weight rows in the int8 layout
};

struct ModelState {
    const KernelSet *ks = nullptr;
    Mat embd, output;
    const float *output_norm = nullptr;
    std::vector<Layer> layers;
    std::vector<std::vector<float>> vectors; // the f32 copies of norms and biases
    std::vector<double> inv_freq;            // rope: rope_dims/2 frequencies, llama3 scaling applied
    double pos_scale = 1.0;                  // rope: linear scaling
    int64_t max_cols = 0;

    std::mutex mu; // one forward at a time per model: the pool and the scratch below are shared
    std::unique_ptr<ThreadPool> pool;
    int pool_requested = -1;
    std::vector<ThreadScratch> scratch; // one per pool thread
    std::vector<uint8_t> qx[3];         // one product's activations quantized for the int8 path
    std::vector<uint8_t> qk[3];         // the same for the k-quant path

    // SPECULA_CPU_WEIGHTS=copy: the matrices copied into anonymous memory on transparent huge pages.
    uint8_t *weight_copy = nullptr;
    size_t weight_copy_bytes = 0;
    ~ModelState() {
        if (weight_copy) munmap(weight_copy, weight_copy_bytes);
    }
};

// Reading the matrices where the caller mapped them (a file's page cache) can be many times
// slower than reading the same bytes from anonymous memory on 2 MiB pages: measured on this
// project's shared VM (Zen 4, kernel 6.18), a sweep over a freshly written 1 GB file ran at
// 1.4-2.7 GB/s mapped (with MADV_HUGEPAGE, MADV_POPULATE_READ or MADV_COLLAPSE alike: the
// page cache gave no huge pages) and at 25-32 GB/s from an anonymous THP copy. With
// SPECULA_CPU_WEIGHTS=copy, finalize copies every matrix into one such region (at the cost of
// that much memory and the copy's time); anything else, or a failed allocation, reads them in place.
void copy_weights_to_huge_pages(ModelState &ms) {
    const char *opt = std::getenv("SPECULA_CPU_WEIGHTS");
    if (!opt || std::strcmp(opt, "copy") != 0) return;
    std::vector<Mat *> mats = {&ms.embd, &ms.output};
    for (Layer &L : ms.layers)
        for (Mat *M : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down}) mats.push_back(M);
    // distinct sources (a tied output shares the embeddings), each copied once, 64-byte aligned
    std::vector<std::pair<const uint8_t *, size_t>> sources; // (data, offset in the copy)
    size_t total = 0;
    for (Mat *M : mats) {
        if (!M->data) continue;
        bool seen = false;
        for (auto &src : sources) seen = seen || src.first == M->data;
        if (seen) continue;
        sources.push_back({M->data, total});
        total += ((size_t)(M->row_bytes * (uint64_t)M->rows) + 63) / 64 * 64;
    }
    const size_t huge = (size_t)2 << 20;
    const size_t bytes = (total + huge - 1) / huge * huge;
    if (bytes == 0) return;
    void *mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return;
#ifdef MADV_HUGEPAGE
    madvise(mem, bytes, MADV_HUGEPAGE);
#endif
    uint8_t *base = (uint8_t *)mem;
    for (Mat *M : mats) {
        if (!M->data) continue;
        for (auto &src : sources)
            if (src.first == M->data) {
                // copied when first met; every Mat with this source then points at the copy
                const uint8_t *from = src.first;
                uint8_t *to = base + src.second;
                if (from != to && (uint64_t)M->rows * M->row_bytes > 0) {
                    std::memcpy(to, from, (size_t)(M->row_bytes * (uint64_t)M->rows));
                    src.first = to; // later Mats with the old pointer: match on the copy below
                    for (Mat *N : mats)
                        if (N->data == from) N->data = to;
                }
                break;
            }
    }
    ms.weight_copy = base;
    ms.weight_copy_bytes = bytes;
}

struct KvState {
    uint8_t *mem = nullptr;   // [n_layer][K, V][capacity][n_head_kv][head_dim] in kv_dtype
    uint64_t slot_bytes = 0;  // n_head_kv * head_dim * element size
    uint64_t layer_bytes = 0; // capacity * slot_bytes
    int32_t pending_layers = 0;

    // Activations of one slice of tokens, grown on demand.
    int32_t rows = 0;
    std::vector<float> x, xn, q, k, v, att, g, u;
    std::vector<float> rope; // [rows][rope_dims/2][cos, sin]
    // Each token's keys as runs of cache slots: run_data[2*run_first[i] ...], run_count[i] pairs.
    std::vector<int32_t> run_first, run_count, run_data, n_keys;

    uint8_t *kcache(int l) const { return mem + (uint64_t)(2 * l) * layer_bytes; }
    uint8_t *vcache(int l) const { return mem + (uint64_t)(2 * l + 1) * layer_bytes; }
};

uint64_t dtype_size(int32_t dt) { return dt == SPEC_DTYPE_F32 ? 4 : 2; }

#if defined(__x86_64__) && defined(__GNUC__)
// AMX-TILE and AMX-INT8 (CPUID leaf 7, EDX bits 24 and 25) with the OS saving tile state (XCR0 bits 17, 18).
bool cpu_has_amx_int8() {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25))) return false;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false; // OSXSAVE
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & (3u << 17)) == (3u << 17);
}
#endif

const KernelSet *select_kernels() {
    init_tables();
    const KernelSet *best = kernels_scalar();
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    const bool vnni = avx512 && __builtin_cpu_supports("avx512vnni");
    // AMX int8 tiles (Sapphire Rapids on): detected, but there is no tile kernel yet (no AMX machine
    // here to test one on). It would be one more Int8Set over the same packed layouts, chosen here
    // when amx_int8 holds (after arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) succeeds).
    const bool amx_int8 = avx512 && cpu_has_amx_int8();
    (void)amx_int8;
    // SPECULA_CPU_ISA=scalar|avx2|avx512 caps the level (for tests and comparisons; avx512 then
    // means without VNNI); it never raises it.
    const char *cap = std::getenv("SPECULA_CPU_ISA");
    auto allowed = [&](const char *level) {
        static const char *const order[] = {"scalar", "avx2", "avx512", "avx512-vnni"};
        if (!cap) return true;
        int want = 4, have = 0;
        for (int i = 0; i < 4; i++) {
            if (std::strcmp(cap, order[i]) == 0) want = i;
            if (std::strcmp(level, order[i]) == 0) have = i;
        }
        return have <= want;
    };
    if (vnni && allowed("avx512-vnni") && kernels_avx512_vnni()) best = kernels_avx512_vnni();
    else if (avx512 && allowed("avx512") && kernels_avx512()) best = kernels_avx512();
    else if (avx2 && allowed("avx2") && kernels_avx2()) best = kernels_avx2();
#endif
    return best;
}

// Whether a product with W takes the int8 path (whole blocks of 32 only; GGUF rows always are).
bool uses_int8(const KernelSet &kern, const Mat &W) { return kern.int8 && kern.int8->has(W.dtype) && W.cols % INT8_BLOCK == 0; }

// Whether a product with W takes the k-quant int8 path (whole super-blocks of 256; GGUF rows always are).
bool uses_kq(const KernelSet &kern, const Mat &W) { return kern.kq && kq_is_kquant(W.dtype) && W.cols % KQ_BLOCK == 0; }

// Quantized activation rows: for the int8 path (data, stride bytes apart), and for the k-quant
// path (kq, kq_stride apart); each set when a product of the call needs it.
struct QActs {
    const uint8_t *data = nullptr;
    int64_t stride = 0;
    const uint8_t *kq = nullptr;
    int64_t kq_stride = 0;
};

// The most bytes of packed weight rows a many-token task keeps (in L2) while its tokens pass over them.
constexpr int64_t INT8_PACK_BYTES = 256 * 1024;

// Y[t][r] (+)= W[r] . X[t] for rows [r0, r1), tokens [0, n), on the int8 path.
void mat_rows_int8(const KernelSet &kern, ThreadScratch &ts, const Mat &W, QActs qx, int n, float *Y, int64_t ldy,
                   bool accumulate, int64_t r0, int64_t r1) {
    const Int8Set &q8 = *kern.int8;
    const int64_t K = W.cols, ng = int8_groups(K), wbytes = ng * INT8_W_GROUP_BYTES;
    if (q8.tile && n <= q8.tile_tokens) {
        // Few tokens, and the set reads this dtype in place: no packing, the rows stream from
        // memory with the one after next prefetched along the way.
        float out[16];
        bool done = true;
        for (int64_t r = r0; r < r1 && done; r++) {
            const uint8_t *pf = r + 2 < r1 ? W.row(r + 2) : nullptr;
            done = q8.tile(W.dtype, W.row(r), K, qx.data, qx.stride, n, out, pf, pf ? (int64_t)W.row_bytes : 0);
            if (!done) break;
            for (int t = 0; t < n; t++) {
                float *y = Y + t * ldy + r;
                *y = accumulate ? *y + out[t] : out[t];
            }
        }
        if (done) return;
        // the set has no in-place reader for this dtype (it said so on the first row): pack
    }
    const int R = q8.rows, QT = q8.tokens;
    // Rows packed at a time: for few tokens a handful (they stay in L1 and the rows stream from
    // memory, the next ones prefetched while these are packed); for many, as many as fit INT8_PACK_BYTES.
    const int64_t few = (std::max(4, R) + R - 1) / R * R;
    const int64_t block = n <= QT ? few : std::max<int64_t>(R, INT8_PACK_BYTES / wbytes / R * R);
    if (ts.packed.size() < (size_t)(block * wbytes)) ts.packed.resize((size_t)(block * wbytes));
    uint8_t *packed = ts.packed.data();
    float out[64];
    const uint8_t *rp[16];
    for (int64_t rb = r0; rb < r1; rb += block) {
        const int64_t nr = std::min(block, r1 - rb);
        for (int64_t i = 0; i < nr; i++) {
            const int64_t ahead = rb + i + 2; // prefetch two rows ahead while packing this one
            const uint8_t *pf = ahead < r1 ? W.row(ahead) : nullptr;
            q8.pack(W.dtype, W.row(rb + i), K, packed + i * wbytes, pf, pf ? (int64_t)W.row_bytes : 0);
        }
        for (int64_t t0 = 0; t0 < n; t0 += QT) {
            const int T = (int)std::min<int64_t>(QT, n - t0);
            for (int64_t g = 0; g < nr; g += R) {
                for (int i = 0; i < R; i++) rp[i] = packed + std::min<int64_t>(g + i, nr - 1) * wbytes;
                q8.gemm(rp, ng, qx.data + t0 * qx.stride, qx.stride, T, out);
                for (int t = 0; t < T; t++)
                    for (int i = 0; i < R && g + i < nr; i++) {
                        float *y = Y + (t0 + t) * ldy + rb + g + i;
                        *y = accumulate ? *y + out[t * R + i] : out[t * R + i];
                    }
            }
        }
    }
}

// Y[t][r] (+)= W[r] . X[t] for rows [r0, r1), tokens [0, n), on the k-quant path: the same
// scheme as mat_rows_int8 (in place for few tokens, else rows unpacked into L2 once).
void mat_rows_kq(const KernelSet &kern, ThreadScratch &ts, const Mat &W, QActs qx, int n, float *Y, int64_t ldy, bool accumulate,
                 int64_t r0, int64_t r1) {
    const KqSet &kq = *kern.kq;
    const int64_t K = W.cols, nsb = K / KQ_BLOCK, wbytes = nsb * KQ_W_BYTES;
    auto put = [&](int64_t row, int64_t t, float v) {
        float *y = Y + t * ldy + row;
        *y = accumulate ? *y + v : v;
    };
    if (n <= kq.tile_tokens) {
        float out[16];
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *pf = r + 2 < r1 ? W.row(r + 2) : nullptr;
            kq.tile(W.dtype, W.row(r), K, qx.kq, qx.kq_stride, n, out, pf, pf ? (int64_t)W.row_bytes : 0);
            for (int t = 0; t < n; t++) put(r, t, out[t]);
        }
        return;
    }
    const int R = kq.rows, QT = kq.tokens;
    const int64_t block = std::max<int64_t>(R, INT8_PACK_BYTES / wbytes / R * R);
    if (ts.packed.size() < (size_t)(block * wbytes)) ts.packed.resize((size_t)(block * wbytes));
    uint8_t *packed = ts.packed.data();
    float out[64];
    const uint8_t *rp[16];
    for (int64_t rb = r0; rb < r1; rb += block) {
        const int64_t nr = std::min(block, r1 - rb);
        for (int64_t i = 0; i < nr; i++) {
            const int64_t ahead = rb + i + 2;
            const uint8_t *pf = ahead < r1 ? W.row(ahead) : nullptr;
            kq.pack(W.dtype, W.row(rb + i), K, packed + i * wbytes, pf, pf ? (int64_t)W.row_bytes : 0);
        }
        for (int64_t t0 = 0; t0 < n; t0 += QT) {
            const int T = (int)std::min<int64_t>(QT, n - t0);
            for (int64_t g = 0; g < nr; g += R) {
                for (int i = 0; i < R; i++) rp[i] = packed + std::min<int64_t>(g + i, nr - 1) * wbytes;
                kq.gemm(W.dtype, rp, nsb, qx.kq + t0 * qx.kq_stride, qx.kq_stride, T, out);
                for (int t = 0; t < T; t++)
                    for (int i = 0; i < R && g + i < nr; i++) put(rb + g + i, t0 + t, out[t * R + i]);
            }
        }
    }
}

// ------------------------------------------------------------------ matrix products

// Y[t][r] (+)= W[r] . X[t] for rows [r0, r1), tokens [0, n); qx: X quantized, for an int8 or k-quant W.
void mat_rows(const KernelSet &kern, ThreadScratch &ts, const Mat &W, const float *X, int64_t ldx, QActs qx, int n,
              float *Y, int64_t ldy, bool accumulate, int64_t r0, int64_t r1) {
    if (uses_int8(kern, W)) {
        mat_rows_int8(kern, ts, W, qx, n, Y, ldy, accumulate, r0, r1);
        return;
    }
    if (uses_kq(kern, W)) {
        mat_rows_kq(kern, ts, W, qx, n, Y, ldy, accumulate, r0, r1);
        return;
    }
    const int64_t K = W.cols;
    auto put = [&](int64_t row, int64_t t, float v) {
        float *y = Y + t * ldy + row;
        *y = accumulate ? *y + v : v;
    };
    if (n <= kern.tmax) {
        // Few tokens (decode): stream the rows four at a time, dequantizing in registers, and
        // prefetch the next four rows meanwhile.
        float out[4 * 8];
        for (int64_t r = r0; r < r1; r += 4) {
            const int nr = (int)std::min<int64_t>(4, r1 - r);
            const uint8_t *p[4];
            for (int i = 0; i < 4; i++) p[i] = W.row(r + std::min(i, nr - 1));
            const uint8_t *pf = r + 4 < r1 ? W.row(r + 4) : nullptr;
            const int64_t pf_bytes = pf ? (int64_t)W.row_bytes * std::min<int64_t>(4, r1 - r - 4) : 0;
            kern.tile(W.dtype, p, K, X, ldx, n, out, pf, pf_bytes);
            for (int t = 0; t < n; t++)
                for (int i = 0; i < nr; i++) put(r + i, t, out[t * 4 + i]);
        }
        return;
    }
    // Many tokens: dequantize the task's rows once into f32, then run gemm_t tokens at a time
    // against all of them, k in blocks small enough that those tokens' activations stay in L1.
    const int64_t nr = r1 - r0;
    const float *rows = W.dtype == SPEC_DTYPE_F32 ? (const float *)W.row(r0) : ts.deq.data();
    if (W.dtype != SPEC_DTYPE_F32)
        for (int64_t i = 0; i < nr; i++) kern.dequant(W.dtype, W.row(r0 + i), K, ts.deq.data() + i * K);
    const int GR = kern.gemm_r, GT = kern.gemm_t, lanes = kern.lanes;
    // k blocks: the gemm_t tokens' slice of activations within ~24 KiB of L1, blocks of equal size.
    const int64_t kb_max = std::max<int64_t>(lanes, (int64_t)(24 * 1024) / (4 * GT) / lanes * lanes);
    const int64_t n_kb = (K + kb_max - 1) / kb_max;
    int64_t kb = ((K + n_kb - 1) / n_kb + lanes - 1) / lanes * lanes;
    if (kb >= K) kb = K;
    const int64_t groups = (nr + GR - 1) / GR;
    float *acc = ts.acc.data();
    float out[64];
    const float *rp[8];
    for (int64_t t0 = 0; t0 < n; t0 += GT) {
        const int T = (int)std::min<int64_t>(GT, n - t0);
        for (int64_t k0 = 0; k0 < K; k0 += kb) {
            const int64_t k1 = std::min(K, k0 + kb);
            for (int64_t g = 0; g < groups; g++) {
                for (int i = 0; i < GR; i++) rp[i] = rows + std::min<int64_t>(g * GR + i, nr - 1) * K;
                kern.gemm(rp, k0, k1, K, X + t0 * ldx, ldx, T, acc + g * GR * GT * lanes, out);
                if (k1 == K)
                    for (int t = 0; t < T; t++)
                        for (int i = 0; i < GR && g * GR + i < nr; i++) put(r0 + g * GR + i, t0 + t, out[t * GR + i]);
            }
        }
    }
}

constexpr int64_t MAX_CHUNK_FLOATS = 128 * 1024; // f32 weights per many-token task (512 KiB, in L2)
constexpr int64_t MAX_CHUNK_ROWS = 256;

// Rows per task: several tasks per thread (threads on a shared machine run at uneven speeds),
// a multiple of 16 rows (whole cache lines of output for one token), and for many tokens a
// slice of dequantized weights that stays in L2 while every token passes over it.
int64_t chunk_rows(const Mat &W, int n, int n_threads, int tmax) {
    if (n_threads <= 1 && n <= tmax) return W.rows;
    int64_t chunk = (W.rows + (int64_t)n_threads * 4 - 1) / ((int64_t)n_threads * 4);
    chunk = std::max<int64_t>(16, (chunk + 15) / 16 * 16);
    if (n > tmax) {
        // at most MAX_CHUNK_ROWS rows and MAX_CHUNK_FLOATS of scratch, unless 16 rows are already more
        const int64_t cap = std::max<int64_t>(16, std::min<int64_t>(MAX_CHUNK_ROWS, MAX_CHUNK_FLOATS / W.cols) / 16 * 16);
        chunk = std::min(chunk, cap);
    }
    return chunk;
}

struct Seg {
    const Mat *W;
    const float *X;
    int64_t ldx;
    float *Y;
    int64_t ldy;
    bool accumulate;
    int64_t chunk = 0, tasks = 0;
    QActs qx = {};
};

template <class F>
void for_tokens(ModelState &ms, int n, int64_t work_per_token, F &&f);

// X's n rows (K each) quantized into q in the form a product with W needs, if it needs one that q
// does not hold yet (into slot `slot` of the model's buffers).
void quantize_acts(ModelState &ms, int slot, const float *X, int64_t ldx, int n, const Mat &W, QActs &q) {
    const int64_t K = W.cols;
    if (uses_int8(*ms.ks, W) && !q.data) {
        std::vector<uint8_t> &buf = ms.qx[slot];
        q.stride = int8_groups(K) * INT8_X_GROUP_BYTES;
        if (buf.size() < (size_t)(n * q.stride)) buf.resize((size_t)(n * q.stride));
        q.data = buf.data();
        for_tokens(ms, n, K, [&](int j, int) { quantize_acts_row(X + j * ldx, K, buf.data() + j * q.stride); });
    }
    if (uses_kq(*ms.ks, W) && !q.kq) {
        std::vector<uint8_t> &buf = ms.qk[slot];
        q.kq_stride = K / KQ_BLOCK * KQ_X_BYTES;
        if (buf.size() < (size_t)(n * q.kq_stride)) buf.resize((size_t)(n * q.kq_stride));
        q.kq = buf.data();
        for_tokens(ms, n, K, [&](int j, int) { kq_quantize_row(X + j * ldx, K, buf.data() + j * q.kq_stride); });
    }
}

// Runs up to 3 products (sharing the token count n) as one parallel job.
void matmul(ModelState &ms, Seg *segs, int n_segs, int n) {
    const int nth = ms.pool->size();
    int64_t total = 0;
    for (int s = 0; s < n_segs; s++) { // activations quantized once per distinct input and form
        for (int e = s - 1; e >= 0; e--)
            if (segs[e].X == segs[s].X && segs[e].ldx == segs[s].ldx && segs[e].W->cols == segs[s].W->cols) {
                segs[s].qx = segs[e].qx; // every form the earlier products took
                break;
            }
        quantize_acts(ms, s, segs[s].X, segs[s].ldx, n, *segs[s].W, segs[s].qx);
    }
    for (int s = 0; s < n_segs; s++) {
        segs[s].chunk = chunk_rows(*segs[s].W, n, nth, ms.ks->tmax);
        segs[s].tasks = (segs[s].W->rows + segs[s].chunk - 1) / segs[s].chunk;
        total += segs[s].tasks;
    }
    auto body = [&](int task, int thread) {
        int s = 0;
        int64_t t = task;
        while (t >= segs[s].tasks) t -= segs[s++].tasks;
        const Seg &g = segs[s];
        const int64_t r0 = t * g.chunk, r1 = std::min(g.W->rows, r0 + g.chunk);
        mat_rows(*ms.ks, ms.scratch[thread], *g.W, g.X, g.ldx, g.qx, n, g.Y, g.ldy, g.accumulate, r0, r1);
    };
    ms.pool->parallel_for((int)total, body);
}

// ------------------------------------------------------------------ small pieces

void rmsnorm(const float *x, const float *w, float *out, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float s = mm::rms_scale(ss, n, eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * s * w[i];
}

// Rotates each of n_heads heads of x (head_dim apart) by the token's (cos, sin) table.
void rope(float *x, int n_heads, int head_dim, int rope_dims, bool neox, const float *cs) {
    const int half = rope_dims / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            int a, b;
            mm::rope_pair(i, half, neox, a, b);
            mm::rope_rotate(v[a], v[b], cs[2 * i], cs[2 * i + 1], v[a], v[b]);
        }
    }
}

template <class F>
void for_tokens(ModelState &ms, int n, int64_t work_per_token, F &&f) {
    if (n == 1 || (int64_t)n * work_per_token < 16384) {
        for (int j = 0; j < n; j++) f(j, 0);
    } else {
        ms.pool->parallel_for(n, f);
    }
}

Status oom(Failure &err, const char *what) {
    err = failure(SPEC_ERR_OUT_OF_MEMORY, "cpu: out of memory for %s", what);
    return err.status;
}

// ------------------------------------------------------------------ finalize, in stages
// model_finalize, in stages named as the cuda backend's (native/cuda/model.cu):
//   choose_kernels  the kernel set this CPU runs (SPECULA_CPU_ISA caps it)
//   place_matrices  every matrix read in place from the caller's memory (SPECULA_CPU_WEIGHTS=copy:
//                   from one anonymous huge-page copy, see copy_weights_to_huge_pages)
//   place_vectors   norms and biases converted to f32 once; the rope frequencies
// (the cuda backend's check_model has nothing to refuse here, and prepare_scratch is a forward
// stage here: the scratch grows with the call and the thread count).

void choose_kernels(ModelState &ms) { ms.ks = select_kernels(); }

void place_matrices(spec_model *m, ModelState &ms) {
    const spec_model_config &c = m->config;
    auto mat = [&](int role, int layer) {
        const spec_weight &w = m->w(role, layer);
        Mat M;
        M.data = (const uint8_t *)w.data;
        M.dtype = w.dtype;
        M.rows = w.rows;
        M.cols = w.cols;
        M.row_bytes = dtype_row_bytes(w.dtype, w.cols);
        ms.max_cols = std::max(ms.max_cols, M.cols);
        return M;
    };
    ms.embd = mat(SPEC_W_TOKEN_EMBD, 0);
    ms.output = mat(SPEC_W_OUTPUT, 0);
    ms.layers.resize(c.n_layer);
    for (int l = 0; l < c.n_layer; l++) {
        Layer &L = ms.layers[l];
        L.wq = mat(SPEC_W_ATTN_Q, l);
        L.wk = mat(SPEC_W_ATTN_K, l);
        L.wv = mat(SPEC_W_ATTN_V, l);
        L.wo = mat(SPEC_W_ATTN_OUT, l);
        L.gate = mat(SPEC_W_FFN_GATE, l);
        L.up = mat(SPEC_W_FFN_UP, l);
        L.down = mat(SPEC_W_FFN_DOWN, l);
    }
    copy_weights_to_huge_pages(ms);
}

void place_vectors(spec_model *m, ModelState &ms) {
    const spec_model_config &c = m->config;
    auto vec = [&](int role, int layer) -> const float * {
        const spec_weight &w = m->w(role, layer);
        if (!w.data) return nullptr;
        std::vector<float> v((size_t)w.cols);
        const uint16_t *h = (const uint16_t *)w.data;
        for (int64_t i = 0; i < w.cols; i++) {
            if (w.dtype == SPEC_DTYPE_F32) std::memcpy(&v[i], (const float *)w.data + i, 4);
            else if (w.dtype == SPEC_DTYPE_F16) v[i] = f16_to_f32(load_u16(h + i));
            else v[i] = bf16_to_f32(load_u16(h + i));
        }
        ms.vectors.push_back(std::move(v));
        return ms.vectors.back().data();
    };
    ms.output_norm = vec(SPEC_W_OUTPUT_NORM, 0);
    for (int l = 0; l < c.n_layer; l++) {
        Layer &L = ms.layers[l];
        L.attn_norm = vec(SPEC_W_ATTN_NORM, l);
        L.ffn_norm = vec(SPEC_W_FFN_NORM, l);
        L.bq = vec(SPEC_W_ATTN_Q_BIAS, l);
        L.bk = vec(SPEC_W_ATTN_K_BIAS, l);
        L.bv = vec(SPEC_W_ATTN_V_BIAS, l);
    }
    const int rd = mm::rope_dims(c);
    ms.inv_freq.resize(rd / 2);
    for (int i = 0; i < rd / 2; i++) ms.inv_freq[i] = mm::rope_inv_freq(c, i);
    ms.pos_scale = mm::rope_pos_scale(c);
}

// ------------------------------------------------------------------ forward, in stages
// The stages carry the names of the cuda backend's (native/cuda/model.cu):
//   key_sets            every token's keys (here as runs of cache slots)
//   prepare_scratch     the worker pool and the scratch, grown to this call (cuda: fixed, at finalize)
//   forward_slice       one slice of up to MAX_UBATCH tokens:
//     embed               embedding rows and the rope table of each token
//     attention_block     per layer: rmsnorm, q/k/v, biases, rope, KV store, attention, + Wo
//     ffn_block           per layer: rmsnorm, silu(gate) * up, + down
//     write_exit_outputs  after the exit layer: the hidden rows and/or their logits
//     write_logits        the call's logits of this slice (all rows, or the call's last)
//   output_head         rmsnorm * output_norm, then the LM head, over some rows (both of the above)

// One forward call's numbers and buffers, shared by its stages.
struct Pass {
    ModelState &ms;
    KvState &st;
    const spec_model_config &c;
    const KernelSet &kern;
    const spec_forward_args &a;
    const int nth; // the pool's threads
    const int32_t n, C, E, D, Hq, Hkv, F, V, G, QD, KD, RD;
    const bool neox;
    const float scale;
    const uint64_t es; // bytes of one kv element
    float *const logits, *const exit_hidden, *const exit_logits;

    Pass(spec_model *m, spec_kv *kv, const spec_forward_args &args, int n_threads)
        : ms(*(ModelState *)m->backend_state), st(*(KvState *)kv->backend_state), c(m->config), kern(*ms.ks), a(args),
          nth(n_threads), n(args.n_tokens), C(kv->committed), E(c.n_embd), D(c.head_dim), Hq(c.n_head), Hkv(c.n_head_kv),
          F(c.n_ff), V(c.n_vocab), G(Hq / Hkv), QD(Hq * D), KD(Hkv * D), RD(c.rope_dims), neox(c.rope_style == SPEC_ROPE_NEOX),
          scale(1.0f / std::sqrt((float)D)), es(dtype_size(c.kv_dtype)),
          logits(args.logits_mode != SPEC_LOGITS_NONE ? (float *)args.logits->ptr : nullptr),
          exit_hidden(args.exit_hidden ? (float *)args.exit_hidden->ptr : nullptr),
          exit_logits(args.exit_logits ? (float *)args.exit_logits->ptr : nullptr) {}
};

// Every token's keys: the committed prefix, its ancestors among the new tokens, itself. Returns
// the most keys any token has.
int32_t key_sets(KvState &st, const spec_forward_args &a, int32_t C) {
    const int32_t n = a.n_tokens;
    st.run_first.resize(n);
    st.run_count.resize(n);
    st.n_keys.resize(n);
    st.run_data.clear();
    int32_t max_keys = 0;
    for (int32_t i = 0; i < n; i++) {
        const int32_t p = a.parents[i];
        const int32_t first = (int32_t)(st.run_data.size() / 2);
        int32_t count = 0;
        if (p < 0) {
            if (C > 0) {
                st.run_data.push_back(0);
                st.run_data.push_back(C);
                count = 1;
            }
            st.n_keys[i] = C + 1;
        } else {
            for (int32_t r = 0; r < st.run_count[p]; r++) {
                const int32_t s0 = st.run_data[2 * (st.run_first[p] + r)], s1 = st.run_data[2 * (st.run_first[p] + r) + 1];
                st.run_data.push_back(s0);
                st.run_data.push_back(s1);
            }
            count = st.run_count[p];
            st.n_keys[i] = st.n_keys[p] + 1;
        }
        const int32_t slot = C + i;
        if (count > 0 && st.run_data[2 * (first + count - 1)] + st.run_data[2 * (first + count - 1) + 1] == slot) {
            st.run_data[2 * (first + count - 1) + 1]++;
        } else {
            st.run_data.push_back(slot);
            st.run_data.push_back(1);
            count++;
        }
        st.run_first[i] = first;
        st.run_count[i] = count;
        max_keys = std::max(max_keys, st.n_keys[i]);
    }
    return max_keys;
}

// The pool at the context's thread count, then per thread scratch, then activations for one
// slice. Returns the pool's thread count.
int prepare_scratch(spec_model *m, ModelState &ms, KvState &st, int32_t n, int32_t max_keys) {
    const spec_model_config &c = m->config;
    const KernelSet &kern = *ms.ks;
    int want = m->ctx->n_threads > 0 ? m->ctx->n_threads : (int)std::thread::hardware_concurrency();
    if (want < 1) want = 1;
    if (!ms.pool || ms.pool_requested != want) {
        ms.pool.reset();
        ms.pool.reset(new ThreadPool(want));
        ms.pool_requested = want;
    }
    const int nth = ms.pool->size();
    const int32_t E = c.n_embd, D = c.head_dim, Hq = c.n_head, Hkv = c.n_head_kv, F = c.n_ff;
    const int32_t G = Hq / Hkv, QD = Hq * D, KD = Hkv * D, RD = c.rope_dims;

    ms.scratch.resize(nth);
    for (auto &s : ms.scratch) {
        const size_t deq = (size_t)std::max<int64_t>(16 * ms.max_cols, MAX_CHUNK_FLOATS); // see chunk_rows
        if (s.deq.size() < deq) s.deq.resize(deq);
        const size_t acc = (size_t)(MAX_CHUNK_ROWS / kern.gemm_r + 1) * kern.gemm_r * kern.gemm_t * kern.lanes;
        if (s.acc.size() < acc) s.acc.resize(acc);
        const size_t need = (size_t)G * ((size_t)max_keys + 1);
        if (s.scores.size() < need) s.scores.resize(need);
        const size_t packed = (size_t)std::max<int64_t>({INT8_PACK_BYTES, 16 * int8_groups(ms.max_cols) * INT8_W_GROUP_BYTES,
                                                         16 * (ms.max_cols / KQ_BLOCK) * KQ_W_BYTES});
        if ((kern.int8 || kern.kq) && s.packed.size() < packed) s.packed.resize(packed); // mat_rows_int8's / mat_rows_kq's most
    }
    const int32_t rows = std::min(n, MAX_UBATCH);
    if (st.rows < rows) {
        st.x.resize((size_t)rows * E);
        st.xn.resize((size_t)rows * E);
        st.q.resize((size_t)rows * QD);
        st.att.resize((size_t)rows * QD);
        st.k.resize((size_t)rows * KD);
        st.v.resize((size_t)rows * KD);
        st.g.resize((size_t)rows * F);
        st.u.resize((size_t)rows * F);
        st.rope.resize((size_t)rows * RD);
        st.rows = rows;
    }
    return nth;
}

// Tokens [u0, u0 + nb): their embedding rows into x, their rope (cos, sin) tables.
void embed(const Pass &p, int32_t u0, int32_t nb) {
    float *x = p.st.x.data();
    for (int32_t j = 0; j < nb; j++) {
        const int32_t tok = p.a.tokens[u0 + j];
        p.kern.dequant(p.ms.embd.dtype, p.ms.embd.row(tok), p.E, x + (int64_t)j * p.E);
        float *cs = p.st.rope.data() + (int64_t)j * p.RD;
        for (int32_t i = 0; i < p.RD / 2; i++) {
            const double ang = mm::rope_angle(p.a.positions[u0 + j], p.ms.pos_scale, p.ms.inv_freq[i]);
            cs[2 * i] = (float)std::cos(ang);
            cs[2 * i + 1] = (float)std::sin(ang);
        }
    }
}

// dst[count][V] = the LM head over rmsnorm(rows_x) * output_norm.
void output_head(const Pass &p, const float *rows_x, int32_t count, float *dst) {
    const int32_t E = p.E;
    float *xn = p.st.xn.data();
    for_tokens(p.ms, count, E, [&](int j, int) { rmsnorm(rows_x + (int64_t)j * E, p.ms.output_norm, xn + (int64_t)j * E, E, p.c.rms_eps); });
    Seg s{&p.ms.output, xn, E, dst, p.V, false};
    matmul(p.ms, &s, 1, count);
}

// Layer l's attention for the slice's nb tokens: x += Wo attention(rope(W{q,k,v} rmsnorm(x))),
// storing the tokens' K and V in the cache.
void attention_block(const Pass &p, const Layer &L, int32_t l, int32_t u0, int32_t nb) {
    ModelState &ms = p.ms;
    KvState &st = p.st;
    const KernelSet &kern = p.kern;
    const int32_t E = p.E, D = p.D, Hq = p.Hq, Hkv = p.Hkv, G = p.G, QD = p.QD, KD = p.KD, RD = p.RD, C = p.C;
    float *x = st.x.data(), *xn = st.xn.data(), *q = st.q.data(), *kk = st.k.data(), *vv = st.v.data();
    float *att = st.att.data();
    uint8_t *kc = st.kcache(l), *vc = st.vcache(l);

    for_tokens(ms, nb, E, [&](int j, int) { rmsnorm(x + (int64_t)j * E, L.attn_norm, xn + (int64_t)j * E, E, p.c.rms_eps); });
    Seg qkv[3] = {{&L.wq, xn, E, q, QD, false}, {&L.wk, xn, E, kk, KD, false}, {&L.wv, xn, E, vv, KD, false}};
    matmul(ms, qkv, 3, nb);

    for_tokens(ms, nb, QD + 2 * KD, [&](int j, int) {
        float *qj = q + (int64_t)j * QD, *kj = kk + (int64_t)j * KD, *vj = vv + (int64_t)j * KD;
        if (L.bq) {
            for (int32_t i = 0; i < QD; i++) qj[i] += L.bq[i];
            for (int32_t i = 0; i < KD; i++) kj[i] += L.bk[i];
            for (int32_t i = 0; i < KD; i++) vj[i] += L.bv[i];
        }
        const float *cs = st.rope.data() + (int64_t)j * RD;
        rope(qj, Hq, D, RD, p.neox, cs);
        rope(kj, Hkv, D, RD, p.neox, cs);
        const uint64_t slot = (uint64_t)(C + u0 + j);
        kern.store_kv(kc + slot * st.slot_bytes, kj, KD, p.c.kv_dtype);
        kern.store_kv(vc + slot * st.slot_bytes, vj, KD, p.c.kv_dtype);
    });

    auto attn = [&](int task, int thread) {
        const int32_t j = task / Hkv, h = task % Hkv, i = u0 + j;
        AttnParams ap;
        ap.q = q + (int64_t)j * QD + (int64_t)h * G * D;
        ap.out = att + (int64_t)j * QD + (int64_t)h * G * D;
        ap.G = G;
        ap.D = D;
        ap.kbase = kc + (uint64_t)h * D * p.es;
        ap.vbase = vc + (uint64_t)h * D * p.es;
        ap.slot_bytes = (int64_t)st.slot_bytes;
        ap.kv_dtype = p.c.kv_dtype;
        ap.runs = st.run_data.data() + 2 * (int64_t)st.run_first[i];
        ap.n_runs = st.run_count[i];
        ap.n_keys = st.n_keys[i];
        ap.scale = p.scale;
        ap.scores = ms.scratch[thread].scores.data();
        kern.attention(ap);
    };
    ms.pool->parallel_for(nb * Hkv, attn);

    Seg o{&L.wo, att, QD, x, E, true};
    matmul(ms, &o, 1, nb);
}

// Layer l's feed-forward for the slice's nb tokens: x += Wdown(silu(Wgate n) * Wup n), n = rmsnorm(x).
void ffn_block(const Pass &p, const Layer &L, int32_t nb) {
    ModelState &ms = p.ms;
    KvState &st = p.st;
    const KernelSet &kern = p.kern;
    const int32_t E = p.E, F = p.F;
    float *x = st.x.data(), *xn = st.xn.data(), *g = st.g.data(), *u = st.u.data();

    for_tokens(ms, nb, E, [&](int j, int) { rmsnorm(x + (int64_t)j * E, L.ffn_norm, xn + (int64_t)j * E, E, p.c.rms_eps); });
    {
        const int64_t chunk = chunk_rows(L.gate, nb, p.nth, kern.tmax);
        const int tasks = (int)((F + chunk - 1) / chunk);
        QActs qxn;
        quantize_acts(ms, 0, xn, E, nb, L.gate, qxn);
        quantize_acts(ms, 0, xn, E, nb, L.up, qxn);
        ms.pool->parallel_for(tasks, [&](int task, int thread) {
            const int64_t r0 = task * chunk, r1 = std::min<int64_t>(F, r0 + chunk);
            mat_rows(kern, ms.scratch[thread], L.gate, xn, E, qxn, nb, g, F, false, r0, r1);
            mat_rows(kern, ms.scratch[thread], L.up, xn, E, qxn, nb, u, F, false, r0, r1);
            for (int32_t j = 0; j < nb; j++) kern.silu_mul(g + (int64_t)j * F + r0, u + (int64_t)j * F + r0, r1 - r0);
        });
    }
    Seg d{&L.down, g, F, x, E, true};
    matmul(ms, &d, 1, nb);
}

// After the exit layer: the slice's hidden rows and/or their logits, at the slice's rows.
void write_exit_outputs(const Pass &p, int32_t u0, int32_t nb) {
    const float *x = p.st.x.data();
    if (p.exit_hidden) std::memcpy(p.exit_hidden + (int64_t)u0 * p.E, x, sizeof(float) * (size_t)nb * p.E);
    if (p.exit_logits) output_head(p, x, nb, p.exit_logits + (int64_t)u0 * p.V);
}

// The call's logits from this slice: all its rows (LOGITS_ALL), or the call's last row when this
// is the last slice (LOGITS_LAST). Exit logits after the last layer are the same numbers.
void write_logits(const Pass &p, int32_t u0, int32_t nb) {
    const spec_forward_args &a = p.a;
    if (a.stop_at_exit || a.logits_mode == SPEC_LOGITS_NONE) return;
    const int32_t E = p.E, V = p.V, n = p.n;
    const float *x = p.st.x.data();
    const bool reuse = a.exit_layer == p.c.n_layer && p.exit_logits; // the same numbers, already computed
    if (a.logits_mode == SPEC_LOGITS_ALL) {
        if (reuse) std::memcpy(p.logits + (int64_t)u0 * V, p.exit_logits + (int64_t)u0 * V, sizeof(float) * (size_t)nb * V);
        else output_head(p, x, nb, p.logits + (int64_t)u0 * V);
    } else if (u0 + nb == n) {
        if (reuse) std::memcpy(p.logits, p.exit_logits + (int64_t)(n - 1) * V, sizeof(float) * (size_t)V);
        else output_head(p, x + (int64_t)(nb - 1) * E, 1, p.logits);
    }
}

// Tokens [u0, u0 + nb) through the layers (up to the exit layer when the call stops there).
void forward_slice(const Pass &p, int32_t u0, int32_t nb) {
    const int32_t n_run = p.a.stop_at_exit ? p.a.exit_layer : p.c.n_layer;
    embed(p, u0, nb);
    for (int32_t l = 0; l < n_run; l++) {
        const Layer &L = p.ms.layers[l];
        attention_block(p, L, l, u0, nb);
        ffn_block(p, L, nb);
        if (l + 1 == p.a.exit_layer) write_exit_outputs(p, u0, nb);
    }
    write_logits(p, u0, nb);
}

Status forward_impl(spec_model *m, spec_kv *kv, const spec_forward_args &a, Failure &err) {
    ModelState &ms = *(ModelState *)m->backend_state;
    KvState &st = *(KvState *)kv->backend_state;
    const spec_model_config &c = m->config;
    std::lock_guard<std::mutex> lock(ms.mu);

    const int32_t n = a.n_tokens, C = kv->committed;
    const int32_t max_keys = key_sets(st, a, C);
    const int nth = prepare_scratch(m, ms, st, n, max_keys);
    const Pass p(m, kv, a, nth);
    for (int32_t u0 = 0; u0 < n; u0 += MAX_UBATCH) forward_slice(p, u0, std::min(MAX_UBATCH, n - u0));
    st.pending_layers = a.stop_at_exit ? a.exit_layer : c.n_layer;
    return SPEC_OK;
}

} // namespace

// ------------------------------------------------------------------ the backend's entry points

uint64_t model_scratch_bytes(const spec_model_config &c, int32_t kv_capacity) {
    // prepare_scratch's buffers at their largest: one slice of MAX_UBATCH tokens, and per thread the
    // dequantized rows, gemm partial sums (bounded by the widest kernel set) and attention scores.
    const uint64_t rows = MAX_UBATCH, E = c.n_embd, QD = (uint64_t)c.n_head * c.head_dim;
    const uint64_t KD = (uint64_t)c.n_head_kv * c.head_dim, F = c.n_ff;
    const uint64_t RD = c.rope_dims > 0 ? c.rope_dims : c.head_dim;
    const uint64_t activations = rows * (2 * E + 2 * QD + 2 * KD + 2 * F + RD) * 4;
    const uint64_t max_cols = std::max<uint64_t>(E, F);
    const uint64_t per_thread = std::max<uint64_t>(16 * max_cols, MAX_CHUNK_FLOATS) * 4 + (MAX_CHUNK_ROWS + 16) * 16 * 16 * 4 +
                                (uint64_t)(c.n_head / c.n_head_kv) * ((uint64_t)kv_capacity + 1) * 4 +
                                (uint64_t)INT8_PACK_BYTES +
                                std::max<uint64_t>(16 * (uint64_t)int8_groups((int64_t)max_cols) * INT8_W_GROUP_BYTES,
                                                   16 * (max_cols / KQ_BLOCK) * KQ_W_BYTES);
    // the quantized activations: one slice, for up to two inputs at once, in the int8 path's form
    // and the k-quant path's (a mixed file can need both for one input)
    const uint64_t quantized = 2 * rows * ((uint64_t)int8_groups((int64_t)max_cols) * INT8_X_GROUP_BYTES + max_cols / KQ_BLOCK * KQ_X_BYTES);
    const uint64_t threads = std::max(1u, std::thread::hardware_concurrency());
    return activations + quantized + threads * per_thread;
}

Status model_finalize(spec_model *m, Failure &err) {
    try {
        std::unique_ptr<ModelState> ms(new ModelState());
        choose_kernels(*ms);
        place_matrices(m, *ms);
        place_vectors(m, *ms);
        m->backend_state = ms.release();
        return SPEC_OK;
    } catch (const std::bad_alloc &) {
        return oom(err, "the model's tables");
    }
}

void model_release(spec_model *m) {
    delete (ModelState *)m->backend_state;
    m->backend_state = nullptr;
}

Status kv_init(spec_kv *kv, Failure &err) {
    const spec_model_config &c = kv->model->config;
    auto *st = new (std::nothrow) KvState();
    if (!st) return oom(err, "a kv cache");
    st->slot_bytes = kv_slot_bytes(c);
    st->layer_bytes = (uint64_t)kv->capacity * st->slot_bytes;
    const uint64_t total = kv_cache_bytes(c, kv->capacity);
    // calloc: zero pages arrive lazily, and a slot never written reads as zeros, not garbage.
    st->mem = (uint8_t *)std::calloc(total, 1);
    if (!st->mem) {
        delete st;
        err = failure(SPEC_ERR_OUT_OF_MEMORY, "cpu: cannot allocate a kv cache of %llu bytes (%d positions)",
                      (unsigned long long)total, kv->capacity);
        return err.status;
    }
    kv->backend_state = st;
    return SPEC_OK;
}

void kv_release(spec_kv *kv) {
    auto *st = (KvState *)kv->backend_state;
    if (st) std::free(st->mem);
    delete st;
    kv->backend_state = nullptr;
}

Status kv_commit(spec_kv *kv, int32_t n_path, const int32_t *path, Failure &err) {
    KvState &st = *(KvState *)kv->backend_state;
    const int64_t C = kv->committed;
    // path is strictly increasing (each element the parent of the next) so path[j] >= j: copying
    // in order never overwrites a slot a later step still reads.
    for (int32_t l = 0; l < st.pending_layers; l++) {
        uint8_t *caches[2] = {st.kcache(l), st.vcache(l)};
        for (uint8_t *base : caches)
            for (int32_t j = 0; j < n_path; j++)
                if (path[j] != j)
                    std::memmove(base + (uint64_t)(C + j) * st.slot_bytes, base + (uint64_t)(C + path[j]) * st.slot_bytes, st.slot_bytes);
    }
    return SPEC_OK;
}

Status forward(spec_model *m, spec_kv *kv, const spec_forward_args &a, Failure &err) {
    try {
        return forward_impl(m, kv, a, err);
    } catch (const std::bad_alloc &) {
        return oom(err, "the forward pass's scratch");
    } catch (const std::system_error &) {
        err = failure(SPEC_ERR_INTERNAL, "cpu: cannot start or synchronize worker threads");
        return err.status;
    }
}

} // namespace specula::cpu
