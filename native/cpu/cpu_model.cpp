// The cpu backend's transformer (llama / qwen2 / qwen3 / gemma3 conventions, as llama.cpp runs them):
//
//   x = embd[token]; per layer: n = rmsnorm(x)*attn_norm; q,k,v = W n (+ bias); rope(q, k);
//   x += Wo attention(q, K, V); n = rmsnorm(x)*ffn_norm; x += Wdown(silu(Wgate n) * Wup n);
//   logits = Woutput (rmsnorm(x)*output_norm)
//
// qwen3 and gemma3 normalize each head of q and k (one head-sized weight) before rope. gemma3 scales
// the embeddings by sqrt(n_embd), uses gelu_tanh instead of silu, and normalizes each block's output
// (post-attention / post-FFN norm) before adding it to x. With a sliding window, a local layer's token
// at position p attends only to keys at positions > p - window (local_key_sets), with the local rope
// when rope_theta_local is set; global layers see every key.
//
// Weights are read in place from the caller's memory (only norms and biases, which are tiny,
// are converted to f32 once). Every matrix product reads each weight row once per call, for
// all of the call's tokens; a task owns a range of output rows:
//   - up to kernels().tmax tokens (decode): the rows stream four at a time through tile(), which
//     dequantizes in registers, while the next four rows are prefetched into L2;
//   - more tokens (tree verification, prompts): F16 / BF16 rows are read in place by gemm_plain(),
//     a few rows at a time against every token group, each weight vector converted in registers
//     and used by all the group's tokens; other formats' task rows are dequantized once into an f32
//     scratch that stays in L2, then gemm() runs gemm_t tokens at a time against them.
// Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 weights take the int8 path instead (int8_dot.hpp): each token's activations are
// quantized per row in blocks of 32 once per product, the task's weight rows are packed into
// the kernel set's int8 layout (a few rows for few tokens, up to INT8_PACK_BYTES for many), and
// the int8 gemm runs over them. Q8_0 matrices are instead prepacked once at load (prepack_q8_weights:
// as many bytes per row as the file's, nothing packed per call) and every product reads them in place.
// The k-quants (Q2_K..Q6_K) pack per call like the 32-block formats, over super-blocks of 256
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
    // Q8_0 rows prepacked for the int8 path (prepack_q8_weights), when they are
    const uint8_t *pre = nullptr;
    uint64_t pre_row_bytes = 0;
    const uint8_t *pre_row(int64_t r) const { return pre + (uint64_t)r * pre_row_bytes; }
};

struct Layer {
    Mat wq, wk, wv, wo, gate, up, down;
    const float *attn_norm = nullptr, *ffn_norm = nullptr;
    const float *bq = nullptr, *bk = nullptr, *bv = nullptr;
    // ABI 0.8: per-head q/k norms (qwen3, gemma3), the blocks' output norms (gemma3), and whether the
    // layer attends within the sliding window (with the local rope).
    const float *q_norm = nullptr, *k_norm = nullptr, *post_attn_norm = nullptr, *post_ffn_norm = nullptr;
    bool local = false;
};

// Grows v to n elements, reserving exactly n first: resize alone may grow the capacity by half again, past what
// model_scratch_bytes plans (300 rows then 600 held 600 rows where the plan's slice is 512).
template <class T>
void grow_exact(std::vector<T> &v, size_t n) {
    if (v.size() >= n) return;
    v.reserve(n);
    v.resize(n);
}

struct ThreadScratch {
    std::vector<float> deq;    // a task's dequantized weight rows
    std::vector<float> acc;    // gemm's partial sums
    std::vector<float> scores; // attention scores of one query-head group
    std::vector<uint8_t> packed; // a task's weight rows in the int8 layout
};

// Anonymous memory on huge pages (map_huge_pages), unmapped with the last model that reads it.
struct HugePages {
    uint8_t *base = nullptr;
    size_t bytes = 0;
    HugePages(uint8_t *b, size_t n) : base(b), bytes(n) {}
    HugePages(const HugePages &) = delete;
    HugePages &operator=(const HugePages &) = delete;
    ~HugePages() { munmap(base, bytes); }
};
using HugePagesRef = std::shared_ptr<HugePages>;

// A target's LM head as its finalize placed it (prepacked or copied), from the caller's memory at source.
struct PlacedHead {
    const uint8_t *source;
    int32_t dtype;
    int64_t rows, cols;
    Mat placed;
    HugePagesRef region; // holds placed's rows
};

struct ModelState {
    const KernelSet *ks = nullptr;
    Mat embd, output;
    const float *output_norm = nullptr;
    std::vector<Layer> layers;
    std::vector<std::vector<float>> vectors; // the f32 copies of norms and biases
    std::vector<double> inv_freq;            // rope: rope_dims/2 frequencies, llama3 scaling applied
    double pos_scale = 1.0;                  // rope: linear scaling
    std::vector<double> inv_freq_local;      // the local layers' rope, when it differs (rope_theta_local)
    double pos_scale_local = 1.0;
    bool local_rope = false;
    bool gemma = false;                      // gemma3: scaled embeddings, gelu FFN, post-block norms
    // ABI 0.9: an EAGLE draft layer's input x = fc [embd(t); feature] (+ fc_bias), built in cat [rows][2 n_embd]
    bool eagle = false;
    Mat fc;
    const float *fc_bias = nullptr;
    std::vector<float> cat;
    int64_t max_cols = 0;

    std::mutex mu; // one forward at a time per model: the scratch below is shared (take it with ModelLock)
    ThreadPool *pool = nullptr;         // the context's pool, while a ModelLock holds it; null otherwise
    std::vector<ThreadScratch> scratch; // one per pool thread
    // This call runs on the caller alone (an EAGLE layer's call of a few rows, see eagle_caller_rows): its
    // products are too small to pay for handing tasks to the pool, whose worker may also be preempted mid-task
    // on a busy machine and hold the caller at the barrier.
    bool on_caller = false;
    std::vector<uint8_t> qx[3];         // one product's activations quantized for the int8 path
    std::vector<uint8_t> qk[3];         // the same for the k-quant path

    // Activations of one slice of rows (of one sequence or of a batch's), grown on demand; one set
    // per model, since forwards of a model run one at a time.
    int32_t rows = 0;
    std::vector<float> x, xn, q, k, v, att, g, u;
    std::vector<float> rope;          // [rows][rope_dims/2][cos, sin]
    std::vector<float> rope_local;    // the same for local layers when their rope differs
    std::vector<int32_t> head_rows;   // the slice's rows an LM head product runs over
    std::vector<float *> head_out;    // and where each row's logits go

    // SPECULA_CPU_WEIGHTS=copy: the matrices copied into anonymous memory on transparent huge pages.
    HugePagesRef weight_copy;
    // The Q8_0 matrices prepacked for the int8 path (prepack_q8_weights).
    HugePagesRef prepacked;
    // An EAGLE layer's LM head placed by its target (borrow_placed_head): the target's region that holds it, kept
    // mapped while this layer lives even if the target goes first. Counted by the target, not here.
    HugePagesRef borrowed_head;
    // A target's placed LM head, offered to EAGLE layers handed the same one while this model lives (offer_placed_head).
    std::shared_ptr<const PlacedHead> head_offer;
};

// total bytes rounded up to whole 2 MiB pages: what map_huge_pages maps for them.
size_t whole_huge_pages(size_t total) {
    const size_t huge = (size_t)2 << 20;
    return (total + huge - 1) / huge * huge;
}

// total bytes of anonymous memory, rounded up to whole 2 MiB pages (their count in bytes) and advised
// onto transparent huge pages; null when total is 0 or the mapping fails (the caller then reads in place).
HugePagesRef map_huge_pages(size_t total) {
    const size_t bytes = whole_huge_pages(total);
    if (bytes == 0) return nullptr;
    void *mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return nullptr;
#ifdef MADV_HUGEPAGE
    madvise(mem, bytes, MADV_HUGEPAGE);
#endif
    return std::make_shared<HugePages>((uint8_t *)mem, bytes);
}

// The Mats a forward multiplies by (the LM head, an EAGLE layer's fc, each layer's matrices): what prepacking and
// the huge-page copy place. The token embeddings are only looked up, a few rows per call, so they stay in place.
std::vector<Mat *> product_matrices(ModelState &ms) {
    std::vector<Mat *> mats = {&ms.output, &ms.fc};
    for (Layer &L : ms.layers)
        for (Mat *M : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down}) mats.push_back(M);
    return mats;
}

// Placed LM heads on offer: weak, so an entry lapses with the model that placed it.
std::mutex placed_heads_mu;
std::vector<std::weak_ptr<const PlacedHead>> placed_heads;

// A finalized target offers its LM head to EAGLE layers when finalize placed it in a region of its own
// (prepacked, or copied with SPECULA_CPU_WEIGHTS=copy); read in place there is nothing to share.
void offer_placed_head(ModelState &ms, const uint8_t *source) {
    const Mat &H = ms.output;
    HugePagesRef region = H.pre ? ms.prepacked : (H.data && H.data != source ? ms.weight_copy : nullptr);
    if (!region) return;
    ms.head_offer = std::make_shared<const PlacedHead>(PlacedHead{source, H.dtype, H.rows, H.cols, H, region});
    std::lock_guard<std::mutex> lock(placed_heads_mu);
    placed_heads.erase(std::remove_if(placed_heads.begin(), placed_heads.end(),
                                      [](const std::weak_ptr<const PlacedHead> &w) { return w.expired(); }),
                       placed_heads.end());
    placed_heads.push_back(ms.head_offer);
}

// An EAGLE layer is handed its target's LM head (the same memory): it reads the target's placed form when a live
// model offers one, holding that region (borrowed_head), and else reads it in place; it never places its own, so
// its memory plan leaves the head to the target's. The same bits either way: prepacked and copied rows hold the
// same values as the rows they came from.
void borrow_placed_head(ModelState &ms) {
    const Mat &H = ms.output;
    if (!H.data) return;
    std::lock_guard<std::mutex> lock(placed_heads_mu);
    for (const auto &w : placed_heads)
        if (std::shared_ptr<const PlacedHead> offer = w.lock())
            if (offer->source == H.data && offer->dtype == H.dtype && offer->rows == H.rows && offer->cols == H.cols) {
                ms.output = offer->placed;
                ms.borrowed_head = offer->region;
                return;
            }
}

// Reading the matrices where the caller mapped them (a file's page cache) can be many times
// slower than reading the same bytes from anonymous memory on 2 MiB pages: measured on this
// project's shared VM (Zen 4, kernel 6.18), a sweep over a freshly written 1 GB file ran at
// 1.4-2.7 GB/s mapped (with MADV_HUGEPAGE, MADV_POPULATE_READ or MADV_COLLAPSE alike: the
// page cache gave no huge pages) and at 25-32 GB/s from an anonymous THP copy. With
// SPECULA_CPU_WEIGHTS=copy, finalize copies every product matrix (product_matrices) into one such region (at the cost of
// that much memory and the copy's time); anything else, or a failed allocation, reads them in place.
// The matrices copy_weights_to_huge_pages copies and where each goes: the product matrices that prepack_q8_weights
// does not take, each distinct source once, 64-byte aligned. The plan (spec_memory_plan_weights) and the copy both
// come from here.
struct CopyPlan {
    std::vector<std::pair<const uint8_t *, size_t>> sources; // (data, offset in the copy)
    size_t total = 0;                                        // bytes before rounding to pages; 0: it copies nothing
};

bool copy_weights_on() {
    const char *opt = std::getenv("SPECULA_CPU_WEIGHTS");
    return opt && std::strcmp(opt, "copy") == 0;
}

CopyPlan weight_copy_plan(ModelState &ms);

void copy_weights_to_huge_pages(ModelState &ms) {
    if (!copy_weights_on()) return;
    CopyPlan plan = weight_copy_plan(ms);
    HugePagesRef region = map_huge_pages(plan.total);
    if (!region) return;
    const std::vector<Mat *> mats = product_matrices(ms);
    for (const auto &src : plan.sources) {
        uint8_t *to = region->base + src.second;
        bool copied = false;
        for (Mat *M : mats) // every Mat of this source (a matrix in two roles) reads the one copy
            if (M->data == src.first && !M->pre) {
                if (!copied) std::memcpy(to, src.first, (size_t)(M->row_bytes * (uint64_t)M->rows));
                copied = true;
                M->data = to;
            }
    }
    ms.weight_copy = region;
}

struct KvState {
    uint8_t *mem = nullptr;   // [n_layer][K, V][capacity][n_head_kv][head_dim] in kv_dtype
    uint64_t slot_bytes = 0;  // n_head_kv * head_dim * element size
    uint64_t layer_bytes = 0; // capacity * slot_bytes
    int32_t pending_layers = 0;

    // The last call's tokens' keys as runs of cache slots: run_data[2*run_first[i] ...], run_count[i] pairs.
    std::vector<int32_t> run_first, run_count, run_data, n_keys;
    // With a sliding window, the keys of local layers: the above less those at or before p - window.
    std::vector<int32_t> lrun_first, lrun_count, lrun_data, ln_keys;
    std::vector<int32_t> slot_pos; // [capacity]: the position each cache slot's key was computed at (kv_slot_positions_bytes)

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

// Q8_0 matrices prepacked once into the kernel set's int8 layout (Int8Set::prepack, int8_dot.hpp), in
// anonymous memory on transparent huge pages. A product then streams as many bytes as from the file and
// packs nothing per call, so verifying several tokens costs the weights' streaming plus the int8
// products, not also a repacking pass (which cost about as much as the products at 8 tokens). The
// results are the same bits. SPECULA_CPU_PREPACK=0 turns it off (rows then packed per call, as the
// other block formats are); a failed allocation leaves the rows read in place.
//
// The plan (spec_memory_plan_weights) and the allocation both come from prepack_q8_plan, so the memory
// budget reads the same bytes this maps.
struct PrepackPlan {
    std::vector<Mat *> mats; // the candidates: the LM head, an EAGLE layer's fc, each layer's matrices
    size_t total = 0;        // the bytes of those it prepacks, before rounding to pages; 0: it prepacks none
    bool takes(const KernelSet &ks, const Mat *M) const { return M->data && M->dtype == SPEC_DTYPE_Q8_0 && uses_int8(ks, *M); }
};

PrepackPlan prepack_q8_plan(ModelState &ms) {
    PrepackPlan plan;
    const Int8Set *q8 = ms.ks->int8;
    if (!q8 || !q8->prepack || !q8->gemm_pre) return plan;
    const char *opt = std::getenv("SPECULA_CPU_PREPACK");
    if (opt && std::strcmp(opt, "0") == 0) return plan;
    plan.mats = product_matrices(ms);
    for (Mat *M : plan.mats)
        if (plan.takes(*ms.ks, M)) plan.total += (size_t)M->rows * (size_t)(int8_groups(M->cols) * INT8_P_GROUP_BYTES);
    return plan;
}

void prepack_q8_weights(ModelState &ms) {
    const Int8Set *q8 = ms.ks->int8;
    PrepackPlan plan = prepack_q8_plan(ms);
    std::vector<Mat *> &mats = plan.mats;
    auto takes = [&](const Mat *M) { return plan.takes(*ms.ks, M); };
    HugePagesRef region = map_huge_pages(plan.total);
    if (!region) return;
    uint8_t *base = region->base;
    size_t off = 0;
    for (size_t i = 0; i < mats.size(); i++) {
        Mat *M = mats[i];
        if (!takes(M)) continue;
        for (size_t j = 0; j < i && !M->pre; j++) // one matrix in two roles: prepacked once
            if (mats[j]->pre && mats[j]->data == M->data) {
                M->pre = mats[j]->pre;
                M->pre_row_bytes = mats[j]->pre_row_bytes;
            }
        if (M->pre) continue;
        M->pre_row_bytes = (uint64_t)(int8_groups(M->cols) * INT8_P_GROUP_BYTES);
        uint8_t *dst = base + off;
        for (int64_t r = 0; r < M->rows; r++) q8->prepack(M->row(r), M->cols, dst + (uint64_t)r * M->pre_row_bytes);
        M->pre = dst;
        off += (size_t)(M->rows * M->pre_row_bytes);
    }
    ms.prepacked = region;
}

// What weight_copy_plan copies: with the prepacking planned (not yet done, or done), the matrices it leaves.
CopyPlan weight_copy_plan(ModelState &ms) {
    CopyPlan plan;
    const PrepackPlan prepack = prepack_q8_plan(ms);
    for (Mat *M : product_matrices(ms)) {
        if (!M->data || M->pre || (prepack.total > 0 && prepack.takes(*ms.ks, M))) continue;
        bool seen = false;
        for (auto &src : plan.sources) seen = seen || src.first == M->data;
        if (seen) continue;
        plan.sources.push_back({M->data, plan.total});
        plan.total += ((size_t)(M->row_bytes * (uint64_t)M->rows) + 63) / 64 * 64;
    }
    return plan;
}

// Where a product's outputs go: token t's row at base + t * ld, or at rows[t] when given (a batch's
// logits rows, each in its own sequence's buffer).
struct OutRows {
    float *base = nullptr;
    int64_t ld = 0;
    float *const *rows = nullptr;
    float *row(int64_t t) const { return rows ? rows[t] : base + t * ld; }
};

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

// Y[t][r] (+)= W[r] . X[t] for rows [r0, r1) through a kernel set's packed layout, shared by the int8 and
// k-quant paths: block rows at a time are packed into the task's scratch (the row two ahead prefetched while
// packing), then every token group passes over each group of R packed rows. put(row, token, value) stores.
template <class Pack, class Gemm, class Put>
void packed_rows_gemm(ThreadScratch &ts, const Mat &W, int n, int64_t r0, int64_t r1, int R, int QT, int64_t wbytes,
                      int64_t block, Pack pack, Gemm gemm, Put put) {
    grow_exact(ts.packed, (size_t)(block * wbytes));
    uint8_t *packed = ts.packed.data();
    float out[64];
    const uint8_t *rp[16];
    for (int64_t rb = r0; rb < r1; rb += block) {
        const int64_t nr = std::min(block, r1 - rb);
        for (int64_t i = 0; i < nr; i++) {
            const int64_t ahead = rb + i + 2;
            const uint8_t *pf = ahead < r1 ? W.row(ahead) : nullptr;
            pack(W.row(rb + i), packed + i * wbytes, pf, pf ? (int64_t)W.row_bytes : 0);
        }
        for (int64_t t0 = 0; t0 < n; t0 += QT) {
            const int T = (int)std::min<int64_t>(QT, n - t0);
            for (int64_t g = 0; g < nr; g += R) {
                for (int i = 0; i < R; i++) rp[i] = packed + std::min<int64_t>(g + i, nr - 1) * wbytes;
                gemm(rp, t0, T, out);
                for (int t = 0; t < T; t++)
                    for (int i = 0; i < R && g + i < nr; i++) put(rb + g + i, t0 + t, out[t * R + i]);
            }
        }
    }
}

// Stores a value of row `row` for token t into Y, adding to it when accumulating.
inline auto put_row(const OutRows &Y, bool accumulate) {
    return [&Y, accumulate](int64_t row, int64_t t, float v) {
        float *y = Y.row(t) + row;
        *y = accumulate ? *y + v : v;
    };
}

// Y[t][r] (+)= W[r] . X[t] for rows [r0, r1), tokens [0, n), on the int8 path.
void mat_rows_int8(const KernelSet &kern, ThreadScratch &ts, const Mat &W, QActs qx, int n, const OutRows &Y,
                   bool accumulate, int64_t r0, int64_t r1) {
    const Int8Set &q8 = *kern.int8;
    const int64_t K = W.cols, ng = int8_groups(K), wbytes = ng * INT8_W_GROUP_BYTES;
    const auto put = put_row(Y, accumulate);
    if (W.pre) {
        // Prepacked Q8_0 rows: `rows` rows per gemm call, read straight from memory. For more tokens than
        // one call takes, a block of rows (in L2 after the first token group) passes once per token group,
        // the tokens split evenly (8 as 4 + 4, 6 as 3 + 3). The first token group prefetches the next R rows
        // (gemm_pre: one after the other, a sequential stream). Spreading the next block's rows over every
        // token group's pass instead (as mat_rows_plain does), with blocks of 4, 16 or 32 rows, ran 8 tokens
        // 10-20% and 16 tokens ~30% slower in a kernel driver (bench/RESULTS.md).
        const int R = q8.rows, QT = q8.tokens;
        const int n_tg = (n + QT - 1) / QT, tg = (n + n_tg - 1) / n_tg;
        const int64_t block = n <= QT ? R : std::max<int64_t>(R, INT8_PACK_BYTES / (int64_t)W.pre_row_bytes / R * R);
        float out[64];
        const uint8_t *rp[16], *next[16];
        for (int64_t rb = r0; rb < r1; rb += block) {
            const int64_t nr = std::min(block, r1 - rb);
            for (int t0 = 0; t0 < n; t0 += tg) {
                const int T = std::min(tg, n - t0);
                for (int64_t g = 0; g < nr; g += R) {
                    for (int i = 0; i < R; i++) rp[i] = W.pre_row(rb + std::min<int64_t>(g + i, nr - 1));
                    const int64_t nx = rb + g + R;
                    const bool pf = t0 == 0 && nx < r1;
                    if (pf)
                        for (int i = 0; i < R; i++) next[i] = W.pre_row(nx + std::min<int64_t>(i, r1 - nx - 1));
                    q8.gemm_pre(rp, ng, qx.data + t0 * qx.stride, qx.stride, T, out, pf ? next : nullptr, 0, (int64_t)W.pre_row_bytes);
                    for (int t = 0; t < T; t++)
                        for (int i = 0; i < R && g + i < nr; i++) put(rb + g + i, t0 + t, out[t * R + i]);
                }
            }
        }
        return;
    }
    if (q8.tile && n <= q8.tile_tokens) {
        // Few tokens, and the set reads this dtype in place: no packing, the rows stream from
        // memory with the one after next prefetched along the way.
        float out[16];
        bool done = true;
        for (int64_t r = r0; r < r1 && done; r++) {
            const uint8_t *pf = r + 2 < r1 ? W.row(r + 2) : nullptr;
            done = q8.tile(W.dtype, W.row(r), K, qx.data, qx.stride, n, out, pf, pf ? (int64_t)W.row_bytes : 0);
            if (!done) break;
            for (int t = 0; t < n; t++) put(r, t, out[t]);
        }
        if (done) return;
        // the set has no in-place reader for this dtype (it said so on the first row): pack
    }
    const int R = q8.rows, QT = q8.tokens;
    // Rows packed at a time: for few tokens a handful (they stay in L1 and the rows stream from
    // memory, the next ones prefetched while these are packed); for many, as many as fit INT8_PACK_BYTES.
    const int64_t few = (std::max(4, R) + R - 1) / R * R;
    const int64_t block = n <= QT ? few : std::max<int64_t>(R, INT8_PACK_BYTES / wbytes / R * R);
    packed_rows_gemm(ts, W, n, r0, r1, R, QT, wbytes, block,
                     [&](const uint8_t *row, uint8_t *dst, const uint8_t *pf, int64_t pf_bytes) { q8.pack(W.dtype, row, K, dst, pf, pf_bytes); },
                     [&](const uint8_t *const *rp, int64_t t0, int T, float *out) {
                         q8.gemm(W.dtype, rp, ng, qx.data + t0 * qx.stride, qx.stride, T, out);
                     },
                     put);
}

// Y[t][r] (+)= W[r] . X[t] for rows [r0, r1), tokens [0, n), on the k-quant path: the same
// scheme as mat_rows_int8 (in place for few tokens, else rows unpacked into L2 once).
void mat_rows_kq(const KernelSet &kern, ThreadScratch &ts, const Mat &W, QActs qx, int n, const OutRows &Y, bool accumulate,
                 int64_t r0, int64_t r1) {
    const KqSet &kq = *kern.kq;
    const int64_t K = W.cols, nsb = K / KQ_BLOCK, wbytes = nsb * KQ_W_BYTES;
    const auto put = put_row(Y, accumulate);
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
    packed_rows_gemm(ts, W, n, r0, r1, R, QT, wbytes, block,
                     [&](const uint8_t *row, uint8_t *dst, const uint8_t *pf, int64_t pf_bytes) { kq.pack(W.dtype, row, K, dst, pf, pf_bytes); },
                     [&](const uint8_t *const *rp, int64_t t0, int T, float *out) {
                         kq.gemm(W.dtype, rp, nsb, qx.kq + t0 * qx.kq_stride, qx.kq_stride, T, out);
                     },
                     put);
}

// ------------------------------------------------------------------ matrix products

// Whether more tokens than tile() takes read W's rows in place (gemm_plain) rather than through a
// dequantized f32 scratch.
bool plain_in_place(const KernelSet &kern, const Mat &W) {
    return (W.dtype == SPEC_DTYPE_F16 || W.dtype == SPEC_DTYPE_BF16) && kern.gemm_plain;
}

// Y[t][r] (+)= W[r] . X[t] for F16 / BF16 rows read in place, more tokens than tile() takes: each
// group of gemm_r rows passes once per token group (the tokens split evenly into groups of at most
// gemm_t), its weights converted in registers and used by every token of the group. A weight is read
// from memory once per call (the later passes find the group's rows in cache) and no f32 copy of it is
// written. The next group's rows are prefetched during this group's passes, each pass a share of
// their bytes in the order they will be read (gemm_plain), so memory streams through every pass
// rather than only the first.
// Blocking for many tokens (a prompt): the activations of all n tokens (n x K floats: 1.5 MB at 512 tokens of 768)
// do not stay in L2, and each group of rows passing over all of them streamed them from L3 again (a batch of 8
// prompts took 13x one prompt's time instead of 8x). So the rows run in blocks of at most PLAIN_ROW_BLOCK_BYTES of
// weights, and within a block the tokens in blocks of at most PLAIN_TOKEN_BLOCK_BYTES of activations: both stay
// in L2 while every group of the row block passes over every token of the token block. Only the loop order
// changes: each output's fmas are the same, so results are bit-identical at any blocking.
const int64_t PLAIN_TOKEN_BLOCK_BYTES = env_int64("SPECULA_PLAIN_TOKEN_BLOCK_BYTES", 192 * 1024, 1, INT64_MAX);
const int64_t PLAIN_ROW_BLOCK_BYTES = env_int64("SPECULA_PLAIN_ROW_BLOCK_BYTES", 192 * 1024, 1, INT64_MAX);

template <class Put>
void mat_rows_plain(const KernelSet &kern, ThreadScratch &ts, const Mat &W, const float *X, int64_t ldx, int n, Put &&put,
                    int64_t r0, int64_t r1) {
    const int64_t K = W.cols, row_bytes = (int64_t)W.row_bytes;
    const int GR = kern.gemm_r, GT = kern.gemm_t;
    const int n_tg = (n + GT - 1) / GT, tg = (n + n_tg - 1) / n_tg; // 8 tokens, 6 a group: 4 + 4, not 6 + 2
    // a token block: whole token groups, at least one; a row block: whole row groups, at least one
    const int tb = (int)std::max<int64_t>(tg, PLAIN_TOKEN_BLOCK_BYTES / (K * (int64_t)sizeof(float)) / tg * tg);
    const int64_t rb = std::max<int64_t>(GR, PLAIN_ROW_BLOCK_BYTES / row_bytes / GR * GR);
    float out[64];
    const uint8_t *rp[8], *next[8];
    for (int64_t b0 = r0; b0 < r1; b0 += rb) {
        const int64_t b1 = std::min(r1, b0 + rb);
        for (int t_b = 0; t_b < n; t_b += tb) {
            const int t_e = std::min(n, t_b + tb);
            // the block's first token block reads its rows from memory: the next group's rows are prefetched
            // over its passes; the later token blocks find the rows in L2 (the last group prefetches the next
            // row block's first rows)
            const int passes = (t_e - t_b + tg - 1) / tg;
            for (int64_t g = b0; g < b1; g += GR) {
                const int nr = (int)std::min<int64_t>(GR, r1 - g);
                for (int i = 0; i < GR; i++) rp[i] = W.row(g + std::min(i, nr - 1));
                const int64_t g_next = g + GR, nr_next = t_b + tb >= n ? std::min<int64_t>(GR, r1 - g_next) : std::min<int64_t>(GR, b1 - g_next);
                for (int i = 0; i < GR && nr_next > 0; i++) next[i] = W.row(g_next + std::min<int64_t>(i, nr_next - 1));
                const bool prefetch = nr_next > 0 && (t_b == 0 || t_b + tb >= n);
                for (int t0 = t_b, j = 0; t0 < t_e; t0 += tg, j++) {
                    const int T = std::min(tg, t_e - t0);
                    // pass j prefetches bytes [p0, p1) of each next row (a repeated last row costs nothing more)
                    const int64_t p0 = row_bytes * j / passes, p1 = row_bytes * (j + 1) / passes;
                    kern.gemm_plain(W.dtype, rp, 0, K, K, X + t0 * ldx, ldx, T, ts.acc.data(), out, prefetch ? next : nullptr, p0, p1);
                    for (int t = 0; t < T; t++)
                        for (int i = 0; i < nr; i++) put(g + i, t0 + t, out[t * GR + i]);
                }
            }
        }
    }
}

// Y[t][r] (+)= W[r] . X[t] for rows [r0, r1), tokens [0, n); qx: X quantized, for an int8 or k-quant W.
void mat_rows(const KernelSet &kern, ThreadScratch &ts, const Mat &W, const float *X, int64_t ldx, QActs qx, int n,
              const OutRows &Y, bool accumulate, int64_t r0, int64_t r1) {
    if (uses_int8(kern, W)) {
        mat_rows_int8(kern, ts, W, qx, n, Y, accumulate, r0, r1);
        return;
    }
    if (uses_kq(kern, W)) {
        mat_rows_kq(kern, ts, W, qx, n, Y, accumulate, r0, r1);
        return;
    }
    const int64_t K = W.cols;
    const auto put = put_row(Y, accumulate);
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
    if (plain_in_place(kern, W)) {
        mat_rows_plain(kern, ts, W, X, ldx, n, put, r0, r1);
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
int64_t chunk_rows(const KernelSet &kern, const Mat &W, int n, int n_threads) {
    const int tmax = kern.tmax;
    if (n_threads <= 1 && n <= tmax) return W.rows;
    int64_t chunk = (W.rows + (int64_t)n_threads * 4 - 1) / ((int64_t)n_threads * 4);
    chunk = std::max<int64_t>(16, (chunk + 15) / 16 * 16);
    // rows read in place (F16/BF16, prepacked Q8_0: no scratch): a task may be long, so the prefetch of
    // each next group of rows (which stops at the task's end) is seldom cut short
    if (n > tmax && !plain_in_place(kern, W) && !W.pre) {
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
    OutRows Y;
    bool accumulate;
    int64_t chunk = 0, tasks = 0;
    QActs qx = {};
};

template <class F>
void for_tokens(ModelState &ms, int n, int64_t work_per_token, F &&f);

// f(task, thread) for every task: on the pool, or on the caller alone (thread 0) when the call runs there.
template <class F>
void run_tasks(ModelState &ms, int n_tasks, F &&f) {
    if (ms.on_caller) {
        for (int t = 0; t < n_tasks; t++) f(t, 0);
    } else {
        ms.pool->parallel_for(n_tasks, f);
    }
}

// The threads a call's products split over.
int call_threads(const ModelState &ms) { return ms.on_caller ? 1 : ms.pool->size(); }

// X's n rows (K each) quantized into q in the form a product with W needs, if it needs one that q
// does not hold yet (into slot `slot` of the model's buffers).
void quantize_acts(ModelState &ms, int slot, const float *X, int64_t ldx, int n, const Mat &W, QActs &q) {
    const int64_t K = W.cols;
    if (uses_int8(*ms.ks, W) && !q.data) {
        std::vector<uint8_t> &buf = ms.qx[slot];
        q.stride = int8_groups(K) * INT8_X_GROUP_BYTES;
        grow_exact(buf, (size_t)(n * q.stride));
        q.data = buf.data();
        const auto quantize = ms.ks->int8->quantize ? ms.ks->int8->quantize : quantize_acts_row;
        for_tokens(ms, n, K, [&](int j, int) { quantize(X + j * ldx, K, buf.data() + j * q.stride); });
    }
    if (uses_kq(*ms.ks, W) && !q.kq) {
        std::vector<uint8_t> &buf = ms.qk[slot];
        q.kq_stride = K / KQ_BLOCK * KQ_X_BYTES;
        grow_exact(buf, (size_t)(n * q.kq_stride));
        q.kq = buf.data();
        for_tokens(ms, n, K, [&](int j, int) { kq_quantize_row(X + j * ldx, K, buf.data() + j * q.kq_stride); });
    }
}

// Runs up to 3 products (sharing the token count n) as one parallel job.
void matmul(ModelState &ms, Seg *segs, int n_segs, int n) {
    const int nth = call_threads(ms);
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
        segs[s].chunk = chunk_rows(*ms.ks, *segs[s].W, n, nth);
        segs[s].tasks = (segs[s].W->rows + segs[s].chunk - 1) / segs[s].chunk;
        total += segs[s].tasks;
    }
    auto body = [&](int task, int thread) {
        int s = 0;
        int64_t t = task;
        while (t >= segs[s].tasks) t -= segs[s++].tasks;
        const Seg &g = segs[s];
        const int64_t r0 = t * g.chunk, r1 = std::min(g.W->rows, r0 + g.chunk);
        mat_rows(*ms.ks, ms.scratch[thread], *g.W, g.X, g.ldx, g.qx, n, g.Y, g.accumulate, r0, r1);
    };
    run_tasks(ms, (int)total, body);
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
        run_tasks(ms, n, f);
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
//                   from one anonymous huge-page copy, see copy_weights_to_huge_pages); Q8_0 matrices
//                   prepacked for the int8 path (prepack_q8_weights; SPECULA_CPU_PREPACK=0: not)
//   place_vectors   norms and biases converted to f32 once; the rope frequencies
// (the cuda backend's check_model has nothing to refuse here, and prepare_scratch is a forward
// stage here: the scratch grows with the call and the thread count).

void choose_kernels(ModelState &ms) { ms.ks = select_kernels(); }

// A weight read in place as a matrix (empty when the weight is absent).
Mat weight_mat(const spec_weight &w) {
    Mat M;
    if (!w.data) return M;
    M.data = (const uint8_t *)w.data;
    M.dtype = w.dtype;
    M.rows = w.rows;
    M.cols = w.cols;
    M.row_bytes = dtype_row_bytes(w.dtype, w.cols);
    return M;
}

// Every matrix as the forward reads it, before prepack_q8_weights and copy_weights_to_huge_pages move any.
void gather_matrices(const spec_model *m, ModelState &ms) {
    const spec_model_config &c = m->config;
    auto mat = [&](int role, int layer) {
        Mat M = weight_mat(m->w(role, layer));
        ms.max_cols = std::max(ms.max_cols, M.cols);
        return M;
    };
    ms.embd = mat(SPEC_W_TOKEN_EMBD, 0);
    ms.output = mat(SPEC_W_OUTPUT, 0);
    if (m->eagle) {
        ms.eagle = true;
        ms.fc = weight_mat(m->eagle_fc);
        ms.max_cols = std::max(ms.max_cols, ms.fc.cols);
    }
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
}

void place_matrices(spec_model *m, ModelState &ms) {
    gather_matrices(m, ms);
    if (ms.eagle) {
        // the target's LM head: the target's placed form or in place, never a copy of the layer's own (hidden meanwhile)
        borrow_placed_head(ms);
        const Mat head = ms.output;
        ms.output = Mat{};
        prepack_q8_weights(ms);
        copy_weights_to_huge_pages(ms);
        ms.output = head;
        return;
    }
    const uint8_t *head_source = ms.output.data;
    prepack_q8_weights(ms); // first: the matrices it prepacks are then never read in place, so not copied
    copy_weights_to_huge_pages(ms);
    offer_placed_head(ms, head_source);
}

// A vector weight (a norm or bias) as f32.
std::vector<float> f32_vector(const spec_weight &w) {
    std::vector<float> v((size_t)w.cols);
    const uint16_t *h = (const uint16_t *)w.data;
    for (int64_t i = 0; i < w.cols; i++) {
        if (w.dtype == SPEC_DTYPE_F32) std::memcpy(&v[i], (const float *)w.data + i, 4);
        else if (w.dtype == SPEC_DTYPE_F16) v[i] = f16_to_f32(load_u16(h + i));
        else v[i] = bf16_to_f32(load_u16(h + i));
    }
    return v;
}

void place_vectors(spec_model *m, ModelState &ms) {
    const spec_model_config &c = m->config;
    auto vec = [&](int role, int layer) -> const float * {
        const spec_weight &w = m->w(role, layer);
        if (!w.data) return nullptr;
        ms.vectors.push_back(f32_vector(w));
        return ms.vectors.back().data();
    };
    ms.output_norm = vec(SPEC_W_OUTPUT_NORM, 0);
    if (m->eagle && m->eagle_fc_bias.data) {
        ms.vectors.push_back(f32_vector(m->eagle_fc_bias));
        ms.fc_bias = ms.vectors.back().data();
    }
    for (int l = 0; l < c.n_layer; l++) {
        Layer &L = ms.layers[l];
        L.attn_norm = vec(SPEC_W_ATTN_NORM, l);
        L.ffn_norm = vec(SPEC_W_FFN_NORM, l);
        L.bq = vec(SPEC_W_ATTN_Q_BIAS, l);
        L.bk = vec(SPEC_W_ATTN_K_BIAS, l);
        L.bv = vec(SPEC_W_ATTN_V_BIAS, l);
        L.q_norm = vec(SPEC_W_ATTN_Q_NORM, l);
        L.k_norm = vec(SPEC_W_ATTN_K_NORM, l);
        L.post_attn_norm = vec(SPEC_W_ATTN_POST_NORM, l);
        L.post_ffn_norm = vec(SPEC_W_FFN_POST_NORM, l);
        L.local = mm::is_local_layer(c, l);
    }
    const int rd = mm::rope_dims(c);
    ms.inv_freq.resize(rd / 2);
    for (int i = 0; i < rd / 2; i++) ms.inv_freq[i] = mm::rope_inv_freq(c, i);
    ms.pos_scale = mm::rope_pos_scale(c);
    ms.gemma = c.arch == SPEC_ARCH_GEMMA3;
    ms.local_rope = c.sliding_window > 0 && c.rope_theta_local > 0.0f;
    if (ms.local_rope) {
        const spec_model_config lc = mm::local_rope_config(c);
        ms.inv_freq_local.resize(rd / 2);
        for (int i = 0; i < rd / 2; i++) ms.inv_freq_local[i] = mm::rope_inv_freq(lc, i);
        ms.pos_scale_local = mm::rope_pos_scale(lc);
    }
}

// ------------------------------------------------------------------ forward, in stages
// The stages carry the names of the cuda backend's (native/cuda/model.cu):
//   key_sets            every token's keys (here as runs of cache slots), per sequence
//   prepare_scratch     the worker pool and the scratch, grown to this call (cuda: fixed, at finalize)
//   forward_slice       one slice of up to MAX_UBATCH rows:
//     embed               embedding rows and the rope table of each row
//     attention_block     per layer: rmsnorm, q/k/v, biases, rope, KV store, attention, + Wo
//     ffn_block           per layer: rmsnorm, silu(gate) * up, + down
//     write_exit_outputs  after a sequence's exit layer: its hidden rows and/or their logits
//     write_logits        the sequences' logits of this slice (all rows, or a sequence's last)
//   output_head         rmsnorm * output_norm, then the LM head, over some rows (both of the above)
//
// Batches. A call runs one or more sequences (spec_forward_batch), each over its own cache. Their
// rows are concatenated, so every matrix product reads its weights once for all of them; rows of
// the sequences that run the most layers come first, so that the rows still running at any layer
// are a prefix of every slice (a stop_at_exit sequence's rows drop out after its exit layer).
// Every row's arithmetic depends on that row alone (see the top of this file), so a sequence's
// outputs are bit-identical whether it runs alone or in a batch, at any place in it.

// One sequence of a forward call.
struct SeqRun {
    KvState *st = nullptr;
    const spec_forward_args *a = nullptr;
    int32_t n = 0, C = 0;     // its tokens, its committed length
    int32_t P = 0;            // ABI 0.10, an EAGLE extension: the pending tokens before its own (their slots follow C)
    int32_t row0 = 0;         // its first row among the call's rows
    int32_t n_run = 0;        // the layers its rows run
    const float *const *features = nullptr; // ABI 0.9, an EAGLE layer's call: row i's feature (n_embd floats)
    float *logits = nullptr, *exit_hidden = nullptr, *exit_logits = nullptr;
    float *final_hidden = nullptr; // ABI 0.8: its rows after the final norm, what the LM head reads
};

// One forward call's numbers and buffers, shared by its stages.
struct Pass {
    ModelState &ms;
    const spec_model_config &c;
    const KernelSet &kern;
    const int nth; // the pool's threads
    const std::vector<SeqRun> &seqs; // in row order
    const std::vector<int32_t> &row_seq; // the call's row -> its index in seqs
    const int32_t E, D, Hq, Hkv, F, V, G, QD, KD, RD;
    const bool neox;
    const float scale;
    const uint64_t es; // bytes of one kv element

    Pass(spec_model *m, const std::vector<SeqRun> &sequences, const std::vector<int32_t> &rows, int n_threads)
        : ms(*(ModelState *)m->backend_state), c(m->config), kern(*ms.ks), nth(n_threads), seqs(sequences), row_seq(rows),
          E(c.n_embd), D(c.head_dim), Hq(c.n_head), Hkv(c.n_head_kv), F(c.n_ff), V(c.n_vocab), G(Hq / Hkv), QD(Hq * D),
          KD(Hkv * D), RD(c.rope_dims), neox(c.rope_style == SPEC_ROPE_NEOX), scale(mm::attention_scale(c)),
          es(dtype_size(c.kv_dtype)) {}

    const SeqRun &seq_of(int32_t row) const { return seqs[(size_t)row_seq[(size_t)row]]; }
};

// Adds slot to a key set held as count runs at data[2 * first ...] (slot, length pairs): it extends the
// last run when it follows it, else starts a run.
void append_slot(std::vector<int32_t> &data, int32_t first, int32_t &count, int32_t slot) {
    if (count > 0 && data[2 * (first + count - 1)] + data[2 * (first + count - 1) + 1] == slot) {
        data[2 * (first + count - 1) + 1]++;
    } else {
        data.push_back(slot);
        data.push_back(1);
        count++;
    }
}

// With a sliding window: each token's keys for local layers, the slots of its key set whose
// position is above its own minus the window, in the same order (so that a token's local keys, like
// its global ones, do not depend on where in a tree it sits).
void local_key_sets(KvState &st, const spec_forward_args &a, int32_t window) {
    const int32_t n = a.n_tokens;
    st.lrun_first.resize(n);
    st.lrun_count.resize(n);
    st.ln_keys.resize(n);
    st.lrun_data.clear();
    for (int32_t i = 0; i < n; i++) {
        const int64_t lowest = (int64_t)a.positions[i] - window; // keys at positions > lowest
        const int32_t first = (int32_t)(st.lrun_data.size() / 2);
        int32_t count = 0, keys = 0;
        for (int32_t r = 0; r < st.run_count[i]; r++) {
            const int32_t s0 = st.run_data[2 * (st.run_first[i] + r)], len = st.run_data[2 * (st.run_first[i] + r) + 1];
            for (int32_t s = s0; s < s0 + len; s++) {
                if (st.slot_pos[s] <= lowest) continue;
                keys++;
                append_slot(st.lrun_data, first, count, s);
            }
        }
        st.lrun_first[i] = first;
        st.lrun_count[i] = count;
        st.ln_keys[i] = keys;
    }
}

// Every token's keys: the committed prefix, its ancestors among the new tokens, itself. Returns
// the most keys any token has. P > 0 (an EAGLE extension, ABI 0.10): the new tokens follow P pending
// ones whose key sets the last call left here; token i is pending token P + i and its parent indexes
// the whole pending tree, so a token's keys are the slots they would be in one call over that tree.
int32_t key_sets(KvState &st, const spec_forward_args &a, int32_t C, int32_t P = 0) {
    const int32_t n = a.n_tokens;
    st.run_first.resize(P + n);
    st.run_count.resize(P + n);
    st.n_keys.resize(P + n);
    if (P == 0) st.run_data.clear();
    int32_t max_keys = 0;
    for (int32_t i = 0; i < n; i++) st.slot_pos[C + P + i] = a.positions[i];
    for (int32_t t = 0; t < n; t++) {
        const int32_t i = P + t; // the token's index in the pending tree
        const int32_t p = a.parents[t];
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
        append_slot(st.run_data, first, count, C + i);
        st.run_first[i] = first;
        st.run_count[i] = count;
        max_keys = std::max(max_keys, st.n_keys[i]);
    }
    return max_keys;
}

// A model's call holds its model (ms.mu, its scratch) and then the context's pool (thread_pool.hpp),
// in that order everywhere, for the whole call: the pool's thread count, which sizes the per-thread
// scratch and the split of every product, stays the same from the call's first job to its last.
class ModelLock {
public:
    ModelLock(spec_model *m, ModelState &ms) : ms_(ms), model_(ms.mu), pool_(context_pool(m->ctx)) { ms.pool = &pool_.pool(); }
    ~ModelLock() { ms_.pool = nullptr; }
    ModelLock(const ModelLock &) = delete;
    ModelLock &operator=(const ModelLock &) = delete;

private:
    ModelState &ms_;
    std::lock_guard<std::mutex> model_;
    ContextPool::Lease pool_;
};

// Per thread scratch of the held pool (ModelLock) for products of up to max_cols columns and
// attention over max_keys keys in groups of G. Returns the pool's thread count.
int prepare_threads(spec_model *m, ModelState &ms, int64_t max_cols, int32_t max_keys, int32_t G) {
    (void)m;
    const KernelSet &kern = *ms.ks;
    const int nth = ms.pool->size();
    ms.scratch.resize(nth);
    for (auto &s : ms.scratch) {
        const size_t deq = (size_t)std::max<int64_t>(16 * max_cols, MAX_CHUNK_FLOATS); // see chunk_rows
        grow_exact(s.deq, deq);
        const size_t acc = (size_t)(MAX_CHUNK_ROWS / kern.gemm_r + 1) * kern.gemm_r * kern.gemm_t * kern.lanes;
        grow_exact(s.acc, acc);
        const size_t need = (size_t)G * ((size_t)max_keys + 1);
        grow_exact(s.scores, need);
        const size_t packed = (size_t)std::max<int64_t>({INT8_PACK_BYTES, 16 * int8_groups(max_cols) * INT8_W_GROUP_BYTES,
                                                         16 * (max_cols / KQ_BLOCK) * KQ_W_BYTES});
        if (kern.int8 || kern.kq) grow_exact(s.packed, packed); // mat_rows_int8's / mat_rows_kq's most
    }
    return nth;
}

// The pool and per thread scratch, then activations for one slice of the call's n rows. Returns
// the pool's thread count.
int prepare_scratch(spec_model *m, ModelState &ms, int32_t n, int32_t max_keys) {
    const spec_model_config &c = m->config;
    const int32_t E = c.n_embd, D = c.head_dim, Hq = c.n_head, Hkv = c.n_head_kv, F = c.n_ff;
    const int32_t G = Hq / Hkv, QD = Hq * D, KD = Hkv * D, RD = c.rope_dims;
    const int nth = prepare_threads(m, ms, ms.max_cols, max_keys, G);
    const int32_t rows = std::min(n, MAX_UBATCH);
    if (ms.rows < rows) {
        // exactly the rows this slice needs: at most model_scratch_bytes' slice of MAX_UBATCH
        grow_exact(ms.x, (size_t)rows * E);
        grow_exact(ms.xn, (size_t)rows * E);
        grow_exact(ms.q, (size_t)rows * QD);
        grow_exact(ms.att, (size_t)rows * QD);
        grow_exact(ms.k, (size_t)rows * KD);
        grow_exact(ms.v, (size_t)rows * KD);
        grow_exact(ms.g, (size_t)rows * F);
        grow_exact(ms.u, (size_t)rows * F);
        grow_exact(ms.rope, (size_t)rows * RD);
        if (ms.local_rope) grow_exact(ms.rope_local, (size_t)rows * RD);
        grow_exact(ms.head_rows, (size_t)rows);
        grow_exact(ms.head_out, (size_t)rows);
        ms.rows = rows;
    }
    if (ms.eagle) grow_exact(ms.cat, (size_t)rows * 2 * E); // at most eagle_scratch_bytes
    return nth;
}

// Rows [u0, u0 + nb): their embedding rows into x, their rope (cos, sin) tables. An EAGLE layer's rows are
// x = fc [embd(t); feature] (+ fc_bias) instead.
void embed(const Pass &p, int32_t u0, int32_t nb) {
    float *x = p.ms.x.data();
    for (int32_t j = 0; j < nb; j++) {
        const SeqRun &sq = p.seq_of(u0 + j);
        const int32_t i = u0 + j - sq.row0;
        const int32_t tok = sq.a->tokens[i];
        float *xj = p.ms.eagle ? p.ms.cat.data() + (int64_t)j * 2 * p.E : x + (int64_t)j * p.E;
        p.kern.dequant(p.ms.embd.dtype, p.ms.embd.row(tok), p.E, xj);
        if (p.ms.eagle) std::memcpy(xj + p.E, sq.features[i], sizeof(float) * (size_t)p.E);
        if (p.ms.gemma) { // gemma scales its embeddings by sqrt(n_embd), rounded to float first as llama.cpp does
            const float s = std::sqrt((float)p.E);
            for (int32_t e = 0; e < p.E; e++) xj[e] *= s;
        }
        float *cs = p.ms.rope.data() + (int64_t)j * p.RD;
        for (int32_t r = 0; r < p.RD / 2; r++) {
            const double ang = mm::rope_angle(sq.a->positions[i], p.ms.pos_scale, p.ms.inv_freq[r]);
            cs[2 * r] = (float)std::cos(ang);
            cs[2 * r + 1] = (float)std::sin(ang);
        }
        if (p.ms.local_rope) {
            float *lcs = p.ms.rope_local.data() + (int64_t)j * p.RD;
            for (int32_t r = 0; r < p.RD / 2; r++) {
                const double ang = mm::rope_angle(sq.a->positions[i], p.ms.pos_scale_local, p.ms.inv_freq_local[r]);
                lcs[2 * r] = (float)std::cos(ang);
                lcs[2 * r + 1] = (float)std::sin(ang);
            }
        }
    }
    if (p.ms.eagle) {
        Seg s{&p.ms.fc, p.ms.cat.data(), 2 * (int64_t)p.E, OutRows{x, p.E}, false};
        matmul(p.ms, &s, 1, nb);
        if (p.ms.fc_bias)
            for_tokens(p.ms, nb, p.E, [&](int j, int) {
                float *xj = x + (int64_t)j * p.E;
                for (int32_t e = 0; e < p.E; e++) xj[e] += p.ms.fc_bias[e];
            });
    }
}

// The final norm of row x into out (rmsnorm * output_norm), or a copy where there is none (an EAGLE layer's).
void final_norm(const Pass &p, const float *x, float *out) {
    if (p.ms.output_norm) rmsnorm(x, p.ms.output_norm, out, p.E, p.c.rms_eps);
    else std::memcpy(out, x, sizeof(float) * (size_t)p.E);
}

// The LM head over rmsnorm(x) * output_norm of the slice's rows ms.head_rows[0..count), row k's
// logits into ms.head_out[k].
void output_head(const Pass &p, int32_t count) {
    if (count == 0) return;
    const int32_t E = p.E;
    const float *x = p.ms.x.data();
    float *xn = p.ms.xn.data();
    const int32_t *rows = p.ms.head_rows.data();
    for_tokens(p.ms, count, E, [&](int k, int) { final_norm(p, x + (int64_t)rows[k] * E, xn + (int64_t)k * E); });
    Seg s{&p.ms.output, xn, E, OutRows{nullptr, 0, p.ms.head_out.data()}, false};
    matmul(p.ms, &s, 1, count);
}

// x += W in (the block's output), or with a post-block norm (gemma3) x += rmsnorm(W in) * post_norm.
void add_block_output(const Pass &p, const Mat &W, const float *in, int64_t ld_in, const float *post_norm, int32_t nb) {
    float *x = p.ms.x.data();
    const int32_t E = p.E;
    if (!post_norm) {
        Seg o{&W, in, ld_in, OutRows{x, E}, true};
        matmul(p.ms, &o, 1, nb);
        return;
    }
    float *y = p.ms.xn.data(); // free here: the block's normalized input is used up
    Seg o{&W, in, ld_in, OutRows{y, E}, false};
    matmul(p.ms, &o, 1, nb);
    for_tokens(p.ms, nb, E, [&](int j, int) {
        float *yj = y + (int64_t)j * E, *xj = x + (int64_t)j * E;
        rmsnorm(yj, post_norm, yj, E, p.c.rms_eps);
        for (int32_t e = 0; e < E; e++) xj[e] += yj[e];
    });
}

// Layer l's attention for the slice's first nb rows: x += Wo attention(rope(W{q,k,v} rmsnorm(x))),
// storing each row's K and V in its sequence's cache.
void attention_block(const Pass &p, const Layer &L, int32_t l, int32_t u0, int32_t nb) {
    ModelState &ms = p.ms;
    const KernelSet &kern = p.kern;
    const int32_t E = p.E, D = p.D, Hq = p.Hq, Hkv = p.Hkv, G = p.G, QD = p.QD, KD = p.KD, RD = p.RD;
    float *x = ms.x.data(), *xn = ms.xn.data(), *q = ms.q.data(), *kk = ms.k.data(), *vv = ms.v.data();
    float *att = ms.att.data();

    // An EAGLE layer's first layer has no attention norm: it reads x as it is.
    if (L.attn_norm) for_tokens(ms, nb, E, [&](int j, int) { rmsnorm(x + (int64_t)j * E, L.attn_norm, xn + (int64_t)j * E, E, p.c.rms_eps); });
    const float *in = L.attn_norm ? xn : x;
    Seg qkv[3] = {{&L.wq, in, E, OutRows{q, QD}, false}, {&L.wk, in, E, OutRows{kk, KD}, false}, {&L.wv, in, E, OutRows{vv, KD}, false}};
    matmul(ms, qkv, 3, nb);

    for_tokens(ms, nb, QD + 2 * KD, [&](int j, int) {
        float *qj = q + (int64_t)j * QD, *kj = kk + (int64_t)j * KD, *vj = vv + (int64_t)j * KD;
        if (L.bq) {
            for (int32_t i = 0; i < QD; i++) qj[i] += L.bq[i];
            for (int32_t i = 0; i < KD; i++) kj[i] += L.bk[i];
            for (int32_t i = 0; i < KD; i++) vj[i] += L.bv[i];
        }
        if (L.q_norm) { // per-head RMSNorm of q and k before rope (qwen3, gemma3), in place
            for (int32_t h = 0; h < Hq; h++) rmsnorm(qj + (int64_t)h * D, L.q_norm, qj + (int64_t)h * D, D, p.c.rms_eps);
            for (int32_t h = 0; h < Hkv; h++) rmsnorm(kj + (int64_t)h * D, L.k_norm, kj + (int64_t)h * D, D, p.c.rms_eps);
        }
        const float *cs = (L.local && ms.local_rope ? ms.rope_local.data() : ms.rope.data()) + (int64_t)j * RD;
        rope(qj, Hq, D, RD, p.neox, cs);
        rope(kj, Hkv, D, RD, p.neox, cs);
        const SeqRun &sq = p.seq_of(u0 + j);
        const KvState &st = *sq.st;
        const uint64_t slot = (uint64_t)(sq.C + sq.P + u0 + j - sq.row0);
        kern.store_kv(st.kcache(l) + slot * st.slot_bytes, kj, KD, p.c.kv_dtype);
        kern.store_kv(st.vcache(l) + slot * st.slot_bytes, vj, KD, p.c.kv_dtype);
    });

    auto attn = [&](int task, int thread) {
        const int32_t j = task / Hkv, h = task % Hkv;
        const SeqRun &sq = p.seq_of(u0 + j);
        const KvState &st = *sq.st;
        const int32_t i = sq.P + u0 + j - sq.row0; // its key sets' index
        AttnParams ap;
        ap.q = q + (int64_t)j * QD + (int64_t)h * G * D;
        ap.out = att + (int64_t)j * QD + (int64_t)h * G * D;
        ap.G = G;
        ap.D = D;
        ap.kbase = st.kcache(l) + (uint64_t)h * D * p.es;
        ap.vbase = st.vcache(l) + (uint64_t)h * D * p.es;
        ap.slot_bytes = (int64_t)st.slot_bytes;
        ap.kv_dtype = p.c.kv_dtype;
        if (L.local) {
            ap.runs = st.lrun_data.data() + 2 * (int64_t)st.lrun_first[i];
            ap.n_runs = st.lrun_count[i];
            ap.n_keys = st.ln_keys[i];
        } else {
            ap.runs = st.run_data.data() + 2 * (int64_t)st.run_first[i];
            ap.n_runs = st.run_count[i];
            ap.n_keys = st.n_keys[i];
        }
        ap.scale = p.scale;
        ap.scores = ms.scratch[thread].scores.data();
        kern.attention(ap);
    };
    run_tasks(ms, nb * Hkv, attn);

    add_block_output(p, L.wo, att, QD, L.post_attn_norm, nb);
}

// Layer l's feed-forward for the slice's first nb rows: x += Wdown(silu(Wgate n) * Wup n), n = rmsnorm(x).
void ffn_block(const Pass &p, const Layer &L, int32_t nb) {
    ModelState &ms = p.ms;
    const KernelSet &kern = p.kern;
    const int32_t E = p.E, F = p.F;
    float *x = ms.x.data(), *xn = ms.xn.data(), *g = ms.g.data(), *u = ms.u.data();

    for_tokens(ms, nb, E, [&](int j, int) { rmsnorm(x + (int64_t)j * E, L.ffn_norm, xn + (int64_t)j * E, E, p.c.rms_eps); });
    {
        const int64_t chunk = chunk_rows(kern, L.gate, nb, p.nth);
        const int tasks = (int)((F + chunk - 1) / chunk);
        QActs qxn;
        quantize_acts(ms, 0, xn, E, nb, L.gate, qxn);
        quantize_acts(ms, 0, xn, E, nb, L.up, qxn);
        run_tasks(ms, tasks, [&](int task, int thread) {
            const int64_t r0 = task * chunk, r1 = std::min<int64_t>(F, r0 + chunk);
            mat_rows(kern, ms.scratch[thread], L.gate, xn, E, qxn, nb, OutRows{g, F}, false, r0, r1);
            mat_rows(kern, ms.scratch[thread], L.up, xn, E, qxn, nb, OutRows{u, F}, false, r0, r1);
            if (ms.gemma) {
                for (int32_t j = 0; j < nb; j++)
                    for (int64_t r = r0; r < r1; r++) g[(int64_t)j * F + r] = mm::gelu_tanh(g[(int64_t)j * F + r]) * u[(int64_t)j * F + r];
            } else {
                for (int32_t j = 0; j < nb; j++) kern.silu_mul(g + (int64_t)j * F + r0, u + (int64_t)j * F + r0, r1 - r0);
            }
        });
    }
    add_block_output(p, L.down, g, F, L.post_ffn_norm, nb);
}

// The slice's rows [j0, j1) of sequence sq (relative to the slice at u0).
void rows_in_slice(const SeqRun &sq, int32_t u0, int32_t nb, int32_t &j0, int32_t &j1) {
    j0 = std::max(sq.row0, u0) - u0;
    j1 = std::min(sq.row0 + sq.n, u0 + nb) - u0;
}

// After layer `layer`: the hidden rows and/or the logits of the sequences whose exit layer it is.
void write_exit_outputs(const Pass &p, int32_t layer, int32_t u0, int32_t nb) {
    const float *x = p.ms.x.data();
    int32_t count = 0;
    for (int32_t s = p.row_seq[(size_t)u0]; s < (int32_t)p.seqs.size() && p.seqs[(size_t)s].row0 < u0 + nb; s++) {
        const SeqRun &sq = p.seqs[(size_t)s];
        if (sq.a->exit_layer != layer) continue;
        int32_t j0, j1;
        rows_in_slice(sq, u0, nb, j0, j1);
        const int32_t i0 = u0 + j0 - sq.row0; // the sequence's own index of row j0
        if (sq.exit_hidden)
            std::memcpy(sq.exit_hidden + (int64_t)i0 * p.E, x + (int64_t)j0 * p.E, sizeof(float) * (size_t)(j1 - j0) * p.E);
        if (sq.exit_logits)
            for (int32_t j = j0; j < j1; j++) {
                p.ms.head_rows[(size_t)count] = j;
                p.ms.head_out[(size_t)count++] = sq.exit_logits + (int64_t)(i0 + j - j0) * p.V;
            }
    }
    output_head(p, count);
}

// The sequences' logits from this slice: all their rows (LOGITS_ALL), or a sequence's last row
// when it lies in this slice (LOGITS_LAST). Exit logits after the last layer are the same numbers.
void write_logits(const Pass &p, int32_t u0, int32_t nb) {
    const int32_t V = p.V;
    int32_t count = 0;
    for (int32_t s = p.row_seq[(size_t)u0]; s < (int32_t)p.seqs.size() && p.seqs[(size_t)s].row0 < u0 + nb; s++) {
        const SeqRun &sq = p.seqs[(size_t)s];
        const spec_forward_args &a = *sq.a;
        if (a.stop_at_exit) continue;
        if (sq.final_hidden) { // ABI 0.8: the rows after the final norm, the same numbers output_head computes
            int32_t f0, f1;
            rows_in_slice(sq, u0, nb, f0, f1);
            const float *x = p.ms.x.data();
            float *dst = sq.final_hidden + (int64_t)(u0 + f0 - sq.row0) * p.E;
            for_tokens(p.ms, f1 - f0, p.E, [&](int j, int) { final_norm(p, x + (int64_t)(f0 + j) * p.E, dst + (int64_t)j * p.E); });
        }
        if (a.logits_mode == SPEC_LOGITS_NONE) continue;
        const bool reuse = a.exit_layer == p.c.n_layer && sq.exit_logits; // the same numbers, already computed
        int32_t j0, j1;
        rows_in_slice(sq, u0, nb, j0, j1);
        if (a.logits_mode == SPEC_LOGITS_LAST) {
            if (sq.row0 + sq.n != u0 + j1) continue; // its last row is in a later slice
            j0 = j1 - 1;
        }
        for (int32_t j = j0; j < j1; j++) {
            const int32_t i = u0 + j - sq.row0;
            float *dst = sq.logits + (a.logits_mode == SPEC_LOGITS_ALL ? (int64_t)i * V : 0);
            if (reuse) {
                std::memcpy(dst, sq.exit_logits + (int64_t)i * V, sizeof(float) * (size_t)V);
            } else {
                p.ms.head_rows[(size_t)count] = j;
                p.ms.head_out[(size_t)count++] = dst;
            }
        }
    }
    output_head(p, count);
}

// Rows [u0, u0 + nb) through the layers: each row through its sequence's n_run layers.
void forward_slice(const Pass &p, int32_t u0, int32_t nb) {
    embed(p, u0, nb);
    const int32_t n_run = p.seq_of(u0).n_run; // the most of the slice: rows come in decreasing n_run
    int32_t active = nb;
    for (int32_t l = 0; l < n_run; l++) {
        while (p.seq_of(u0 + active - 1).n_run <= l) active--; // a prefix: rows of stopped sequences come last
        const Layer &L = p.ms.layers[l];
        attention_block(p, L, l, u0, active);
        ffn_block(p, L, active);
        write_exit_outputs(p, l + 1, u0, active);
    }
    write_logits(p, u0, nb);
}

// An EAGLE layer's calls of at most this many rows run on the caller alone (ModelState::on_caller): a drafter
// grows its tree a few rows per call, each product a few hundred thousand multiply-adds on the demo, and on the
// caller such a call passes no pool barriers and leaves no worker spinning (bench/RESULTS.md, "EAGLE drafting cost
// below the draft model's"). SPECULA_EAGLE_CALLER_ROWS overrides it (0: always the pool).
int32_t eagle_caller_rows() {
    static const int32_t rows = (int32_t)env_int64("SPECULA_EAGLE_CALLER_ROWS", 8, 0, INT32_MAX);
    return rows;
}

// features: null, or (an EAGLE layer's call) per sequence its rows' features.
Status forward_impl(spec_model *m, int32_t n_seq, spec_kv *const *kvs, const spec_forward_args *args,
                    const float *const *const *features, Failure &err, int32_t pending_base = 0) {
    ModelState &ms = *(ModelState *)m->backend_state;
    const spec_model_config &c = m->config;
    ModelLock lock(m, ms);

    // Row order: the sequences that run more layers first (stable: otherwise the call's order).
    std::vector<int32_t> order((size_t)n_seq);
    for (int32_t i = 0; i < n_seq; i++) order[(size_t)i] = i;
    auto n_run = [&](int32_t i) { return args[i].stop_at_exit ? args[i].exit_layer : c.n_layer; };
    std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) { return n_run(x) > n_run(y); });
    std::vector<SeqRun> seqs((size_t)n_seq);
    int32_t rows = 0, max_keys = 0;
    for (int32_t k = 0; k < n_seq; k++) {
        const int32_t i = order[(size_t)k];
        const spec_forward_args &a = args[i];
        SeqRun &sq = seqs[(size_t)k];
        sq.st = (KvState *)kvs[i]->backend_state;
        sq.a = &a;
        sq.n = a.n_tokens;
        sq.C = kvs[i]->committed;
        sq.P = pending_base; // an extension is one EAGLE sequence's call
        sq.row0 = rows;
        sq.n_run = n_run(i);
        sq.features = features ? features[i] : nullptr;
        sq.logits = a.logits_mode != SPEC_LOGITS_NONE ? (float *)a.logits->ptr : nullptr;
        sq.exit_hidden = a.exit_hidden ? (float *)a.exit_hidden->ptr : nullptr;
        sq.exit_logits = a.exit_logits ? (float *)a.exit_logits->ptr : nullptr;
        sq.final_hidden = a.final_hidden ? (float *)a.final_hidden->ptr : nullptr;
        rows += sq.n;
        max_keys = std::max(max_keys, key_sets(*sq.st, a, sq.C, sq.P));
        if (c.sliding_window > 0) local_key_sets(*sq.st, a, c.sliding_window);
    }
    std::vector<int32_t> row_seq((size_t)rows);
    for (int32_t k = 0; k < n_seq; k++)
        for (int32_t j = 0; j < seqs[(size_t)k].n; j++) row_seq[(size_t)(seqs[(size_t)k].row0 + j)] = k;

    prepare_scratch(m, ms, rows, max_keys);
    ms.on_caller = ms.eagle && rows <= eagle_caller_rows();
    const Pass p(m, seqs, row_seq, call_threads(ms));
    for (int32_t u0 = 0; u0 < rows; u0 += MAX_UBATCH) forward_slice(p, u0, std::min(MAX_UBATCH, rows - u0));
    for (const SeqRun &sq : seqs) sq.st->pending_layers = sq.n_run;
    return SPEC_OK;
}

// ------------------------------------------------------------------ draft heads (ABI 0.8)
// Medusa / Hydra heads (specula.h, spec_heads) on the target's kernels, pool and per-thread scratch,
// under the target's lock: a head's products are the model's own matmul over Mats read in place.

struct HeadBlock {
    Mat w, res; // res.data null: the identity
    const float *bias = nullptr, *res_bias = nullptr;
};

struct HeadsState {
    std::vector<std::vector<HeadBlock>> blocks; // [head][block]
    std::vector<Mat> proj;
    std::vector<const float *> proj_bias;
    std::vector<std::vector<float>> vectors;
    int64_t max_in = 0;
    std::vector<float> x, y, r; // [rows][max_in], [rows][E], [rows][E]
};

Status heads_finalize_impl(spec_heads *hd, Failure &err) {
    (void)err;
    std::unique_ptr<HeadsState> hs(new HeadsState());
    const spec_heads_config &c = hd->config;
    auto vec = [&](const spec_weight &w) -> const float * {
        if (!w.data) return nullptr;
        hs->vectors.push_back(f32_vector(w));
        return hs->vectors.back().data();
    };
    hs->vectors.reserve((size_t)c.n_heads * (2 * c.n_blocks + 1)); // pointers into it stay valid
    hs->blocks.resize(c.n_heads);
    for (int32_t h = 0; h < c.n_heads; h++) {
        for (int32_t b = 0; b < c.n_blocks; b++) {
            HeadBlock B;
            B.w = weight_mat(hd->w(SPEC_HW_BLOCK, h, b));
            B.res = weight_mat(hd->w(SPEC_HW_BLOCK_RES, h, b));
            B.bias = vec(hd->w(SPEC_HW_BLOCK_BIAS, h, b));
            B.res_bias = vec(hd->w(SPEC_HW_BLOCK_RES_BIAS, h, b));
            hs->max_in = std::max(hs->max_in, B.w.cols);
            hs->blocks[h].push_back(B);
        }
        const spec_weight &proj = hd->w(SPEC_HW_PROJ, h);
        hs->proj.push_back(proj.data ? weight_mat(proj) : ((ModelState *)hd->target->backend_state)->output); // the LM head
        hs->proj_bias.push_back(vec(hd->w(SPEC_HW_PROJ_BIAS, h)));
    }
    hs->max_in = std::max<int64_t>(hs->max_in, hd->target->config.n_embd);
    hd->backend_state = hs.release();
    return SPEC_OK;
}

Status heads_forward_impl(spec_heads *hd, const spec_heads_forward_args &a, Failure &err) {
    (void)err;
    spec_model *m = hd->target;
    ModelState &ms = *(ModelState *)m->backend_state;
    HeadsState &hs = *(HeadsState *)hd->backend_state;
    const spec_model_config &c = m->config;
    const int32_t E = c.n_embd, V = c.n_vocab, n = a.n_rows, h = a.head;
    ModelLock lock(m, ms);
    prepare_threads(m, ms, std::max(ms.max_cols, hs.max_in), 0, 1);
    const KernelSet &kern = *ms.ks;
    hs.x.resize((size_t)n * hs.max_in);
    hs.y.resize((size_t)n * E);
    hs.r.resize((size_t)n * E);
    const float *hidden = (const float *)((const char *)a.hidden->ptr + a.hidden_offset);
    // the input rows: [h] or [h; embd(t_0); ...; embd(t_head)]
    const int64_t in0 = hd->config.conditioned ? (int64_t)E * (h + 2) : E;
    float *x = hs.x.data(), *y = hs.y.data(), *r = hs.r.data();
    for (int32_t j = 0; j < n; j++) {
        float *xj = x + j * in0;
        std::memcpy(xj, hidden, sizeof(float) * (size_t)E);
        if (hd->config.conditioned)
            for (int32_t t = 0; t <= h; t++) kern.dequant(ms.embd.dtype, ms.embd.row(a.tokens[j * (h + 1) + t]), E, xj + (int64_t)(t + 1) * E);
    }
    int64_t in = in0;
    for (const HeadBlock &B : hs.blocks[h]) {
        // y = silu(W x + c); r = RES x + res_bias, or x itself; x = r + y
        Seg s{&B.w, x, in, OutRows{y, E}, false};
        matmul(ms, &s, 1, n);
        for (int64_t i = 0; i < (int64_t)n * E; i++) {
            float v = y[i] + (B.bias ? B.bias[i % E] : 0.0f);
            y[i] = v / (1.0f + std::exp(-v));
        }
        if (B.res.data) {
            Seg rs{&B.res, x, in, OutRows{r, E}, false};
            matmul(ms, &rs, 1, n);
            for (int64_t i = 0; i < (int64_t)n * E; i++) x[i] = r[i] + (B.res_bias ? B.res_bias[i % E] : 0.0f) + y[i];
        } else {
            for (int64_t i = 0; i < (int64_t)n * E; i++) x[i] = x[i] + y[i];
        }
        in = E;
    }
    float *logits = (float *)((char *)a.logits->ptr + a.logits_offset);
    Seg ps{&hs.proj[h], x, E, OutRows{logits, V}, false};
    matmul(ms, &ps, 1, n);
    if (const float *pb = hs.proj_bias[h])
        for (int32_t j = 0; j < n; j++)
            for (int32_t v = 0; v < V; v++) logits[(int64_t)j * V + v] += pb[v];
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
    // The activations are one set per model (a batch's sequences share it, slice by slice), with
    // rope tables global and local, plus the LM head's row lists.
    const uint64_t activations = rows * (2 * E + 2 * QD + 2 * KD + 2 * F + 2 * RD) * 4 + rows * (4 + 8);
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

// The forward scratch a model holds now (prepare_scratch, prepare_threads, quantize_acts): what model_scratch_bytes
// plans, an EAGLE layer's fc input rows aside (eagle_scratch_bytes).
uint64_t forward_scratch_held(const ModelState &ms) {
    auto bytes = [](const auto &v) { return (uint64_t)v.capacity() * sizeof(v[0]); };
    uint64_t held = 0;
    for (const auto *v : {&ms.x, &ms.xn, &ms.q, &ms.k, &ms.v, &ms.att, &ms.g, &ms.u, &ms.rope, &ms.rope_local}) held += bytes(*v);
    held += bytes(ms.head_rows) + bytes(ms.head_out);
    for (int s = 0; s < 3; s++) held += bytes(ms.qx[s]) + bytes(ms.qk[s]);
    for (const ThreadScratch &t : ms.scratch) held += bytes(t.deq) + bytes(t.acc) + bytes(t.scores) + bytes(t.packed);
    return held;
}

uint64_t eagle_scratch_bytes(const spec_model_config &c) { return (uint64_t)MAX_UBATCH * 2 * (uint64_t)c.n_embd * sizeof(float); }

void weights_memory_plan(const spec_model &shape, spec_weights_memory *out) {
    ModelState ms;
    choose_kernels(ms);
    gather_matrices(&shape, ms);
    if (ms.eagle) ms.output = Mat{}; // the target's LM head, placed (and counted) by the target: place_matrices
    out->prepacked = whole_huge_pages(prepack_q8_plan(ms).total);
    out->weight_copy = copy_weights_on() ? whole_huge_pages(weight_copy_plan(ms).total) : 0;
    out->eagle_scratch = shape.eagle ? eagle_scratch_bytes(shape.config) : 0;
}

void model_memory(const spec_model *model, spec_weights_memory *out) {
    ModelState &ms = *(ModelState *)model->backend_state;
    std::lock_guard<std::mutex> lock(ms.mu); // a forward on another thread may be growing the scratch
    out->prepacked = ms.prepacked ? ms.prepacked->bytes : 0;
    out->weight_copy = ms.weight_copy ? ms.weight_copy->bytes : 0;
    out->eagle_scratch = ms.cat.capacity() * sizeof(float);
    out->forward_scratch = forward_scratch_held(ms);
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
    try {
        st->slot_pos.resize((size_t)kv->capacity);
    } catch (const std::bad_alloc &) {
        delete st;
        return oom(err, "a kv cache's positions");
    }
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
    for (int32_t j = 0; j < n_path; j++) st.slot_pos[C + j] = st.slot_pos[C + path[j]];
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

Status forward(spec_model *m, int32_t n_seq, spec_kv *const *kvs, const spec_forward_args *args, Failure &err) {
    try {
        return forward_impl(m, n_seq, kvs, args, nullptr, err);
    } catch (const std::bad_alloc &) {
        return oom(err, "the forward pass's scratch");
    } catch (const std::system_error &) {
        err = failure(SPEC_ERR_INTERNAL, "cpu: cannot start or synchronize worker threads");
        return err.status;
    }
}

Status eagle_forward(spec_model *m, spec_kv *kv, const spec_forward_args &args, const float *const *features, Failure &err,
                     int32_t pending_base) {
    try {
        return forward_impl(m, 1, &kv, &args, &features, err, pending_base);
    } catch (const std::bad_alloc &) {
        return oom(err, "the forward pass's scratch");
    } catch (const std::system_error &) {
        err = failure(SPEC_ERR_INTERNAL, "cpu: cannot start or synchronize worker threads");
        return err.status;
    }
}

Status heads_finalize(spec_heads *heads, Failure &err) {
    try {
        return heads_finalize_impl(heads, err);
    } catch (const std::bad_alloc &) {
        return oom(err, "the heads' tables");
    }
}

void heads_release(spec_heads *heads) {
    delete (HeadsState *)heads->backend_state;
    heads->backend_state = nullptr;
}

Status heads_forward(spec_heads *heads, const spec_heads_forward_args &args, Failure &err) {
    try {
        return heads_forward_impl(heads, args, err);
    } catch (const std::bad_alloc &) {
        return oom(err, "the heads' scratch");
    } catch (const std::system_error &) {
        err = failure(SPEC_ERR_INTERNAL, "cpu: cannot start or synchronize worker threads");
        return err.status;
    }
}

} // namespace specula::cpu
