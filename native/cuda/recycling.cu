// Token Recycling on the GPU.
//   update: one block per tree node finds the top-k of its logits row (spec_cuda.cuh's block
//     top-k: each thread keeps its own best k in registers, then k rounds of a block-wide max merge them)
//     and claims the node's token's row with an atomicMax of (stamp << 32 | node); a second
//     kernel writes each row from the node that won it (the last one, as on the cpu).
//   draft: one block per sequence expands the template level by level (a level's nodes only
//     read their parents' tokens, so each level is one parallel gather).
// The plain cpu version is native/cpu/recycling.cpp.
#include "spec_cuda.cuh"

namespace specula::cuda {
namespace {

constexpr int TOPK_THREADS = 256;

// Owners of matrix rows during an update: per token, stamp << 32 | winning node.
struct RecyclerState {
    unsigned long long *owner = nullptr; // [n_vocab]
    uint32_t next_stamp = 0;             // one per update call, failed ones included
};

template <int K>
__global__ void __launch_bounds__(TOPK_THREADS)
    topk_kernel(const float *logits, int64_t V, const int64_t *rows, const int32_t *tokens, int k, int32_t *top,
                unsigned long long *owner, uint32_t stamp) {
    __shared__ unsigned long long red[33];
    const int n = blockIdx.x;
    km::TopList<K> list;
    thread_top_list<K, TOPK_THREADS>(logits + (size_t)rows[n] * V, V, list);
    block_merge_top(list, k, red, [&](int j, unsigned long long best) {
        if (threadIdx.x == 0) top[(size_t)n * k + j] = (int32_t)km::composite_id(best);
    });
    if (threadIdx.x == 0) atomicMax(&owner[tokens[n]], (unsigned long long)stamp << 32 | (unsigned)n);
}

__global__ void write_rows_kernel(const int32_t *tokens, const int32_t *top, int n_rows, int k,
                                  const unsigned long long *owner, uint32_t stamp, int32_t *matrix) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)n_rows * k) return;
    const int n = (int)(idx / k), j = (int)(idx % k);
    const int32_t t = tokens[n];
    if (owner[t] == ((unsigned long long)stamp << 32 | (unsigned)n)) matrix[(size_t)t * k + j] = top[(size_t)n * k + j];
}

__global__ void draft_kernel(const int32_t *matrix, int k, const int32_t *tparents, const int32_t *tranks,
                             const int32_t *tdepth, int n_template, int max_depth, const int32_t *roots, int32_t *out) {
    __shared__ int32_t tok[SPEC_MAX_TREE_NODES];
    const int b = blockIdx.x, i = threadIdx.x;
    if (i == 0) tok[0] = roots[b];
    __syncthreads();
    for (int d = 1; d <= max_depth; d++) {
        if (i < n_template && tdepth[i] == d) tok[i] = matrix[(size_t)tok[tparents[i]] * k + tranks[i]];
        __syncthreads();
    }
    if (i < n_template) out[(size_t)b * n_template + i] = tok[i];
}

} // namespace

Status recycler_init(spec_recycler *rec, Failure &err) {
    if (select_device(rec->ctx->device, err)) return err.status;
    auto *st = new RecyclerState();
    cudaError_t e = cudaMalloc((void **)&st->owner, (size_t)rec->n_vocab * 8);
    if (e == cudaSuccess) e = cudaMemset(st->owner, 0, (size_t)rec->n_vocab * 8);
    if (e != cudaSuccess) {
        if (st->owner) cudaFree(st->owner);
        delete st;
        return cuda_failure(err, e, "recycler owner table");
    }
    rec->backend_state = st;
    return SPEC_OK;
}

void recycler_release(spec_recycler *rec) {
    auto *st = static_cast<RecyclerState *>(rec->backend_state);
    if (!st) return;
    select_device_for_release(rec->ctx->device);
    cudaFree(st->owner);
    delete st;
    rec->backend_state = nullptr;
}

namespace {
struct UpdateLayout {
    size_t o_rows, o_tok, upload, o_top, bytes;
    UpdateLayout(size_t n, size_t k) {
        Layout lay;
        o_rows = lay.add(n * 8);
        o_tok = lay.add(n * 4);
        upload = lay.bytes;
        o_top = lay.add(n * k * 4);
        bytes = lay.bytes;
    }
};
struct DraftLayout {
    size_t o_par, o_rank, o_depth, o_roots, upload, o_out, bytes;
    DraftLayout(size_t B, size_t N) {
        Layout lay;
        o_par = lay.add(N * 4);
        o_rank = lay.add(N * 4);
        o_depth = lay.add(N * 4);
        o_roots = lay.add(B * 4);
        upload = lay.bytes;
        o_out = lay.add(B * N * 4);
        bytes = lay.bytes;
    }
};
} // namespace

size_t recycler_update_scratch_bytes(size_t n_nodes, size_t k) { return UpdateLayout(n_nodes, k).bytes; }
size_t recycler_draft_scratch_bytes(size_t B, size_t N) { return DraftLayout(B, N).bytes; }
uint64_t recycler_bytes(int64_t n_vocab, int32_t k) {
    return k > 0 ? (uint64_t)n_vocab * (uint64_t)k * 4 + (uint64_t)n_vocab * 8 : 0; // matrix + owner stamps (recycler_init)
}

Status recycler_update(spec_recycler *rec, const spec_recycler_update_args &a, Failure &err) {
    spec_context *ctx = rec->ctx;
    auto *rs = static_cast<RecyclerState *>(rec->backend_state);
    KernelState &st = kernel_state(ctx);
    std::lock_guard<std::mutex> lock(st.lock);
    if (select_device(ctx->device, err)) return err.status;
    // The nodes, flattened in write order (batch order, then node index).
    std::vector<int64_t> rows;
    std::vector<int32_t> tokens;
    for (int32_t b = 0; b < a.batch; b++)
        for (int32_t i = 0; i < a.n_nodes[b]; i++) {
            rows.push_back((int64_t)b * a.max_tree_nodes + i);
            tokens.push_back(a.tokens[(size_t)b * a.max_tree_nodes + i]);
        }
    const size_t n = rows.size(), k = (size_t)rec->k;
    const UpdateLayout lay(n, k);
    const size_t o_rows = lay.o_rows, o_tok = lay.o_tok, upload = lay.upload, o_top = lay.o_top;
    if (grow_scratch(ctx, st, lay.bytes, err)) return err.status;
    Staging up(upload);
    up.put(o_rows, rows.data(), n);
    up.put(o_tok, tokens.data(), n);
    if (up.upload(st.scratch, err)) return err.status;

    // Stamps grow with every update, so an older claim never beats a newer one; when the
    // counter wraps to 0 the table starts over.
    const uint32_t stamp = rs->next_stamp++;
    if (stamp == 0) {
        const cudaError_t e = cudaMemset(rs->owner, 0, (size_t)rec->n_vocab * 8);
        if (e != cudaSuccess) return cuda_failure(err, e, "cudaMemset (recycler owners)");
    }
    const int64_t *d_rows = (const int64_t *)(st.scratch + o_rows);
    const int32_t *d_tok = (const int32_t *)(st.scratch + o_tok);
    int32_t *d_top = (int32_t *)(st.scratch + o_top);
    const float *logits = (const float *)a.logits->ptr;
    const int64_t V = rec->n_vocab;
    if (k <= 8)
        topk_kernel<8><<<(unsigned)n, TOPK_THREADS>>>(logits, V, d_rows, d_tok, (int)k, d_top, rs->owner, stamp);
    else if (k <= 16)
        topk_kernel<16><<<(unsigned)n, TOPK_THREADS>>>(logits, V, d_rows, d_tok, (int)k, d_top, rs->owner, stamp);
    else
        topk_kernel<32><<<(unsigned)n, TOPK_THREADS>>>(logits, V, d_rows, d_tok, (int)k, d_top, rs->owner, stamp);
    if (check_launch(err, "recycler top-k kernel")) return err.status;
    const int64_t total = (int64_t)n * k;
    write_rows_kernel<<<(unsigned)((total + 255) / 256), 256>>>(d_tok, d_top, (int)n, (int)k, rs->owner, stamp,
                                                                (int32_t *)rec->matrix);
    return check_launch(err, "recycler write kernel");
}

Status recycler_draft(spec_recycler *rec, const spec_recycler_draft_args &a, Failure &err) {
    spec_context *ctx = rec->ctx;
    KernelState &st = kernel_state(ctx);
    std::lock_guard<std::mutex> lock(st.lock);
    if (select_device(ctx->device, err)) return err.status;
    const size_t B = (size_t)a.batch, N = (size_t)a.n_template;
    std::vector<int32_t> depth(N, 0);
    int max_depth = 0;
    for (size_t i = 1; i < N; i++) {
        depth[i] = depth[a.template_parents[i]] + 1;
        max_depth = depth[i] > max_depth ? depth[i] : max_depth;
    }
    const DraftLayout lay(B, N);
    const size_t o_par = lay.o_par, o_rank = lay.o_rank, o_depth = lay.o_depth, o_roots = lay.o_roots, upload = lay.upload;
    const size_t o_out = lay.o_out;
    if (grow_scratch(ctx, st, lay.bytes, err)) return err.status;
    Staging up(upload);
    up.put(o_par, a.template_parents, N);
    up.put(o_rank, a.template_ranks, N);
    up.put(o_depth, depth.data(), N);
    up.put(o_roots, a.root_tokens, B);
    if (up.upload(st.scratch, err)) return err.status;
    int32_t *d_out = (int32_t *)(st.scratch + o_out);
    draft_kernel<<<(unsigned)B, SPEC_MAX_TREE_NODES>>>((const int32_t *)rec->matrix, rec->k, (const int32_t *)(st.scratch + o_par),
                                                       (const int32_t *)(st.scratch + o_rank),
                                                       (const int32_t *)(st.scratch + o_depth), (int)N, max_depth,
                                                       (const int32_t *)(st.scratch + o_roots), d_out);
    if (check_launch(err, "recycler draft kernel")) return err.status;
    const cudaError_t e = cudaMemcpy(a.tokens, d_out, B * N * 4, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) return cuda_failure(err, e, "recycler draft kernel / tokens copy");
    return SPEC_OK;
}

} // namespace specula::cuda
