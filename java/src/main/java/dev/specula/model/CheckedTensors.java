package dev.specula.model;

import dev.specula.model.safetensors.SafetensorsFile;
import dev.specula.model.safetensors.SafetensorsTensor;
import dev.specula.nativeapi.DType;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.Set;

/**
 * The tensors of a safetensors file of weights beside a target (draft heads, an EAGLE layer), taken by name: each
 * checked for its shape and for a float type the kernels read in place (F32, F16, BF16), and any tensor left untaken
 * refused at the end. Every problem is a {@link ModelFormatException} naming the file and the tensor.
 */
final class CheckedTensors {
    /** A tensor taken, with its type as the native weights know it. */
    record Taken(SafetensorsTensor tensor, DType dtype) {}

    private final SafetensorsFile file;
    private final String takers;
    private final Set<String> unused = new LinkedHashSet<>();

    /** takers: who takes the float types, for the message about any other ("heads take", "an EAGLE layer takes"). */
    CheckedTensors(SafetensorsFile file, String takers) {
        this.file = file;
        this.takers = takers;
        for (SafetensorsTensor t : file.tensors()) unused.add(t.name());
    }

    /**
     * The tensor name, of the expected shape; null when the file has none and it is not required. The contexts
     * close the messages about a missing tensor and a wrong shape, in parentheses.
     */
    Taken take(String name, long[] expected, boolean required, String missingContext, String shapeContext) {
        var t = file.findTensor(name);
        if (t.isEmpty()) {
            if (!required) return null;
            throw new ModelFormatException(file.path(), "tensor " + name + " is missing (" + missingContext + ")");
        }
        SafetensorsTensor tensor = t.get();
        if (!Arrays.equals(tensor.shape(), expected))
            throw new ModelFormatException(file.path(), "tensor " + name + " has shape " + Arrays.toString(tensor.shape()) + ", expected "
                    + Arrays.toString(expected) + " (" + shapeContext + ")");
        DType dtype = switch (tensor.dtype()) {
            case F32 -> DType.F32;
            case F16 -> DType.F16;
            case BF16 -> DType.BF16;
            default -> throw new ModelFormatException(file.path(), "tensor " + name + " is " + tensor.dtype() + "; " + takers + " F32, F16 or BF16");
        };
        unused.remove(name);
        return new Taken(tensor, dtype);
    }

    /** Marks a tensor the caller checked itself as taken. */
    void taken(String name) {
        unused.remove(name);
    }

    /** Refuses the first tensor left untaken, "for" what the file was read as. */
    void refuseLeftovers(String forWhat) {
        if (!unused.isEmpty())
            throw new ModelFormatException(file.path(), "unexpected tensor " + unused.iterator().next() + " " + forWhat
                    + (unused.size() > 1 ? " (and " + (unused.size() - 1) + " more)" : ""));
    }
}
