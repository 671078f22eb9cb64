"""Minimal GGUF v3 writer (little-endian), written from the format spec.

Layout: magic 'GGUF' | u32 version=3 | u64 n_tensors | u64 n_kv | KV pairs |
tensor infos (name, u32 n_dims, u64 dims innermost-first, u32 type, u64 offset
relative to the data section) | zero padding to `alignment` | tensor data, each
tensor starting at a multiple of `alignment`.
"""
import struct

import numpy as np

# value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
# tensor types
GGML_F32, GGML_F16 = 0, 1

_SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
               BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


class GGUFWriter:
    def __init__(self, alignment=32):
        self.alignment = alignment
        self.kv = []        # (key, type, value, elem_type)
        self.tensors = []   # (name, np.ndarray, ggml_type)

    def add(self, key, vtype, value, elem_type=None):
        self.kv.append((key, vtype, value, elem_type))

    def add_tensor(self, name, arr, ggml_type):
        arr = np.ascontiguousarray(arr, dtype=np.float32 if ggml_type == GGML_F32 else np.float16)
        self.tensors.append((name, arr, ggml_type))

    def _value(self, vtype, value, elem_type):
        if vtype == STRING:
            return _str(value)
        if vtype == ARRAY:
            out = struct.pack("<IQ", elem_type, len(value))
            if elem_type == STRING:
                return out + b"".join(_str(v) for v in value)
            np_t = {F32: "<f4", I32: "<i4", U32: "<u4", I64: "<i8", U64: "<u8", U8: "u1", I8: "i1"}[elem_type]
            return out + np.asarray(value, dtype=np_t).tobytes()
        return struct.pack(_SCALAR_FMT[vtype], value)

    def write(self, path):
        pad = lambda n: (-n) % self.alignment
        head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(self.tensors), len(self.kv)))
        for key, vtype, value, et in self.kv:
            head += _str(key) + struct.pack("<I", vtype) + self._value(vtype, value, et)
        offset = 0
        offsets = []
        for name, arr, gt in self.tensors:
            dims = list(reversed(arr.shape))           # GGUF lists innermost dimension first
            head += _str(name) + struct.pack("<I", len(dims)) + struct.pack("<%dQ" % len(dims), *dims)
            head += struct.pack("<IQ", gt, offset)
            offsets.append(offset)
            offset += arr.nbytes + pad(arr.nbytes)
        head += b"\0" * pad(len(head))
        with open(path, "wb") as f:
            f.write(head)
            for (name, arr, gt), off in zip(self.tensors, offsets):
                assert f.tell() - len(head) == off
                b = arr.tobytes()
                f.write(b + b"\0" * pad(len(b)))
