package dev.specula.cli;

import com.google.gson.GsonBuilder;
import dev.specula.GenerationRequest;
import dev.specula.GenerationResult;
import dev.specula.SpeculaEngine;
import dev.specula.model.LoadedModel;
import dev.specula.sampling.BannedSequences;
import dev.specula.sampling.CandidateFilter;
import dev.specula.sampling.RelaxedVerifier;
import dev.specula.sampling.SamplingOptions;
import dev.specula.sampling.TokenNeighbours;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** Generates text from a prompt, streaming it, with the stats at the end (or one JSON object with --json). */
@Command(name = "run", sortOptions = false, mixinStandardHelpOptions = true,
        description = "Generate text from a prompt.")
final class RunCommand implements Callable<Integer> {
    @Mixin
    EngineOptions engine;

    @Mixin
    EngineOptions.DrafterChoice drafter;

    @Option(names = "--prompt", paramLabel = "TEXT", defaultValue = "public static int max(int a, int b) {\n",
            description = "The prompt (default: a Java method signature).")
    String prompt;

    @Option(names = "--max-tokens", paramLabel = "N", defaultValue = "64", description = "Most tokens to generate (default: ${DEFAULT-VALUE}).")
    int maxTokens;

    @Mixin
    EngineOptions.SamplingChoice sampling;

    @Option(names = "--top-k", paramLabel = "K", defaultValue = "0", description = "Keep the K most likely tokens; 0 keeps all.")
    int topK;

    @Option(names = "--top-p", paramLabel = "P", defaultValue = "1", description = "Nucleus sampling mass; 1 keeps all.")
    float topP;

    @Option(names = "--min-p", paramLabel = "P", defaultValue = "0", description = "Drop tokens below P times the top probability.")
    float minP;

    @Option(names = "--repeat-penalty", paramLabel = "X", defaultValue = "1", description = "Penalty for recent tokens; 1 is none.")
    float repeatPenalty;

    @Option(names = "--stop", paramLabel = "TEXT", description = "A string that ends the output (repeatable).")
    List<String> stop = new ArrayList<>();

    @Option(names = "--verify", paramLabel = "MODE", defaultValue = "greedy",
            description = "greedy (temperature 0) or sample (lossless, needs --temperature > 0); typical or lantern"
                    + " (relaxed, LOSSY: accept drafts the model would not have chosen; temperature 0, needs a --drafter).")
    String verify;

    @Option(names = "--ban", paramLabel = "TEXT",
            description = "A string never to generate (repeatable); banned as the tokenizer encodes it, other tokenizations are not caught.")
    List<String> ban = new ArrayList<>();

    @Option(names = "--json", description = "Print one JSON object with the token ids, the text and the stats.")
    boolean json;

    @Override
    public Integer call() {
        // OptionRules has checked --verify and its temperature.
        if (verify.equals("typical") || verify.equals("lantern"))
            System.err.println("warning: --verify " + verify + " is LOSSY: the output may differ from the model's own greedy output");
        SamplingOptions options = new SamplingOptions(sampling.temperature, topK, topP, minP, repeatPenalty, 64, sampling.seed);
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        // The budget is checked on the mapped file, before any weight reaches the backend.
        try (SpeculaEngine built = engine.builder(drafter.drafter, EngineOptions.CLI_BATCH).build()) {
            if (built.memoryBudget().shrunk()) System.err.println("specula: " + built.memoryBudget().describe());
            run(built, options, out, built.model().file().path());
        }
        return 0;
    }

    private void run(SpeculaEngine built, SamplingOptions sampling, PrintStream out, Path path) {
        LoadedModel loaded = built.model();
        List<CandidateFilter> filters = ban.isEmpty() ? List.of() : List.of(BannedSequences.ofStrings(loaded.tokenizer(), ban));
        RelaxedVerifier relaxed = switch (verify) {
            case "typical" -> RelaxedVerifier.typical();
            case "lantern" -> RelaxedVerifier.lantern(TokenNeighbours.fromGguf(loaded.file().gguf().orElseThrow(
                    () -> new IllegalArgumentException("--verify lantern reads the token embeddings from a GGUF model")),
                    TokenNeighbours.DEFAULT_K), RelaxedVerifier.LANTERN_DELTA);
            default -> null;
        };
        GenerationRequest request = GenerationRequest.builder(prompt).maxTokens(maxTokens).sampling(sampling).stopStrings(stop)
                .filters(filters).relaxed(relaxed).build();
        if (!json) out.print(prompt);
        GenerationResult r = built.generate(request, text -> {
            if (!json) out.print(text);
        }, () -> false);
        if (json) {
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("model", path.toString());
            o.put("prompt", prompt);
            o.put("prompt_tokens", r.promptTokens());
            o.put("tokens", r.tokens());
            o.put("text", r.text());
            o.put("stop_reason", r.stopReason().name().toLowerCase());
            Map<String, Object> stats = new LinkedHashMap<>();
            stats.put("prompt_tokens", r.stats().promptTokens());
            stats.put("generated_tokens", r.stats().generatedTokens());
            stats.put("prompt_seconds", r.stats().promptSeconds());
            stats.put("generate_seconds", r.stats().generateSeconds());
            stats.put("prompt_tokens_per_second", r.stats().promptTokensPerSecond());
            stats.put("generated_tokens_per_second", r.stats().generatedTokensPerSecond());
            if (r.speculation() != null) {
                stats.put("drafter", drafter.drafter.cliName());
                stats.put("steps", r.speculation().steps());
                stats.put("mean_accepted_tokens", r.speculation().meanAccepted());
                stats.put("accepted_length_histogram", r.speculation().acceptedLengthHistogram());
                double[] depth = new double[r.speculation().maxDepthReached()];
                for (int d = 0; d < depth.length; d++) depth[d] = r.speculation().acceptanceAtDepth(d + 1);
                stats.put("acceptance_by_depth", depth);
                stats.put("draft_seconds", r.speculation().draftSeconds());
                stats.put("verify_seconds", r.speculation().verifySeconds());
                stats.put("other_seconds", r.speculation().otherSeconds());
            }
            o.put("stats", stats);
            out.println(new GsonBuilder().disableHtmlEscaping().create().toJson(o));
        } else {
            out.println();
            String spec = r.speculation() == null ? "" : String.format(", %s: %.2f tokens/step", drafter.drafter, r.speculation().meanAccepted());
            System.err.printf("%n[%s: %d prompt tokens at %.1f tok/s, %d generated at %.1f tok/s%s, stopped: %s]%n",
                    path.getFileName(), r.stats().promptTokens(), r.stats().promptTokensPerSecond(),
                    r.stats().generatedTokens(), r.stats().generatedTokensPerSecond(), spec, r.stopReason().name().toLowerCase());
        }
    }
}
