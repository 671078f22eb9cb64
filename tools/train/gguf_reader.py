"""Minimal GGUF reader for the F32 demo models (the inverse of gguf_writer.py): metadata and F32/F16 tensors.

The heads pipeline reads the committed demo target back from its GGUF, so it needs no training checkpoint.
"""
import struct

import numpy as np

from gguf_writer import ARRAY, STRING, _SCALAR_FMT


class GGUFFile:
    def __init__(self, path):
        self.path = path
        data = open(path, "rb").read()
        self._d = data
        self._p = 0
        magic, version = data[:4], self._u("<I", 4)
        assert magic == b"GGUF" and version in (2, 3), (path, magic, version)
        self._p = 8
        n_tensors, n_kv = self._u("<Q"), self._u("<Q")
        self.kv = {}
        for _ in range(n_kv):
            key = self._s()
            vtype = self._u("<I")
            self.kv[key] = self._value(vtype)
        infos = []
        for _ in range(n_tensors):
            name = self._s()
            nd = self._u("<I")
            dims = [self._u("<Q") for _ in range(nd)]
            ttype = self._u("<I")
            off = self._u("<Q")
            infos.append((name, dims, ttype, off))
        align = int(self.kv.get("general.alignment", 32))
        base = (self._p + align - 1) // align * align
        self.tensors = {}
        for name, dims, ttype, off in infos:
            assert ttype in (0, 1), (name, ttype)
            dt = np.float32 if ttype == 0 else np.float16
            count = int(np.prod(dims))
            arr = np.frombuffer(data, dtype=dt, count=count, offset=base + off)
            self.tensors[name] = arr.reshape(list(reversed(dims))).astype(np.float32)

    def _u(self, fmt, at=None):
        size = struct.calcsize(fmt)
        p = self._p if at is None else at
        v = struct.unpack_from(fmt, self._d, p)[0]
        if at is None:
            self._p += size
        return v

    def _s(self):
        n = self._u("<Q")
        s = self._d[self._p:self._p + n].decode("utf-8")
        self._p += n
        return s

    def _value(self, vtype):
        if vtype == STRING:
            return self._s()
        if vtype == ARRAY:
            et = self._u("<I")
            n = self._u("<Q")
            return [self._value(et) for _ in range(n)]
        return self._u(_SCALAR_FMT[vtype])
