package dev.specula.bench;

import dev.specula.Drafter;
import dev.specula.GenerationRequest;
import dev.specula.GenerationResult;
import dev.specula.SpeculaEngine;
import dev.specula.engine.DraftPolicy;
import dev.specula.engine.SpecStats;
import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.policies.NoSpeculation;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The speculation machinery measured apart from drafter quality (issue 12, part 5): an {@link OracleDrafter} with
 * a chosen acceptance rate alpha runs through the engine's real decode loop, adaptive back-off off, and the
 * speedup over plain decoding (the same loop with a lone root each step) is printed next to the analytic
 * expectation E[L] / c(T): E[L] = (1 − alpha^(n+1)) / (1 − alpha) tokens per step for n guesses in a row, c(T)
 * the verify-step time at T tree tokens over the plain step time, both measured in the same run. The acceptance
 * is SYNTHETIC: this says what the engine would deliver with a drafter that good, not what any drafter achieves.
 * Every speculative output is checked against plain decoding (lossless), and a mismatch fails the run.
 *
 * <p>Usage: OracleDrafterBench MODEL.gguf [threads=1] [tokens=64] [prompts=3]
 *
 * <p>A MODEL that does not exist is written first: a random 1B Q8_0 llama (dim 2048, 18 layers, 32 heads, 8 KV
 * heads, ff 5632, vocab 32000, seed 1). System properties: {@code specula.bench.alphas} (default
 * 0.5,0.6,0.7,0.8,0.9,0.95), {@code specula.bench.trees} tree sizes T including the root (default 5,9),
 * {@code specula.bench.siblings} random siblings per depth, one run per value (default 0: chains),
 * {@code specula.bench.promptLength} (default 32).
 */
public final class OracleDrafterBench {
    public static void main(String[] args) {
        if (args.length == 0) {
            System.err.println("usage: OracleDrafterBench MODEL.gguf [threads=1] [tokens=64] [prompts=3]");
            System.exit(2);
        }
        Path file = Path.of(args[0]);
        int threads = args.length > 1 ? Integer.parseInt(args[1]) : 1;
        int tokens = args.length > 2 ? Integer.parseInt(args[2]) : 64;
        int prompts = args.length > 3 ? Integer.parseInt(args[3]) : 3;
        double[] alphas = doubles(System.getProperty("specula.bench.alphas", "0.5,0.6,0.7,0.8,0.9,0.95"));
        int[] trees = ints(System.getProperty("specula.bench.trees", "5,9"));
        int[] siblingCounts = ints(System.getProperty("specula.bench.siblings", "0"));
        int promptLength = Integer.getInteger("specula.bench.promptLength", 32);
        if (!Files.exists(file)) {
            System.out.println("writing a random 1B Q8_0 model to " + file);
            new TestModelMaker().dim(2048).layers(18).heads(32).kvHeads(8).ff(5632).vocab(32000).context(2048)
                    .type(GgmlType.Q8_0).seed(1).tokenizer(VocabTrainer.ggufMetadata("llama", 32000, 1)).write(file);
        }
        int maxTree = Arrays.stream(trees).max().orElse(1);
        try (SpeculaEngine engine = SpeculaEngine.builder().model(file).threads(threads).contextLength(promptLength + tokens + maxTree + 8)
                .drafter(Drafter.NONE).maxTreeNodes(maxTree).adaptive(false).batch(1).build()) {
            int vocab = engine.model().model().shape().nVocab();
            System.out.printf(Locale.ROOT, "SYNTHETIC acceptance (oracle drafter, not a real drafter): model %s, threads %d, %d tokens x %d prompts of %d tokens, adaptive off%n",
                    file.getFileName(), threads, tokens, prompts, promptLength);
            SplittableRandom promptRng = new SplittableRandom(7);
            int[][] promptTokens = new int[prompts][];
            for (int p = 0; p < prompts; p++) promptTokens[p] = promptRng.ints(promptLength, 3, vocab).toArray();
            run(engine, promptTokens[0], Math.min(tokens, 8), new NoSpeculation(), 1); // warm-up
            for (int siblings : siblingCounts) {
                for (int tree : trees) {
                    int depth = (tree - 1) / (1 + siblings);
                    if (depth < 1) continue;
                    int nodes = 1 + depth * (1 + siblings);
                    table(engine, promptTokens, tokens, alphas, nodes, depth, siblings, vocab);
                }
            }
        }
    }

    /** One table: every alpha at one tree shape, each prompt's plain run just before its speculative ones. */
    private static void table(SpeculaEngine engine, int[][] prompts, int tokens, double[] alphas, int nodes, int depth, int siblings, int vocab) {
        double plainSeconds = 0, plainVerify = 0, plainCpu = 0;
        long plainTokens = 0, plainSteps = 0;
        double[] specSeconds = new double[alphas.length], specVerify = new double[alphas.length], specCpu = new double[alphas.length];
        long[] specTokens = new long[alphas.length], specSteps = new long[alphas.length];
        for (int p = 0; p < prompts.length; p++) {
            // the continuation runs depth tokens past the budget so the oracle has guesses up to the last step
            GenerationResult plain = run(engine, prompts[p], tokens + depth, new NoSpeculation(), 1);
            plainSeconds += plain.stats().generateSeconds();
            plainCpu += generationShare(plain);
            plainTokens += plain.tokens().length;
            plainVerify += plain.speculation().verifySeconds();
            plainSteps += plain.speculation().steps();
            int[] expected = concat(plain.promptTokens(), plain.tokens());
            int[] plainPrefix = Arrays.copyOf(plain.tokens(), Math.min(tokens, plain.tokens().length));
            for (int a = 0; a < alphas.length; a++) {
                OracleDrafter oracle = new OracleDrafter(expected, alphas[a], siblings, vocab, 1000L * p + a);
                GenerationResult spec = run(engine, prompts[p], tokens, oracle, nodes);
                if (!Arrays.equals(spec.tokens(), plainPrefix))
                    throw new IllegalStateException("NOT LOSSLESS: prompt " + p + ", alpha " + alphas[a] + ", tree " + nodes
                            + ": speculative output differs from plain decoding\n plain " + Arrays.toString(plainPrefix)
                            + "\n spec  " + Arrays.toString(spec.tokens()));
                SpecStats s = spec.speculation();
                specSeconds[a] += spec.stats().generateSeconds();
                specCpu[a] += generationShare(spec);
                specTokens[a] += spec.tokens().length;
                specVerify[a] += s.verifySeconds();
                specSteps[a] += s.steps();
            }
        }
        double plainPerToken = plainSeconds / plainTokens, plainStep = plainVerify / plainSteps;
        System.out.printf(Locale.ROOT, "%n%s: T = %d tree tokens (%d guesses in a row%s), plain %.1f ms/token, lossless: every output = plain decoding%n",
                siblings == 0 ? "chain" : "tree", nodes, depth, siblings == 0 ? "" : ", " + siblings + " random siblings per depth",
                plainPerToken * 1e3);
        System.out.println("| alpha | E[L] analytic | L measured | c(T) measured | expected speedup E[L]/c(T) | measured speedup | measured / expected | speedup by CPU time |");
        System.out.println("|---|---|---|---|---|---|---|---|");
        for (int a = 0; a < alphas.length; a++) {
            double alpha = alphas[a];
            double expectedLength = alpha == 1 ? depth + 1 : (1 - Math.pow(alpha, depth + 1)) / (1 - alpha);
            double measuredLength = (double) specTokens[a] / specSteps[a];
            double stepCost = (specVerify[a] / specSteps[a]) / plainStep;
            double expectedSpeedup = expectedLength / stepCost;
            double measuredSpeedup = plainPerToken / (specSeconds[a] / specTokens[a]);
            double cpuSpeedup = (plainCpu / plainTokens) / (specCpu[a] / specTokens[a]);
            System.out.printf(Locale.ROOT, "| %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |%n", alpha, expectedLength, measuredLength,
                    stepCost, expectedSpeedup, measuredSpeedup, measuredSpeedup / expectedSpeedup, cpuSpeedup);
        }
    }

    private static final com.sun.management.OperatingSystemMXBean OS =
            (com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean();

    /** Process CPU seconds of the last {@link #run}, prompt included: on a shared machine a one-thread run's CPU time is what it would cost alone. */
    private static double lastCpuSeconds;

    private static GenerationResult run(SpeculaEngine engine, int[] prompt, int maxTokens, DraftPolicy policy, int maxTreeNodes) {
        long cpu0 = OS.getProcessCpuTime();
        GenerationResult result = run0(engine, prompt, maxTokens, policy, maxTreeNodes);
        lastCpuSeconds = (OS.getProcessCpuTime() - cpu0) / 1e9;
        return result;
    }

    /** The last run's CPU time less the prompt's share, the share taken from the wall clock (both slowed alike by other work). */
    private static double generationShare(GenerationResult r) {
        double wall = r.stats().promptSeconds() + r.stats().generateSeconds();
        return wall > 0 ? lastCpuSeconds * r.stats().generateSeconds() / wall : 0;
    }

    private static GenerationResult run0(SpeculaEngine engine, int[] prompt, int maxTokens, DraftPolicy policy, int maxTreeNodes) {
        GenerationRequest request = GenerationRequest.builder("").promptTokens(prompt).addBos(false).maxTokens(maxTokens)
                .speculation(new GenerationRequest.Speculation(policy, maxTreeNodes, false)).build();
        return engine.generate(request, text -> {}, () -> false);
    }

    private static int[] concat(int[] a, int[] b) {
        int[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    private static double[] doubles(String csv) {
        return Arrays.stream(csv.split(",")).map(String::trim).mapToDouble(Double::parseDouble).toArray();
    }

    private static int[] ints(String csv) {
        return Arrays.stream(csv.split(",")).map(String::trim).mapToInt(Integer::parseInt).toArray();
    }
}
