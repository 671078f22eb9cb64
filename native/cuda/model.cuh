// The cuda backend's transformer: the same operations and semantics as the cpu backend's
// (native/cpu/cpu_model.cpp), with weights uploaded once, the KV cache in device memory and
// only token ids, positions, tree parents and small results crossing PCIe.
#pragma once

#include "../core/internal.hpp"

namespace specula::cuda {

Status model_finalize(spec_model *model, Failure &err);
void model_release(spec_model *model);
Status kv_init(spec_kv *kv, Failure &err);
void kv_release(spec_kv *kv);
Status kv_commit(spec_kv *kv, int32_t n_path, const int32_t *path, Failure &err);
// Sequence i runs args[i] over kvs[i], rows concatenated for the matrix products.
Status forward(spec_model *model, int32_t n_seq, spec_kv *const *kvs, const spec_forward_args *args, Failure &err);

// An EAGLE draft layer's forward (ABI 0.9, the cpu backend's eagle_forward twin): features[i] is token i's feature (a
// device address); pending_base > 0 (ABI 0.10): the tokens follow that many pending ones, args' parents index the
// whole pending tree and kv->pending_parents holds the pending tokens' parents. Args validated by the core.
Status eagle_forward(spec_model *model, spec_kv *kv, const spec_forward_args &args, const float *const *features, Failure &err,
                     int32_t pending_base = 0);
// What an EAGLE layer takes of the device beyond spec_memory_plan for its config and the bytes it is given (its own
// weights, FC and bias included; the target's embedding and LM head where it shares the target's device copies): its
// input rows' allocation (mm::eagle_layout) and the room FC and bias take beyond their bytes
// (mm::eagle_weight_extra_bytes). 0 for other models. shape's weights are read for their presence only.
uint64_t eagle_extra_bytes(const spec_model &shape);

// What model_finalize allocates on the device for a model of config whose weights total
// weight_bytes as given (the memory plan's `weights`), and the fixed activation scratch of its
// forward passes (`model_scratch`): computed by the same code that allocates.
uint64_t model_weight_bytes(const spec_model_config &config, uint64_t weight_bytes);
uint64_t model_scratch_bytes(const spec_model_config &config);
// Device bytes of one KV cache of capacity positions (kv_cache_bytes, and with a sliding window each
// slot's position): what kv_init allocates, the memory plan's kv_caches per sequence.
uint64_t kv_bytes(const spec_model_config &config, int32_t capacity);

// Draft heads over a model of this backend (ABI 0.8; the cpu backend's heads_* twins): weights
// uploaded at finalize, forward with the model's matrix kernels on its stream (see model.cu).
Status heads_finalize(spec_heads *heads, Failure &err);
void heads_release(spec_heads *heads);
Status heads_forward(spec_heads *heads, const spec_heads_forward_args &args, Failure &err);

} // namespace specula::cuda
