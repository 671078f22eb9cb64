package dev.specula.bench;

import com.google.gson.Gson;
import com.google.gson.JsonObject;
import dev.specula.Drafter;
import dev.specula.GenerationRequest;
import dev.specula.GenerationResult;
import dev.specula.SpeculaEngine;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Issue 12, part 4: with the back-off on (the default), is every drafter at least 0.97x plain decoding on every
 * prompt category? Each question is answered greedily by every drafter in turn, several rounds (the drafters'
 * order rotating per round), on one engine: so all share the machine's noise, and the back-off's accounts learn
 * across questions as a long-running engine's do. A drafter's time on a question is its fastest round, by wall
 * clock and by process CPU time (on a shared machine a one-thread run's CPU time is what it would cost alone);
 * a category's speedup is the sum of plain decoding's times over the drafter's. Every output is checked against
 * plain decoding's (lossless), and a mismatch fails the run.
 *
 * <p>Usage: BackoffBench TARGET.gguf DRAFT.gguf|- PROMPTS.jsonl [tokens=96] [limit=0] [rounds=2] [threads=1]
 * ({@code -}: no draft model, so no draft-model drafter). PROMPTS: one JSON object per line with category and
 * turns (the first turn is the prompt), as {@code specula bench} reads.
 */
public final class BackoffBench {
    record Question(String category, String prompt) {}

    /** One drafter on one question: its fastest round. */
    static final class Best {
        double wall = Double.MAX_VALUE;
        double cpu = Double.MAX_VALUE;
        long steps;
        long tokens;
    }

    public static void main(String[] args) throws IOException {
        if (args.length < 3) {
            System.err.println("usage: BackoffBench TARGET.gguf DRAFT.gguf|- PROMPTS.jsonl [tokens=96] [limit=0] [rounds=2] [threads=1]");
            System.exit(2);
        }
        Path target = Path.of(args[0]);
        Path draft = args[1].equals("-") ? null : Path.of(args[1]);
        List<Question> questions = read(Path.of(args[2]));
        int tokens = args.length > 3 ? Integer.parseInt(args[3]) : 96;
        int limit = args.length > 4 ? Integer.parseInt(args[4]) : 0;
        int rounds = args.length > 5 ? Integer.parseInt(args[5]) : 2;
        int threads = args.length > 6 ? Integer.parseInt(args[6]) : 1;
        if (limit > 0 && questions.size() > limit) questions = questions.subList(0, limit);
        List<Drafter> drafters = new ArrayList<>();
        for (Drafter d : Drafter.values()) if ((d != Drafter.DRAFT_MODEL || draft != null) && !d.needsHeads()) drafters.add(d);

        var builder = SpeculaEngine.builder().model(target).threads(threads).contextLength(2048).drafter(Drafter.RECYCLING).batch(1);
        if (draft != null) builder.draftModel(draft);
        List<Map<Drafter, Best>> best = new ArrayList<>();
        try (SpeculaEngine engine = builder.build()) {
            System.out.printf(Locale.ROOT, "back-off on (default): target %s, draft %s, prompts %s: %d questions x %d tokens, %d rounds, %d thread(s)%n",
                    target.getFileName(), draft == null ? "none" : draft.getFileName(), Path.of(args[2]).getFileName(),
                    questions.size(), tokens, rounds, threads);
            // Warm-up: every drafter's code compiled, the mapping touched; outside the figures.
            for (int w = 0; w < 2; w++) for (Drafter d : drafters) run(engine, questions.get(0).prompt(), tokens, d);
            for (int q = 0; q < questions.size(); q++) {
                Map<Drafter, Best> byDrafter = new LinkedHashMap<>();
                for (Drafter d : drafters) byDrafter.put(d, new Best());
                int[] reference = null; // plain decoding's output: NONE is first in the first round
                for (int r = 0; r < rounds; r++) {
                    for (int k = 0; k < drafters.size(); k++) {
                        Drafter d = drafters.get((k + r) % drafters.size());
                        Timed t = run(engine, questions.get(q).prompt(), tokens, d);
                        if (d == Drafter.NONE && reference == null) reference = t.result.tokens();
                        Best b = byDrafter.get(d);
                        b.wall = Math.min(b.wall, t.result.stats().generateSeconds());
                        b.cpu = Math.min(b.cpu, t.generationCpu());
                        var s = t.result.speculation();
                        b.steps = s == null ? t.result.tokens().length : s.steps();
                        b.tokens = t.result.tokens().length;
                        if (Boolean.getBoolean("specula.bench.verbose"))
                            System.err.printf(Locale.ROOT, "question %d round %d %s: %d tokens in %d steps, %.4f s wall, %.4f s CPU%n",
                                    q + 1, r + 1, d.cliName(), b.tokens, b.steps, t.result.stats().generateSeconds(), t.generationCpu());
                        if (d != Drafter.NONE && reference != null && !Arrays.equals(reference, t.result.tokens()))
                            throw new IllegalStateException("NOT LOSSLESS: drafter " + d + " changed the greedy output of question " + (q + 1));
                    }
                }
                best.add(byDrafter);
                System.err.printf(Locale.ROOT, "\r%d/%d questions", q + 1, questions.size());
            }
            System.err.println();
        }
        table(questions, drafters, best);
    }

    private static void table(List<Question> questions, List<Drafter> drafters, List<Map<Drafter, Best>> best) {
        List<String> categories = new ArrayList<>(List.of("all"));
        for (Question q : questions) if (!categories.contains(q.category())) categories.add(q.category());
        System.out.println("| drafter | category | speedup (wall, fastest round) | speedup (CPU time) | tokens/step | >= 0.97x |");
        System.out.println("|---|---|---|---|---|---|");
        for (Drafter d : drafters) {
            if (d == Drafter.NONE) continue;
            for (String c : categories) {
                double noneWall = 0, noneCpu = 0, wall = 0, cpu = 0;
                long steps = 0, tokens = 0;
                for (int q = 0; q < questions.size(); q++) {
                    if (!c.equals("all") && !questions.get(q).category().equals(c)) continue;
                    Best n = best.get(q).get(Drafter.NONE), b = best.get(q).get(d);
                    noneWall += n.wall;
                    noneCpu += n.cpu;
                    wall += b.wall;
                    cpu += b.cpu;
                    steps += b.steps;
                    tokens += b.tokens;
                }
                double sw = noneWall / wall, sc = noneCpu / cpu;
                System.out.printf(Locale.ROOT, "| %s | %s | %.3f | %.3f | %.2f | %s |%n", d.cliName(), c, sw, sc,
                        steps == 0 ? 0 : (double) tokens / steps, Math.max(sw, sc) >= 0.97 ? "yes" : "NO");
            }
        }
    }

    private static final com.sun.management.OperatingSystemMXBean OS =
            (com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean();

    record Timed(GenerationResult result, double cpuSeconds) {
        /** The run's CPU time less the prompt's share, the share taken from the wall clock. */
        double generationCpu() {
            double wall = result.stats().promptSeconds() + result.stats().generateSeconds();
            return wall > 0 ? cpuSeconds * result.stats().generateSeconds() / wall : 0;
        }
    }

    private static Timed run(SpeculaEngine engine, String prompt, int maxTokens, Drafter drafter) {
        long cpu0 = OS.getProcessCpuTime();
        GenerationResult r = engine.generate(GenerationRequest.builder(prompt).maxTokens(maxTokens).drafter(drafter).build(), t -> {}, () -> false);
        return new Timed(r, (OS.getProcessCpuTime() - cpu0) / 1e9);
    }

    private static List<Question> read(Path file) throws IOException {
        List<Question> out = new ArrayList<>();
        Gson gson = new Gson();
        for (String line : Files.readAllLines(file)) {
            if (line.isBlank()) continue;
            JsonObject o = gson.fromJson(line, JsonObject.class);
            String category = o.has("category") ? o.get("category").getAsString() : "default";
            out.add(new Question(category, o.getAsJsonArray("turns").get(0).getAsString()));
        }
        if (out.isEmpty()) throw new IllegalArgumentException(file + ": no questions");
        return out;
    }
}
