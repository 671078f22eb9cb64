package dev.specula.engine;

import static dev.specula.engine.DemoHeadsTest.floats;
import static dev.specula.engine.DemoHeadsTest.ints;
import static dev.specula.engine.DemoHeadsTest.read;
import static dev.specula.engine.DemoHeadsTest.relErr;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.specula.model.EagleLayerFile;
import dev.specula.model.LoadedModel;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.policies.EagleDraftPolicy;
import dev.specula.sampling.SamplingOptions;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The demo target's trained EAGLE layer (models/demo-heads/eagle): its outputs and logits over the target's own
 * features against the training code's forward (recorded in eagle-reference.json, so CI needs no PyTorch), and greedy
 * decoding with it equal to plain greedy decoding on demo prompts, with the layer's drafts accepted.
 */
class DemoEagleTest {
    static final Path HEADS = DemoHeadsTest.HEADS;
    static final Path TARGET = DemoHeadsTest.MODELS.resolve("demo-target.gguf");

    @Test
    void theLayerMatchesTheTrainingCode() throws Exception {
        Path refFile = HEADS.resolve("eagle-reference.json");
        assumeTrue(Files.isRegularFile(refFile), "no demo EAGLE reference at " + refFile);
        JsonObject ref = new Gson().fromJson(Files.readString(refFile), JsonObject.class);
        int[] tokens = ints(ref.getAsJsonArray("tokens"));
        try (Context ctx = Context.cpu(); LoadedModel target = LoadedModel.open(ctx, TARGET, DType.F32);
             EagleLayerFile file = EagleLayerFile.open(HEADS, target.model().shape())) {
            NativeModel m = target.model();
            int e = m.shape().nEmbd(), v = m.shape().nVocab(), n = tokens.length - 1;
            assertArrayEquals(tokens, target.tokenizer().encode(ref.get("prompt").getAsString(), true));
            double worstOutput = 0, worstLogits = 0;
            try (NativeModel layer = file.load(ctx, target.file().weights(), DType.F32); KvCache kv = m.newKvCache(tokens.length);
                 KvCache layerKv = layer.newKvCache(tokens.length); DeviceBuffer features = ctx.allocate((long) tokens.length * e * 4);
                 DeviceBuffer out = ctx.allocate((long) n * e * 4); DeviceBuffer logits = ctx.allocate((long) n * v * 4)) {
                m.forward(kv, new ForwardArgs(tokens, null, null, ForwardArgs.LogitsMode.NONE, null, 0, null, null, false, 0)
                        .withFinalHidden(features, 0));
                // row t: token tokens[t + 1] with the feature of position t
                layer.eagleForward(layerKv, ForwardArgs.chainAll(Arrays.copyOfRange(tokens, 1, tokens.length), logits).withFinalHidden(out, 0),
                        features, 0, null);
                for (JsonElement el : ref.getAsJsonArray("rows")) {
                    JsonObject row = el.getAsJsonObject();
                    int r = row.get("row").getAsInt();
                    worstOutput = Math.max(worstOutput, relErr(read(out, (long) r * e * 4, e), floats(row.getAsJsonArray("output"))));
                    worstLogits = Math.max(worstLogits, relErr(read(logits, (long) r * v * 4, v), floats(row.getAsJsonArray("logits"))));
                }
            }
            System.out.printf("demo EAGLE layer vs PyTorch: outputs %.2e, logits %.2e (max |diff| / max |ref|)%n", worstOutput, worstLogits);
            assertTrue(worstOutput < 1e-4, "the layer's outputs differ by " + worstOutput);
            assertTrue(worstLogits < 1e-4, "the layer's logits differ by " + worstLogits);
        }
    }

    @Test
    void greedyWithTheLayerEqualsPlainGreedy() throws Exception {
        assumeTrue(Files.isDirectory(HEADS.resolve(EagleLayerFile.FOLDER)), "no demo EAGLE layer in " + HEADS);
        try (Context ctx = Context.cpu(); LoadedModel target = LoadedModel.open(ctx, TARGET, DType.F32);
             EagleLayerFile file = EagleLayerFile.open(HEADS, target.model().shape());
             NativeModel layer = file.load(ctx, target.file().weights(), DType.F32)) {
            NativeModel m = target.model();
            List<int[]> prompts = new ArrayList<>();
            Gson gson = new Gson();
            List<String> lines = Files.readAllLines(DemoHeadsTest.MODELS.resolve("demo-prompts.jsonl"));
            for (int i = 0; i < lines.size(); i += 10) { // one prompt of each category
                String text = gson.fromJson(lines.get(i), JsonObject.class).getAsJsonArray("turns").get(0).getAsString();
                int[] t = target.tokenizer().encode(text, true);
                prompts.add(Arrays.copyOfRange(t, Math.max(0, t.length - 96), t.length));
            }
            SpecStats total = new SpecStats();
            try (DecodeLoop loop = new DecodeLoop(m, EagleDraftPolicy.LARGEST_TREE, false)) {
                for (int p = 0; p < prompts.size(); p++) {
                    int[] want = ReferenceDecoder.generate(m, 512, prompts.get(p), 48, SamplingOptions.GREEDY);
                    try (KvCache kv = m.newKvCache(512); EagleDraftPolicy policy = new EagleDraftPolicy("eagle", layer, 512)) {
                        DecodeLoop.Result r = loop.generate(new DecodeLoop.Request(kv, prompts.get(p), 48, SamplingOptions.GREEDY, policy,
                                x -> false, x -> true, () -> false));
                        assertArrayEquals(want, r.tokens(), "eagle, prompt " + p);
                        total.add(r.stats());
                    }
                }
            }
            System.out.printf("demo EAGLE layer: %.2f tokens per step%n", total.meanAccepted());
            assertTrue(total.meanAccepted() > 1.3, "the EAGLE layer accepts too little: " + total.meanAccepted());
        }
    }
}
