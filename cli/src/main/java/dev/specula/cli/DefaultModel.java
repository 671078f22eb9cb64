package dev.specula.cli;

import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The models the commands use when none is named: the trained demo target in the repository's models/
 * folder when present, else a seeded random-weight test model made once in the user's cache; and the demo
 * target's trained draft model beside it. Only the command line looks for them (the library never does).
 */
final class DefaultModel {
    static final String DEMO_TARGET = "models/demo-target.gguf";
    /** Beside the demo target: its trained draft model. */
    static final String DEMO_DRAFT = "models/demo-draft.gguf";

    /** Beside the demo target: its trained draft heads (medusa/, hydra/ and the EAGLE layer, eagle/). */
    static final String DEMO_HEADS = "models/demo-heads";

    private DefaultModel() {}

    /** The demo heads folder when there is one, else null. */
    static Path demoHeads() {
        Path demo = Path.of(System.getProperty("specula.home", ".")).resolve(DEMO_HEADS);
        return Files.isDirectory(demo) ? demo : null;
    }

    /** The demo draft model when there is one, else null. */
    static Path demoDraft() {
        Path demo = Path.of(System.getProperty("specula.home", ".")).resolve(DEMO_DRAFT);
        return Files.isRegularFile(demo) ? demo : null;
    }

    static Path locate() {
        String home = System.getProperty("specula.home");
        if (home != null) {
            Path demo = Path.of(home).resolve(DEMO_TARGET);
            if (Files.isRegularFile(demo)) return demo;
        }
        Path cached = Path.of(System.getProperty("user.home"), ".cache", "specula", "models", "test-llama-128x4-q8.gguf");
        if (!Files.isRegularFile(cached)) {
            try {
                Files.createDirectories(cached.getParent());
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException("cannot create " + cached.getParent(), e);
            }
            System.err.println("specula: no trained demo model here; making a random-weight test model at " + cached);
            new TestModelMaker().arch("llama").dim(128).layers(4).heads(4).kvHeads(2).ff(384).vocab(2048).context(1024)
                    .type(GgmlType.Q8_0).seed(1).tokenizer(VocabTrainer.ggufMetadata("llama", 2048, 1)).write(cached);
        }
        return cached;
    }
}
