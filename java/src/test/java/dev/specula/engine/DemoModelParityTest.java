package dev.specula.engine;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.Gson;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.specula.model.LoadedModel;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.oracle.LlamaCppOracle;
import dev.specula.policies.NoSpeculation;
import dev.specula.sampling.SamplingOptions;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/**
 * The trained demo target against the training code's own forward (PyTorch logits recorded at export time in
 * models/demo-target.reference.json, so CI needs no PyTorch) and against llama.cpp's greedy output.
 */
class DemoModelParityTest {
    static Path repo() {
        return LlamaCppOracle.repoRoot();
    }

    static Path reference() {
        return Path.of(System.getProperty("specula.demo.reference", repo().resolve("models/demo-target.reference.json").toString()));
    }

    @Test
    void logitsTokensAndGreedyMatchTheTrainingCodeAndLlamaCpp() throws Exception {
        Path refFile = reference();
        assumeTrue(Files.isRegularFile(refFile), "no demo model reference at " + refFile);
        JsonObject ref = new Gson().fromJson(Files.readString(refFile), JsonObject.class);
        Path gguf = refFile.resolveSibling(Path.of(ref.get("gguf").getAsString()).getFileName());
        assertTrue(Files.isRegularFile(gguf), gguf + " is missing beside its reference");
        var oracle = LlamaCppOracle.find();
        // An F32 KV cache, as the training code keeps its keys and values: an F16 cache alone moves logits ~1e-3.
        try (Context ctx = Context.cpu(); LoadedModel model = LoadedModel.open(ctx, gguf, DType.F32)) {
            int vocab = model.model().shape().nVocab();
            double worst = 0;
            for (JsonElement e : ref.getAsJsonArray("prompts")) {
                JsonObject p = e.getAsJsonObject();
                String text = p.get("text").getAsString();
                int[] tokens = ints(p.getAsJsonArray("tokens"));
                assertArrayEquals(tokens, model.tokenizer().encode(text, true), "tokenization of " + text);
                JsonArray rows = p.getAsJsonArray("logits");
                try (KvCache kv = model.model().newKvCache(tokens.length + 1);
                     DeviceBuffer logits = ctx.allocate((long) tokens.length * vocab * 4);
                     Arena arena = Arena.ofConfined()) {
                    model.model().forward(kv, ForwardArgs.chainAll(tokens, logits));
                    MemorySegment host = arena.allocate(logits.size());
                    logits.copyToHost(0, host, 0, logits.size());
                    for (int pos = 0; pos < tokens.length; pos++) {
                        JsonArray row = rows.get(pos).getAsJsonArray();
                        for (int t = 0; t < vocab; t++) {
                            double expected = row.get(t).getAsDouble();
                            double ours = host.getAtIndex(ValueLayout.JAVA_FLOAT, (long) pos * vocab + t);
                            worst = Math.max(worst, Math.abs(ours - expected));
                        }
                    }
                }
                int[] expectedGreedy = ints(p.getAsJsonArray("greedy_continuation"));
                int[] ours;
                try (KvCache kv = model.model().newKvCache(512); DecodeLoop loop = new DecodeLoop(model.model(), 1, false)) {
                    ours = loop.generate(new DecodeLoop.Request(kv, tokens, expectedGreedy.length, SamplingOptions.GREEDY,
                            new NoSpeculation(), t -> false, t -> true, () -> false)).tokens();
                }
                assertArrayEquals(expectedGreedy, java.util.Arrays.copyOf(ours, expectedGreedy.length), "greedy continuation of " + text);
                if (oracle.isPresent()) {
                    int[] theirs = oracle.get().greedy(gguf, tokens, expectedGreedy.length);
                    assertArrayEquals(expectedGreedy, theirs, "llama.cpp's greedy continuation of " + text);
                }
            }
            System.out.printf("demo model %s: max |logit - PyTorch logit| = %.3g%n", gguf.getFileName(), worst);
            assertTrue(worst <= 1e-3, "logits differ from the training code's by " + worst);
        }
    }

    private static int[] ints(JsonArray a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).getAsInt();
        return out;
    }
}
