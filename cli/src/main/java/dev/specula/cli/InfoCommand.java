package dev.specula.cli;

import dev.specula.SpeculaEngine;
import dev.specula.memory.MemoryBudget;
import dev.specula.memory.MemoryBudgetException;
import dev.specula.memory.MemoryPolicy;
import dev.specula.model.ModelFile;
import dev.specula.nativeapi.Backend;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.Specula;
import dev.specula.nativeapi.SpeculaException;
import java.io.PrintWriter;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
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
    @Spec
    CommandSpec spec;

    @Mixin
    EngineOptions engine;

    @Mixin
    EngineOptions.DrafterChoice drafter;

    @Option(names = "--batch", paramLabel = "B", defaultValue = "" + EngineOptions.CLI_BATCH,
            description = "Sequences generating at once (default: ${DEFAULT-VALUE}, as the commands run).")
    int batch;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        if (engine.model != null) {
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
        for (Backend known : Backend.values()) {
            String backend = known.id();
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

    /** The model's shape and its memory budget, from the engine builder's plan (nothing is loaded). */
    private void budget(PrintWriter out) {
        SpeculaEngine.Builder builder = engine.builder(drafter.drafter, batch);
        MemoryPolicy policy = engine.memory.policy();
        MemoryBudget budget;
        MemoryBudget.Limit limit;
        boolean fits;
        try {
            MemoryBudget.Fit fit = builder.memoryPolicy(MemoryPolicy.REFUSE).plan();
            budget = fit.budget();
            limit = fit.limit();
            fits = true;
        } catch (MemoryBudgetException e) {
            budget = e.budget(); // under REFUSE: the requested configuration
            limit = e.limit();
            fits = false;
        }
        MemoryBudget.Request request = budget.request();
        try (ModelFile file = ModelFile.open(engine.model)) {
            out.println("model:     " + file.path());
            out.println("shape:     " + file.config().describe());
            out.println("weights:   " + MemoryBudget.human(request.targetWeightBytes()) + " in " + file.weights().size() + " tensors");
        }
        out.printf(Locale.ROOT, "budget:    %s, batch %d x %d positions%s, trees of up to %d nodes, drafter %s%n", request.backend(),
                request.batch(), request.contextLength(), request.contextLength() < engine.context ? " (the model's training context)" : "",
                request.maxTreeNodes(), drafter.drafter);
        out.print(budget.table());
        out.println("available: " + limit.describe());
        if (!limit.known()) {
            out.println("fits:      unknown (nothing to check against)");
            return;
        }
        if (fits) {
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

    static String stripStatus(String message) {
        int bracket = message.lastIndexOf(" [");
        return bracket > 0 ? message.substring(0, bracket) : message;
    }
}
