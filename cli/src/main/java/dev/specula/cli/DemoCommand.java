package dev.specula.cli;

import dev.specula.Drafters;
import dev.specula.engine.GenerationRequest;
import dev.specula.engine.GenerationResult;
import dev.specula.engine.Generator;
import dev.specula.engine.LoadedModel;
import dev.specula.engine.SamplingOptions;
import dev.specula.nativeapi.Context;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
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
    BackendOptions where;

    @Option(names = "--model", paramLabel = "FILE", description = "The target model (default: the demo model).")
    Path model;

    @Option(names = "--prompt", paramLabel = "TEXT", description = "The prompt (default: a Javadoc'd method signature).")
    String prompt = PROMPT;

    @Option(names = "--max-tokens", paramLabel = "N", defaultValue = "160", description = "Tokens to generate (default: ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--drafters", paramLabel = "LIST", split = ",",
            description = "Drafters to compare with plain decoding (default: pld, recycling, and draft-model when the demo draft is there).")
    List<String> drafters;

    @Option(names = "--rounds", paramLabel = "N", defaultValue = "3", description = "Timed runs per drafter; the best counts (default: ${DEFAULT-VALUE}).")
    int rounds;

    @Override
    public Integer call() {
        Path path = model != null ? model : DefaultModel.locate();
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        try (Context ctx = where.open(); LoadedModel loaded = LoadedModel.open(ctx, path);
             Drafters factory = new Drafters(loaded, 81, true)) {
            Generator generator = loaded.generator(2048);
            out.println("model: " + path);
            out.println("----");
            out.print(prompt);
            GenerationResult plain = generator.generate(new GenerationRequest(prompt, maxTokens, SamplingOptions.GREEDY, List.of(), null, null),
                    out::print, () -> false);
            out.println();
            out.println("----");
            List<String> names = new ArrayList<>(List.of("none"));
            if (drafters != null) {
                names.addAll(drafters);
            } else {
                names.addAll(List.of("pld", "recycling"));
                if (model == null && java.nio.file.Files.isRegularFile(Path.of(System.getProperty("specula.home", ".")).resolve(Drafters.DEMO_DRAFT))
                        && path.getFileName().toString().equals(Path.of(DefaultModel.DEMO_TARGET).getFileName().toString())) {
                    names.add("draft-model");
                }
            }
            double[] rate = new double[names.size()];
            double[] accepted = new double[names.size()];
            // Rounds interleave the drafters so that they share the machine's noise.
            for (int round = 0; round < rounds; round++) {
                for (int i = 0; i < names.size(); i++) {
                    GenerationResult r = generator.generate(new GenerationRequest(prompt, maxTokens, SamplingOptions.GREEDY, List.of(),
                            null, factory.speculation(names.get(i))), t -> {}, () -> false);
                    if (!Arrays.equals(r.tokens(), plain.tokens()))
                        throw new IllegalStateException("drafter " + names.get(i) + " changed the greedy output");
                    rate[i] = Math.max(rate[i], r.stats().generatedTokensPerSecond());
                    accepted[i] = r.speculation() == null ? 1.0 : r.speculation().meanAccepted();
                }
            }
            int best = 0;
            for (int i = 1; i < names.size(); i++) if (rate[i] > rate[best]) best = i;
            out.printf(Locale.ROOT, "%-12s %10s %15s %8s%n", "drafter", "tokens/s", "tokens/step", "speedup");
            for (int i = 0; i < names.size(); i++) {
                out.printf(Locale.ROOT, "%-12s %10.1f %15.2f %7.2fx%s%n", names.get(i), rate[i], accepted[i], rate[i] / rate[0],
                        i == best && i > 0 ? "  <- best" : "");
            }
            out.println("(greedy; every drafter produced exactly the text above; best of " + rounds + " runs each)");
        }
        return 0;
    }
}
