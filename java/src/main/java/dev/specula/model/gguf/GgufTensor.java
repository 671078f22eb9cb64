package dev.specula.model.gguf;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * One tensor of a GGUF file. dims lists the innermost (fastest-varying) dimension first, as GGUF does: a
 * [rows][cols] matrix has dims {cols, rows}. offset is relative to the file's data section; data is the tensor's
 * bytes inside the file's mapping, valid until the file is closed.
 */
public record GgufTensor(String name, GgmlType type, long[] dims, long offset, MemorySegment data) {

    public GgufTensor {
        dims = dims.clone();
    }

    @Override
    public long[] dims() {
        return dims.clone();
    }

    public int nDims() {
        return dims.length;
    }

    public long dim(int i) {
        return dims[i];
    }

    public long elementCount() {
        long n = 1;
        for (long d : dims) n *= d;
        return n;
    }

    /** Elements per row: the innermost dimension. */
    public long cols() {
        return dims[0];
    }

    /** Rows: the product of every dimension but the innermost; 1 for a vector. */
    public long rows() {
        return elementCount() / dims[0];
    }

    public long byteSize() {
        return data.byteSize();
    }

    /** The shape outermost-first, as numpy and safetensors write it: a matrix's is [rows, cols]. */
    public long[] shape() {
        long[] shape = new long[dims.length];
        for (int i = 0; i < dims.length; i++) shape[i] = dims[dims.length - 1 - i];
        return shape;
    }

    @Override
    public String toString() {
        return name + " " + type + " " + Arrays.toString(dims);
    }
}
