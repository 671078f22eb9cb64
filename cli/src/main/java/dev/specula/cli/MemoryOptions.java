package dev.specula.cli;

import dev.specula.memory.MemoryBudget;
import dev.specula.memory.MemoryPolicy;
import picocli.CommandLine.Option;

/** The memory budget's choices, shared by the commands that budget a model: what to do when it does not fit, and a cap. */
final class MemoryOptions {
    @Option(names = "--memory-policy", paramLabel = "POLICY", defaultValue = "refuse",
            description = "When the memory budget does not fit: refuse, shrink-tree or shrink-batch (default: ${DEFAULT-VALUE}).")
    String policy;

    @Option(names = "--memory-limit", paramLabel = "SIZE", description = "Most memory to use (e.g. 512M, 2G; default: what is available).")
    String limit;

    MemoryPolicy policy() {
        return MemoryPolicy.parse(policy);
    }

    /** The cap in bytes, or 0 when none was given. */
    long limitBytes() {
        return limit == null ? 0 : MemoryBudget.parseSize(limit);
    }
}
