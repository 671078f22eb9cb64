// Benchmark of the whole model on the cuda backend, through the public ABI only: a ~1.1B-parameter
// Llama (TinyLlama-1.1B's shape) with seeded random bf16 weights.
//
//   bench_model [--out-dir DIR] [--prefix N] [--decode N] [--reps N] [--kv f16|bf16] [--cpu-check] [--quick]
//               [--backend cpu --tiny]   (the same flow on the cpu backend and a tiny model: for testing without a GPU)
//
// Measures, in one run:
//   - the HBM bandwidth floor: a streaming-read kernel over 4 GiB and a 2 GiB device-to-device copy
//     (read + write bytes), the faster of the two; floor time per token = bytes a decode step must
//     read (every matrix once, one embedding row, the KV cache so far) / that bandwidth;
//   - plain decoding: a loop of 1-token spec_forward (LOGITS_LAST) + spec_verify of a 1-node tree
//     (the argmax on the device) + spec_kv_commit, timed end to end per step (wall clock: each
//     step ends with the verify result on the host, so it is synchronized);
//   - a verify step for trees of 1..128 tokens over the same prefix: spec_forward (LOGITS_ALL) of
//     a random tree + spec_verify + spec_kv_commit, median of --reps, the KV cache truncated back
//     to the prefix between runs (untimed).
// With --out-dir it also writes the weights as a Hugging Face checkpoint (config.json and
// model.safetensors, HF names, NEOX rope = HF's layout, so no permutation), the logits of a fixed
// 8-token sequence (logits.f32, raw f32 [8][n_vocab]) and its figures (reference.json), which
// bench/native/torch_llama.py loads to run PyTorch on identical weights and compare.
// With --cpu-check the cpu backend computes the same 8 tokens' logits and the largest difference
// is printed (cuda-vs-cpu parity per dtype on small models is test_cuda_model's and CudaParity's job).
//
// Exit codes: 0 done, 77 no cuda device (skipped), 1 an error.
#include "specula.h"
#include "cuda/cuda_check.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

// Exits on a failed ABI call with the library's message: a benchmark has nothing to recover.
void check(spec_context *ctx, spec_status st, const char *what) {
    if (st == SPEC_OK) return;
    char msg[1024] = "";
    spec_last_error(ctx, msg, sizeof msg, NULL);
    fprintf(stderr, "bench_model: %s failed (status %d): %s\n", what, st, msg);
    exit(1);
}

// TinyLlama-1.1B's shape.
struct Shape {
    int vocab = 32000, embd = 2048, layers = 22, heads = 32, kv_heads = 4, head_dim = 64, ff = 5632;
    int q_rows() const { return heads * head_dim; }
    int kv_rows() const { return kv_heads * head_dim; }
};

struct Options {
    std::string out_dir;
    int prefix = 128, decode = 128, reps = 20, warmup = 3;
    int kv_dtype = SPEC_DTYPE_F16;
    bool cpu_check = false, quick = false, tiny = false;
    std::string backend = "cuda";
};

const int kTreeSizes[] = {1, 2, 4, 8, 16, 32, 64, 128};
const int kRefTokens = 8;

uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

// One tensor of the checkpoint: its HF name, where it lives in the one host block, and how the ABI names it.
struct Tensor {
    std::string name;
    int64_t rows, cols;
    size_t offset; // elements into the block
    int role, layer;
    float stddev;  // 0: a norm weight, all ones
};

// Every weight in one contiguous bf16 block, in checkpoint order, so the safetensors file is a
// header plus one write. Element i of tensor t is a counter-based hash of (t, i): any thread can
// fill any chunk and the result never depends on the thread count.
struct Weights {
    std::vector<Tensor> tensors;
    std::vector<uint16_t> data;
    size_t matrix_bytes_per_token = 0; // what one decode step must stream: every matrix but the embedding table

    void add(const std::string &name, int64_t rows, int64_t cols, int role, int layer, float stddev) {
        size_t at = tensors.empty() ? 0 : tensors.back().offset + (size_t)(tensors.back().rows * tensors.back().cols);
        tensors.push_back({name, rows, cols, at, role, layer, stddev});
    }

    void build(const Shape &s) {
        // Hugging Face's init: normal(0, 0.02); the projections into the residual stream are scaled by
        // 1/sqrt(2 * layers) (as GPT-2 does) so the stream does not grow with depth.
        const float std0 = 0.02f, std_out = 0.02f / std::sqrt(2.0f * s.layers);
        add("model.embed_tokens.weight", s.vocab, s.embd, SPEC_W_TOKEN_EMBD, 0, std0);
        for (int l = 0; l < s.layers; l++) {
            std::string p = "model.layers." + std::to_string(l) + ".";
            add(p + "input_layernorm.weight", 1, s.embd, SPEC_W_ATTN_NORM, l, 0);
            add(p + "self_attn.q_proj.weight", s.q_rows(), s.embd, SPEC_W_ATTN_Q, l, std0);
            add(p + "self_attn.k_proj.weight", s.kv_rows(), s.embd, SPEC_W_ATTN_K, l, std0);
            add(p + "self_attn.v_proj.weight", s.kv_rows(), s.embd, SPEC_W_ATTN_V, l, std0);
            add(p + "self_attn.o_proj.weight", s.embd, s.q_rows(), SPEC_W_ATTN_OUT, l, std_out);
            add(p + "post_attention_layernorm.weight", 1, s.embd, SPEC_W_FFN_NORM, l, 0);
            add(p + "mlp.gate_proj.weight", s.ff, s.embd, SPEC_W_FFN_GATE, l, std0);
            add(p + "mlp.up_proj.weight", s.ff, s.embd, SPEC_W_FFN_UP, l, std0);
            add(p + "mlp.down_proj.weight", s.embd, s.ff, SPEC_W_FFN_DOWN, l, std_out);
        }
        add("model.norm.weight", 1, s.embd, SPEC_W_OUTPUT_NORM, 0, 0);
        add("lm_head.weight", s.vocab, s.embd, SPEC_W_OUTPUT, 0, std0);
        const Tensor &last = tensors.back();
        data.resize(last.offset + (size_t)(last.rows * last.cols));
        for (const Tensor &t : tensors)
            if (t.role != SPEC_W_TOKEN_EMBD) matrix_bytes_per_token += (size_t)(t.rows * t.cols) * 2;

        unsigned n_threads = std::max(1u, std::min(32u, std::thread::hardware_concurrency()));
        std::vector<std::thread> pool;
        for (unsigned w = 0; w < n_threads; w++) {
            pool.emplace_back([this, w, n_threads] {
                for (size_t ti = 0; ti < tensors.size(); ti++) {
                    const Tensor &t = tensors[ti];
                    const size_t n = (size_t)(t.rows * t.cols), lo = n * w / n_threads, hi = n * (w + 1) / n_threads;
                    uint16_t *out = data.data() + t.offset;
                    if (t.stddev == 0) {
                        for (size_t i = lo; i < hi; i++) out[i] = 0x3f80; // 1.0
                        continue;
                    }
                    // Irwin-Hall: four 16-bit uniforms from one hash, sum - 2 has variance 1/3.
                    const float scale = t.stddev * std::sqrt(3.0f) / 65536.0f;
                    const uint64_t key = splitmix64(0x5eed0000ull + ti);
                    for (size_t i = lo; i < hi; i++) {
                        uint64_t h = splitmix64(key ^ (i * 0xD1B54A32D192ED03ull));
                        float u = (float)(h & 0xffff) + (float)((h >> 16) & 0xffff) + (float)((h >> 32) & 0xffff) + (float)(h >> 48);
                        out[i] = to_bf16((u - 131070.0f) * scale);
                    }
                }
            });
        }
        for (auto &th : pool) th.join();
    }

    size_t parameters() const { return data.size(); }
};

bool write_file(const std::string &path, const std::string &text) {
    FILE *f = fopen(path.c_str(), "wb");
    if (!f) return false;
    bool ok = fwrite(text.data(), 1, text.size(), f) == text.size();
    return fclose(f) == 0 && ok;
}

bool write_safetensors(const std::string &path, const Weights &w) {
    std::string h = "{\"__metadata__\":{\"format\":\"pt\"}";
    for (const Tensor &t : w.tensors) {
        char buf[512];
        const size_t begin = t.offset * 2, end = begin + (size_t)(t.rows * t.cols) * 2;
        if (t.rows == 1)
            snprintf(buf, sizeof buf, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}", t.name.c_str(),
                     (long long)t.cols, begin, end);
        else
            snprintf(buf, sizeof buf, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}", t.name.c_str(),
                     (long long)t.rows, (long long)t.cols, begin, end);
        h += buf;
    }
    h += "}";
    while (h.size() % 8) h += ' '; // the data should start 8-byte aligned
    FILE *f = fopen(path.c_str(), "wb");
    if (!f) return false;
    uint64_t n = h.size();
    bool ok = fwrite(&n, 8, 1, f) == 1 && fwrite(h.data(), 1, h.size(), f) == h.size() &&
              fwrite(w.data.data(), 2, w.data.size(), f) == w.data.size();
    return fclose(f) == 0 && ok;
}

std::string hf_config(const Shape &s) {
    char buf[2048];
    snprintf(buf, sizeof buf,
             "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n  \"vocab_size\": %d,\n"
             "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
             "  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n  \"hidden_act\": \"silu\",\n  \"max_position_embeddings\": 2048,\n"
             "  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n"
             "  \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0},\n  \"attention_bias\": false,\n  \"mlp_bias\": false,\n"
             "  \"tie_word_embeddings\": false,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n  \"torch_dtype\": \"bfloat16\"\n}\n",
             s.vocab, s.embd, s.ff, s.layers, s.heads, s.kv_heads, s.head_dim);
    return buf;
}

// ---------------------------------------------------------------- the bandwidth floor

__global__ void stream_read(const uint4 *__restrict__ p, size_t n, unsigned *sink) {
    uint32_t acc = 0;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    // Four independent loads in flight per thread.
    for (; i + 3 * stride < n; i += 4 * stride) {
        uint4 a = __ldcs(p + i), b = __ldcs(p + i + stride), c = __ldcs(p + i + 2 * stride), d = __ldcs(p + i + 3 * stride);
        acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
    }
    for (; i < n; i += stride) {
        uint4 a = __ldcs(p + i);
        acc ^= a.x ^ a.y ^ a.z ^ a.w;
    }
    if (acc == 0x9e3779b9u) atomicAdd(sink, 1u); // the loads cannot be dropped; the branch is (almost) never taken
}

struct Bandwidth {
    double read_gbs = 0, copy_gbs = 0;
    double best() const { return std::max(read_gbs, copy_gbs); }
};

// Best of several runs: the floor must be what the memory can do, not a typical run.
Bandwidth measure_bandwidth(bool quick) {
    Bandwidth bw;
    const size_t read_bytes = (size_t)4 << 30, copy_bytes = (size_t)2 << 30;
    const int runs = quick ? 3 : 10;
    void *buf = nullptr;
    unsigned *sink = nullptr;
    CUDA_OK(cudaMalloc(&buf, read_bytes));
    CUDA_OK(cudaMalloc(&sink, sizeof(unsigned)));
    CUDA_OK(cudaMemset(buf, 1, read_bytes));
    cudaEvent_t a, b;
    CUDA_OK(cudaEventCreate(&a));
    CUDA_OK(cudaEventCreate(&b));
    int sms = 0, per_sm = 0;
    CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    CUDA_OK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, stream_read, 512, 0));
    const int grid = sms * std::max(1, per_sm);
    float best_ms = 1e30f;
    for (int r = 0; r < runs + 2; r++) {
        CUDA_OK(cudaEventRecord(a));
        stream_read<<<grid, 512>>>((const uint4 *)buf, read_bytes / 16, sink);
        CUDA_OK(cudaEventRecord(b));
        CUDA_OK(cudaEventSynchronize(b));
        float ms = 0;
        CUDA_OK(cudaEventElapsedTime(&ms, a, b));
        if (r >= 2) best_ms = std::min(best_ms, ms);
    }
    CUDA_OK(cudaGetLastError());
    bw.read_gbs = read_bytes / (best_ms * 1e-3) / 1e9;
    best_ms = 1e30f;
    char *src = (char *)buf, *dst = src + copy_bytes;
    for (int r = 0; r < runs + 2; r++) {
        CUDA_OK(cudaEventRecord(a));
        CUDA_OK(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice));
        CUDA_OK(cudaEventRecord(b));
        CUDA_OK(cudaEventSynchronize(b));
        float ms = 0;
        CUDA_OK(cudaEventElapsedTime(&ms, a, b));
        if (r >= 2) best_ms = std::min(best_ms, ms);
    }
    bw.copy_gbs = 2.0 * copy_bytes / (best_ms * 1e-3) / 1e9;
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    CUDA_OK(cudaFree(buf));
    CUDA_OK(cudaFree(sink));
    return bw;
}

// ---------------------------------------------------------------- the model through the ABI

struct Loaded {
    spec_context *ctx = nullptr;
    spec_model *model = nullptr;
};

Loaded load(const char *backend, const Shape &s, const Weights &w, int kv_dtype) {
    Loaded m;
    check(nullptr, spec_context_create(backend, 0, &m.ctx), "spec_context_create");
    spec_model_config c = {};
    c.arch = SPEC_ARCH_LLAMA, c.n_vocab = s.vocab, c.n_embd = s.embd, c.n_layer = s.layers, c.n_head = s.heads;
    c.n_head_kv = s.kv_heads, c.head_dim = s.head_dim, c.n_ff = s.ff, c.n_ctx_train = 2048, c.rms_eps = 1e-5f;
    c.rope_theta = 10000.0f, c.rope_style = SPEC_ROPE_NEOX, c.rope_dims = 0, c.rope_scaling = SPEC_ROPE_SCALING_NONE;
    c.rope_factor = 1.0f, c.kv_dtype = kv_dtype;
    check(m.ctx, spec_model_create(m.ctx, &c, &m.model), "spec_model_create");
    for (const Tensor &t : w.tensors) {
        const size_t n = (size_t)(t.rows * t.cols);
        check(m.ctx, spec_model_set_weight(m.model, t.role, t.layer, SPEC_DTYPE_BF16, w.data.data() + t.offset, n * 2, t.rows, t.cols),
              t.name.c_str());
    }
    check(m.ctx, spec_model_finalize(m.model), "spec_model_finalize");
    return m;
}

void unload(Loaded &m) {
    spec_model_destroy(m.model);
    spec_context_destroy(m.ctx);
}

struct Bench {
    spec_context *ctx = nullptr;
    spec_model *model = nullptr;
    spec_kv *kv = nullptr;
    spec_buffer *logits = nullptr;
    int vocab = 0;
    uint64_t step = 0;

    // One verify step: forward of the tree, greedy verification on the device, commit of the accepted path.
    spec_verify_result run_tree(int n, const int32_t *tokens, const int32_t *parents, int logits_mode) {
        spec_forward_args f = {};
        f.n_tokens = n, f.tokens = tokens, f.parents = parents, f.logits_mode = logits_mode, f.logits = logits;
        check(ctx, spec_forward(model, kv, &f), "spec_forward");
        spec_sampling_params greedy = {0, 0.0f, 1.0f, 0, 0};
        spec_verify_result res;
        spec_verify_args v = {};
        v.batch = 1, v.max_tree_nodes = n, v.n_vocab = vocab, v.n_nodes = &n, v.tokens = tokens, v.parents = parents;
        v.params = &greedy, v.logits = logits, v.step = step++, v.results = &res;
        check(ctx, spec_verify(ctx, &v), "spec_verify");
        check(ctx, spec_kv_commit(kv, res.n_accepted + 1, res.path), "spec_kv_commit");
        return res;
    }
};

double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

std::vector<int32_t> random_tokens(uint64_t seed, int n, int vocab) {
    std::vector<int32_t> t(n);
    for (int i = 0; i < n; i++) t[i] = 3 + (int32_t)(splitmix64(seed * 1000003ull + i) % (uint64_t)(vocab - 3));
    return t;
}

// The fixed sequence whose logits bench_model and torch_llama.py both compute.
std::vector<float> reference_logits(spec_context *ctx, spec_model *model, const std::vector<int32_t> &tokens, int vocab) {
    spec_kv *kv = nullptr;
    spec_buffer *buf = nullptr;
    check(ctx, spec_kv_create(model, (int32_t)tokens.size(), &kv), "spec_kv_create");
    check(ctx, spec_buffer_alloc(ctx, tokens.size() * vocab * 4, &buf), "spec_buffer_alloc");
    spec_forward_args f = {};
    f.n_tokens = (int32_t)tokens.size(), f.tokens = tokens.data(), f.logits_mode = SPEC_LOGITS_ALL, f.logits = buf;
    check(ctx, spec_forward(model, kv, &f), "spec_forward (reference logits)");
    std::vector<float> out(tokens.size() * vocab);
    check(ctx, spec_copy_d2h(out.data(), buf, 0, out.size() * 4), "spec_copy_d2h");
    spec_buffer_free(buf);
    spec_kv_destroy(kv);
    return out;
}

void usage() {
    printf("usage: bench_model [--out-dir DIR] [--prefix N] [--decode N] [--reps N] [--kv f16|bf16] [--cpu-check] [--quick]\n"
           "  Benchmarks a ~1.1B-parameter Llama (TinyLlama-1.1B shape, random bf16 weights) on the cuda backend:\n"
           "  plain decode tok/s against the HBM bandwidth floor measured in the same run, and the verify-step\n"
           "  time for trees of 1..128 tokens.\n"
           "  --out-dir DIR  also write the weights (config.json, model.safetensors), the logits of a fixed 8-token\n"
           "                 sequence (logits.f32) and the figures (reference.json) for bench/native/torch_llama.py\n"
           "  --prefix N     committed tokens before decoding and before each tree (default 128)\n"
           "  --decode N     tokens of plain decoding (default 128)\n"
           "  --reps N       runs per tree size, median reported (default 20)\n"
           "  --kv TYPE      KV cache dtype, f16 (default) or bf16\n"
           "  --cpu-check    also compute the fixed sequence's logits on the cpu backend and print the difference\n"
           "  --quick        fewer runs\n"
           "  --backend cpu --tiny  the same flow on the cpu backend with a tiny model (no bandwidth floor): a test\n"
           "  Exit code 77 when no cuda device is available.\n");
}

bool parse(int argc, char **argv, Options &o) {
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&](int &out) {
            if (i + 1 >= argc) return false;
            out = atoi(argv[++i]);
            return out > 0;
        };
        if (a == "--help" || a == "-h") {
            usage();
            exit(0);
        } else if (a == "--out-dir" && i + 1 < argc) {
            o.out_dir = argv[++i];
        } else if (a == "--prefix") {
            if (!value(o.prefix)) return false;
        } else if (a == "--decode") {
            if (!value(o.decode)) return false;
        } else if (a == "--reps") {
            if (!value(o.reps)) return false;
        } else if (a == "--kv" && i + 1 < argc) {
            std::string k = argv[++i];
            if (k == "f16") o.kv_dtype = SPEC_DTYPE_F16;
            else if (k == "bf16") o.kv_dtype = SPEC_DTYPE_BF16;
            else return false;
        } else if (a == "--backend" && i + 1 < argc) {
            o.backend = argv[++i];
        } else if (a == "--tiny") {
            o.tiny = true;
        } else if (a == "--cpu-check") {
            o.cpu_check = true;
        } else if (a == "--quick") {
            o.quick = true, o.reps = std::min(o.reps, 5), o.decode = std::min(o.decode, 32), o.warmup = 2;
        } else {
            return false;
        }
    }
    return true;
}

} // namespace

int main(int argc, char **argv) {
    Options o;
    if (!parse(argc, argv, o)) {
        usage();
        return 2;
    }
    const bool on_cuda = o.backend == "cuda";
    int32_t devices = 0;
    if (spec_device_count(o.backend.c_str(), &devices) != SPEC_OK || devices == 0) {
        char msg[512] = "";
        spec_last_error(NULL, msg, sizeof msg, NULL);
        printf("bench_model: %s unavailable (%s); skipped\n", o.backend.c_str(), msg[0] ? msg : "no device");
        return 77;
    }
    Shape s;
    if (o.tiny) s.vocab = 512, s.embd = 128, s.layers = 2, s.heads = 4, s.kv_heads = 2, s.head_dim = 32, s.ff = 256;

    double t0 = now_ms();
    Weights w;
    w.build(s);
    printf("model: llama %d layers, dim %d, heads %d/%d x %d, ff %d, vocab %d: %.1fM parameters, bf16, %.2f GB (made in %.1f s)\n",
           s.layers, s.embd, s.heads, s.kv_heads, s.head_dim, s.ff, s.vocab, w.parameters() / 1e6, w.data.size() * 2 / 1e9,
           (now_ms() - t0) / 1e3);
    if (!o.out_dir.empty()) {
        t0 = now_ms();
        if (!write_file(o.out_dir + "/config.json", hf_config(s)) || !write_safetensors(o.out_dir + "/model.safetensors", w)) {
            fprintf(stderr, "bench_model: cannot write the checkpoint under %s\n", o.out_dir.c_str());
            return 1;
        }
        printf("checkpoint: %s/{config.json,model.safetensors} (%.1f s)\n", o.out_dir.c_str(), (now_ms() - t0) / 1e3);
    }

    Bandwidth bw;
    if (on_cuda) {
        bw = measure_bandwidth(o.quick);
        printf("bandwidth: streaming read of 4 GiB %.0f GB/s; device-to-device copy of 2 GiB %.0f GB/s (read + write); floor uses %.0f GB/s\n",
               bw.read_gbs, bw.copy_gbs, bw.best());
    }

    t0 = now_ms();
    Loaded target = load(o.backend.c_str(), s, w, o.kv_dtype);
    spec_device_info info;
    check(target.ctx, spec_device_query(target.ctx, &info), "spec_device_query");
    printf("device: %s (%d %s), weights loaded in %.1f s, KV cache %s\n", info.name, info.multiprocessors, on_cuda ? "SMs" : "cores",
           (now_ms() - t0) / 1e3, o.kv_dtype == SPEC_DTYPE_F16 ? "f16" : "bf16");

    // The fixed sequence's logits first, on a fresh cache.
    const std::vector<int32_t> ref_tokens = random_tokens(7, kRefTokens, s.vocab);
    const std::vector<float> ref = reference_logits(target.ctx, target.model, ref_tokens, s.vocab);
    if (o.cpu_check) {
        t0 = now_ms();
        Loaded cpu = load("cpu", s, w, o.kv_dtype);
        const std::vector<float> theirs = reference_logits(cpu.ctx, cpu.model, ref_tokens, s.vocab);
        unload(cpu);
        double worst = 0, scale = 0;
        int argmax_same = 0;
        for (int r = 0; r < kRefTokens; r++) {
            const float *a = &ref[(size_t)r * s.vocab], *b = &theirs[(size_t)r * s.vocab];
            for (int v = 0; v < s.vocab; v++) worst = std::max(worst, (double)std::fabs(a[v] - b[v])), scale = std::max(scale, (double)std::fabs(b[v]));
            argmax_same += std::max_element(a, a + s.vocab) - a == std::max_element(b, b + s.vocab) - b;
        }
        printf("cpu check: max |%s - cpu logit| = %.3g (max |logit| %.3g), argmax agrees at %d/%d positions (%.1f s)\n", o.backend.c_str(), worst, scale,
               argmax_same, kRefTokens, (now_ms() - t0) / 1e3);
    }

    Bench b;
    b.ctx = target.ctx, b.model = target.model, b.vocab = s.vocab;
    const int max_tree_nodes = kTreeSizes[sizeof kTreeSizes / sizeof kTreeSizes[0] - 1];
    check(target.ctx, spec_kv_create(target.model, o.prefix + o.decode + max_tree_nodes + 8, &b.kv), "spec_kv_create");
    check(target.ctx, spec_buffer_alloc(target.ctx, (uint64_t)max_tree_nodes * s.vocab * 4, &b.logits), "spec_buffer_alloc");
    const std::vector<int32_t> prefix = random_tokens(11, o.prefix, s.vocab);
    {
        spec_forward_args f = {};
        f.n_tokens = o.prefix, f.tokens = prefix.data(), f.logits_mode = SPEC_LOGITS_LAST, f.logits = b.logits;
        check(target.ctx, spec_forward(target.model, b.kv, &f), "spec_forward (prefix)");
        std::vector<int32_t> chain(o.prefix);
        for (int i = 0; i < o.prefix; i++) chain[i] = i;
        check(target.ctx, spec_kv_commit(b.kv, o.prefix, chain.data()), "spec_kv_commit (prefix)");
    }

    // Verify steps over the prefix: each size warms up first (a backend may capture a graph per bucket).
    struct StepRow {
        int n;
        double ms;
    };
    std::vector<StepRow> steps;
    for (int n : kTreeSizes) {
        std::vector<int32_t> tokens = random_tokens(100 + n, n, s.vocab), parents(n);
        for (int i = 0; i < n; i++) parents[i] = i == 0 ? -1 : (int32_t)(splitmix64(1000 + n * 131 + i) % (uint64_t)i);
        std::vector<double> ms;
        for (int r = 0; r < o.warmup + o.reps; r++) {
            double a = now_ms();
            b.run_tree(n, tokens.data(), parents.data(), SPEC_LOGITS_ALL);
            double t = now_ms() - a;
            check(target.ctx, spec_kv_truncate(b.kv, o.prefix), "spec_kv_truncate");
            if (r >= o.warmup) ms.push_back(t);
        }
        steps.push_back({n, median(ms)});
    }

    // Plain decoding from the prefix: each step's bonus token is the next step's input.
    int32_t token = random_tokens(13, 1, s.vocab)[0];
    const int32_t root_parent = -1;
    std::vector<double> decode_ms;
    for (int r = 0; r < o.warmup + o.decode; r++) {
        double a = now_ms();
        token = b.run_tree(1, &token, &root_parent, SPEC_LOGITS_LAST).bonus_token;
        if (r >= o.warmup) decode_ms.push_back(now_ms() - a);
    }
    double decode_total = 0;
    for (double t : decode_ms) decode_total += t;
    const double decode_mean = decode_total / decode_ms.size();

    // The floor: every matrix once, one embedding row, and K and V of every layer at the mean context.
    const double kv_elt = 2.0, mean_ctx = o.prefix + o.warmup + o.decode / 2.0;
    const double bytes_per_token =
        (double)w.matrix_bytes_per_token + s.embd * 2.0 + 2.0 * s.layers * mean_ctx * s.kv_rows() * kv_elt;
    const double floor_ms = on_cuda ? bytes_per_token / (bw.best() * 1e9) * 1e3 : 0;
    if (on_cuda)
        printf("floor: %.3f GB per decode step / %.0f GB/s = %.3f ms per token (%.0f tok/s)\n", bytes_per_token / 1e9, bw.best(), floor_ms,
               1e3 / floor_ms);
    auto pct = [&](double ms) {
        char buf[32] = "-";
        if (floor_ms > 0) snprintf(buf, sizeof buf, "%.1f", 100.0 * floor_ms / ms);
        return std::string(buf);
    };

    printf("\nspecula %s, prefix %d, %d decode steps (mean), trees: median of %d\n", o.backend.c_str(), o.prefix, o.decode, o.reps);
    printf("| %-14s | %11s | %9s | %9s | %10s | %13s |\n", "row", "tree tokens", "ms", "tok/s", "% of floor", "x 1-token step");
    printf("|----------------|-------------|-----------|-----------|------------|---------------|\n");
    printf("| %-14s | %11d | %9.3f | %9.1f | %10s | %13s |\n", "decode", 1, decode_mean, 1e3 / decode_mean, pct(decode_mean).c_str(), "-");
    for (const StepRow &r : steps)
        printf("| %-14s | %11d | %9.3f | %9s | %10s | %13.2f |\n", "step", r.n, r.ms, "-", pct(r.ms).c_str(), r.ms / steps[0].ms);
    fflush(stdout);

    if (!o.out_dir.empty()) {
        FILE *f = fopen((o.out_dir + "/logits.f32").c_str(), "wb");
        bool ok = f && fwrite(ref.data(), 4, ref.size(), f) == ref.size();
        if (f) ok = fclose(f) == 0 && ok;
        std::string j = "{\n  \"tokens\": [";
        for (int i = 0; i < kRefTokens; i++) j += (i ? ", " : "") + std::to_string(ref_tokens[i]);
        char buf[512];
        snprintf(buf, sizeof buf,
                 "],\n  \"n_vocab\": %d,\n  \"prefix\": %d,\n  \"decode\": %d,\n  \"reps\": %d,\n  \"kv\": \"%s\",\n"
                 "  \"bandwidth_gbs\": %.1f,\n  \"floor_ms\": %.5f,\n  \"decode_ms\": %.5f,\n  \"steps_ms\": {",
                 s.vocab, o.prefix, o.decode, o.reps, o.kv_dtype == SPEC_DTYPE_F16 ? "f16" : "bf16", bw.best(), floor_ms, decode_mean);
        j += buf;
        for (size_t i = 0; i < steps.size(); i++) {
            snprintf(buf, sizeof buf, "%s\"%d\": %.5f", i ? ", " : "", steps[i].n, steps[i].ms);
            j += buf;
        }
        j += "}\n}\n";
        if (!ok || !write_file(o.out_dir + "/reference.json", j)) {
            fprintf(stderr, "bench_model: cannot write the logits under %s\n", o.out_dir.c_str());
            return 1;
        }
    }
    spec_buffer_free(b.logits);
    spec_kv_destroy(b.kv);
    unload(target);
    return 0;
}
