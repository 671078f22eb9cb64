// Placeholder until the cuda forward lands (helper A replaces this file).
#include "model.cuh"

namespace specula::cuda {

static Status unsupported(Failure &err) {
    err = failure(SPEC_ERR_UNSUPPORTED, "cuda: model operations are not implemented in this build yet; use the cpu backend");
    return err.status;
}
Status model_finalize(spec_model *, Failure &err) { return unsupported(err); }
void model_release(spec_model *) {}
Status kv_init(spec_kv *, Failure &err) { return unsupported(err); }
void kv_release(spec_kv *) {}
Status kv_commit(spec_kv *, int32_t, const int32_t *, Failure &err) { return unsupported(err); }
Status forward(spec_model *, spec_kv *, const spec_forward_args &, Failure &err) { return unsupported(err); }
uint64_t model_weight_bytes(const spec_model_config &, uint64_t weight_bytes) { return weight_bytes; }
uint64_t model_scratch_bytes(const spec_model_config &) { return 0; }

} // namespace specula::cuda
