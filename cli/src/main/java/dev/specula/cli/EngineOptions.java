package dev.specula.cli;

import dev.specula.Drafter;
import dev.specula.SpeculaEngine;
import dev.specula.nativeapi.Backend;
import java.nio.file.Path;
import picocli.CommandLine;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * The options every command that builds an engine shares (model, draft model, tree, context, threads, backend and
 * the memory budget's choices), with the library's defaults, and the one way they become a
 * {@link SpeculaEngine.Builder}. The demo models stand in where no file is named.
 */
final class EngineOptions {
    /** The command line runs one request at a time. */
    static final int CLI_BATCH = 1;

    @Option(names = "--model", paramLabel = "FILE", description = "A GGUF file or Hugging Face checkpoint folder (default: the demo model).")
    Path model;

    @Option(names = "--draft-model", paramLabel = "FILE", description = "The draft model for the draft-model drafter (default: the demo draft).")
    Path draftModel;

    @Option(names = "--heads", paramLabel = "FILE",
            description = "Draft heads for the medusa and hydra drafters: a folder with config.json and medusa_lm_head.safetensors or "
                    + "hydra_lm_head.safetensors (or medusa/ and hydra/ subfolders), or that file; for eagle, an EAGLE layer's folder "
                    + "(config.json and model.safetensors, or an eagle/ subfolder) or its file (default: the demo heads).")
    Path heads;

    @Option(names = "--tree-nodes", paramLabel = "N", defaultValue = "" + SpeculaEngine.DEFAULT_MAX_TREE_NODES,
            description = "Largest draft tree, root included (default: ${DEFAULT-VALUE}).")
    int maxTreeNodes;

    @Option(names = "--fixed-tree", description = "Always use the largest tree (no cost-based back-off).")
    boolean fixedTree;

    @Option(names = "--context", paramLabel = "N", defaultValue = "" + SpeculaEngine.DEFAULT_CONTEXT_LENGTH,
            description = "KV cache positions per request, at most the model's training context (default: ${DEFAULT-VALUE}).")
    int context;

    @Option(names = "--threads", paramLabel = "N", defaultValue = "0", description = "CPU threads; 0 uses all cores.")
    int threads;

    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "cpu", converter = BackendName.class,
            description = "cpu or cuda (default: ${DEFAULT-VALUE}).")
    Backend backend;

    @Option(names = "--device", paramLabel = "N", defaultValue = "0", description = "Device index on the backend (default: ${DEFAULT-VALUE}).")
    int device;

    @Mixin
    MemoryOptions memory;

    /** The model file: the one named, else the demo model. */
    Path modelPath() {
        return model != null ? model : DefaultModel.locate();
    }

    /** The draft model file: the one named, else the demo draft when it is there (null when neither). */
    Path draftModelPath() {
        return draftModel != null ? draftModel : DefaultModel.demoDraft();
    }

    /** The heads: the ones named, else the demo heads when the model is the demo target (null when neither). */
    Path headsPath() {
        return heads != null ? heads : model == null ? DefaultModel.demoHeads() : null;
    }

    /** A builder with every option of this mixin applied, for drafter and batch. */
    SpeculaEngine.Builder builder(Drafter drafter, int batch) {
        return SpeculaEngine.builder().model(modelPath()).draftModel(draftModelPath()).heads(headsPath()).drafter(drafter).backend(backend, device)
                .threads(threads).contextLength(context).maxTreeNodes(maxTreeNodes).adaptive(!fixedTree).batch(batch)
                .memoryPolicy(memory.policy()).memoryLimit(memory.limitBytes());
    }

    /** {@code --drafter NAME}, for the commands that build an engine around one drafter. */
    static final class DrafterChoice {
        @Option(names = "--drafter", paramLabel = "NAME", defaultValue = Drafter.DEFAULT_NAME, converter = DrafterName.class,
                description = "none, pld, recycling, draft-model, early-exit, medusa, hydra or eagle (default: ${DEFAULT-VALUE}).")
        Drafter drafter;
    }

    /** {@code --temperature} and {@code --seed}, for the commands that sample (run, chat). */
    static final class SamplingChoice {
        @Option(names = "--temperature", paramLabel = "T", defaultValue = "0", description = "0 is greedy (default: ${DEFAULT-VALUE}).")
        float temperature;

        @Option(names = "--seed", paramLabel = "S", defaultValue = "0", description = "Random seed for sampling (default: ${DEFAULT-VALUE}).")
        long seed;
    }

    /** {@code --chat-format}, for the commands that chat through the model's template (chat, serve). */
    static final class ChatFormatChoice {
        @Option(names = "--chat-format", paramLabel = "NAME",
                description = "For a model without a chat template: chatml or llama3 (default: the model's own template).")
        String chatFormat;
    }

    /** Converts an option's text with a library parser, whose message (it lists the choices) becomes picocli's. */
    abstract static class Named<T> implements CommandLine.ITypeConverter<T> {
        abstract T parse(String value);

        @Override
        public T convert(String value) {
            try {
                return parse(value);
            } catch (IllegalArgumentException e) {
                throw new CommandLine.TypeConversionException(e.getMessage());
            }
        }
    }

    static final class DrafterName extends Named<Drafter> {
        @Override
        Drafter parse(String value) {
            return Drafter.parse(value);
        }
    }

    static final class BackendName extends Named<Backend> {
        @Override
        Backend parse(String value) {
            return Backend.parse(value);
        }
    }
}
