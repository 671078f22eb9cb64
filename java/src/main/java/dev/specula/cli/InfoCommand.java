package dev.specula.cli;

import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.Specula;
import dev.specula.nativeapi.SpeculaException;
import java.io.PrintStream;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;

/** Prints the library, its ABI, the backends compiled in and every device they see. */
@Command(name = "info", description = "Print the native library and ABI versions, backends and devices.")
final class InfoCommand implements Callable<Integer> {
    private static final List<String> KNOWN_BACKENDS = List.of("cpu", "cuda");

    @Override
    public Integer call() {
        PrintStream out = System.out;
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
        return 0;
    }

    private static String stripStatus(String message) {
        int bracket = message.lastIndexOf(" [");
        return bracket > 0 ? message.substring(0, bracket) : message;
    }
}
