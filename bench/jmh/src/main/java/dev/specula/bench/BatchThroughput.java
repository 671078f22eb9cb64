package dev.specula.bench;

import com.google.gson.JsonParser;
import dev.specula.Drafter;
import dev.specula.EngineStats;
import dev.specula.GenerationRequest;
import dev.specula.GenerationResult;
import dev.specula.SpeculaEngine;
import dev.specula.model.gguf.GgmlType;
import dev.specula.model.TestModelMaker;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Continuous batching's throughput: the same N greedy requests served one at a time and all at once (one engine,
 * batch N), per drafter; aggregate generated tokens per second, the mean batch size the scheduler ran, and whether
 * every concurrent answer equals its one-at-a-time answer (exits 1 when one differs).
 *
 * <p>Usage: BatchThroughput [--model FILE | --random 100m] [--requests N] [--max-tokens N] [--drafters none,pld,...]
 * [--threads N] [--prompts FILE.jsonl] [--prompt-chars 400] [--rounds 3] [--alone false]. "--random 100m" writes
 * (once) the 100M random model of bench/RESULTS.md (dim 768, 10 layers, 12/4 heads, ff 2048, vocab 32000, F16) to
 * /tmp; "--random 100m-q8_0" and "--random 100m-q4_k_m" the same model as a Q8_0 or Q4_K_M file. Each prompt is
 * the last prompt-chars characters of a prompt file's first turn. Both ways are warmed up first (one request
 * alone, then all at once, untimed), then run in interleaved rounds (alone then together, then together then alone, ...) so that a change in the machine's load falls on both; each figure is the median over
 * the rounds. "--alone false" skips the one-at-a-time runs (for a sweep of batch sizes, speculation on against
 * off). "drafting" is the share of sequence steps in the concurrent runs that drafted at all: where the step cost
 * model's back-off switches speculation off, it falls towards 0. The load average is printed before and after. On
 * a shared machine the wall-clock rates swing with the load; "tok/CPU-s" (tokens per second of the process's CPU
 * time) is the steadier measure of work. The times include the prompts' prefill ("prompt tok" per request).
 */
public final class BatchThroughput {
    public static void main(String[] args) throws Exception {
        Map<String, String> o = new LinkedHashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) o.put(args[i], args[i + 1]);
        int n = Integer.parseInt(o.getOrDefault("--requests", "8"));
        int maxTokens = Integer.parseInt(o.getOrDefault("--max-tokens", "32"));
        int threads = Integer.parseInt(o.getOrDefault("--threads", "0"));
        int rounds = Integer.parseInt(o.getOrDefault("--rounds", "3"));
        int promptChars = Integer.parseInt(o.getOrDefault("--prompt-chars", "400"));
        boolean runAlone = Boolean.parseBoolean(o.getOrDefault("--alone", "true"));
        List<Drafter> drafters = Arrays.stream(o.getOrDefault("--drafters", "none,pld,recycling").split(",")).map(Drafter::parse).toList();
        Path model = o.containsKey("--random") ? random100m(o.get("--random")) : Path.of(o.getOrDefault("--model", "models/demo-target.gguf"));
        List<String> prompts = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of(o.getOrDefault("--prompts", "models/demo-prompts.jsonl")))) {
            if (prompts.size() == n) break;
            String turn = JsonParser.parseString(line).getAsJsonObject().getAsJsonArray("turns").get(0).getAsString();
            prompts.add(turn.length() > promptChars ? turn.substring(turn.length() - promptChars) : turn);
        }
        System.out.printf(Locale.ROOT, "batch throughput: %s, %d requests x %d tokens, threads %d, %d rounds (medians), load average %s%n",
                model.getFileName(), n, maxTokens, threads, rounds, loadAverage());
        System.out.println("| drafter | prompt tok | one at a time tok/s | all at once tok/s | ratio | one at a time tok/CPU-s | all at once tok/CPU-s | ratio |"
                + " mean batch | drafts | drafting | accepted/draft tokens | same text |");
        System.out.println("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        boolean allSame = true;
        for (Drafter d : drafters) {
            try (SpeculaEngine engine = SpeculaEngine.builder().model(model).drafter(d).contextLength(1024).threads(threads).batch(n).build()) {
                List<GenerationRequest> requests = new ArrayList<>();
                for (String p : prompts) requests.add(GenerationRequest.builder(p).maxTokens(maxTokens).stopTokens(java.util.Set.of()).build());
                engine.generate(requests.get(0), t -> {}, () -> false); // warm-up, both ways
                together(engine, requests);
                List<double[]> aloneRuns = new ArrayList<>(), togetherRuns = new ArrayList<>(); // {tokens/s, tokens/CPU-s}
                List<GenerationResult> alone = new ArrayList<>();
                boolean same = true;
                long steps = 0, stepSequences = 0, drafts = 0, draftTokens = 0, accepted = 0;
                double promptTokens = 0;
                for (int round = 0; round < rounds; round++) {
                    for (int half = 0; half < 2; half++) {
                        boolean aloneNow = (half == 0) == (round % 2 == 0);
                        if (aloneNow && !runAlone) continue;
                        long t0 = System.nanoTime(), c0 = cpuNanos();
                        EngineStats before = engine.stats();
                        List<GenerationResult> results = aloneNow ? one(engine, requests) : together(engine, requests);
                        double seconds = (System.nanoTime() - t0) / 1e9, cpu = (cpuNanos() - c0) / 1e9;
                        EngineStats after = engine.stats();
                        long tokens = results.stream().mapToLong(r -> r.tokens().length).sum();
                        (aloneNow ? aloneRuns : togetherRuns).add(new double[] {tokens / seconds, tokens / cpu});
                        promptTokens = results.stream().mapToInt(r -> r.promptTokens().length).average().orElse(0);
                        if (aloneNow) {
                            if (alone.isEmpty()) alone = results;
                            continue;
                        }
                        // round 0 runs alone first, so every together run is compared with the one-at-a-time texts
                        for (int i = 0; i < alone.size(); i++) same &= alone.get(i).text().equals(results.get(i).text());
                        steps += after.steps() - before.steps();
                        stepSequences += after.stepSequences() - before.stepSequences();
                        for (var e : after.speculation().entrySet()) {
                            var b = before.speculation().get(e.getKey());
                            drafts += e.getValue().drafts() - (b == null ? 0 : b.drafts());
                            draftTokens += e.getValue().draftTokens() - (b == null ? 0 : b.draftTokens());
                            accepted += e.getValue().acceptedTokens() - (b == null ? 0 : b.acceptedTokens());
                        }
                    }
                }
                allSame &= same;
                double meanBatch = (double) stepSequences / Math.max(1, steps);
                double drafting = (double) drafts / Math.max(1, stepSequences);
                double a = median(aloneRuns, 0), t = median(togetherRuns, 0), ac = median(aloneRuns, 1), tc = median(togetherRuns, 1);
                System.out.printf(Locale.ROOT, "| %s | %.0f | %s | %.1f | %s | %s | %.1f | %s | %.2f | %d | %.0f%% | %d/%d | %s |%n", d, promptTokens,
                        runAlone ? String.format(Locale.ROOT, "%.1f", a) : "-", t, runAlone ? String.format(Locale.ROOT, "%.2fx", t / a) : "-",
                        runAlone ? String.format(Locale.ROOT, "%.1f", ac) : "-", tc, runAlone ? String.format(Locale.ROOT, "%.2fx", tc / ac) : "-",
                        meanBatch, drafts, 100 * drafting, accepted, draftTokens, runAlone ? (same ? "yes" : "NO") : "-");
            }
        }
        System.out.println("load average after: " + loadAverage());
        if (!allSame) System.exit(1);
    }

    /** The requests one after another. */
    static List<GenerationResult> one(SpeculaEngine engine, List<GenerationRequest> requests) {
        List<GenerationResult> out = new ArrayList<>();
        for (GenerationRequest r : requests) out.add(engine.generate(r, t -> {}, () -> false));
        return out;
    }

    /** The requests all at once, each from its own thread, released together; results in request order. */
    static List<GenerationResult> together(SpeculaEngine engine, List<GenerationRequest> requests) throws Exception {
        int n = requests.size();
        ExecutorService pool = Executors.newFixedThreadPool(n);
        try {
            CyclicBarrier start = new CyclicBarrier(n);
            List<Future<GenerationResult>> futures = new ArrayList<>();
            for (GenerationRequest r : requests) futures.add(pool.submit(() -> {
                start.await();
                return engine.generate(r, t -> {}, () -> false);
            }));
            List<GenerationResult> out = new ArrayList<>();
            for (Future<GenerationResult> f : futures) out.add(f.get());
            return out;
        } finally {
            pool.shutdown();
        }
    }

    /** The median of column c over the runs (NaN when there are none). */
    static double median(List<double[]> runs, int c) {
        if (runs.isEmpty()) return Double.NaN;
        double[] v = runs.stream().mapToDouble(r -> r[c]).sorted().toArray();
        return v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }

    /** CPU time of the whole process, all threads (the native pool's included). */
    static long cpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean()).getProcessCpuTime();
    }

    static String loadAverage() {
        try {
            String[] f = Files.readString(Path.of("/proc/loadavg")).trim().split(" ");
            return f[0] + " " + f[1] + " " + f[2];
        } catch (java.io.IOException | RuntimeException e) {
            return "unknown";
        }
    }

    /**
     * "100m": the F16 file; "100m-q8_0" and "100m-q4_k_m": the same shape and seed typed as llama.cpp's quantizer
     * types a Q8_0 or Q4_K_M file (written once to /tmp, like the F16 one).
     */
    static Path random100m(String which) {
        dev.specula.model.LlamaFileType type = switch (which) {
            case "100m" -> null;
            case "100m-q8_0" -> dev.specula.model.LlamaFileType.Q8_0;
            case "100m-q4_k_m" -> dev.specula.model.LlamaFileType.Q4_K_M;
            default -> throw new IllegalArgumentException("--random takes 100m, 100m-q8_0 or 100m-q4_k_m, not " + which);
        };
        Path path = Path.of(System.getProperty("java.io.tmpdir"), "specula-random-" + which + ".gguf");
        if (Files.exists(path)) return path;
        TestModelMaker maker = new TestModelMaker().arch("llama").dim(768).layers(10).heads(12).kvHeads(4).ff(2048).vocab(32000).context(2048)
                .seed(1).tokenizer(VocabTrainer.ggufMetadata("llama", 32000, 1));
        (type == null ? maker.type(GgmlType.F16) : maker.fileType(type, false)).write(path);
        return path;
    }
}
