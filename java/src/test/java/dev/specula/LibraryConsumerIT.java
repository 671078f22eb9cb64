package dev.specula;

import static org.junit.jupiter.api.Assertions.*;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A project that depends only on the packaged library (specula.jar and its runtime dependencies, no CLI, no build
 * tree) compiles against it and runs a generation, the native library coming out of the JAR into a clean folder.
 * This is what a service embedding Specula sees.
 */
class LibraryConsumerIT {
    private static final String CONSUMER = """
            import dev.specula.SpeculaEngine;
            import java.nio.file.Path;

            public class Consumer {
                public static void main(String[] args) {
                    StringBuilder streamed = new StringBuilder();
                    try (SpeculaEngine engine = SpeculaEngine.builder().model(Path.of(args[0])).build()) {
                        var result = engine.generate("public static int max(int a, int b) {\\n", 12, streamed::append);
                        if (!streamed.toString().equals(result.text())) throw new AssertionError("streamed text differs");
                        System.out.println("generated " + result.tokens().length + " tokens: " + result.text().strip());
                    }
                }
            }
            """;

    /** Reaches past the wrapper into the generated bindings, which the module does not export. */
    private static final String SNEAKY = """
            public class Sneaky {
                public static void main(String[] args) {
                    System.out.println(dev.specula.ffi.SpeculaFfi.class);
                }
            }
            """;

    @TempDir
    Path temp;

    @Test
    void aProjectOnTheLibraryAloneCompilesAndGenerates() throws Exception {
        consumerCompilesAndGenerates(false);
    }

    @Test
    void onTheModulePathTheGeneratedBindingsStayHidden() throws Exception {
        consumerCompilesAndGenerates(true);
        Path src = temp.resolve("sneaky/Sneaky.java");
        Files.createDirectories(src.getParent());
        Files.writeString(src, SNEAKY);
        ByteArrayOutputStream diagnostics = new ByteArrayOutputStream();
        int javac = ToolProvider.getSystemJavaCompiler().run(null, diagnostics, diagnostics, "--release", "25",
                "--module-path", libraryPath(), "--add-modules", "dev.specula", "-cp", src.getParent().toString(),
                "-d", src.getParent().toString(), src.toString());
        String said = diagnostics.toString(StandardCharsets.UTF_8);
        assertNotEquals(0, javac, "code outside the library compiled against dev.specula.ffi");
        assertTrue(said.contains("package dev.specula.ffi is not visible"), said);
    }

    private String libraryPath() throws java.io.IOException {
        Path jar = Path.of(System.getProperty("specula.jar"));
        Path lib = Path.of(System.getProperty("specula.lib"));
        assertTrue(Files.isRegularFile(jar), jar + " is missing");
        try (var zip = new java.util.zip.ZipFile(jar.toFile())) {
            assertNotNull(zip.getEntry("dev/specula/nativeapi/linux-x86_64/libspecula.so"), "the JAR lacks libspecula.so");
        }
        List<Path> classpath = new ArrayList<>(List.of(jar));
        try (Stream<Path> jars = Files.list(lib)) {
            jars.sorted().forEach(classpath::add);
        }
        for (Path p : classpath) {
            assertFalse(p.getFileName().toString().startsWith("picocli"), "the library drags in the CLI's " + p.getFileName());
        }
        return classpath.stream().map(Path::toString).reduce((a, b) -> a + File.pathSeparator + b).orElseThrow();
    }

    /** Compiles and runs the consumer with the library on the class path, or on the module path. */
    private void consumerCompilesAndGenerates(boolean modulePath) throws Exception {
        Path model = Path.of(System.getProperty("specula.repo")).resolve("models/demo-target.gguf");
        assertTrue(Files.isRegularFile(model), model + " is missing");
        String cp = libraryPath();
        // javac in this JVM would otherwise search the test's own class path, where the library's classes lie open.
        List<String> use = modulePath ? List.of("--module-path", cp, "--add-modules", "dev.specula", "-cp", temp.toString()) : List.of("-cp", cp);
        Path src = temp.resolve("src/Consumer.java"), classes = temp.resolve("classes");
        Files.createDirectories(src.getParent());
        Files.createDirectories(classes);
        Files.writeString(src, CONSUMER);
        ByteArrayOutputStream diagnostics = new ByteArrayOutputStream();
        List<String> javacArgs = new ArrayList<>(List.of("--release", "25", "-d", classes.toString()));
        javacArgs.addAll(use);
        javacArgs.add(src.toString());
        int javac = ToolProvider.getSystemJavaCompiler().run(null, diagnostics, diagnostics, javacArgs.toArray(String[]::new));
        assertEquals(0, javac, "the consumer does not compile against the library:\n" + diagnostics.toString(StandardCharsets.UTF_8));

        Path cache = temp.resolve("cache");
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        List<String> command = new ArrayList<>(List.of(java.toString(), "-Dorg.bytedeco.javacpp.cachedir=" + cache));
        command.addAll(modulePath
                ? List.of("--enable-native-access=dev.specula", "--module-path", cp, "--add-modules", "dev.specula", "-cp", classes.toString())
                : List.of("--enable-native-access=ALL-UNNAMED", "-cp", classes + File.pathSeparator + cp));
        command.addAll(List.of("Consumer", model.toString()));
        Process p = new ProcessBuilder(command).directory(temp.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "the consumer did not finish");
        assertEquals(0, p.exitValue(), out);
        assertFalse(out.contains("WARNING"), out);
        assertTrue(out.matches("(?s).*generated ([1-9]|1[0-2]) tokens: .*"), out);
        try (Stream<Path> files = Files.walk(cache)) {
            assertTrue(files.anyMatch(f -> f.getFileName().toString().equals("libspecula.so")),
                    "the native library was not extracted from the JAR into the clean cache folder");
        }
    }
}
