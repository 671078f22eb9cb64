/* spec_forward_batch on the cuda backend, through the ABI: batch_fixture.hpp's scenarios (B
 * sequences of different lengths, trees, positions, logits modes and exit options, over several
 * steps with batch commits and truncations) on random small models (F32; Q8_0 + Q4_0 + F16 with a
 * BF16 cache; qwen2 F16 with biases and NEOX rope; qwen3; gemma3 with a sliding window). Each
 * sequence's outputs in the batch are compared with its solo spec_forward: on cuda they agree within
 * a tolerance, not bit for bit (model.cu, "Batches": the matrix products' regime and the attention
 * splits follow the slice's bucket). Then the same scenarios with graphs off (SPECULA_CUDA_GRAPHS=0)
 * must give the batch outputs bit for bit: the graphs captured for one mix of sequences replay
 * correctly for every other. And cuda's batch outputs against the cpu backend's; a tree too wide for
 * cuda refused with its sequence named. Skips (exit 77) without a GPU. */
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../batch_fixture.hpp"

namespace {

// Within tol of each other, row by row (max |a - b| relative to the row's largest |a|).
CompareOutputs within(double tol, double *worst) {
    return [tol, worst](const char *what, const std::vector<float> &solo, const std::vector<float> &batch, int width) {
        if (solo.size() != batch.size()) return false;
        for (size_t r = 0; r + (size_t)width <= solo.size(); r += (size_t)width) {
            const double e = row_err_f(&batch[r], &solo[r], width);
            *worst = std::max(*worst, e);
            if (!(e <= tol)) {
                fprintf(stderr, "  %s row %zu: batch vs solo rel err %.3g (tol %.0e)\n", what, r / (size_t)width, e, tol);
                return false;
            }
        }
        return true;
    };
}

void test_model(spec_context *gpu, spec_context *cpu, const ModelSpec &s) {
    TestModel tm = make_model(s);
    const double tol = s.cfg.kv_dtype == SPEC_DTYPE_BF16 ? 5e-3 : 2e-3;
    double worst = 0.0;
    long rows = 0;
    std::vector<float> graphs_on, graphs_off, on_cpu;
    const int sizes[] = {2, 5, 12};
    for (int pass = 0; pass < 3; pass++) {
        // pass 0: cuda with graphs, 1: cuda without (read at finalize), 2: the cpu backend
        if (pass == 1) setenv("SPECULA_CUDA_GRAPHS", "0", 1);
        spec_context *ctx = pass == 2 ? cpu : gpu;
        spec_model *model = load_model(ctx, tm);
        unsetenv("SPECULA_CUDA_GRAPHS");
        if (!model) return;
        std::vector<float> *record = pass == 0 ? &graphs_on : pass == 1 ? &graphs_off : &on_cpu;
        for (int B : sizes) {
            const CompareOutputs cmp = pass == 2 ? CompareOutputs(same_bytes) : within(tol, &worst);
            rows += run_scenario(ctx, model, s.cfg, B, 5, s.seed * 17 + (uint64_t)B, true, cmp, record);
        }
        spec_model_destroy(model);
    }
    CHECK(graphs_on.size() == graphs_off.size() && !graphs_on.empty() &&
          std::memcmp(graphs_on.data(), graphs_off.data(), graphs_on.size() * 4) == 0);
    double cpu_err = 0.0;
    if (graphs_on.size() == on_cpu.size())
        for (size_t i = 0; i < on_cpu.size(); i++)
            cpu_err = std::max(cpu_err, std::fabs((double)graphs_on[i] - on_cpu[i]) / std::max(1e-3, (double)std::fabs(on_cpu[i]) + 1.0));
    else
        cpu_err = INFINITY;
    const double cpu_tol = s.mat_dtype[SPEC_W_ATTN_Q] == SPEC_DTYPE_Q8_0 || s.mat_dtype[SPEC_W_FFN_UP] == SPEC_DTYPE_Q4_0 ? 1e-1 : tol;
    CHECK(cpu_err <= cpu_tol);
    printf("  %s: %ld rows, batch vs solo max rel err %.2e (tol %.0e); graphs on == off bit for bit; cuda vs cpu %.2e\n", s.name, rows,
           worst, tol, cpu_err);
}

// A tree cuda cannot run (200 roots: token 128's keys reach past its 128-bit mask) is refused with
// its sequence named, and no cache changes.
void test_refusal(spec_context *gpu) {
    spec_model_config c = base_config();
    TestModel tm = make_model(spec_all("refusal", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 84));
    spec_model *model = load_model(gpu, tm);
    if (!model) return;
    spec_kv *kv[2] = {NULL, NULL};
    for (auto &k : kv) CHECK_OK(spec_kv_create(model, 256, &k));
    std::vector<int> toks(200, 1), roots(200, -1);
    spec_forward_args a[2];
    std::memset(a, 0, sizeof a);
    a[0].n_tokens = 3;
    a[0].tokens = toks.data();
    a[1].n_tokens = 200;
    a[1].tokens = toks.data();
    a[1].parents = roots.data();
    CHECK_FAILS(gpu, spec_forward_batch(model, 2, kv, a), SPEC_ERR_UNSUPPORTED, "token 128 of sequence 1");
    int32_t len = -1;
    CHECK_OK(spec_kv_length(kv[0], &len));
    CHECK(len == 0);
    const int32_t none[1] = {0};
    CHECK_FAILS(gpu, spec_kv_commit(kv[0], 1, none), SPEC_ERR_OUT_OF_RANGE, "path length 1 is out of range (0..0 pending)");
    for (auto &k : kv) spec_kv_destroy(k);
    spec_model_destroy(model);
    printf("  a tree too wide for cuda: refused, sequence named, caches unchanged\n");
}

} // namespace

int main(void) {
    int32_t n_dev = 0;
    if (spec_device_count("cuda", &n_dev) != SPEC_OK || n_dev < 1) {
        printf("test_cuda_forward_batch: no CUDA device, skipped\n");
        return 77;
    }
    spec_context *gpu = NULL, *cpu = NULL;
    CHECK_OK(spec_context_create("cuda", 0, &gpu));
    CHECK_OK(spec_context_create("cpu", 0, &cpu));
    if (!gpu || !cpu) return check_finish("test_cuda_forward_batch");

    spec_model_config c = base_config();
    c.n_layer = 3;
    test_model(gpu, cpu, spec_all("f32", c, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 81));
    ModelSpec mix = spec_all("q8_0 + q4_0 + f16, kv bf16", c, SPEC_DTYPE_Q8_0, SPEC_DTYPE_F32, false, 82);
    mix.mat_dtype[SPEC_W_FFN_UP] = SPEC_DTYPE_Q4_0;
    mix.mat_dtype[SPEC_W_ATTN_V] = SPEC_DTYPE_Q4_0;
    mix.mat_dtype[SPEC_W_ATTN_Q] = SPEC_DTYPE_F16;
    mix.cfg.kv_dtype = SPEC_DTYPE_BF16;
    test_model(gpu, cpu, mix);
    spec_model_config q = c;
    q.arch = SPEC_ARCH_QWEN2;
    q.rope_style = SPEC_ROPE_NEOX;
    q.kv_dtype = SPEC_DTYPE_F16;
    test_model(gpu, cpu, spec_all("qwen2 f16, kv f16", q, SPEC_DTYPE_F16, SPEC_DTYPE_F16, true, 83));
    // ABI 0.8: qwen3's q/k norms; gemma3's local layers, whose window each sequence's own cache's slot
    // positions decide (the scenarios give positions out of order too)
    spec_model_config q3 = c;
    q3.arch = SPEC_ARCH_QWEN3;
    q3.rope_style = SPEC_ROPE_NEOX;
    q3.head_dim = 24;
    test_model(gpu, cpu, spec_all("qwen3 f32, head_dim 24", q3, SPEC_DTYPE_F32, SPEC_DTYPE_F32, false, 85));
    spec_model_config g3 = c;
    g3.arch = SPEC_ARCH_GEMMA3;
    g3.rope_style = SPEC_ROPE_NEOX;
    g3.head_dim = 32;
    g3.sliding_window = 3;
    g3.swa_pattern = 3; // layer 2 global
    g3.rope_theta_local = 10000.0f;
    g3.rope_theta = 1000000.0f;
    g3.kv_dtype = SPEC_DTYPE_F16;
    test_model(gpu, cpu, spec_all("gemma3 f16 window 3, kv f16", g3, SPEC_DTYPE_F16, SPEC_DTYPE_F32, true, 86));

    test_refusal(gpu);

    spec_context_destroy(cpu);
    spec_context_destroy(gpu);
    return check_finish("test_cuda_forward_batch");
}
