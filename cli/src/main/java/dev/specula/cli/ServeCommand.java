package dev.specula.cli;

import dev.specula.SpeculaEngine;
import dev.specula.server.SpeculaServer;
import java.io.PrintWriter;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** Serves the OpenAI API on a model until stopped: a thin wrapper around the specula-server artifact. */
@Command(name = "serve", sortOptions = false, mixinStandardHelpOptions = true,
        description = "Serve an OpenAI-compatible API (/v1/completions, /v1/chat/completions, /v1/models, /health, /metrics).")
final class ServeCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Mixin
    EngineOptions engineOptions;

    @Mixin
    EngineOptions.DrafterChoice drafterChoice;

    @Option(names = "--host", paramLabel = "ADDRESS", defaultValue = "127.0.0.1",
            description = "Address to listen on (default: ${DEFAULT-VALUE}, this machine only; 0.0.0.0 for every interface).")
    String host;

    @Option(names = "--port", paramLabel = "N", defaultValue = "8080", description = "Port (default: ${DEFAULT-VALUE}; 0 picks a free one).")
    int port;

    @Option(names = "--api-key", paramLabel = "KEY", description = "Require 'Authorization: Bearer KEY' on /v1/ (default: none).")
    String apiKey;

    @Option(names = "--max-batch", paramLabel = "N", defaultValue = "" + SpeculaEngine.DEFAULT_BATCH,
            description = "Requests generating at once; more wait their turn (default: ${DEFAULT-VALUE}).")
    int maxBatch;

    @Option(names = "--served-model-name", paramLabel = "NAME", description = "The model id clients name (default: the file's name).")
    String modelName;

    @Mixin
    EngineOptions.ChatFormatChoice chatFormat;

    @Option(names = "--disconnect-probe-ms", paramLabel = "MS",
            description = "Notice a non-streaming client that hung up by writing a space (which JSON ignores) every MS ms once its"
                    + " generation runs that long; the 200 then goes out before the answer (default: off).")
    Integer disconnectProbeMs;

    @Override
    public Integer call() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        try (SpeculaEngine engine = engineOptions.builder(drafterChoice.drafter, maxBatch).build();
             SpeculaServer server = SpeculaServer.builder(engine).host(host).port(port).apiKey(apiKey).modelName(modelName)
                     .chatFormat(chatFormat.chatFormat).disconnectProbe(disconnectProbeMs == null ? null : java.time.Duration.ofMillis(disconnectProbeMs)).start()) {
            Thread stop = new Thread(server::close, "specula-serve-stop"); // Ctrl-C or SIGTERM: stop listening, then close the engine
            Runtime.getRuntime().addShutdownHook(stop);
            out.println("specula: serving " + server.modelName() + " on " + server.uri() + "/v1 (batch " + maxBatch + ", drafter "
                    + engine.drafter().cliName() + (apiKey != null ? ", API key required" : "") + "); Ctrl-C stops");
            out.flush();
            try {
                server.awaitStop();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt(); // an embedding caller stopping the command: close and return
            }
            try {
                Runtime.getRuntime().removeShutdownHook(stop);
            } catch (IllegalStateException e) {
                // the JVM is already shutting down: the hook is what stopped the server
            }
        }
        return 0;
    }
}
