package dev.specula.cli;

import dev.specula.Drafters;
import dev.specula.engine.MemoryBudget;
import dev.specula.engine.MemoryBudgetException;
import dev.specula.engine.MemoryPolicy;
import dev.specula.model.ModelFile;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.Specula;
import dev.specula.nativeapi.SpeculaException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * Prints the library, its ABI, the backends compiled in and every device they see; with --model, the model's
 * shape and the memory budget of running it (SpecMemo), itemized, against the memory available.
 */
@Command(name = "info", sortOptions = false, mixinStandardHelpOptions = true,
        description = {"Print the native library and ABI versions, backends and devices.",
                "With --model, print the model's shape and its memory budget on a backend instead."})
final class InfoCommand implements Callable<Integer> {
    private static final List<String> KNOWN_BACKENDS = List.of("cpu", "cuda");

    @Spec
    CommandSpec spec;

    @Option(names = "--model", paramLabel = "FILE", description = "A GGUF file or Hugging Face checkpoint folder to budget.")
    Path model;

    @Mixin
    BackendOptions where;

    @Option(names = "--context", paramLabel = "N", defaultValue = "4096", description = "KV positions per sequence (default: ${DEFAULT-VALUE}).")
    int context;

    @Option(names = "--batch", paramLabel = "B", defaultValue = "1", description = "Sequences generating at once (default: ${DEFAULT-VALUE}).")
    int batch;

    @Option(names = "--tree-nodes", paramLabel = "T", defaultValue = "81", description = "Largest draft tree, root included (default: ${DEFAULT-VALUE}).")
    int treeNodes;

    @Option(names = "--drafter", paramLabel = "NAME", defaultValue = "recycling",
            description = "none, pld, recycling, draft-model (or draft) or early-exit (default: ${DEFAULT-VALUE}).")
    String drafter;

    @Option(names = "--draft-model", paramLabel = "FILE", description = "The draft model for --drafter draft-model (default: the demo draft).")
    Path draftModel;

    @Mixin
    MemoryOptions memory;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        if (model != null) {
            budget(out);
        } else {
            libraryAndDevices(out);
        }
        out.flush();
        return 0;
    }

    private static void libraryAndDevices(PrintWriter out) {
        out.println("specula " + Specula.libraryVersion());
        out.println("library:  " + Specula.libraryPath());
        out.println("abi:      " + Specula.abiVersion() + " (bindings generated for " + Specula.bindingsAbiVersion() + ")");
        List<String> compiled = Specula.backendsCompiled();
        out.println("backends: " + String.join(", ", compiled));
        for (String backend : KNOWN_BACKENDS) {
            if (!compiled.contains(backend)) {
                out.println(backend + ": unavailable (not compiled into this library)");
                continue;
            }
            int count;
            try {
                count = Specula.deviceCount(backend);
            } catch (SpeculaException e) {
                out.println(backend + ": unavailable (" + stripStatus(e.getMessage()) + ")");
                continue;
            }
            for (int device = 0; device < count; device++) {
                try (Context ctx = Context.open(backend, device)) {
                    out.println(backend + ": " + ctx.deviceInfo().describe());
                } catch (SpeculaException e) {
                    out.println(backend + ":" + device + " unavailable (" + stripStatus(e.getMessage()) + ")");
                }
            }
        }
    }

    private void budget(PrintWriter out) {
        String backend = where.backend;
        if (!KNOWN_BACKENDS.contains(backend)) throw new IllegalArgumentException("unknown --backend '" + backend + "': cpu or cuda");
        String name = drafter.equals("draft") ? "draft-model" : drafter;
        if (!Drafters.NAMES.contains(name))
            throw new IllegalArgumentException("unknown --drafter '" + drafter + "'; choose one of " + Drafters.NAMES);
        MemoryPolicy policy = memory.policy();
        try (ModelFile file = ModelFile.open(model)) {
            MemoryBudget.Request request = Drafters.budgetRequest(backend, file, name, draftModel, context, batch, treeNodes);
            MemoryBudget budget = MemoryBudget.of(request);
            out.println("model:     " + file.path());
            out.println("shape:     " + file.config().describe());
            out.println("weights:   " + MemoryBudget.human(request.targetWeightBytes()) + " in " + file.weights().size() + " tensors");
            out.printf(Locale.ROOT, "budget:    %s, batch %d x %d positions%s, trees of up to %d nodes, drafter %s%n", backend,
                    request.batch(), request.contextLength(), request.contextLength() < context ? " (the model's training context)" : "",
                    request.maxTreeNodes(), name);
            out.print(budget.table());
            MemoryBudget.Limit limit = limit(backend);
            out.println("available: " + limit.describe());
            if (!limit.known()) {
                out.println("fits:      unknown (nothing to check against)");
                return;
            }
            if (budget.total() <= limit.bytes()) {
                out.printf(Locale.ROOT, "fits:      yes, %s of %s%n", MemoryBudget.human(budget.total()), MemoryBudget.human(limit.bytes()));
                return;
            }
            out.printf(Locale.ROOT, "fits:      no, %s needed, %s available%n", MemoryBudget.human(budget.total()), MemoryBudget.human(limit.bytes()));
            for (MemoryPolicy p : MemoryPolicy.values()) {
                String label = p.name().toLowerCase(Locale.ROOT).replace('_', '-') + (p == policy ? " (chosen)" : "");
                String outcome;
                try {
                    MemoryBudget.Fit fit = MemoryBudget.fit(request, p, limit);
                    outcome = fit.shrinkNote() + ", " + MemoryBudget.human(fit.budget().total());
                } catch (MemoryBudgetException e) {
                    outcome = p == MemoryPolicy.REFUSE ? "refuses" : "cannot fit: " + e.getMessage();
                }
                out.printf(Locale.ROOT, "  %-22s %s%n", label + ":", outcome);
            }
        }
    }

    private MemoryBudget.Limit limit(String backend) {
        if (memory.limit != null) return MemoryBudget.Limit.explicit(memory.limitBytes());
        if (backend.equals("cpu")) return MemoryBudget.hostAvailable(MemoryBudget.DEFAULT_SAFETY_MARGIN);
        if (!Specula.backendsCompiled().contains(backend)) return MemoryBudget.Limit.unknown(backend + " is not compiled into this library");
        try {
            int count = Specula.deviceCount(backend);
            if (count <= where.device) return MemoryBudget.Limit.unknown(backend + " has no device " + where.device + " here");
            try (Context ctx = where.open()) {
                return MemoryBudget.available(ctx, 0, MemoryBudget.DEFAULT_SAFETY_MARGIN);
            }
        } catch (SpeculaException e) {
            return MemoryBudget.Limit.unknown(backend + " unavailable here (" + stripStatus(e.getMessage()) + ")");
        }
    }

    static String stripStatus(String message) {
        int bracket = message.lastIndexOf(" [");
        return bracket > 0 ? message.substring(0, bracket) : message;
    }
}
