package dev.specula.fuzz;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.specula.model.ModelFormatException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * What the fuzz targets share: a scratch folder per target (each input overwrites the same files), and the
 * contract checks. A fuzz target passes an input when it either gets a clean result or the exception type the
 * entry point documents, with a message that says something; any other exception, an error (including
 * OutOfMemoryError from an allocation sized by the input) or a hang is a finding.
 */
final class FuzzSupport {
    private FuzzSupport() {}

    /** A new empty folder, removed with its files when the JVM exits. */
    static Path scratchFolder(String name) {
        try {
            Path dir = Files.createTempDirectory("specula-fuzz-" + name);
            Runtime.getRuntime().addShutdownHook(new Thread(() -> deleteTree(dir)));
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static Path write(Path file, byte[] data) {
        try {
            return Files.write(file, data);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** A ModelFormatException must name the file (or folder) at fault, then say what is wrong. */
    static void checkNamesFile(ModelFormatException e, Path... candidates) {
        String message = e.getMessage();
        assertNotNull(message, "ModelFormatException without a message");
        assertNotNull(e.file(), "ModelFormatException without a file: " + message);
        assertTrue(message.startsWith(e.file() + ": ") && message.length() > e.file().toString().length() + 2,
                () -> "message does not start with the file's name and a problem: " + message);
        for (Path candidate : candidates) {
            if (e.file().toAbsolutePath().startsWith(candidate.toAbsolutePath())) return;
        }
        throw new AssertionError("ModelFormatException names " + e.file() + ", not one of the input's files: " + message, e);
    }

    /** An IllegalArgumentException (or another documented refusal) must say what is wrong. */
    static void checkHasMessage(RuntimeException e) {
        String message = e.getMessage();
        assertTrue(message != null && !message.isBlank(), () -> e.getClass().getName() + " without a message");
    }

    /** Reads the first and last byte of a tensor's data: the slice must lie inside the file's mapping. */
    static void touch(MemorySegment data) {
        if (data.byteSize() > 0) {
            data.get(ValueLayout.JAVA_BYTE, 0);
            data.get(ValueLayout.JAVA_BYTE, data.byteSize() - 1);
        }
    }

    private static void deleteTree(Path dir) {
        try (Stream<Path> paths = Files.walk(dir)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException | UncheckedIOException ignored) {
            // a scratch folder left in /tmp is harmless
        }
    }
}
