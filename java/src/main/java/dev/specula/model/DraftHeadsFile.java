package dev.specula.model;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.specula.model.safetensors.SafetensorsCheckpoint;
import dev.specula.model.safetensors.SafetensorsFile;
import dev.specula.model.safetensors.SafetensorsTensor;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.NativeHeads;
import dev.specula.nativeapi.NativeHeads.Role;
import dev.specula.nativeapi.NativeModel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * A set of draft heads in a published layout, memory-mapped and checked against the target's shape: Medusa's
 * {@code medusa_lm_head.safetensors} or Hydra's reference release ({@code hydra_lm_head.safetensors}, hydra_head_arch
 * "mlp"), each with its {@code config.json}. The path is the folder holding both (or holding them in a subfolder
 * named {@code medusa} or {@code hydra}), or the safetensors file (its config.json beside it). Every problem is a {@link ModelFormatException} naming the file and, where one is at
 * fault, the tensor. The README's "Draft heads" section states the layouts as read here.
 */
public final class DraftHeadsFile implements AutoCloseable {
    /** The published layouts. */
    public enum Layout {
        MEDUSA("medusa", "medusa_lm_head.safetensors"),
        HYDRA("hydra", "hydra_lm_head.safetensors");

        private final String cliName;
        private final String fileName;

        Layout(String cliName, String fileName) {
            this.cliName = cliName;
            this.fileName = fileName;
        }

        public String cliName() {
            return cliName;
        }

        /** The weights' file name in a heads folder. */
        public String fileName() {
            return fileName;
        }
    }

    /** One tensor handed to {@link NativeHeads#setWeight}. */
    public record Weight(Role role, int head, int block, DType dtype, SafetensorsTensor tensor) {}

    private final Layout layout;
    private final SafetensorsFile file;
    private final NativeHeads.Config config;
    private final List<Weight> weights;

    private DraftHeadsFile(Layout layout, SafetensorsFile file, NativeHeads.Config config, List<Weight> weights) {
        this.layout = layout;
        this.file = file;
        this.config = config;
        this.weights = weights;
    }

    /** Opens heads of layout at path for a target of nEmbd and nVocab; refuses anything that does not fit it. */
    public static DraftHeadsFile open(Path path, Layout layout, int nEmbd, int nVocab) {
        if (path == null) throw new IllegalArgumentException("drafter " + layout.cliName() + " needs a heads file (--heads FILE)");
        if (!Files.exists(path)) throw new ModelFormatException(path, "does not exist (give a heads folder or its safetensors file)");
        // a folder holds the layout's file, or a subfolder named for the layout does (demo-heads/hydra/...)
        Path weightsFile = !Files.isDirectory(path) ? path
                : Files.isRegularFile(path.resolve(layout.fileName())) || !Files.isDirectory(path.resolve(layout.cliName()))
                ? path.resolve(layout.fileName()) : path.resolve(layout.cliName()).resolve(layout.fileName());
        if (weightsFile.getFileName().toString().endsWith(".pt"))
            throw new ModelFormatException(weightsFile, "is a PyTorch pickle; convert it to safetensors (safetensors.torch.save_file("
                    + "torch.load(path), '" + layout.fileName() + "')) and put it beside its config.json");
        Path dir = weightsFile.toAbsolutePath().getParent();
        Path configPath = dir.resolve(SafetensorsCheckpoint.CONFIG);
        if (!Files.isRegularFile(configPath))
            throw new ModelFormatException(configPath, "missing: " + layout.cliName() + " heads need their config.json beside " + weightsFile.getFileName());
        JsonObject json = SafetensorsCheckpoint.readJson(configPath);
        SafetensorsFile file = SafetensorsFile.open(weightsFile);
        try {
            Reader r = new Reader(file, configPath, json, nEmbd, nVocab);
            DraftHeadsFile heads = layout == Layout.MEDUSA ? r.medusa(layout) : r.hydra(layout);
            file = null; // owned by heads now
            return heads;
        } finally {
            if (file != null) file.close();
        }
    }

    public Layout layout() {
        return layout;
    }

    public Path path() {
        return file.path();
    }

    public NativeHeads.Config config() {
        return config;
    }

    public List<Weight> weights() {
        return weights;
    }

    /** The bytes of every weight the file hands over (the target's LM head, where a head uses it, is not counted). */
    public long weightBytes() {
        return weights.stream().mapToLong(w -> w.tensor().data().byteSize()).sum();
    }

    /** The heads on target's context, weights read in place from this file (kept open as long as the heads). */
    public NativeHeads load(NativeModel target) {
        NativeHeads heads = NativeHeads.create(target, config);
        try {
            for (Weight w : weights) {
                SafetensorsTensor t = w.tensor();
                heads.setWeight(w.role(), w.head(), w.block(), w.dtype(), t.data(), t.rows(), t.cols());
            }
            heads.finish();
            heads.keepAlive(this);
            return heads;
        } catch (RuntimeException e) {
            heads.close();
            throw e;
        }
    }

    @Override
    public void close() {
        file.close();
    }

    /** Reads one layout's config and tensors, checking every name and shape against the ABI's shape rule. */
    private static final class Reader {
        private final SafetensorsFile file;
        private final Path configPath;
        private final JsonObject json;
        private final int nEmbd, nVocab;
        private final CheckedTensors tensors;
        private final List<Weight> weights = new ArrayList<>();

        Reader(SafetensorsFile file, Path configPath, JsonObject json, int nEmbd, int nVocab) {
            this.file = file;
            this.configPath = configPath;
            this.json = json;
            this.nEmbd = nEmbd;
            this.nVocab = nVocab;
            this.tensors = new CheckedTensors(file, "heads take");
        }

        DraftHeadsFile medusa(Layout layout) {
            int nHeads = intField("medusa_num_heads", 1, NativeHeads.MAX_HEADS);
            int nLayers = intField("medusa_num_layers", 0, 16);
            var config = new NativeHeads.Config(nHeads, nLayers, false, false);
            for (int h = 0; h < nHeads; h++) {
                for (int b = 0; b < nLayers; b++) {
                    take(h + "." + b + ".linear.weight", config, Role.BLOCK, h, b, true);
                    take(h + "." + b + ".linear.bias", config, Role.BLOCK_BIAS, h, b, true);
                }
                take(h + "." + nLayers + ".weight", config, Role.PROJ, h, 0, false); // absent: the target's LM head
            }
            return finish(layout, config);
        }

        DraftHeadsFile hydra(Layout layout) {
            String arch = json.has("hydra_head_arch") ? string("hydra_head_arch") : "mlp";
            if (!arch.equals("mlp"))
                throw new ModelFormatException(configPath, "hydra_head_arch \"" + arch + "\" is not supported (only \"mlp\": "
                        + "prefix-mlp, cross-attn and eagle-attn heads run a decoder layer Specula's heads do not have)");
            if (json.has("hidden_state_offset") && intField("hidden_state_offset", 0, 0) != 0)
                throw new ModelFormatException(configPath, "hidden_state_offset must be 0 (heads read the last layer)");
            int nHeads = intField("hydra_num_heads", 1, NativeHeads.MAX_HEADS);
            int nLayers = intField("hydra_num_layers", 1, 16);
            boolean grounded = !json.has("grounded_heads") || bool("grounded_heads");
            boolean projBias = file.hasTensor("hydra_lm_head.0.bias");
            var config = new NativeHeads.Config(nHeads, nLayers, grounded, projBias);
            for (int h = 0; h < nHeads; h++) {
                for (int b = 0; b < nLayers; b++) {
                    String p = "hydra_mlp." + h + "." + b + ".";
                    take(p + "linear.weight", config, Role.BLOCK, h, b, true);
                    take(p + "linear.bias", config, Role.BLOCK_BIAS, h, b, true);
                    take(p + "res_connection.weight", config, Role.BLOCK_RES, h, b, true);
                    take(p + "res_connection.bias", config, Role.BLOCK_RES_BIAS, h, b, true);
                }
                take("hydra_lm_head." + h + ".weight", config, Role.PROJ, h, 0, false);
                take("hydra_lm_head." + h + ".bias", config, Role.PROJ_BIAS, h, 0, true);
            }
            return finish(layout, config);
        }

        /**
         * Takes tensor name as role of head h, block b, when such heads have that weight (the ABI's shape rule says
         * whether and what shape); required: its absence is an error.
         */
        private void take(String name, NativeHeads.Config config, Role role, int h, int b, boolean required) {
            long[] want = NativeHeads.weightShape(config, nEmbd, nVocab, role, h, b);
            if (want[0] == 0) return; // no such weight in these heads; a tensor of that name is reported as unexpected
            long[] expected = want[0] == 1 ? new long[] {want[1]} : want;
            CheckedTensors.Taken t = tensors.take(name, expected, required, describe(config),
                    describe(config) + ", target n_embd " + nEmbd + ", n_vocab " + nVocab);
            if (t != null) weights.add(new Weight(role, h, b, t.dtype(), t.tensor()));
        }

        private DraftHeadsFile finish(Layout layout, NativeHeads.Config config) {
            tensors.refuseLeftovers("for " + describe(config));
            return new DraftHeadsFile(layout, file, config, List.copyOf(weights));
        }

        private static String describe(NativeHeads.Config c) {
            return String.format(Locale.ROOT, "%d %s heads of %d block(s)", c.nHeads(), c.conditioned() ? "grounded Hydra" : "Medusa-style", c.nBlocks());
        }

        private JsonElement field(String key) {
            JsonElement e = json.get(key);
            if (e == null || e.isJsonNull()) throw new ModelFormatException(configPath, "missing \"" + key + "\"");
            return e;
        }

        private int intField(String key, int min, int max) {
            JsonElement e = field(key);
            double v;
            try {
                v = e.getAsDouble();
            } catch (RuntimeException ex) {
                throw new ModelFormatException(configPath, "\"" + key + "\" is not a number: " + e);
            }
            if (v != Math.rint(v) || v < min || v > max)
                throw new ModelFormatException(configPath, "\"" + key + "\" = " + e + " is out of range (" + min + ".." + max + ")");
            return (int) v;
        }

        private boolean bool(String key) {
            JsonElement e = field(key);
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isBoolean())
                throw new ModelFormatException(configPath, "\"" + key + "\" is not true or false: " + e);
            return e.getAsBoolean();
        }

        private String string(String key) {
            JsonElement e = field(key);
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString())
                throw new ModelFormatException(configPath, "\"" + key + "\" is not a string: " + e);
            return e.getAsString();
        }
    }
}
