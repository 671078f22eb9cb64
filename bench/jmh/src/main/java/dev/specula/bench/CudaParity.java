package dev.specula.bench;

import com.google.gson.Gson;
import com.google.gson.JsonObject;
import dev.specula.Drafter;
import dev.specula.GenerationRequest;
import dev.specula.GenerationResult;
import dev.specula.SpeculaEngine;
import dev.specula.model.ModelFile;
import dev.specula.model.NativeModels;
import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.nativeapi.Backend;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.Specula;
import dev.specula.nativeapi.SpeculaException;
import dev.specula.tokenizer.VocabTrainer;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Parity of two backends (cuda against cpu on the GPU machine), run by bench/device-check.sh:
 *
 * <ol>
 *   <li>logits: random models made by {@link TestModelMaker} in F32, F16, BF16, Q8_0 and Q4_0 (llama, NORM rope) and
 *       a qwen2 one (biases, NEOX rope, tied output); a 40-token chain and then a 24-node tree over it, on both
 *       backends, every logit within a per-dtype tolerance of max(1, max |logit|);
 *   <li>greedy generation: the demo target on the first N demo prompts with every drafter (none, pld, recycling,
 *       draft-model with the demo draft, early-exit): identical token ids on both backends, and every drafter
 *       identical to plain decoding on each backend. The random models do the same on a few prompts (their draft
 *       model a smaller random one); there a mismatch is reported as a warning, not a failure, because random
 *       weights give near-tied logits that a last-bit difference may flip;
 *   <li>speed: each drafter's tokens/s on the demo prompts per backend and its speedup over plain decoding; the
 *       first backend's Token Recycling speedup is the figure the benchmark reports.
 * </ol>
 *
 * <p>Usage: CudaParity [--backends cuda,cpu] [--prompts 20] [--max-tokens 64] [--random-prompts 4] [--models DIR]
 * [--dtypes F32,F16,BF16,Q8_0,Q4_0] [--tol-scale 1]. Exit status: 0 all parity checks passed, 1 a check failed,
 * 77 a backend is unavailable here (skipped). With --backends cpu,cpu it exercises everything on a machine without
 * a GPU.
 */
public final class CudaParity {
    static final int SKIPPED = 77;
    // Draft heads (medusa, hydra) run on the cpu backend only so far: cuda refuses them.
    static final List<String> POLICIES = Arrays.stream(Drafter.values()).filter(d -> !d.needsHeads())
            .map(Drafter::cliName).toList();
    /** Largest |difference| allowed, as a fraction of max(1, max |logit|), per weight type. */
    // Q8_0 / Q4_0: the cpu backend quantizes activations per block of 32 to int8 as llama.cpp does
    // (native/cpu/int8_dot.hpp) and cuda multiplies exact f32, so the two differ by that rounding, up to
    // amax/254 per activation; on small random models the cpu's logits sit about 4e-2 of the largest
    // from exact ones (native/tests/test_forward.cpp), hence 1e-1 rather than the f32 paths' 2e-2.
    static final Map<String, Double> TOLERANCE = Map.of("F32", 2e-3, "F16", 1e-2, "BF16", 2e-2, "Q8_0", 1e-1, "Q4_0", 1e-1);
    static final int RANDOM_VOCAB = 1024;

    record Options(List<String> backends, int prompts, int maxTokens, int randomPrompts, Path models, List<String> dtypes,
                   double tolScale) {
        /** Names for the two runs: the backends, told apart when they are the same one. */
        List<String> labels() {
            String a = backends.get(0), b = backends.get(1);
            return a.equals(b) ? List.of(a + "#1", b + "#2") : backends;
        }
    }

    /** One model's greedy runs: per policy, per backend label, per prompt. */
    record Runs(Map<String, Map<String, List<GenerationResult>>> byPolicy) {}

    private final Options options;
    private final List<String> failures = new ArrayList<>();
    private final List<String> warnings = new ArrayList<>();

    CudaParity(Options options) {
        this.options = options;
    }

    public static void main(String[] args) throws Exception {
        Options o;
        try {
            o = parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("CudaParity: " + e.getMessage());
            System.exit(2);
            return;
        }
        for (String b : o.backends()) {
            String why = unavailable(b);
            if (why != null) {
                System.out.println("CudaParity: backend " + b + " unavailable (" + why + "); skipped");
                System.exit(SKIPPED);
            }
        }
        System.exit(new CudaParity(o).run());
    }

    static Options parse(String[] args) {
        List<String> backends = List.of("cuda", "cpu");
        int prompts = 20, maxTokens = 64, randomPrompts = 4;
        Path models = Path.of("models");
        List<String> dtypes = List.of("F32", "F16", "BF16", "Q8_0", "Q4_0");
        double tolScale = 1;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--help") || a.equals("-h")) {
                System.out.println("usage: CudaParity [--backends cuda,cpu] [--prompts 20] [--max-tokens 64] [--random-prompts 4]"
                        + " [--models DIR] [--dtypes F32,F16,BF16,Q8_0,Q4_0] [--tol-scale 1]");
                System.exit(0);
            }
            if (i + 1 >= args.length) throw new IllegalArgumentException(a + " needs a value");
            String v = args[++i];
            switch (a) {
                case "--backends" -> backends = List.of(v.split(","));
                case "--prompts" -> prompts = Integer.parseInt(v);
                case "--max-tokens" -> maxTokens = Integer.parseInt(v);
                case "--random-prompts" -> randomPrompts = Integer.parseInt(v);
                case "--models" -> models = Path.of(v);
                case "--dtypes" -> dtypes = v.isBlank() ? List.of() : List.of(v.split(","));
                case "--tol-scale" -> tolScale = Double.parseDouble(v);
                default -> throw new IllegalArgumentException("unknown option " + a);
            }
        }
        if (backends.size() != 2) throw new IllegalArgumentException("--backends takes two backends, e.g. cuda,cpu");
        for (String d : dtypes)
            if (!TOLERANCE.containsKey(d)) throw new IllegalArgumentException("unknown dtype " + d + "; choose from " + TOLERANCE.keySet());
        return new Options(backends, prompts, maxTokens, randomPrompts, models, dtypes, tolScale);
    }

    /** Why a backend cannot run here, or null when it can. */
    static String unavailable(String backend) {
        try {
            return Specula.deviceCount(backend) > 0 ? null : "no device";
        } catch (SpeculaException e) {
            return e.getMessage();
        }
    }

    int run() throws IOException {
        String a = options.labels().get(0), b = options.labels().get(1);
        System.out.printf("CudaParity: %s against %s%n", a, b);
        Path tmp = Files.createTempDirectory("specula-parity");
        try {
            Map<String, Object> vocab = VocabTrainer.ggufMetadata("llama", RANDOM_VOCAB, 1);
            Path randomDraft = new TestModelMaker().arch("llama").dim(128).layers(2).heads(2).kvHeads(1).ff(256).vocab(RANDOM_VOCAB)
                    .context(1024).type(GgmlType.F32).seed(99).tokenizer(vocab).write(tmp.resolve("draft.gguf")).file();
            List<String> randomPrompts = prompts(options.randomPrompts());

            System.out.println("\n== logits (max |difference| relative to max(1, max |logit|))");
            System.out.println("| model | chain rows | tree rows | max abs diff | max abs logit | relative | tolerance | argmax agree | result |");
            System.out.println("|---|---|---|---|---|---|---|---|---|");
            List<Path> randomModels = new ArrayList<>();
            for (String dtype : options.dtypes()) {
                Path file = new TestModelMaker().arch("llama").dim(256).layers(4).heads(4).kvHeads(2).ff(512).vocab(RANDOM_VOCAB)
                        .context(1024).type(GgmlType.valueOf(dtype)).seed(1 + dtype.hashCode()).tokenizer(vocab)
                        .write(tmp.resolve("llama-" + dtype + ".gguf")).file();
                logits("llama-" + dtype, file, TOLERANCE.get(dtype));
                randomModels.add(file);
            }
            Path qwen = new TestModelMaker().arch("qwen2").dim(256).layers(3).heads(4).kvHeads(2).ff(512).vocab(RANDOM_VOCAB).tied(true)
                    .context(1024).type(GgmlType.F16).seed(5).tokenizer(vocab).write(tmp.resolve("qwen2-F16.gguf")).file();
            logits("qwen2-F16-tied", qwen, TOLERANCE.get("F16"));
            randomModels.add(qwen);

            System.out.println("\n== greedy generation (identical token ids on both backends and with every drafter)");
            System.out.println("| model | drafter | backend | prompts | tokens | tok/s | speedup vs none | mean accepted | parity |");
            System.out.println("|---|---|---|---|---|---|---|---|---|");
            Path target = options.models().resolve("demo-target.gguf"), draft = options.models().resolve("demo-draft.gguf");
            Runs demo = null;
            if (Files.isRegularFile(target) && Files.isRegularFile(draft) && options.prompts() > 0) {
                demo = generate("demo-target", target, draft, prompts(options.prompts()), true);
            } else {
                failures.add("demo model or prompts missing under " + options.models() + " (or --prompts 0)");
            }
            if (options.randomPrompts() > 0) {
                for (Path m : randomModels) {
                    String name = m.getFileName().toString().replace(".gguf", "");
                    generate(name, m, randomDraft, randomPrompts, false);
                }
            }

            if (demo != null) {
                System.out.println("\n== Token Recycling end to end on the demo prompts");
                for (String backend : List.of(a, b)) {
                    double none = tokensPerSecond(demo.byPolicy().get("none").get(backend));
                    double rec = tokensPerSecond(demo.byPolicy().get("recycling").get(backend));
                    System.out.printf(Locale.ROOT, "recycling on %s: %.1f tok/s against plain decoding's %.1f tok/s: speedup %.2fx%n", backend,
                            rec, none, rec / none);
                }
            }
        } finally {
            try (var files = Files.list(tmp)) {
                for (Path p : files.toList()) Files.deleteIfExists(p);
            }
            Files.deleteIfExists(tmp);
        }
        System.out.println();
        for (String w : warnings) System.out.println("WARNING: " + w);
        for (String f : failures) System.out.println("FAILED: " + f);
        System.out.println(failures.isEmpty() ? "CudaParity: PASS" : "CudaParity: FAIL (" + failures.size() + " checks)");
        return failures.isEmpty() ? 0 : 1;
    }

    // ---------------------------------------------------------------- logits

    /** The chain's and the tree's logits rows of one backend, [rows][vocab] flattened. */
    float[] forwardRows(String backend, Path file, int[] chain, int[] tree, int[] parents) {
        try (Context ctx = Context.open(backend, 0); ModelFile mf = ModelFile.open(file);
             NativeModel model = NativeModels.load(ctx, mf, DType.F16);
             KvCache kv = model.newKvCache(chain.length + tree.length + 8)) {
            int vocab = model.shape().nVocab();
            float[] out = new float[(chain.length + tree.length) * vocab];
            try (DeviceBuffer logits = ctx.allocate((long) Math.max(chain.length, tree.length) * vocab * 4); Arena arena = Arena.ofConfined()) {
                MemorySegment host = arena.allocate(logits.size());
                model.forward(kv, ForwardArgs.chainAll(chain, logits));
                logits.copyToHost(0, host, 0, (long) chain.length * vocab * 4);
                MemorySegment.copy(host, ValueLayout.JAVA_FLOAT, 0, out, 0, chain.length * vocab);
                kv.commitChain(chain.length);
                model.forward(kv, ForwardArgs.tree(tree, parents, logits));
                logits.copyToHost(0, host, 0, (long) tree.length * vocab * 4);
                MemorySegment.copy(host, ValueLayout.JAVA_FLOAT, 0, out, chain.length * vocab, tree.length * vocab);
            }
            return out;
        }
    }

    void logits(String name, Path file, double tolerance) {
        tolerance *= options.tolScale();
        SplittableRandom rng = new SplittableRandom(name.hashCode());
        int[] chain = rng.ints(40, 3, RANDOM_VOCAB).toArray();
        chain[0] = 1;
        int[] tree = rng.ints(24, 3, RANDOM_VOCAB).toArray();
        int[] parents = new int[tree.length];
        for (int i = 0; i < tree.length; i++) parents[i] = i == 0 ? -1 : rng.nextInt(i);
        float[] a = forwardRows(options.backends().get(0), file, chain, tree, parents);
        float[] b = forwardRows(options.backends().get(1), file, chain, tree, parents);
        double maxDiff = 0, maxAbs = 0;
        boolean finite = true;
        for (int i = 0; i < a.length; i++) {
            finite &= Float.isFinite(a[i]) && Float.isFinite(b[i]);
            maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
            maxAbs = Math.max(maxAbs, Math.abs(b[i]));
        }
        int rows = chain.length + tree.length, agree = 0;
        for (int r = 0; r < rows; r++) agree += argmax(a, r * RANDOM_VOCAB, RANDOM_VOCAB) == argmax(b, r * RANDOM_VOCAB, RANDOM_VOCAB) ? 1 : 0;
        double relative = maxDiff / Math.max(1.0, maxAbs);
        boolean ok = finite && relative <= tolerance;
        System.out.printf(Locale.ROOT, "| %s | %d | %d | %.3g | %.3g | %.3g | %.3g | %d/%d | %s |%n", name, chain.length, tree.length, maxDiff, maxAbs,
                relative, tolerance, agree, rows, ok ? "pass" : "FAIL");
        if (!ok) failures.add(String.format(Locale.ROOT, "logits of %s: relative difference %.3g above %.3g%s", name, relative, tolerance,
                finite ? "" : " (non-finite values)"));
    }

    static int argmax(float[] x, int from, int n) {
        int best = from;
        for (int i = from + 1; i < from + n; i++) if (x[i] > x[best]) best = i;
        return best - from;
    }

    // ---------------------------------------------------------------- greedy generation

    Runs generate(String name, Path model, Path draft, List<String> prompts, boolean strict) {
        Map<String, Map<String, List<GenerationResult>>> byPolicy = new LinkedHashMap<>();
        for (String p : POLICIES) byPolicy.put(p, new LinkedHashMap<>());
        for (int slot = 0; slot < 2; slot++) {
            String backend = options.labels().get(slot);
            try (SpeculaEngine generator = SpeculaEngine.builder().model(model).backend(Backend.parse(options.backends().get(slot)), 0)
                    .draftModel(draft).contextLength(1024).batch(1).build()) {
                // Warm-up outside the figures: JIT, first touch, any graph capture.
                for (String p : POLICIES) generator.generate(request(prompts.get(0), 16, p), t -> {}, () -> false);
                for (String p : POLICIES) byPolicy.get(p).put(backend, new ArrayList<>());
                for (String prompt : prompts)
                    for (String p : POLICIES) // interleaved, so that every drafter sees the same machine noise
                        byPolicy.get(p).get(backend).add(generator.generate(request(prompt, options.maxTokens(), p), t -> {}, () -> false));
            }
        }
        String first = options.labels().get(0), second = options.labels().get(1);
        for (String p : POLICIES) {
            for (String backend : options.labels()) {
                List<GenerationResult> runs = byPolicy.get(p).get(backend);
                List<String> problems = new ArrayList<>();
                if (!p.equals("none")) problems.addAll(mismatches(byPolicy.get("none").get(backend), runs, "none on " + backend));
                if (backend.equals(second)) problems.addAll(mismatches(byPolicy.get(p).get(first), runs, first));
                String parity = problems.isEmpty() ? "pass" : (strict ? "FAIL" : "warn") + " (" + problems.size() + " prompts)";
                for (String problem : problems) {
                    String line = name + " " + p + " on " + backend + ": " + problem;
                    (strict ? failures : warnings).add(line);
                }
                long tokens = runs.stream().mapToLong(r -> r.tokens().length).sum();
                double tps = tokensPerSecond(runs), none = tokensPerSecond(byPolicy.get("none").get(backend));
                System.out.printf(Locale.ROOT, "| %s | %s | %s | %d | %d | %.1f | %.2fx | %.2f | %s |%n", name, p, backend, runs.size(), tokens, tps,
                        tps / none, meanAccepted(runs), parity);
            }
        }
        return new Runs(byPolicy);
    }

    static GenerationRequest request(String prompt, int maxTokens, String drafter) {
        return GenerationRequest.builder(prompt).maxTokens(maxTokens).drafter(Drafter.parse(drafter)).build();
    }

    /** Where runs differ from the reference runs of the same prompts: one line per prompt. */
    static List<String> mismatches(List<GenerationResult> reference, List<GenerationResult> runs, String against) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < runs.size(); i++) {
            int[] x = reference.get(i).tokens(), y = runs.get(i).tokens();
            if (Arrays.equals(x, y)) continue;
            int at = Arrays.mismatch(x, y);
            out.add(String.format(Locale.ROOT, "prompt %d differs from %s at token %d of %d/%d", i, against, at, x.length, y.length));
        }
        return out;
    }

    static double tokensPerSecond(List<GenerationResult> runs) {
        double seconds = 0;
        long tokens = 0;
        for (GenerationResult r : runs) {
            seconds += r.stats().generateSeconds();
            tokens += r.tokens().length;
        }
        return seconds > 0 ? tokens / seconds : 0;
    }

    static double meanAccepted(List<GenerationResult> runs) {
        long steps = 0, tokens = 0;
        for (GenerationResult r : runs) {
            if (r.speculation() != null) {
                steps += r.speculation().steps();
                tokens += r.speculation().tokens();
            } else {
                steps += r.tokens().length;
                tokens += r.tokens().length;
            }
        }
        return steps > 0 ? (double) tokens / steps : 0;
    }

    /** The first turns of the demo prompts, n of them, cycling when n exceeds the file. */
    List<String> prompts(int n) throws IOException {
        Path file = options.models().resolve("demo-prompts.jsonl");
        List<String> all = new ArrayList<>();
        if (Files.isRegularFile(file)) {
            Gson gson = new Gson();
            for (String line : Files.readAllLines(file)) {
                if (line.isBlank()) continue;
                all.add(gson.fromJson(line, JsonObject.class).getAsJsonArray("turns").get(0).getAsString());
            }
        }
        if (all.isEmpty()) all.add("public static int max(int a, int b) {\n");
        List<String> out = new ArrayList<>();
        for (int i = 0; i < n; i++) out.add(all.get(i % all.size()));
        return out;
    }
}
