// Placeholder until the forward pass lands: every model operation reports UNSUPPORTED.
#include "cpu_model.hpp"

namespace specula::cpu {

static Status unsupported(Failure &err) {
    err = failure(SPEC_ERR_UNSUPPORTED, "cpu: the model forward is not built yet");
    return err.status;
}
Status model_finalize(spec_model *, Failure &err) { return unsupported(err); }
void model_release(spec_model *) {}
Status kv_init(spec_kv *, Failure &err) { return unsupported(err); }
void kv_release(spec_kv *) {}
Status kv_commit(spec_kv *, int32_t, const int32_t *, Failure &err) { return unsupported(err); }
Status forward(spec_model *, spec_kv *, const spec_forward_args &, Failure &err) { return unsupported(err); }

} // namespace specula::cpu
