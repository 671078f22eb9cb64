// The cuda backend's transformer: the operations and semantics of the cpu backend
// (native/cpu/cpu_model.cpp) with weights uploaded once, the KV cache in device memory, and per
// step one small upload (token ids, positions, tree key sets) and no copy back.
//
// Shapes. A call runs in slices of at most mm::MAX_ROWS (128) tokens, each padded to a bucket
// of 1, 2, 4, ..., 128 rows, so the activation scratch is fixed per model (allocated once at
// finalize, mm::scratch_layout) and every slice runs one of a few fixed launch sequences.
//
// Parameter block. Whatever changes from step to step (tokens, positions, each token's key
// set, each row's sequence with its committed length, KV cache and output addresses, the rows
// the LM head runs over) lives in a
// device-side mm::StepParams that the kernels read. It is written into pinned host memory (a
// small ring, each slot reused only after the event of its last upload) and uploaded with one
// cudaMemcpyAsync on the model's stream before the slice's work.
//
// Sliding windows (ABI 0.8). As on the cpu, each KV cache of a windowed model keeps the position
// each slot's key was computed at (int32 per slot, after the layers: mm::kv_positions_bytes). The
// embedding kernel writes the slice's rows' positions, kv_commit moves them with the slots, and a
// local layer's attention keeps a key of the token's key set only when mm::key_in_window holds.
//
// Graphs. A slice's launch sequence depends only on mm::GraphKey (bucket of total rows, bucket of
// head rows, exit configuration), so each key is captured once into a CUDA graph and replayed for
// every step, every KV cache of the model and every mix of a batch's sequences. SPECULA_CUDA_GRAPHS=0 (read at finalize) launches the same
// kernels directly; a failed capture or instantiation falls back to direct launches for that key,
// and says so once per model on stderr when SPECULA_LOG=1 (native/core/diagnostics.hpp).
//
// Stacked weights. A layer's q, k, v weights (and its gate, up weights) are uploaded back to back
// when mm::can_stack allows, and run as one matmul of all their rows into one activation buffer
// ([rows][q | k | v], [rows][gate | up]); otherwise, or with SPECULA_CUDA_FUSE=0 (read at
// finalize), as separate matmuls writing the same buffers at column offsets. Per layer that is 4
// weight-streaming launches instead of 7 (the small k and v products alone cannot reach the
// memory bandwidth). Both give the same bits wherever matmul streams (up to 8 rows: each output
// row's sums depend on that row alone). On the tensor-core path the split-k factor depends on
// the row count, so stacked and separate products may differ in the last bits there.
//
// Streams. Each model owns a non-blocking stream, so that capturing a graph on it never involves
// the legacy default stream: CUDA rejects legacy-stream work (another thread's cudaMemcpy, a
// speculative kernel) while a blocking stream is being captured. The rest of the backend works
// on the legacy stream (buffer copies, spec_verify, the recycler; stream 0 in those files, which
// are not built with per-thread default streams; nothing uses cudaStreamPerThread). Ordering is
// explicit instead: forward and kv_commit first record an event on the legacy stream and make
// the model's stream wait for it (earlier copies into the caller's buffers are done before the
// model reads or overwrites them), and last record an event on the model's stream and make the
// legacy stream wait for it (a later spec_copy_d2h or spec_verify sees the results). Capture
// happens between the two, on the model's stream alone. So forward returns without
// synchronizing. kv_release and model_release wait for the model's stream before freeing.
// Logits reach the caller's buffer through a copy kernel (the LM head writes a fixed scratch;
// the caller's address is in the parameter block).
#include "model.cuh"

#include "../core/diagnostics.hpp"
#include "forward_plan.hpp"
#include "matmul.cuh"
#include "model_ops.cuh"
#include "spec_cuda.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace specula::cuda {
namespace {

constexpr int RING = 8; // pinned upload slots

struct Layer {
    DeviceMatrix wq, wk, wv, wo, gate, up, down;
    DeviceMatrix wqkv, wgu; // the stacked matrices (data null: run wq, wk, wv / gate, up separately)
    const float *attn_norm = nullptr, *ffn_norm = nullptr;
    const float *bq = nullptr, *bk = nullptr, *bv = nullptr;
    // ABI 0.8: per-head q/k norms (qwen3, gemma3), the blocks' output norms (gemma3), and whether the
    // layer attends within the sliding window (local: mm::is_local_layer) and rotates with the local rope.
    const float *q_norm = nullptr, *k_norm = nullptr, *post_attn_norm = nullptr, *post_ffn_norm = nullptr;
    bool local = false, local_rope = false;
};

struct GraphEntry {
    cudaGraphExec_t exec = nullptr;
    bool failed = false; // capture or instantiation failed once: launch directly
};

struct ModelState {
    int device = 0;
    cudaStream_t stream = nullptr; // non-blocking; ordered with the legacy stream by the two events
    cudaEvent_t legacy_mark = nullptr, model_mark = nullptr;
    char *weights = nullptr;             // owned by weights_owner
    std::shared_ptr<char> weights_owner; // frees the allocation when no model reads it any more
    // Other models' weight allocations this one reads: an EAGLE layer's target's embedding and LM head (SharedMatrix)
    std::vector<std::shared_ptr<char>> borrowed;
    char *scratch = nullptr;
    mm::ScratchLayout lay;
    DeviceMatrix embd, output;
    const float *output_norm = nullptr;
    const double *inv_freq = nullptr;
    double pos_scale = 1.0;
    const double *inv_freq_local = nullptr; // the local layers' rope when it differs (rope_theta_local), else null
    double pos_scale_local = 1.0;
    float embd_scale = 1.0f; // mm::embedding_scale
    bool gelu = false;       // gemma3's gelu_tanh(gate) * up instead of silu
    std::vector<Layer> layers;
    // ABI 0.9: an EAGLE draft layer's input x = FC [embd(t); feature] (+ fc_bias), its slice rows in eagle_mem
    // (mm::eagle_layout; each row's feature address uploaded per slice)
    bool eagle = false;
    DeviceMatrix fc;
    const float *fc_bias = nullptr;
    char *eagle_mem = nullptr;
    mm::EagleLayout eagle_lay;
    bool use_graphs = true;
    bool stack = true; // SPECULA_CUDA_FUSE
    std::map<uint64_t, GraphEntry> graphs;
    NoteOnce graph_fallback; // the first failed capture, for SPECULA_LOG=1

    std::mutex mu; // one forward or commit at a time: the scratch, ring and graphs are shared
    char *pinned = nullptr;
    cudaEvent_t events[RING] = {};
    int next_slot = 0;
    std::vector<int32_t> dense;                         // per call: the key sets (mm::build_key_sets)
    std::vector<uint32_t> mask;                         // [n][MASK_BITS / 32]

    mm::StepParams *params() const { return reinterpret_cast<mm::StepParams *>(scratch + lay.params); }
    float *f(size_t off) const { return reinterpret_cast<float *>(scratch + off); }

    ~ModelState() {
        if (stream) cudaStreamSynchronize(stream);
        for (auto &g : graphs)
            if (g.second.exec) cudaGraphExecDestroy(g.second.exec);
        for (cudaEvent_t e : events)
            if (e) cudaEventDestroy(e);
        if (legacy_mark) cudaEventDestroy(legacy_mark);
        if (model_mark) cudaEventDestroy(model_mark);
        if (pinned) cudaFreeHost(pinned);
        if (scratch) cudaFree(scratch);
        if (eagle_mem) cudaFree(eagle_mem);
        weights_owner.reset();
        borrowed.clear();
        if (stream) cudaStreamDestroy(stream);
    }
};

struct KvState {
    char *mem = nullptr;
    int32_t *slot_positions = nullptr; // sliding window: inside mem, after the layers (mm::kv_positions_bytes)
    int32_t pending_layers = 0; // layers whose KV the pending tokens hold (stop_at_exit: fewer)
};

constexpr size_t SLOT_BYTES = sizeof(mm::StepParams);
static_assert(SLOT_BYTES >= sizeof(int32_t) * 2 * mm::MAX_ROWS, "a slot also carries kv_commit's moves");

// A pinned slot no earlier upload still reads.
Status acquire_slot(ModelState &ms, char **slot, Failure &err) {
    const int i = ms.next_slot;
    cudaError_t e = cudaEventSynchronize(ms.events[i]); // long done in practice: RING uploads ago
    if (e != cudaSuccess) return cuda_failure(err, e, "cudaEventSynchronize (upload slot)");
    *slot = ms.pinned + (size_t)i * SLOT_BYTES;
    return SPEC_OK;
}

// Uploads the slot acquire_slot returned (the first `bytes`) to dst on the model's stream.
Status upload_slot(ModelState &ms, void *dst, size_t bytes, Failure &err) {
    const int i = ms.next_slot;
    ms.next_slot = (i + 1) % RING;
    cudaError_t e = cudaMemcpyAsync(dst, ms.pinned + (size_t)i * SLOT_BYTES, bytes, cudaMemcpyHostToDevice, ms.stream);
    if (e != cudaSuccess) return cuda_failure(err, e, "cudaMemcpyAsync (step parameters)");
    e = cudaEventRecord(ms.events[i], ms.stream);
    return e == cudaSuccess ? SPEC_OK : cuda_failure(err, e, "cudaEventRecord (upload slot)");
}

#define TRY(call)                                   \
    do {                                            \
        const Status st_ = (call);                  \
        if (st_ != SPEC_OK) return st_;             \
    } while (0)

// Runs `enqueue` (work on the model's stream) after everything already on the legacy stream, and
// makes later legacy-stream work wait for it (the "Streams." contract above). The closing half
// runs even when enqueue fails part way: whatever it launched is still ordered.
template <typename Enqueue>
Status ordered_with_legacy(ModelState &ms, Failure &err, Enqueue &&enqueue) {
    cudaError_t e = cudaEventRecord(ms.legacy_mark, cudaStreamLegacy);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(ms.stream, ms.legacy_mark, 0);
    if (e != cudaSuccess) return cuda_failure(err, e, "ordering the model stream after the default stream");
    const Status st = enqueue();
    e = cudaEventRecord(ms.model_mark, ms.stream);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(cudaStreamLegacy, ms.model_mark, 0);
    if (e != cudaSuccess && st == SPEC_OK) return cuda_failure(err, e, "ordering the default stream after the model stream");
    if (e != cudaSuccess) cudaGetLastError(); // the first failure is the one reported
    return st;
}

// ------------------------------------------------------------------ one slice, in stages
// The stages carry the names of the cpu backend's (native/cpu/cpu_model.cpp):
//   forward_slice       every launch of one slice, in stream order (captured into a graph):
//     embed               embedding rows and the rope table of each row
//     attention_block     per layer: rmsnorm, q/k/v, biases, q/k norms, rope (a local layer's own),
//                         KV store, attention (a local layer's within the sliding window), + Wo (gemma3:
//                         + its output's rmsnorm)
//     ffn_block           per layer: rmsnorm, silu(gate) * up (gemma3: gelu_tanh), + down (gemma3: + its
//                         output's rmsnorm)
//     write_exit_outputs  after the exit layer: the hidden rows and/or their logits
//     write_logits        the call's final_hidden rows and logits of this slice (all rows, or the call's last)
//   output_head         rmsnorm * output_norm, then the LM head, over rows of x (into the head scratch)

// A slice's fixed numbers and buffers, shared by its stages.
struct Slice {
    const ModelState &ms;
    const spec_model_config &c;
    const mm::GraphKey &key;
    const mm::StepParams *P;
    cudaStream_t s;
    void *mms; // matmul()'s scratch
    int32_t R, E, D, Hq, Hkv, F, V, QD, KD, half;
    int64_t QKV, GU;
    float *x, *xn, *att, *head;
    float *rope, *rope_local; // rope_local: null unless local layers have their own rope
    float *q, *k, *v; // row t at t * QKV
    float *g, *u;     // row t at t * GU

    Slice(const ModelState &m, const spec_model_config &cfg, const mm::GraphKey &graph_key)
        : ms(m), c(cfg), key(graph_key), P(m.params()), s(m.stream), mms(m.scratch + m.lay.matmul), R(graph_key.rows), E(cfg.n_embd),
          D(cfg.head_dim), Hq(cfg.n_head), Hkv(cfg.n_head_kv), F(cfg.n_ff), V(cfg.n_vocab), QD(Hq * D), KD(Hkv * D),
          half(mm::rope_dims(cfg) / 2), QKV(mm::qkv_width(cfg)), GU(mm::gu_width(cfg)), x(m.f(m.lay.x)), xn(m.f(m.lay.xn)),
          att(m.f(m.lay.att)), head(m.f(m.lay.head)), rope(m.f(m.lay.rope)), rope_local(m.inv_freq_local ? m.f(m.lay.rope_local) : nullptr),
          q(m.f(m.lay.qkv)), k(q + QD), v(k + KD), g(m.f(m.lay.gu)), u(g + F) {}
};

// The LM head over `rows` rows of x into the head scratch.
Status output_head(const Slice &sl, int32_t rows, Failure &err) {
    const ModelState &ms = sl.ms;
    TRY(ops::rmsnorm(sl.x, ms.output_norm, sl.xn, rows, sl.E, sl.c.rms_eps, nullptr, sl.s, err));
    return matmul(ms.output, sl.xn, sl.E, rows, sl.head, sl.V, false, sl.mms, sl.s, err);
}

// x = the rows' embeddings and their rope tables; an EAGLE layer's x = FC [embd(t); feature] (+ fc_bias) instead, its
// embeddings first into xn (unused until the first layer) and each row's feature read from its uploaded address.
Status embed(const Slice &sl, Failure &err) {
    const ModelState &ms = sl.ms;
    ops::Embed a{ms.embd.data, ms.embd.dtype, ms.embd.row_bytes, sl.E, ms.embd_scale, ms.inv_freq, ms.pos_scale,
                 ms.inv_freq_local, ms.pos_scale_local, sl.half, ms.eagle ? sl.xn : sl.x, sl.rope, sl.rope_local};
    TRY(ops::embed(sl.P, a, sl.R, sl.s, err));
    if (!ms.eagle) return SPEC_OK;
    auto *cat = reinterpret_cast<float *>(ms.eagle_mem + ms.eagle_lay.cat);
    const auto *features = reinterpret_cast<const uint64_t *>(ms.eagle_mem + ms.eagle_lay.features);
    TRY(ops::eagle_input(sl.P, sl.xn, features, sl.E, cat, sl.R, sl.s, err));
    TRY(matmul(ms.fc, cat, 2 * (int64_t)sl.E, sl.R, sl.x, sl.E, false, ms.eagle_mem + ms.eagle_lay.matmul, sl.s, err));
    if (ms.fc_bias) TRY(ops::add_row_bias(sl.x, sl.E, ms.fc_bias, sl.R, sl.E, sl.s, err));
    return SPEC_OK;
}

// x += W in (a block's output), or with a post-block norm (gemma3) x += rmsnorm(W in) * post_norm
// (W in into xn, which the block has used up).
Status add_block_output(const Slice &sl, const DeviceMatrix &W, const float *in, int64_t ld_in, const float *post_norm, Failure &err) {
    if (!post_norm) return matmul(W, in, ld_in, sl.R, sl.x, sl.E, true, sl.mms, sl.s, err);
    TRY(matmul(W, in, ld_in, sl.R, sl.xn, sl.E, false, sl.mms, sl.s, err));
    return ops::add_rmsnorm(sl.xn, post_norm, sl.x, sl.R, sl.E, sl.c.rms_eps, sl.s, err);
}

Status attention_block(const Slice &sl, const Layer &L, int32_t l, Failure &err) {
    const ModelState &ms = sl.ms;
    const spec_model_config &c = sl.c;
    const int32_t R = sl.R, E = sl.E, D = sl.D;
    // An EAGLE layer's first layer may have no attention norm: it reads x as it is.
    if (L.attn_norm) TRY(ops::rmsnorm(sl.x, L.attn_norm, sl.xn, R, E, c.rms_eps, nullptr, sl.s, err));
    const float *in = L.attn_norm ? sl.xn : sl.x;
    if (L.wqkv.data) {
        TRY(matmul(L.wqkv, in, E, R, sl.q, sl.QKV, false, sl.mms, sl.s, err));
    } else {
        TRY(matmul(L.wq, in, E, R, sl.q, sl.QKV, false, sl.mms, sl.s, err));
        TRY(matmul(L.wk, in, E, R, sl.k, sl.QKV, false, sl.mms, sl.s, err));
        TRY(matmul(L.wv, in, E, R, sl.v, sl.QKV, false, sl.mms, sl.s, err));
    }
    ops::QkvPost qp{sl.q, sl.k, sl.v, sl.QKV, L.bq, L.bk, L.bv, L.q_norm, L.k_norm, c.rms_eps,
                    L.local_rope ? sl.rope_local : sl.rope, sl.Hq, sl.Hkv, D, sl.half, c.kv_dtype, c.rope_style == SPEC_ROPE_NEOX};
    TRY(ops::qkv_post(sl.P, qp, l, R, sl.s, err));
    ops::Attention at{sl.q, sl.QKV, sl.att, ms.f(ms.lay.part), sl.Hq, sl.Hkv, D, c.kv_dtype, mm::attention_scale(c),
                      L.local ? c.sliding_window : 0};
    TRY(ops::attention(sl.P, at, l, R, sl.s, err));
    return add_block_output(sl, L.wo, sl.att, sl.QD, L.post_attn_norm, err);
}

Status ffn_block(const Slice &sl, const Layer &L, Failure &err) {
    const int32_t R = sl.R, E = sl.E;
    TRY(ops::rmsnorm(sl.x, L.ffn_norm, sl.xn, R, E, sl.c.rms_eps, nullptr, sl.s, err));
    if (L.wgu.data) {
        TRY(matmul(L.wgu, sl.xn, E, R, sl.g, sl.GU, false, sl.mms, sl.s, err));
    } else {
        TRY(matmul(L.gate, sl.xn, E, R, sl.g, sl.GU, false, sl.mms, sl.s, err));
        TRY(matmul(L.up, sl.xn, E, R, sl.u, sl.GU, false, sl.mms, sl.s, err));
    }
    TRY(ops::gate_mul(sl.g, sl.u, sl.GU, R, sl.F, sl.ms.gelu, sl.s, err));
    return add_block_output(sl, L.down, sl.g, sl.GU, L.post_ffn_norm, err);
}

Status write_exit_outputs(const Slice &sl, Failure &err) {
    if (sl.key.exit_hidden) TRY(ops::copy_out(sl.P, ops::Dest::ExitHidden, ops::RowsOut::All, sl.x, sl.E, sl.R, sl.s, err));
    if (sl.key.exit_logits) {
        TRY(output_head(sl, sl.R, err));
        TRY(ops::copy_out(sl.P, ops::Dest::ExitLogits, ops::RowsOut::All, sl.head, sl.V, sl.R, sl.s, err));
    }
    return SPEC_OK;
}

// The logits of the slice's head rows (every row of a LOGITS_ALL sequence, the last row of a
// LOGITS_LAST one): the LM head over those rows gathered, or, when the exit logits after the last
// layer were just computed for every row, those.
Status write_logits(const Slice &sl, Failure &err) {
    const mm::GraphKey &key = sl.key;
    if (key.final_hidden) { // ABI 0.8: every row after the output norm, the numbers the LM head reads
        TRY(ops::rmsnorm(sl.x, sl.ms.output_norm, sl.xn, sl.R, sl.E, sl.c.rms_eps, nullptr, sl.s, err));
        TRY(ops::copy_out(sl.P, ops::Dest::FinalHidden, ops::RowsOut::All, sl.xn, sl.E, sl.R, sl.s, err));
    }
    if (!key.head_rows) return SPEC_OK;
    if (key.exit_layer == sl.c.n_layer && key.exit_logits)
        return ops::copy_out(sl.P, ops::Dest::Logits, ops::RowsOut::HeadRows, sl.head, sl.V, key.head_rows, sl.s, err);
    TRY(ops::rmsnorm(sl.x, sl.ms.output_norm, sl.xn, key.head_rows, sl.E, sl.c.rms_eps, sl.P, sl.s, err));
    TRY(matmul(sl.ms.output, sl.xn, sl.E, key.head_rows, sl.head, sl.V, false, sl.mms, sl.s, err));
    return ops::copy_out(sl.P, ops::Dest::Logits, ops::RowsOut::Head, sl.head, sl.V, key.head_rows, sl.s, err);
}

// Every launch of one slice, in stream order; the same sequence is captured into a graph.
Status forward_slice(const ModelState &ms, const spec_model_config &c, const mm::GraphKey &key, Failure &err) {
    const Slice sl(ms, c, key);
    TRY(embed(sl, err));
    const int32_t n_run = key.stop_at_exit ? key.exit_layer : c.n_layer;
    for (int32_t l = 0; l < n_run; l++) {
        const Layer &L = ms.layers[l];
        TRY(attention_block(sl, L, l, err));
        TRY(ffn_block(sl, L, err));
        if (l + 1 == key.exit_layer) TRY(write_exit_outputs(sl, err));
    }
    return write_logits(sl, err);
}

// Captures key's launch sequence; on any failure leaves the entry marked failed (the slice then
// runs its launches directly, the same results, slower) and notes the first such failure of the
// model for SPECULA_LOG=1.
void capture(ModelState &ms, const spec_model_config &c, const mm::GraphKey &key, GraphEntry &entry) {
    entry.failed = true;
    const char *step = "capture"; // what failed
    std::string why;
    cudaError_t e = cudaStreamBeginCapture(ms.stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        step = "cudaStreamBeginCapture";
        why = cudaGetErrorString(e);
    } else {
        Failure launch{SPEC_OK, {}};
        const Status st = forward_slice(ms, c, key, launch);
        cudaGraph_t graph = nullptr;
        e = cudaStreamEndCapture(ms.stream, &graph);
        if (st != SPEC_OK) {
            step = "a launch during capture";
            why = launch.message;
        } else if (e != cudaSuccess || !graph) {
            step = "cudaStreamEndCapture";
            why = cudaGetErrorString(e);
        } else {
            cudaGraphExec_t exec = nullptr;
            e = cudaGraphInstantiate(&exec, graph, 0);
            if (e == cudaSuccess) {
                entry.exec = exec;
                entry.failed = false;
            } else {
                step = "cudaGraphInstantiate";
                why = cudaGetErrorString(e);
            }
        }
        if (graph) cudaGraphDestroy(graph);
    }
    cudaGetLastError(); // a failed capture leaves its error behind; the direct launch reports real ones
    if (entry.failed)
        ms.graph_fallback.note(stderr,
                               "cuda: capturing the forward of a %d-row slice into a CUDA graph failed at %s (%s); "
                               "such slices run without a graph, slower (noted once per model)",
                               key.rows, step, why.c_str());
}

Status run_slice(ModelState &ms, const spec_model_config &c, const mm::GraphKey &key, Failure &err) {
    if (ms.use_graphs) {
        GraphEntry &entry = ms.graphs[key.pack()];
        if (!entry.exec && !entry.failed) capture(ms, c, key, entry);
        if (entry.exec) {
            cudaError_t e = cudaGraphLaunch(entry.exec, ms.stream);
            return e == cudaSuccess ? SPEC_OK : cuda_failure(err, e, "cudaGraphLaunch (model forward)");
        }
    }
    return forward_slice(ms, c, key, err);
}

// The most scratch matmul() takes for any product of the model at any bucket.
size_t matmul_scratch_max(const spec_model_config &c) {
    size_t most = 0;
    const int64_t cols[3] = {c.n_embd, (int64_t)c.n_head * c.head_dim, c.n_ff};
    for (int32_t rows = 1; rows <= mm::MAX_ROWS; rows *= 2)
        for (int64_t k : cols) most = std::max(most, matmul_scratch_bytes(k, rows));
    return most;
}

// The most scratch matmul() takes for an EAGLE layer's fc product (2 n_embd columns) at any bucket (mm::eagle_layout).
size_t eagle_matmul_scratch_max(const spec_model_config &c) {
    size_t most = 0;
    for (int32_t rows = 1; rows <= mm::MAX_ROWS; rows *= 2) most = std::max(most, matmul_scratch_bytes(2 * (int64_t)c.n_embd, rows));
    return most;
}

float vector_element(const spec_weight &w, int64_t i) {
    const uint8_t *p = (const uint8_t *)w.data;
    return mm::dequant_element(w.dtype, p, i);
}

// ------------------------------------------------------------------ finalize, in stages
// The stages carry the names of the cpu backend's model_finalize (native/cpu/cpu_model.cpp):
//   check_model      what this backend cannot run, refused before anything is allocated
//   choose_kernels   the device, the switches read from the environment, kernel attributes
//   place_matrices   one weight allocation; every matrix uploaded once, a layer's q/k/v and
//                    gate/up stacked into one matrix each where mm::can_stack allows
//   place_vectors    norms and biases in f32 and the rope frequencies, uploaded as one image
//   prepare_scratch  the fixed activation scratch, the model's stream, the pinned upload ring and
//                    its events (the cpu backend grows its scratch per forward instead)

Status check_model(const spec_model *m, Failure &err) {
    const spec_model_config &c = m->config;
    if (c.head_dim > mm::ATT_MAX_HEAD_DIM) {
        err = failure(SPEC_ERR_UNSUPPORTED, "cuda: head_dim %d is larger than the attention kernel's %d", c.head_dim, mm::ATT_MAX_HEAD_DIM);
        return err.status;
    }
    // Every dtype the ABI takes (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K) is one
    // the matrix products compute with; a dtype added to the ABI later is refused here, by name,
    // until they do.
    for (size_t role = 0; role < m->weights.size(); role++)
        for (size_t layer = 0; layer < m->weights[role].size(); layer++) {
            const spec_weight &w = m->weights[role][layer];
            if (w.data && !matmul_supports(w.dtype)) {
                err = failure(SPEC_ERR_UNSUPPORTED, "cuda: a weight (role %d, layer %d) is %s, which the cuda backend does not compute with",
                              (int)role, (int)layer, dtype_name(w.dtype));
                return err.status;
            }
        }
    if (m->eagle && !matmul_supports(m->eagle_fc.dtype)) {
        err = failure(SPEC_ERR_UNSUPPORTED, "cuda: the EAGLE layer's fc is %s, which the cuda backend does not compute with",
                      dtype_name(m->eagle_fc.dtype));
        return err.status;
    }
    return SPEC_OK;
}

// ------------------------------------------------------------------ matrices shared between models
// Models' token embeddings and LM heads on the device, by the host memory they were uploaded from, so that an EAGLE
// layer handed the same memory as its target (specula.h: "TOKEN_EMBD and OUTPUT are the target's: hand over the same
// memory") reads the target's device copy instead of uploading its own. That memory stays valid and unchanged while the
// target lives (spec_model_set_weight), so equal host memory means equal contents. An entry holds no reference: it
// is found only while its model's weight allocation lives, and a borrower then keeps that allocation alive
// (ModelState::borrowed) however the two models' releases are ordered.
struct SharedMatrix {
    int device;
    const void *host;
    int32_t dtype;
    uint64_t nbytes;
    const void *device_data;
    std::weak_ptr<char> owner;
};

std::mutex &shared_matrices_lock() {
    static std::mutex mu;
    return mu;
}
std::vector<SharedMatrix> &shared_matrices() {
    static std::vector<SharedMatrix> entries;
    return entries;
}

void share_matrix(int device, const spec_weight &w, const void *device_data, const std::shared_ptr<char> &owner) {
    std::lock_guard<std::mutex> lock(shared_matrices_lock());
    auto &v = shared_matrices();
    v.erase(std::remove_if(v.begin(), v.end(), [](const SharedMatrix &e) { return e.owner.expired(); }), v.end());
    v.push_back(SharedMatrix{device, w.data, w.dtype, w.nbytes, device_data, owner});
}

// The device copy of w that a live model on device holds, its allocation into *owner; null when none does.
const void *find_shared_matrix(int device, const spec_weight &w, std::shared_ptr<char> *owner) {
    std::lock_guard<std::mutex> lock(shared_matrices_lock());
    for (const SharedMatrix &e : shared_matrices())
        if (e.device == device && e.host == w.data && e.dtype == w.dtype && e.nbytes == w.nbytes)
            if ((*owner = e.owner.lock())) return e.device_data;
    return nullptr;
}

Status choose_kernels(spec_model *m, ModelState &ms, Failure &err) {
    TRY(select_device(m->ctx->device, err));
    ms.device = m->ctx->device;
    const char *graphs_env = std::getenv("SPECULA_CUDA_GRAPHS"), *fuse_env = std::getenv("SPECULA_CUDA_FUSE");
    ms.use_graphs = !(graphs_env && std::strcmp(graphs_env, "0") == 0);
    ms.stack = !(fuse_env && std::strcmp(fuse_env, "0") == 0);
    return ops::prepare(m->config.head_dim, err);
}

// The weight allocation as it fills: matrices first, then the small pieces (vectors, the rope
// table), which form one contiguous image uploaded at once.
struct WeightImage {
    uint64_t capacity = 0; // bytes allocated: mm::weight_alloc_bytes(config, the nbytes given)
    mm::AlignedLayout layout; // what is placed so far
    std::unordered_map<const void *, std::pair<uint64_t, const spec_weight *>> uploaded; // tied matrices: one copy
    std::vector<std::pair<uint64_t, std::vector<char>>> small;                         // (offset, bytes)

    uint64_t place(uint64_t bytes) { return layout.place(bytes); }
};

Status place_matrices(spec_model *m, ModelState &ms, WeightImage &img, Failure &err) {
    const spec_model_config &c = m->config;
    // An EAGLE layer reads its target's embedding and LM head where the target holds them on this device (SharedMatrix).
    const void *borrowed[2] = {nullptr, nullptr}; // TOKEN_EMBD, OUTPUT
    if (m->eagle)
        for (int i = 0; i < 2; i++) {
            std::shared_ptr<char> owner;
            borrowed[i] = find_shared_matrix(ms.device, m->w(i == 0 ? SPEC_W_TOKEN_EMBD : SPEC_W_OUTPUT), &owner);
            if (borrowed[i]) ms.borrowed.push_back(std::move(owner));
        }
    uint64_t given = 0;
    for (size_t role = 0; role < m->weights.size(); role++)
        for (const spec_weight &w : m->weights[role])
            if (w.data && !(role == SPEC_W_TOKEN_EMBD && borrowed[0]) && !(role == SPEC_W_OUTPUT && borrowed[1])) given += w.nbytes;
    if (m->eagle) given += m->eagle_fc.nbytes + (m->eagle_fc_bias.data ? m->eagle_fc_bias.nbytes : 0);
    img.capacity = mm::weight_alloc_bytes(c, given) + (m->eagle ? mm::eagle_weight_extra_bytes(c, m->eagle_fc_bias.data != nullptr) : 0);
    const cudaError_t e = cudaMalloc((void **)&ms.weights, img.capacity);
    if (e != cudaSuccess) {
        ms.weights = nullptr;
        return cuda_failure(err, e, "cudaMalloc (model weights)");
    }
    ms.weights_owner = std::shared_ptr<char>(ms.weights, [](char *p) { cudaFree(p); });
    auto copy_matrix = [&](spec_weight &w, uint64_t off) -> Status {
        if (off + w.nbytes > img.capacity) { // checked before the copy: it must never write past the allocation
            err = failure(SPEC_ERR_INTERNAL, "cuda: model weights need more than the %llu bytes planned",
                          (unsigned long long)img.capacity);
            return err.status;
        }
        cudaError_t ce = cudaMemcpy(ms.weights + off, w.data, w.nbytes, cudaMemcpyHostToDevice);
        if (ce != cudaSuccess) return cuda_failure(err, ce, "cudaMemcpy (model weights)");
        img.uploaded.emplace(w.data, std::make_pair(off, &w));
        return SPEC_OK;
    };
    auto describe_at = [&](spec_weight &w, const void *device_data, DeviceMatrix &M) {
        M.data = device_data;
        M.dtype = w.dtype;
        M.rows = w.rows;
        M.cols = w.cols;
        M.row_bytes = dtype_row_bytes(w.dtype, w.cols);
        w.device_data = M.data;
    };
    auto describe = [&](spec_weight &w, uint64_t off, DeviceMatrix &M) { describe_at(w, ms.weights + off, M); };
    auto matrix = [&](int role, int layer, DeviceMatrix &M) -> Status {
        spec_weight &w = m->weights[role][layer];
        auto it = img.uploaded.find(w.data);
        uint64_t off;
        if (it != img.uploaded.end() && it->second.second->dtype == w.dtype && it->second.second->nbytes == w.nbytes) {
            off = it->second.first;
        } else {
            off = img.place(w.nbytes);
            TRY(copy_matrix(w, off));
        }
        describe(w, off, M);
        return SPEC_OK;
    };
    // Matrices of one layer that multiply the same activations: back to back as one matrix S
    // (mm::can_stack; each also described on its own), or separately with S left empty.
    auto stacked = [&](std::initializer_list<std::pair<int, DeviceMatrix *>> parts, int layer, DeviceMatrix &S) -> Status {
        mm::MatrixPiece pieces[3];
        int n = 0;
        uint64_t total = 0;
        int64_t rows = 0;
        for (const auto &p : parts) {
            const spec_weight &w = m->weights[p.first][layer];
            pieces[n++] = mm::MatrixPiece{w.dtype, w.rows, w.cols, w.nbytes};
            total += w.nbytes;
            rows += w.rows;
        }
        S = DeviceMatrix{};
        if (!ms.stack || !mm::can_stack(pieces, n)) {
            for (const auto &p : parts) TRY(matrix(p.first, layer, *p.second));
            return SPEC_OK;
        }
        uint64_t off = img.place(total);
        for (const auto &p : parts) {
            spec_weight &w = m->weights[p.first][layer];
            TRY(copy_matrix(w, off)); // a tied copy elsewhere does not help: the stack must be contiguous
            describe(w, off, *p.second);
            off += w.nbytes;
        }
        S = *parts.begin()->second;
        S.rows = rows;
        return SPEC_OK;
    };
    if (borrowed[0]) describe_at(m->weights[SPEC_W_TOKEN_EMBD][0], borrowed[0], ms.embd);
    else TRY(matrix(SPEC_W_TOKEN_EMBD, 0, ms.embd));
    if (borrowed[1]) describe_at(m->weights[SPEC_W_OUTPUT][0], borrowed[1], ms.output);
    else TRY(matrix(SPEC_W_OUTPUT, 0, ms.output));
    if (m->eagle) {
        ms.eagle = true;
        const uint64_t off = img.place(m->eagle_fc.nbytes);
        TRY(copy_matrix(m->eagle_fc, off));
        describe(m->eagle_fc, off, ms.fc);
    }
    ms.layers.resize(c.n_layer);
    for (int l = 0; l < c.n_layer; l++) {
        Layer &L = ms.layers[l];
        TRY(stacked({{SPEC_W_ATTN_Q, &L.wq}, {SPEC_W_ATTN_K, &L.wk}, {SPEC_W_ATTN_V, &L.wv}}, l, L.wqkv));
        TRY(matrix(SPEC_W_ATTN_OUT, l, L.wo));
        TRY(stacked({{SPEC_W_FFN_GATE, &L.gate}, {SPEC_W_FFN_UP, &L.up}}, l, L.wgu));
        TRY(matrix(SPEC_W_FFN_DOWN, l, L.down));
    }
    return SPEC_OK;
}

// After the matrices (place_matrices), so that the small pieces form one contiguous image.
Status place_vectors(spec_model *m, ModelState &ms, WeightImage &img, Failure &err) {
    const spec_model_config &c = m->config;
    auto vector_of = [&](spec_weight &w) -> const float * {
        if (!w.data) return nullptr;
        std::vector<char> bytes((size_t)w.cols * 4);
        for (int64_t i = 0; i < w.cols; i++) {
            const float v = vector_element(w, i);
            std::memcpy(bytes.data() + 4 * i, &v, 4);
        }
        const uint64_t off = img.place(bytes.size());
        img.small.emplace_back(off, std::move(bytes));
        w.device_data = ms.weights + off;
        return (const float *)(ms.weights + off);
    };
    auto vector = [&](int role, int layer) { return vector_of(m->weights[role][layer]); };
    ms.output_norm = vector(SPEC_W_OUTPUT_NORM, 0); // absent only in an EAGLE layer: write_logits then copies
    if (m->eagle) ms.fc_bias = vector_of(m->eagle_fc_bias);
    for (int l = 0; l < c.n_layer; l++) {
        Layer &L = ms.layers[l];
        L.attn_norm = vector(SPEC_W_ATTN_NORM, l);
        L.ffn_norm = vector(SPEC_W_FFN_NORM, l);
        L.bq = vector(SPEC_W_ATTN_Q_BIAS, l);
        L.bk = vector(SPEC_W_ATTN_K_BIAS, l);
        L.bv = vector(SPEC_W_ATTN_V_BIAS, l);
        L.q_norm = vector(SPEC_W_ATTN_Q_NORM, l);
        L.k_norm = vector(SPEC_W_ATTN_K_NORM, l);
        L.post_attn_norm = vector(SPEC_W_ATTN_POST_NORM, l);
        L.post_ffn_norm = vector(SPEC_W_FFN_POST_NORM, l);
        L.local = mm::is_local_layer(c, l);
        L.local_rope = mm::uses_local_rope(c, l);
    }
    ms.embd_scale = mm::embedding_scale(c);
    ms.gelu = c.arch == SPEC_ARCH_GEMMA3;
    // The rope frequencies: the global table, and the local layers' when some layer uses it.
    auto rope_table = [&](const spec_model_config &rc) {
        const int half = mm::rope_dims(rc) / 2;
        std::vector<char> bytes((size_t)half * 8);
        for (int i = 0; i < half; i++) {
            const double f = mm::rope_inv_freq(rc, i);
            std::memcpy(bytes.data() + 8 * i, &f, 8);
        }
        const uint64_t off = img.place(bytes.size());
        img.small.emplace_back(off, std::move(bytes));
        return (const double *)(ms.weights + off);
    };
    bool any_local_rope = false;
    for (const Layer &L : ms.layers) any_local_rope = any_local_rope || L.local_rope;
    if (any_local_rope) {
        const spec_model_config lc = mm::local_rope_config(c);
        ms.inv_freq_local = rope_table(lc);
        ms.pos_scale_local = mm::rope_pos_scale(lc);
    }
    ms.inv_freq = rope_table(c);
    ms.pos_scale = mm::rope_pos_scale(c);
    if (img.layout.at > img.capacity) { // weight_alloc_bytes is an upper bound by construction
        err = failure(SPEC_ERR_INTERNAL, "cuda: model weights need %llu bytes, %llu were planned", (unsigned long long)img.layout.at,
                      (unsigned long long)img.capacity);
        return err.status;
    }
    if (!img.small.empty()) {
        const uint64_t lo = img.small.front().first, hi = img.small.back().first + img.small.back().second.size();
        std::vector<char> image(hi - lo, 0);
        for (auto &p : img.small) std::memcpy(image.data() + (p.first - lo), p.second.data(), p.second.size());
        const cudaError_t e = cudaMemcpy(ms.weights + lo, image.data(), image.size(), cudaMemcpyHostToDevice);
        if (e != cudaSuccess) return cuda_failure(err, e, "cudaMemcpy (model norms and biases)");
    }
    return SPEC_OK;
}

Status prepare_scratch(const spec_model_config &c, ModelState &ms, Failure &err) {
    // Scratch, zeroed: padding rows then start finite.
    ms.lay = mm::scratch_layout(c, matmul_scratch_max(c));
    cudaError_t e = cudaMalloc((void **)&ms.scratch, ms.lay.bytes);
    if (e != cudaSuccess) {
        ms.scratch = nullptr;
        return cuda_failure(err, e, "cudaMalloc (model scratch)");
    }
    e = cudaMemset(ms.scratch, 0, ms.lay.bytes);
    if (e != cudaSuccess) return cuda_failure(err, e, "cudaMemset (model scratch)");
    if (ms.eagle) {
        ms.eagle_lay = mm::eagle_layout(c, eagle_matmul_scratch_max(c));
        e = cudaMalloc((void **)&ms.eagle_mem, ms.eagle_lay.bytes);
        if (e != cudaSuccess) {
            ms.eagle_mem = nullptr;
            return cuda_failure(err, e, "cudaMalloc (EAGLE layer input rows)");
        }
        e = cudaMemset(ms.eagle_mem, 0, ms.eagle_lay.bytes);
        if (e != cudaSuccess) return cuda_failure(err, e, "cudaMemset (EAGLE layer input rows)");
    }

    e = cudaStreamCreateWithFlags(&ms.stream, cudaStreamNonBlocking); // ordered by events: see "Streams."
    if (e != cudaSuccess) {
        ms.stream = nullptr;
        return cuda_failure(err, e, "cudaStreamCreateWithFlags (model stream)");
    }
    e = cudaMallocHost((void **)&ms.pinned, SLOT_BYTES * RING);
    if (e != cudaSuccess) {
        ms.pinned = nullptr;
        return cuda_failure(err, e, "cudaMallocHost (step parameter staging)");
    }
    for (cudaEvent_t &ev : ms.events) {
        e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
        if (e != cudaSuccess) {
            ev = nullptr;
            return cuda_failure(err, e, "cudaEventCreate");
        }
    }
    for (cudaEvent_t *ev : {&ms.legacy_mark, &ms.model_mark}) {
        e = cudaEventCreateWithFlags(ev, cudaEventDisableTiming);
        if (e != cudaSuccess) {
            *ev = nullptr;
            return cuda_failure(err, e, "cudaEventCreate (stream ordering)");
        }
    }
    return SPEC_OK;
}

Status finalize_impl(spec_model *m, ModelState &ms, Failure &err) {
    TRY(check_model(m, err));
    TRY(choose_kernels(m, ms, err));
    WeightImage img;
    TRY(place_matrices(m, ms, img, err));
    TRY(place_vectors(m, ms, img, err));
    TRY(prepare_scratch(m->config, ms, err));
    // this model's own embedding and LM head, for an EAGLE layer given the same memory later (SharedMatrix)
    if (ms.embd.data >= ms.weights && ms.embd.data < ms.weights + img.capacity)
        share_matrix(ms.device, m->w(SPEC_W_TOKEN_EMBD), ms.embd.data, ms.weights_owner);
    if (ms.output.data >= ms.weights && ms.output.data < ms.weights + img.capacity)
        share_matrix(ms.device, m->w(SPEC_W_OUTPUT), ms.output.data, ms.weights_owner);
    return SPEC_OK;
}

// ------------------------------------------------------------------ forward, in stages
// As the cpu backend's forward: key_sets, then per slice of up to mm::MAX_ROWS rows upload_step
// (the parameter block) and run_slice (forward_slice, as a graph or directly).
//
// Batches (spec_forward_batch). The sequences' rows are concatenated and sliced as one call's,
// so a slice may hold rows of many sequences: each row names its sequence in the parameter block
// (its cache, its slots, its outputs) and attention tiles never mix sequences. A slice's launches
// fix its exit configuration, so sequences are grouped by it (exit layer, exit outputs,
// stop_at_exit; in the call's order otherwise) and each group runs its own slices; logits modes
// may differ within a slice. Unlike the cpu backend's, these results are not bit-identical to
// the sequences' solo calls: the matrix products' regime and split-k, and the attention's key
// splits, follow the slice's bucket (matmul.cuh, attn_splits), and a batch's bucket is larger.
// They agree within the backends' usual tolerance.

// Every token's keys (mm::build_key_sets), each sequence's at its rows of ms.dense and ms.mask.
Status key_sets(ModelState &ms, int32_t n_seq, const spec_forward_args *args, const std::vector<int32_t> &row0, int32_t rows,
                Failure &err) {
    ms.dense.resize(rows);
    ms.mask.resize((size_t)rows * (mm::MASK_BITS / 32));
    auto *mask = reinterpret_cast<uint32_t(*)[mm::MASK_BITS / 32]>(ms.mask.data());
    for (int32_t i = 0; i < n_seq; i++) {
        const int32_t bad = mm::build_key_sets(args[i].parents, args[i].n_tokens, ms.dense.data() + row0[i], mask + row0[i]);
        if (bad >= 0) {
            char which[48] = "";
            if (n_seq > 1) std::snprintf(which, sizeof which, " of sequence %d", i);
            err = failure(SPEC_ERR_UNSUPPORTED,
                          "cuda: token %d%s's ancestors lie more than %d tokens past its longest all-ancestor prefix; trees "
                          "that wide run on the cpu backend only",
                          bad, which, mm::MASK_BITS);
            return err.status;
        }
    }
    return SPEC_OK;
}

// The parameter block of slice [u0, u0 + nb) of a group's rows into a pinned slot, uploaded on the
// model's stream; *n_head gets the slice's head rows.
Status upload_step(ModelState &ms, const std::vector<mm::SeqCall> &group, int32_t u0, int32_t nb, const spec_model_config &c,
                   int32_t *n_head, Failure &err) {
    char *slot = nullptr;
    TRY(acquire_slot(ms, &slot, err));
    auto *sp = reinterpret_cast<mm::StepParams *>(slot);
    mm::fill_step(*sp, group.data(), (int32_t)group.size(), u0, nb, c.n_embd, c.n_vocab, c.n_head / c.n_head_kv);
    *n_head = sp->h.n_head;
    return upload_slot(ms, ms.params(), mm::step_upload_bytes(), err);
}

// What fixes a slice's launches besides its rows: sequences with equal keys can share slices.
uint64_t exit_config(const spec_forward_args &a) {
    return (uint64_t)(uint32_t)a.exit_layer << 4 | (uint64_t)(a.final_hidden != nullptr) << 3 | (uint64_t)(a.exit_hidden != nullptr) << 2 |
           (uint64_t)(a.exit_logits != nullptr) << 1 | (uint64_t)(a.stop_at_exit != 0);
}

// An EAGLE layer's call (ABI 0.9, one sequence): each token's feature row (a device address), and the pending tokens
// of earlier calls it extends (ABI 0.10; 0 for spec_eagle_forward).
struct EagleCall {
    const float *const *features;
    int32_t pending;
};

// An extension's key sets: the whole pending tree's (mm::build_extension_key_sets) into ms.dense and ms.mask, the
// call's tokens at [pending, pending + n).
Status extension_key_sets(ModelState &ms, const spec_kv *kv, const spec_forward_args &a, int32_t pending, Failure &err) {
    if ((int32_t)kv->pending_parents.size() < pending) {
        err = failure(SPEC_ERR_INTERNAL, "cuda: the kv cache holds %zu pending parents, not %d", kv->pending_parents.size(), pending);
        return err.status;
    }
    const int32_t total = pending + a.n_tokens;
    std::vector<int32_t> all((size_t)total);
    ms.dense.resize((size_t)total);
    ms.mask.resize((size_t)total * (mm::MASK_BITS / 32));
    auto *mask = reinterpret_cast<uint32_t(*)[mm::MASK_BITS / 32]>(ms.mask.data());
    const int32_t bad = mm::build_extension_key_sets(kv->pending_parents.data(), pending, a.parents, a.n_tokens, all.data(),
                                                     ms.dense.data(), mask);
    if (bad >= 0) {
        err = failure(SPEC_ERR_UNSUPPORTED,
                      "cuda: pending token %d's ancestors lie more than %d tokens past its longest all-ancestor prefix; trees "
                      "that wide run on the cpu backend only",
                      bad, mm::MASK_BITS);
        return err.status;
    }
    return SPEC_OK;
}

// Uploads the feature addresses of an EAGLE call's rows [u0, u0 + nb) for the slice's eagle_input.
Status upload_features(ModelState &ms, const EagleCall &eagle, int32_t u0, int32_t nb, Failure &err) {
    char *slot = nullptr;
    TRY(acquire_slot(ms, &slot, err));
    auto *addr = reinterpret_cast<uint64_t *>(slot);
    for (int32_t j = 0; j < nb; j++) addr[j] = (uint64_t)(uintptr_t)eagle.features[u0 + j];
    return upload_slot(ms, ms.eagle_mem + ms.eagle_lay.features, sizeof(uint64_t) * (size_t)nb, err);
}
static_assert(SLOT_BYTES >= sizeof(uint64_t) * mm::MAX_ROWS, "a slice's feature addresses fit one upload slot");

// eagle: null, or (an EAGLE layer's call, n_seq 1) its features and pending tokens.
Status forward_impl(spec_model *m, int32_t n_seq, spec_kv *const *kvs, const spec_forward_args *args, Failure &err,
                    const EagleCall *eagle = nullptr) {
    ModelState &ms = *(ModelState *)m->backend_state;
    const spec_model_config &c = m->config;
    std::lock_guard<std::mutex> lock(ms.mu);
    TRY(select_device(ms.device, err));
    std::vector<int32_t> row0((size_t)n_seq);
    int32_t rows = 0;
    for (int32_t i = 0; i < n_seq; i++) {
        row0[(size_t)i] = rows;
        rows += args[i].n_tokens;
    }
    const int32_t pending = eagle ? eagle->pending : 0; // n_seq is 1 where it is not 0
    if (pending > 0) TRY(extension_key_sets(ms, kvs[0], args[0], pending, err));
    else TRY(key_sets(ms, n_seq, args, row0, rows, err));
    const auto *mask = reinterpret_cast<const uint32_t(*)[mm::MASK_BITS / 32]>(ms.mask.data());
    std::vector<int32_t> order((size_t)n_seq);
    for (int32_t i = 0; i < n_seq; i++) order[(size_t)i] = i;
    std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) { return exit_config(args[x]) < exit_config(args[y]); });

    TRY(ordered_with_legacy(ms, err, [&]() -> Status {
        std::vector<mm::SeqCall> group;
        for (size_t g0 = 0; g0 < order.size();) {
            const spec_forward_args &first = args[order[g0]];
            group.clear();
            int32_t group_rows = 0;
            size_t g1 = g0;
            for (; g1 < order.size() && exit_config(args[order[g1]]) == exit_config(first); g1++) {
                const int32_t i = order[g1];
                const spec_forward_args &a = args[i];
                mm::SeqCall q;
                q.tokens = a.tokens;
                q.positions = a.positions;
                q.dense = ms.dense.data() + row0[(size_t)i] + pending;
                q.mask = mask + row0[(size_t)i] + pending;
                q.pending = pending;
                q.committed = kvs[i]->committed;
                q.n_tokens = a.n_tokens;
                q.logits_mode = a.stop_at_exit ? SPEC_LOGITS_NONE : a.logits_mode;
                q.row0 = group_rows;
                q.kv = (uint64_t)((KvState *)kvs[i]->backend_state)->mem;
                q.layer_bytes = (uint64_t)kvs[i]->capacity * kv_slot_bytes(c);
                q.logits = a.logits_mode != SPEC_LOGITS_NONE ? (uint64_t)a.logits->ptr : 0;
                q.exit_hidden = a.exit_hidden ? (uint64_t)a.exit_hidden->ptr : 0;
                q.exit_logits = a.exit_logits ? (uint64_t)a.exit_logits->ptr : 0;
                q.slot_positions = (uint64_t)((KvState *)kvs[i]->backend_state)->slot_positions;
                q.final_hidden = a.final_hidden ? (uint64_t)a.final_hidden->ptr : 0;
                group.push_back(q);
                group_rows += a.n_tokens;
            }
            for (int32_t u0 = 0; u0 < group_rows; u0 += mm::MAX_ROWS) {
                const int32_t nb = std::min(mm::MAX_ROWS, group_rows - u0);
                int32_t n_head = 0;
                TRY(upload_step(ms, group, u0, nb, c, &n_head, err));
                if (eagle) TRY(upload_features(ms, *eagle, u0, nb, err));
                mm::GraphKey key;
                key.rows = mm::bucket_rows(nb);
                key.head_rows = n_head ? mm::bucket_rows(n_head) : 0;
                key.exit_layer = first.exit_layer;
                key.exit_hidden = first.exit_hidden != nullptr;
                key.exit_logits = first.exit_logits != nullptr;
                key.stop_at_exit = first.stop_at_exit != 0;
                key.final_hidden = first.final_hidden != nullptr;
                TRY(run_slice(ms, c, key, err));
            }
            g0 = g1;
        }
        return SPEC_OK;
    }));
    for (int32_t i = 0; i < n_seq; i++)
        ((KvState *)kvs[i]->backend_state)->pending_layers = args[i].stop_at_exit ? args[i].exit_layer : c.n_layer;
    return SPEC_OK;
}

// ------------------------------------------------------------------ draft heads (ABI 0.8)
// Medusa / Hydra heads (specula.h, spec_heads) as the cpu backend's heads_forward computes them,
// with the model's matrix products (matmul) on the model's stream, under its lock, ordered with the
// legacy stream as a forward is. Head weights are uploaded once at finalize (one allocation, each
// matrix 256-byte aligned, biases as f32); a head without a projection uses the target's LM head.
// No graphs: a head's launches take the call's row count, and a head runs a few products.

struct HeadBlock {
    DeviceMatrix w, res; // res.data null: the identity
    const float *bias = nullptr, *res_bias = nullptr;
};

struct HeadsState {
    char *mem = nullptr;                        // the weights, then the scratch
    std::vector<std::vector<HeadBlock>> blocks; // [head][block]
    std::vector<DeviceMatrix> proj;
    std::vector<const float *> proj_bias;
    int64_t max_in = 0;                         // the widest block input
    float *x = nullptr, *y = nullptr, *r = nullptr; // [MAX_ROWS][max_in], [MAX_ROWS][E], [MAX_ROWS][E]
    int32_t *tokens = nullptr;                  // [MAX_ROWS][SPEC_HEADS_MAX]: a conditioned head's tokens
    void *mms = nullptr;                        // matmul()'s scratch
    int device = 0;
    ~HeadsState() {
        if (mem) cudaFree(mem);
    }
};

static_assert(SLOT_BYTES >= sizeof(int32_t) * mm::MAX_ROWS * SPEC_HEADS_MAX, "a conditioned head's tokens fit one upload slot");
static_assert(SPEC_MAX_TREE_NODES <= mm::MAX_ROWS, "heads run at most MAX_ROWS rows");

Status heads_finalize_impl(spec_heads *hd, HeadsState &hs, Failure &err) {
    const spec_heads_config &c = hd->config;
    const ModelState &ms = *(const ModelState *)hd->target->backend_state;
    const int32_t E = hd->target->config.n_embd;
    TRY(select_device(ms.device, err));
    hs.device = ms.device;
    // the layout: every matrix and bias (as f32), then the scratch; offsets stand in for the
    // addresses until the allocation exists, so none is 0 (null: an absent weight)
    mm::AlignedLayout layout{256};
    auto place = [&](uint64_t bytes) { return layout.place(bytes); };
    struct Piece {
        uint64_t off;
        const spec_weight *w;
        bool f32; // a vector converted to f32
    };
    std::vector<Piece> pieces;
    auto matrix = [&](const spec_weight &w, DeviceMatrix &M) {
        if (!w.data) return;
        M.dtype = w.dtype;
        M.rows = w.rows;
        M.cols = w.cols;
        M.row_bytes = dtype_row_bytes(w.dtype, w.cols);
        pieces.push_back(Piece{place(M.row_bytes * (uint64_t)w.rows), &w, false});
        M.data = (const void *)(uintptr_t)pieces.back().off; // an offset until the allocation exists
    };
    auto vector = [&](const spec_weight &w) -> const float * {
        if (!w.data) return nullptr;
        pieces.push_back(Piece{place((uint64_t)w.cols * 4), &w, true});
        return (const float *)(uintptr_t)pieces.back().off;
    };
    hs.blocks.resize((size_t)c.n_heads);
    for (int32_t h = 0; h < c.n_heads; h++) {
        for (int32_t b = 0; b < c.n_blocks; b++) {
            HeadBlock B;
            matrix(hd->w(SPEC_HW_BLOCK, h, b), B.w);
            matrix(hd->w(SPEC_HW_BLOCK_RES, h, b), B.res);
            B.bias = vector(hd->w(SPEC_HW_BLOCK_BIAS, h, b));
            B.res_bias = vector(hd->w(SPEC_HW_BLOCK_RES_BIAS, h, b));
            hs.max_in = std::max(hs.max_in, B.w.cols);
            hs.blocks[(size_t)h].push_back(B);
        }
        DeviceMatrix P;
        matrix(hd->w(SPEC_HW_PROJ, h), P);
        hs.proj.push_back(P);
        hs.proj_bias.push_back(vector(hd->w(SPEC_HW_PROJ_BIAS, h)));
    }
    hs.max_in = std::max<int64_t>(hs.max_in, E);
    const uint64_t R = mm::MAX_ROWS;
    const uint64_t x_off = place(4 * R * (uint64_t)hs.max_in), y_off = place(4 * R * (uint64_t)E), r_off = place(4 * R * (uint64_t)E);
    const uint64_t tok_off = place(4 * R * SPEC_HEADS_MAX);
    size_t mm_bytes = 0;
    for (int n = 1; n <= mm::MAX_ROWS; n++)
        mm_bytes = std::max({mm_bytes, matmul_scratch_bytes(E, n), matmul_scratch_bytes(hs.max_in, n)});
    const uint64_t mm_off = place(mm_bytes);
    const uint64_t total = layout.bytes();

    cudaError_t e = cudaMalloc((void **)&hs.mem, total);
    if (e != cudaSuccess) {
        hs.mem = nullptr;
        cudaGetLastError();
        err = failure(e == cudaErrorMemoryAllocation ? SPEC_ERR_OUT_OF_MEMORY : SPEC_ERR_DEVICE,
                      "cuda: cannot allocate %llu bytes for draft heads: %s", (unsigned long long)total, cudaGetErrorString(e));
        return err.status;
    }
    auto rebase = [&](const void *p) { return (const void *)(hs.mem + (uintptr_t)p); };
    for (auto &blocks : hs.blocks)
        for (HeadBlock &B : blocks) {
            B.w.data = rebase(B.w.data);
            if (B.res.data) B.res.data = rebase(B.res.data);
            if (B.bias) B.bias = (const float *)rebase(B.bias);
            if (B.res_bias) B.res_bias = (const float *)rebase(B.res_bias);
        }
    for (size_t h = 0; h < hs.proj.size(); h++) {
        if (hs.proj[h].data) hs.proj[h].data = rebase(hs.proj[h].data);
        else hs.proj[h] = ms.output; // the target's LM head
        if (hs.proj_bias[h]) hs.proj_bias[h] = (const float *)rebase(hs.proj_bias[h]);
    }
    hs.x = (float *)(hs.mem + x_off);
    hs.y = (float *)(hs.mem + y_off);
    hs.r = (float *)(hs.mem + r_off);
    hs.tokens = (int32_t *)(hs.mem + tok_off);
    hs.mms = hs.mem + mm_off;
    // the weights, one copy each (the matrices as given, the vectors converted to f32)
    for (const Piece &p : pieces) {
        const spec_weight &w = *p.w;
        if (p.f32) {
            std::vector<float> v((size_t)w.cols);
            for (int64_t i = 0; i < w.cols; i++) v[(size_t)i] = vector_element(w, i);
            e = cudaMemcpy(hs.mem + p.off, v.data(), v.size() * 4, cudaMemcpyHostToDevice);
        } else {
            e = cudaMemcpy(hs.mem + p.off, w.data, dtype_row_bytes(w.dtype, w.cols) * (uint64_t)w.rows, cudaMemcpyHostToDevice);
        }
        if (e != cudaSuccess) return cuda_failure(err, e, "cudaMemcpy (draft head weights)");
    }
    return SPEC_OK;
}

Status heads_forward_impl(spec_heads *hd, const spec_heads_forward_args &a, Failure &err) {
    ModelState &ms = *(ModelState *)hd->target->backend_state;
    HeadsState &hs = *(HeadsState *)hd->backend_state;
    const spec_model_config &c = hd->target->config;
    const int32_t E = c.n_embd, V = c.n_vocab, n = a.n_rows, h = a.head;
    std::lock_guard<std::mutex> lock(ms.mu);
    TRY(select_device(ms.device, err));
    const bool conditioned = hd->config.conditioned != 0;
    const int64_t in0 = conditioned ? (int64_t)E * (h + 2) : E; // [h] or [h; embd(t_0); ...; embd(t_head)]
    const float *hidden = (const float *)((const char *)a.hidden->ptr + a.hidden_offset);
    float *logits = (float *)((char *)a.logits->ptr + a.logits_offset);
    return ordered_with_legacy(ms, err, [&]() -> Status {
        if (conditioned) {
            char *slot = nullptr;
            TRY(acquire_slot(ms, &slot, err));
            std::memcpy(slot, a.tokens, sizeof(int32_t) * (size_t)n * (size_t)(h + 1));
            TRY(upload_slot(ms, hs.tokens, sizeof(int32_t) * (size_t)n * (size_t)(h + 1), err));
        }
        TRY(ops::heads_input(hidden, ms.embd.data, ms.embd.dtype, ms.embd.row_bytes, E, hs.tokens, conditioned ? h + 1 : 0, n, hs.x, in0,
                             ms.stream, err));
        int64_t in = in0;
        for (const HeadBlock &B : hs.blocks[(size_t)h]) {
            // y = silu(W x + c); x = (RES x + res_bias) + y, or x + y
            TRY(matmul(B.w, hs.x, in, n, hs.y, E, false, hs.mms, ms.stream, err));
            TRY(ops::heads_bias_silu(hs.y, B.bias, n, E, ms.stream, err));
            if (B.res.data) TRY(matmul(B.res, hs.x, in, n, hs.r, E, false, hs.mms, ms.stream, err));
            TRY(ops::heads_residual(hs.x, B.res.data ? hs.r : nullptr, B.res_bias, hs.y, n, E, ms.stream, err));
            in = E;
        }
        TRY(matmul(hs.proj[(size_t)h], hs.x, E, n, logits, V, false, hs.mms, ms.stream, err));
        if (const float *pb = hs.proj_bias[(size_t)h]) TRY(ops::add_row_bias(logits, V, pb, n, V, ms.stream, err));
        return SPEC_OK;
    });
}

} // namespace

// ------------------------------------------------------------------ the backend's entry points

uint64_t model_weight_bytes(const spec_model_config &config, uint64_t weight_bytes) {
    return mm::weight_alloc_bytes(config, weight_bytes);
}

uint64_t kv_bytes(const spec_model_config &config, int32_t capacity) {
    return kv_cache_bytes(config, capacity) + mm::kv_positions_bytes(config, capacity);
}

uint64_t model_scratch_bytes(const spec_model_config &config) {
    return mm::scratch_layout(config, matmul_scratch_max(config)).bytes;
}

Status model_finalize(spec_model *m, Failure &err) {
    std::unique_ptr<ModelState> ms(new (std::nothrow) ModelState());
    if (!ms) {
        err = failure(SPEC_ERR_OUT_OF_MEMORY, "cuda: out of host memory for a model");
        return err.status;
    }
    try {
        const Status st = finalize_impl(m, *ms, err);
        if (st != SPEC_OK) return st;
    } catch (const std::bad_alloc &) {
        err = failure(SPEC_ERR_OUT_OF_MEMORY, "cuda: out of host memory while uploading a model");
        return err.status;
    }
    m->backend_state = ms.release();
    return SPEC_OK;
}

void model_release(spec_model *m) {
    auto *ms = (ModelState *)m->backend_state;
    if (ms) select_device_for_release(ms->device);
    delete ms;
    m->backend_state = nullptr;
}

Status kv_init(spec_kv *kv, Failure &err) {
    const spec_model_config &c = kv->model->config;
    TRY(select_device(kv->model->ctx->device, err));
    auto *ks = new (std::nothrow) KvState();
    if (!ks) {
        err = failure(SPEC_ERR_OUT_OF_MEMORY, "cuda: out of host memory for a kv cache");
        return err.status;
    }
    const uint64_t total = kv_bytes(c, kv->capacity);
    cudaError_t e = cudaMalloc((void **)&ks->mem, total);
    if (e != cudaSuccess) ks->mem = nullptr; // not ours to free, whatever a failed cudaMalloc left there
    else e = cudaMemset(ks->mem, 0, total);   // a slot never written reads as zeros, as on the cpu
    if (e != cudaSuccess) {
        if (ks->mem) cudaFree(ks->mem);
        delete ks;
        cudaGetLastError();
        err = failure(e == cudaErrorMemoryAllocation ? SPEC_ERR_OUT_OF_MEMORY : SPEC_ERR_DEVICE,
                      "cuda: cannot allocate a kv cache of %llu bytes (%d positions): %s", (unsigned long long)total, kv->capacity,
                      cudaGetErrorString(e));
        return err.status;
    }
    if (mm::kv_positions_bytes(c, kv->capacity)) ks->slot_positions = reinterpret_cast<int32_t *>(ks->mem + kv_cache_bytes(c, kv->capacity));
    kv->backend_state = ks;
    return SPEC_OK;
}

void kv_release(spec_kv *kv) {
    auto *ks = (KvState *)kv->backend_state;
    if (ks && ks->mem) {
        select_device_for_release(kv->model->ctx->device);
        // Forward and commit return before their kernels finish: wait for the model's stream
        // explicitly rather than count on cudaFree synchronizing.
        if (auto *ms = (ModelState *)kv->model->backend_state) {
            std::lock_guard<std::mutex> lock(ms->mu);
            cudaStreamSynchronize(ms->stream);
        }
        cudaFree(ks->mem);
    }
    delete ks;
    kv->backend_state = nullptr;
}

Status kv_commit(spec_kv *kv, int32_t n_path, const int32_t *path, Failure &err) {
    ModelState &ms = *(ModelState *)kv->model->backend_state;
    KvState &ks = *(KvState *)kv->backend_state;
    const spec_model_config &c = kv->model->config;
    std::lock_guard<std::mutex> lock(ms.mu);
    TRY(select_device(ms.device, err));
    int32_t j = 0;
    while (j < n_path && path[j] == j) j++; // the leading run is already in place
    if (j == n_path || ks.pending_layers == 0) return SPEC_OK;
    const uint64_t slot_bytes = kv_slot_bytes(c), layer_bytes = (uint64_t)kv->capacity * slot_bytes;
    int32_t *dev_pairs = reinterpret_cast<int32_t *>(ms.scratch + ms.lay.commit);
    return ordered_with_legacy(ms, err, [&]() -> Status {
        while (j < n_path) {
            char *slot = nullptr;
            TRY(acquire_slot(ms, &slot, err));
            auto *pairs = reinterpret_cast<int32_t *>(slot);
            int32_t count = 0;
            for (; j < n_path && count < mm::MAX_ROWS; j++)
                if (path[j] != j) {
                    pairs[2 * count] = j;
                    pairs[2 * count + 1] = path[j];
                    count++;
                }
            if (!count) break;
            TRY(upload_slot(ms, dev_pairs, sizeof(int32_t) * 2 * (size_t)count, err));
            TRY(ops::kv_move(ks.mem, layer_bytes, slot_bytes, ks.pending_layers, kv->committed, dev_pairs, count, ks.slot_positions,
                             ms.stream, err));
        }
        return SPEC_OK;
    });
}

Status forward(spec_model *m, int32_t n_seq, spec_kv *const *kvs, const spec_forward_args *args, Failure &err) {
    try {
        return forward_impl(m, n_seq, kvs, args, err);
    } catch (const std::bad_alloc &) {
        err = failure(SPEC_ERR_OUT_OF_MEMORY, "cuda: out of host memory for a forward pass");
        return err.status;
    }
}

Status eagle_forward(spec_model *m, spec_kv *kv, const spec_forward_args &args, const float *const *features, Failure &err,
                     int32_t pending_base) {
    try {
        const EagleCall eagle{features, pending_base};
        return forward_impl(m, 1, &kv, &args, err, &eagle);
    } catch (const std::bad_alloc &) {
        err = failure(SPEC_ERR_OUT_OF_MEMORY, "cuda: out of host memory for an EAGLE forward");
        return err.status;
    }
}

uint64_t eagle_extra_bytes(const spec_model &shape) {
    if (!shape.eagle) return 0;
    return mm::eagle_layout(shape.config, eagle_matmul_scratch_max(shape.config)).bytes +
           mm::eagle_weight_extra_bytes(shape.config, shape.eagle_fc_bias.data != nullptr);
}

Status heads_finalize(spec_heads *heads, Failure &err) {
    std::unique_ptr<HeadsState> hs(new (std::nothrow) HeadsState());
    if (!hs) {
        err = failure(SPEC_ERR_OUT_OF_MEMORY, "cuda: out of host memory for draft heads");
        return err.status;
    }
    try {
        const Status st = heads_finalize_impl(heads, *hs, err);
        if (st != SPEC_OK) return st;
    } catch (const std::bad_alloc &) {
        err = failure(SPEC_ERR_OUT_OF_MEMORY, "cuda: out of host memory while uploading draft heads");
        return err.status;
    }
    heads->backend_state = hs.release();
    return SPEC_OK;
}

void heads_release(spec_heads *heads) {
    auto *hs = (HeadsState *)heads->backend_state;
    if (hs) {
        select_device_for_release(hs->device);
        // heads_forward returns before its kernels finish: wait for the model's stream first
        if (auto *ms = (ModelState *)heads->target->backend_state) {
            std::lock_guard<std::mutex> lock(ms->mu);
            cudaStreamSynchronize(ms->stream);
        }
    }
    delete hs;
    heads->backend_state = nullptr;
}

Status heads_forward(spec_heads *heads, const spec_heads_forward_args &args, Failure &err) {
    try {
        return heads_forward_impl(heads, args, err);
    } catch (const std::bad_alloc &) {
        err = failure(SPEC_ERR_OUT_OF_MEMORY, "cuda: out of host memory for a heads forward");
        return err.status;
    }
}

} // namespace specula::cuda
