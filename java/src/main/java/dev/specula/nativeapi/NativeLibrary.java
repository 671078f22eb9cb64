package dev.specula.nativeapi;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import org.bytedeco.javacpp.Loader;

/**
 * Finds and loads libspecula.so once per JVM, before any generated binding is touched.
 *
 * <p>The library travels inside the JAR under {@code dev/specula/nativeapi/<platform>/}; javacpp's
 * {@link Loader#cacheResource} extracts it to a cache folder (property {@code org.bytedeco.javacpp.cachedir},
 * default {@code ~/.javacpp/cache}). The property {@code specula.library} names a library file to load
 * instead, for development against a fresh native build.
 */
public final class NativeLibrary {
    private static final String LIBRARY_NAME = "libspecula.so";
    private static volatile Path loadedFrom;

    private NativeLibrary() {}

    /** The platform folder name for this JVM, as the JAR lays it out. */
    public static String platform() {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
        String osPart = os.contains("linux") ? "linux" : os.replace(' ', '-');
        String archPart = arch.equals("amd64") || arch.equals("x86_64") ? "x86_64" : arch;
        return osPart + "-" + archPart;
    }

    /** Loads the library if this JVM has not yet; returns where it was loaded from. */
    public static synchronized Path load() {
        if (loadedFrom != null) return loadedFrom;
        Path path;
        String override = System.getProperty("specula.library");
        if (override != null && !override.isBlank()) {
            path = Path.of(override).toAbsolutePath();
            if (!Files.isRegularFile(path)) {
                throw new UnsatisfiedLinkError("specula.library names " + path + ", which is not a file");
            }
        } else {
            String resource = platform() + "/" + LIBRARY_NAME;
            if (NativeLibrary.class.getResource(resource) == null) {
                throw new UnsatisfiedLinkError("Specula has no native library for platform " + platform()
                        + " (looked for resource dev/specula/nativeapi/" + resource + "; built platforms: linux-x86_64)");
            }
            try {
                File file = Loader.cacheResource(NativeLibrary.class, resource);
                path = file.toPath().toAbsolutePath();
            } catch (Exception e) {
                UnsatisfiedLinkError error = new UnsatisfiedLinkError("cannot extract " + resource + " from the JAR: " + e);
                error.initCause(e);
                throw error;
            }
        }
        System.load(path.toString());
        loadedFrom = path;
        return path;
    }
}
