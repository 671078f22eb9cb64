package dev.specula.model;

import java.nio.file.Path;

/**
 * A model file that cannot be used: unreadable, truncated, corrupt, inconsistent or of a kind the engine does not
 * support. The message always starts with the file's name, then says what is wrong with it.
 */
public final class ModelFormatException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final transient Path file;

    public ModelFormatException(Path file, String problem) {
        super(file + ": " + problem);
        this.file = file;
    }

    public ModelFormatException(Path file, String problem, Throwable cause) {
        super(file + ": " + problem, cause);
        this.file = file;
    }

    /** The file the problem is in. */
    public Path file() {
        return file;
    }
}
