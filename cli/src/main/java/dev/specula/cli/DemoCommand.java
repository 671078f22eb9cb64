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

    @Option(names = "--rounds", paramLabel = "N", defaultValue = "7",
            description = "Paired rounds, after one untimed warm-up run of each: per round each drafter runs back to back with plain decoding; the median ratio counts (default: ${DEFAULT-VALUE}).")
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
            // speed. Then each round runs every drafter back to back with plain decoding, in alternating order, so
            // that both sides of a pair share the machine's load; the median of the pairs' ratios counts.
            if (rounds < 1) throw new IllegalArgumentException("--rounds must be at least 1, got " + rounds);
            double[][] rate = new double[names.size()][];
            double[] accepted = new double[names.size()];
            PairedRatios[] speedup = new PairedRatios[names.size()];
            List<Double> plainRates = new ArrayList<>();
            for (Drafter d : names) timed(built, d, plain);
            for (int i = 1; i < names.size(); i++) {
                rate[i] = new double[rounds];
                speedup[i] = new PairedRatios();
            }
            for (int round = 0; round < rounds; round++) {
                for (int k = 0; k < names.size() - 1; k++) {
                    int i = 1 + (k + round) % (names.size() - 1); // who follows whom changes per round
                    boolean plainFirst = (i + round) % 2 == 0; // each drafter alternates from round to round
                    PairedRatios.Timed base = null, drafted = null;
                    for (int side = 0; side < 2; side++) {
                        if ((side == 0) == plainFirst) base = timed(built, Drafter.NONE, plain);
                        else drafted = timed(built, names.get(i), plain);
                    }
                    plainRates.add(base.result().tokens().length / base.seconds());
                    rate[i][round] = drafted.result().tokens().length / drafted.seconds();
                    accepted[i] += (drafted.result().speculation() == null ? 1.0 : drafted.result().speculation().meanAccepted()) / rounds;
                    speedup[i].add(base.seconds(), drafted.seconds());
                }
            }
            if (names.size() == 1) {
                for (int round = 0; round < rounds; round++) {
                    PairedRatios.Timed base = timed(built, Drafter.NONE, plain);
                    plainRates.add(base.result().tokens().length / base.seconds());
                }
            }
            rate[0] = plainRates.stream().mapToDouble(Double::doubleValue).toArray();
            accepted[0] = 1.0;
            int best = 0;
            for (int i = 1; i < names.size(); i++) if (best == 0 || speedup[i].median() > speedup[best].median()) best = i;
            if (best > 0 && speedup[best].median() <= 1) best = 0;
            out.printf(Locale.ROOT, "%-12s %10s %15s %8s  %s%n", "drafter", "tokens/s", "tokens/step", "speedup", "95% interval");
            for (int i = 0; i < names.size(); i++) {
                double[] ci = i == 0 ? null : speedup[i].interval95();
                out.printf(Locale.ROOT, "%-12s %10.1f %15.2f %7.2fx  %s%s%n", names.get(i).cliName(), PairedRatios.median(rate[i]), accepted[i],
                        i == 0 ? 1.0 : speedup[i].median(), i == 0 ? "            " : String.format(Locale.ROOT, "[%.2f, %.2f]", ci[0], ci[1]),
                        i == best && i > 0 ? "  <- best" : "");
            }
            out.println("(greedy; every drafter produced exactly the text above; speedup: median over " + rounds
                    + " rounds of plain decoding's time over the drafter's, each round the two back to back, after one untimed run)");
        }
        return 0;
    }

    /** One timed run, which must reproduce plain decoding's text. */
    private PairedRatios.Timed timed(SpeculaEngine engine, Drafter drafter, GenerationResult plain) {
        PairedRatios.Timed t = PairedRatios.run(engine, request(drafter));
        if (!Arrays.equals(t.result().tokens(), plain.tokens()))
            throw new IllegalStateException("drafter " + drafter.cliName() + " changed the greedy output");
        return t;
    }

    private GenerationRequest request(Drafter drafter) {
        return GenerationRequest.builder(prompt).maxTokens(maxTokens).drafter(drafter).build();
    }
}
