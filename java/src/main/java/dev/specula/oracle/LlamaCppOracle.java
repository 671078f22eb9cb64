package dev.specula.oracle;

import com.google.gson.Gson;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * llama.cpp's prebuilt CPU library, reached through tools/oracle/llama-oracle.mjs (node-llama-cpp from npm):
 * the independent implementation Specula's tests compare with, and the CPU speed peer of the benchmarks.
 * {@link #find()} is empty, with {@link #whyMissing()} saying why, where node or the install is missing.
 */
public final class LlamaCppOracle {
    private static final Gson GSON = new Gson();
    private static String whyMissing = "";

    private final Path script;
    private final Path oracleDir;
    private final String node;

    private LlamaCppOracle(Path script, Path oracleDir, String node) {
        this.script = script;
        this.oracleDir = oracleDir;
        this.node = node;
    }

    public static Path repoRoot() {
        return Path.of(System.getProperty("specula.repo", System.getProperty("specula.home", ".."))).toAbsolutePath().normalize();
    }

    public static synchronized Optional<LlamaCppOracle> find() {
        Path script = repoRoot().resolve("tools/oracle/llama-oracle.mjs");
        String dirProp = System.getenv().getOrDefault("SPECULA_ORACLE_DIR",
                Path.of(System.getProperty("user.home"), ".cache", "specula", "oracle").toString());
        Path dir = Path.of(dirProp);
        if (!Files.isRegularFile(script)) {
            whyMissing = "oracle script " + script + " is missing";
            return Optional.empty();
        }
        if (!Files.isDirectory(dir.resolve("node_modules/@node-llama-cpp/linux-x64"))) {
            whyMissing = "llama.cpp oracle is not installed in " + dir + " (run tools/oracle/install.sh)";
            return Optional.empty();
        }
        try {
            Process p = new ProcessBuilder("node", "--version").redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            if (!p.waitFor(20, TimeUnit.SECONDS) || p.exitValue() != 0) {
                whyMissing = "node does not run";
                return Optional.empty();
            }
        } catch (IOException | InterruptedException e) {
            whyMissing = "node is not installed (" + e.getMessage() + ")";
            return Optional.empty();
        }
        return Optional.of(new LlamaCppOracle(script, dir, "node"));
    }

    public static synchronized String whyMissing() {
        return whyMissing;
    }

    /**
     * llama.cpp's view of each text: its tokens (no BOS, control tokens in the text as plain text), its tokens
     * with control tokens parsed, and the detokenized plain tokens.
     */
    public record Tokenization(List<int[]> tokens, List<int[]> specialTokens, List<String> texts) {}

    /** Tokenizes each text; vocabOnly loads only the vocabulary, so a GGUF of metadata alone will do. */
    public Tokenization tokenize(Path model, List<String> texts, boolean vocabOnly) {
        JsonObject task = new JsonObject();
        task.addProperty("type", "tokenize");
        task.add("texts", GSON.toJsonTree(texts));
        JsonObject r = run(model, 0, 1, "F32", vocabOnly, List.of(task)).get(0).getAsJsonObject();
        List<String> decoded = new ArrayList<>();
        for (JsonElement e : r.getAsJsonArray("texts")) decoded.add(e.getAsString());
        return new Tokenization(rows(r.getAsJsonArray("tokens")), rows(r.getAsJsonArray("specialTokens")), decoded);
    }

    private static List<int[]> rows(JsonArray rows) {
        List<int[]> out = new ArrayList<>();
        for (JsonElement row : rows) out.add(GSON.fromJson(row, int[].class));
        return out;
    }

    /** The log-probabilities of the next token after each prefix of tokens: [positions][vocab]. */
    public float[][] logprobs(Path model, int vocabSize, int[] tokens) {
        JsonObject task = new JsonObject();
        task.addProperty("type", "logprobs");
        task.add("tokens", GSON.toJsonTree(tokens));
        JsonArray rows = run(model, vocabSize, 1, "F32", false, List.of(task)).get(0).getAsJsonObject().getAsJsonArray("logprobs");
        float[][] out = new float[rows.size()][];
        for (int i = 0; i < out.length; i++) out[i] = GSON.fromJson(rows.get(i), float[].class);
        return out;
    }

    /** Greedy continuation of tokens (which should start with BOS where the model uses one). */
    public int[] greedy(Path model, int[] tokens, int maxTokens) {
        JsonObject task = new JsonObject();
        task.addProperty("type", "greedy");
        task.add("tokens", GSON.toJsonTree(tokens));
        task.addProperty("maxTokens", maxTokens);
        return GSON.fromJson(run(model, 0, 1, "F32", false, List.of(task)).get(0).getAsJsonObject().get("tokens"), int[].class);
    }

    public record Speed(double promptSeconds, double decodeSeconds, int generated) {}

    /**
     * Times prompt processing of tokens and the greedy decoding of decodeTokens more, at a thread count, with
     * the KV cache in kvType ("F16" is llama.cpp's default).
     */
    public Speed speed(Path model, int[] tokens, int decodeTokens, int threads, String kvType) {
        JsonObject task = new JsonObject();
        task.addProperty("type", "speed");
        task.add("tokens", GSON.toJsonTree(tokens));
        task.addProperty("decodeTokens", decodeTokens);
        return GSON.fromJson(run(model, 0, threads, kvType, false, List.of(task)).get(0), Speed.class);
    }

    /**
     * llama.cpp's side of a verify step: after prefix, each step's tokens evaluated in one batch with logits at
     * every one, then erased again, reps times after a warm-up; milliseconds per call, per step (by the process's
     * CPU time with SPECULA_BENCH_CLOCK=cpu).
     */
    public double[][] stepCost(Path model, int[] prefix, int[][] steps, int reps, int threads, String kvType) {
        JsonObject task = new JsonObject();
        task.addProperty("type", "stepCost");
        task.add("tokens", GSON.toJsonTree(prefix));
        task.add("steps", GSON.toJsonTree(steps));
        task.addProperty("reps", reps);
        return GSON.fromJson(run(model, 0, threads, kvType, false, List.of(task)).get(0).getAsJsonObject().get("ms"), double[][].class);
    }

    /** Runs tasks; the oracle's KV cache is F32 unless asked, so it compares with an exact engine closely. */
    private JsonArray run(Path model, int vocabSize, int threads, String kvType, boolean vocabOnly, List<JsonObject> tasks) {
        try {
            Path dir = Files.createTempDirectory("specula-oracle");
            Path request = dir.resolve("request.json"), response = dir.resolve("response.json");
            Map<String, Object> req = Map.of("model", model.toAbsolutePath().toString(), "oracleDir", oracleDir.toString(),
                    "vocabSize", vocabSize, "threads", threads, "contextSize", 1024, "kvType", kvType, "vocabOnly", vocabOnly,
                    "tasks", tasks);
            Files.writeString(request, GSON.toJson(req));
            Process p = new ProcessBuilder(node, script.toString(), request.toString(), response.toString())
                    .redirectErrorStream(true).start();
            String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(600, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IllegalStateException("llama.cpp oracle timed out on " + model);
            }
            if (p.exitValue() != 0) throw new IllegalStateException("llama.cpp oracle failed on " + model + ":\n" + log);
            JsonArray results = GSON.fromJson(Files.readString(response), JsonObject.class).getAsJsonArray("results");
            Files.delete(request);
            Files.delete(response);
            Files.delete(dir);
            return results;
        } catch (IOException e) {
            throw new IllegalStateException("cannot run the llama.cpp oracle: " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while running the llama.cpp oracle", e);
        }
    }
}
