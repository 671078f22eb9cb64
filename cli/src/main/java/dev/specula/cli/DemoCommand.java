package dev.specula.cli;

import dev.specula.Drafter;
import dev.specula.GenerationRequest;
import dev.specula.GenerationResult;
import dev.specula.SpeculaEngine;
import dev.specula.model.EagleLayerFile;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * The README's main command: generates from a Java prompt on the default model, then runs the same request with
 * each drafter and prints plain decoding against them side by side. Every drafter must reproduce the text.
 */
@Command(name = "demo", sortOptions = false, mixinStandardHelpOptions = true,
        description = "Generate from a Java prompt, then compare plain decoding with each drafter side by side.")
final class DemoCommand implements Callable<Integer> {
    static final String PROMPT = """
            /**
             * Returns the largest element of the array.
             *
             * @param values the values to search, not empty
             * @return the largest value
             */
            public static int max(int[] values) {
            """;

    @Mixin
    EngineOptions engine;

    @Option(names = "--prompt", paramLabel = "TEXT", description = "The prompt (default: a Javadoc'd method signature).")
    String prompt = PROMPT;

    @Option(names = "--max-tokens", paramLabel = "N", defaultValue = "160", description = "Tokens to generate (default: ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--drafters", paramLabel = "LIST", split = ",", converter = EngineOptions.DrafterName.class,
            description = "Drafters to compare with plain decoding (default: pld, recycling, and draft-model when the demo draft is there).")
    List<Drafter> drafters;

    @Option(names = "--rounds", paramLabel = "N", defaultValue = "5", description = "Timed runs per drafter, after one untimed warm-up run; the median counts (default: ${DEFAULT-VALUE}).")
    int rounds;

    @Override
    public Integer call() {
        Path path = engine.modelPath();
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        // The engine is budgeted for the library's default drafter; each request names its own.
        try (SpeculaEngine built = engine.builder(Drafter.parse(Drafter.DEFAULT_NAME), EngineOptions.CLI_BATCH).build()) {
            out.println("model: " + path);
            out.println("----");
            out.print(prompt);
            GenerationResult plain = built.generate(request(Drafter.NONE), out::print, () -> false);
            out.println();
            out.println("----");
            List<Drafter> names = new ArrayList<>(List.of(Drafter.NONE));
            if (drafters != null) {
                names.addAll(drafters);
            } else {
                names.addAll(List.of(Drafter.PLD, Drafter.RECYCLING));
                if (engine.model == null && engine.draftModel == null && DefaultModel.demoDraft() != null
                        && path.getFileName().toString().equals(Path.of(DefaultModel.DEMO_TARGET).getFileName().toString())) {
                    names.add(Drafter.DRAFT_MODEL);
                }
                if (engine.model == null && engine.heads == null && DefaultModel.demoHeads() != null
                        && path.getFileName().toString().equals(Path.of(DefaultModel.DEMO_TARGET).getFileName().toString())) {
                    names.add(Drafter.HYDRA);
                    if (Files.isDirectory(DefaultModel.demoHeads().resolve(EagleLayerFile.FOLDER))) names.add(Drafter.EAGLE);
                }
            }
            // One untimed round first: each drafter's first requests run cold code (JIT) and would be timed as its
            // speed. Then rounds interleave the drafters so that they share the machine's noise, and the median counts.
            double[][] rate = new double[names.size()][rounds];
            double[] accepted = new double[names.size()];
            for (int round = -1; round < rounds; round++) {
                for (int i = 0; i < names.size(); i++) {
                    GenerationResult r = built.generate(request(names.get(i)), t -> {}, () -> false);
                    if (!Arrays.equals(r.tokens(), plain.tokens()))
                        throw new IllegalStateException("drafter " + names.get(i) + " changed the greedy output");
                    if (round < 0) continue;
                    rate[i][round] = r.stats().generatedTokensPerSecond();
                    accepted[i] += (r.speculation() == null ? 1.0 : r.speculation().meanAccepted()) / rounds;
                }
            }
            double[] median = new double[names.size()];
            for (int i = 0; i < names.size(); i++) {
                double[] sorted = rate[i].clone();
                Arrays.sort(sorted);
                median[i] = rounds % 2 == 1 ? sorted[rounds / 2] : (sorted[rounds / 2 - 1] + sorted[rounds / 2]) / 2;
            }
            int best = 0;
            for (int i = 1; i < names.size(); i++) if (median[i] > median[best]) best = i;
            out.printf(Locale.ROOT, "%-12s %10s %15s %8s%n", "drafter", "tokens/s", "tokens/step", "speedup");
            for (int i = 0; i < names.size(); i++) {
                out.printf(Locale.ROOT, "%-12s %10.1f %15.2f %7.2fx%s%n", names.get(i), median[i], accepted[i], median[i] / median[0],
                        i == best && i > 0 ? "  <- best" : "");
            }
            out.println("(greedy; every drafter produced exactly the text above; median of " + rounds + " runs each, after one untimed run)");
        }
        return 0;
    }

    private GenerationRequest request(Drafter drafter) {
        return GenerationRequest.builder(prompt).maxTokens(maxTokens).drafter(drafter).build();
    }
}
