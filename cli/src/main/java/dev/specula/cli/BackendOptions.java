package dev.specula.cli;

import dev.specula.nativeapi.Context;
import picocli.CommandLine.Option;

/** Where a command runs its model: {@code --backend cpu|cuda} and {@code --device N}, shared by the commands that load one. */
final class BackendOptions {
    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "cpu", description = "cpu or cuda (default: ${DEFAULT-VALUE}).")
    String backend;

    @Option(names = "--device", paramLabel = "N", defaultValue = "0", description = "Device index on the backend (default: ${DEFAULT-VALUE}).")
    int device;

    /** Opens the chosen backend; a SpeculaException names why it cannot (no driver, no GPU, unknown name). */
    Context open() {
        return Context.open(backend, device);
    }
}
