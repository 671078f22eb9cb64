package dev.specula.model;

import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.SpeculaException;

/** Puts a model file's weights on a context: the bridge between the file readers and the native core. */
public final class NativeModels {
    private NativeModels() {}

    /**
     * Creates a native model from an open file. The weights stay in the file's mapping, which the model keeps
     * reachable; the file must stay open while the model is used.
     */
    public static NativeModel load(Context context, ModelFile file, DType kvType) {
        NativeModel model = NativeModel.create(context, file.config(), kvType);
        try {
            model.keepAlive(file);
            for (ModelWeights.Weight w : file.weights()) {
                model.setWeight(w.role(), w.layer(), w.dtype(), w.data(), w.rows(), w.cols());
            }
            model.finish();
            return model;
        } catch (SpeculaException | IllegalArgumentException e) {
            model.close();
            throw new SpeculaException(e instanceof SpeculaException se ? se.code() : 1,
                    file.path() + ": the native core refused the model: " + e.getMessage());
        }
    }
}
