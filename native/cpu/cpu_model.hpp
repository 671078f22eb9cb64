// The cpu backend's transformer: weights read in place from the caller's (mapped) memory,
// one KV cache per sequence, and a forward pass with tree attention.
#pragma once

#include "../core/internal.hpp"

namespace specula::cpu {

Status model_finalize(spec_model *model, Failure &err);
void model_release(spec_model *model);
Status kv_init(spec_kv *kv, Failure &err);
void kv_release(spec_kv *kv);
Status kv_commit(spec_kv *kv, int32_t n_path, const int32_t *path, Failure &err);
// Sequence i runs args[i] over kvs[i], rows concatenated for the matrix products.
Status forward(spec_model *model, int32_t n_seq, spec_kv *const *kvs, const spec_forward_args *args, Failure &err);
// An EAGLE draft layer's forward (ABI 0.9): features[i] is token i's feature; args validated by the core.
// pending_base > 0 (ABI 0.10, spec_eagle_forward_extend): the tokens follow that many pending ones of the previous call(s),
// args' parents index the whole pending tree, and the previous calls' key sets are still in the cache's state.
Status eagle_forward(spec_model *model, spec_kv *kv, const spec_forward_args &args, const float *const *features, Failure &err,
                     int32_t pending_base = 0);
// Draft heads (ABI 0.8) on the target's kernels, thread pool and scratch; args validated by the core.
Status heads_finalize(spec_heads *heads, Failure &err);
void heads_release(spec_heads *heads);
Status heads_forward(spec_heads *heads, const spec_heads_forward_args &args, Failure &err);
// One sequence's KV cache on the cpu: the K and V tensors (kv_cache_bytes) plus the position each
// slot's key was computed at (KvState::slot_pos, int32 per slot; the sliding window reads it).
inline uint64_t kv_slot_positions_bytes(int32_t capacity) { return (uint64_t)capacity * sizeof(int32_t); }
inline uint64_t kv_state_bytes(const spec_model_config &c, int32_t capacity) {
    return kv_cache_bytes(c, capacity) + kv_slot_positions_bytes(capacity);
}
// The most host memory forward() takes for a model of config (see spec_memory_plan).
uint64_t model_scratch_bytes(const spec_model_config &config, int32_t kv_capacity);
// ABI 0.11 (spec_memory_plan_weights, spec_model_memory): the Q8_0 matrices prepack_q8_weights prepacks at finalize, and
// an EAGLE layer's fc input rows at their largest (eagle_scratch_bytes: one slice of MAX_UBATCH rows), planned for a
// model of these weights (their data never read) or held by a finalized model.
uint64_t eagle_scratch_bytes(const spec_model_config &config);
void weights_memory_plan(const spec_model &shape, spec_weights_memory *out);
void model_memory(const spec_model *model, spec_weights_memory *out);

} // namespace specula::cpu
