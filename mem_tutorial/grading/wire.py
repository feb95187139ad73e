"""A strict, pickle-free codec for the values that cross between a student's answer process and the grader.

The grader never unpickles anything a student process wrote. Values are encoded as a JSON description plus raw
tensor bytes; decoding builds fresh objects of a short list of types and nothing else:

    None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset, slice, namedtuples (as
    namedtuple-like tuples with the same field names), torch.Tensor (dense, strided, CPU copy), numpy.ndarray,
    torch.dtype, torch.device, and *handles* (opaque references to objects that stay in the answer process).

Limits (:data:`MAX_BYTES`, :data:`MAX_NODES`, :data:`MAX_DEPTH`) bound what one message can cost the grader.
A frame on a pipe or socket is ``8-byte length | 4-byte header length | JSON header | tensor bytes``.
"""

from __future__ import annotations

import collections
import json
import math
import os
import struct
from typing import Any, Callable

MAX_BYTES = 512 * 2**20
MAX_NODES = 200_000
MAX_DEPTH = 64
_DTYPES = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128", "int8", "int16", "int32",
           "int64", "uint8", "bool")


class WireError(ValueError):
    """A message that cannot be encoded, or a malformed or oversized one."""


class Handle:
    """An object that stays in the other process, referred to by number."""

    __slots__ = ("id", "type_name")

    def __init__(self, id: int, type_name: str = "object"):
        self.id, self.type_name = int(id), str(type_name)

    def __repr__(self) -> str:
        return f"<remote {self.type_name} #{self.id}>"


_NT_CACHE: dict[tuple, type] = {}


def _namedtuple(name: str, fields: tuple[str, ...]) -> type:
    key = (name, fields)
    if key not in _NT_CACHE:
        _NT_CACHE[key] = collections.namedtuple(name if name.isidentifier() else "Record", fields)
    return _NT_CACHE[key]


# -- encoding ------------------------------------------------------------------------------------------------------
def encode(obj: Any, to_handle: Callable[[Any], Handle] | None = None) -> bytes:
    """Encode ``obj``. Objects of other types become handles through ``to_handle`` (or raise :class:`WireError`)."""
    import torch

    blobs: list[bytes] = []
    size = [0]
    count = [0]

    def blob(data: bytes) -> int:
        size[0] += len(data)
        if size[0] > MAX_BYTES:
            raise WireError(f"value too large to send (over {MAX_BYTES // 2**20} MiB)")
        blobs.append(data)
        return len(blobs) - 1

    def enc(x, depth):
        count[0] += 1
        if count[0] > MAX_NODES or depth > MAX_DEPTH:
            raise WireError("value too large or too deeply nested to send")
        t = type(x)
        if x is None or t is bool or t is str:
            return x
        if t is int:
            return x if abs(x) < 2**53 else {"t": "int", "v": str(x)}
        if t is float:
            return x if math.isfinite(x) else {"t": "float", "v": repr(x)}
        if t is complex:
            return {"t": "complex", "v": [enc(x.real, depth + 1), enc(x.imag, depth + 1)]}
        if t is bytes:
            return {"t": "bytes", "b": blob(x)}
        if t is list:
            return {"t": "list", "v": [enc(v, depth + 1) for v in x]}
        if isinstance(x, tuple) and hasattr(t, "_fields") and t is not tuple:
            return {"t": "nt", "name": t.__name__, "f": [str(f) for f in t._fields],
                    "v": [enc(v, depth + 1) for v in tuple.__iter__(x)]}
        if t is tuple:
            return {"t": "tuple", "v": [enc(v, depth + 1) for v in x]}
        if t is dict:
            items = list(dict.items(x))
            return {"t": "dict", "k": [enc(k, depth + 1) for k, _ in items], "v": [enc(v, depth + 1) for _, v in items]}
        if t in (set, frozenset):
            return {"t": t.__name__, "v": [enc(v, depth + 1) for v in x]}
        if t is slice:
            return {"t": "slice", "v": [enc(x.start, depth + 1), enc(x.stop, depth + 1), enc(x.step, depth + 1)]}
        if isinstance(x, torch.Tensor) and t in (torch.Tensor, torch.nn.Parameter):
            return _enc_tensor(x, blob)
        if t is torch.dtype:
            return {"t": "dtype", "v": str(x).removeprefix("torch.")}
        if t is torch.device:
            return {"t": "device", "v": str(x)}
        if type(x).__module__ == "numpy" and type(x).__name__ == "ndarray":
            return _enc_array(x, blob)
        if type(x).__module__ == "numpy" and hasattr(x, "item") and hasattr(x, "dtype"):  # numpy scalar
            return enc(x.item(), depth)
        if t is Handle:
            return {"t": "handle", "id": x.id, "n": x.type_name}
        if to_handle is not None:
            h = to_handle(x)
            return {"t": "handle", "id": h.id, "n": h.type_name}
        raise WireError(f"cannot send a value of type {t.__name__}")

    root = enc(obj, 0)
    offsets, pos = [], 0
    for b in blobs:
        offsets.append([pos, len(b)])
        pos += len(b)
    header = json.dumps({"root": root, "blobs": offsets}, allow_nan=False).encode("utf-8")
    return struct.pack("<I", len(header)) + header + b"".join(blobs)


def _enc_tensor(x, blob) -> dict:
    import torch

    if x.layout != torch.strided or x.is_quantized:
        raise WireError("only dense tensors can be sent")
    dtype = str(x.dtype).removeprefix("torch.")
    if dtype not in _DTYPES:
        raise WireError(f"tensor dtype {dtype} cannot be sent")
    t = x.detach().to("cpu").contiguous()
    data = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return {"t": "tensor", "d": dtype, "s": list(t.shape), "b": blob(data), "rg": bool(x.requires_grad),
            "dev": str(x.device)}


def _enc_array(x, blob) -> dict:
    import numpy as np

    if x.dtype.hasobject or x.dtype.name not in _DTYPES:
        raise WireError(f"numpy array of dtype {x.dtype} cannot be sent")
    return {"t": "ndarray", "d": x.dtype.name, "s": list(x.shape), "b": blob(np.ascontiguousarray(x).tobytes())}


# -- decoding ------------------------------------------------------------------------------------------------------
def decode(data: bytes, from_handle: Callable[[Handle], Any] | None = None, device=None) -> Any:
    """Decode a message made by :func:`encode`. Tensors come back on ``device`` (default CPU)."""
    if len(data) > MAX_BYTES + 2**20:
        raise WireError("message too large")
    if len(data) < 4:
        raise WireError("truncated message")
    (hlen,) = struct.unpack("<I", data[:4])
    if hlen > len(data) - 4:
        raise WireError("truncated message")
    try:
        meta = json.loads(data[4:4 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"malformed message: {exc}") from None
    body = memoryview(data)[4 + hlen:]
    if not isinstance(meta, dict) or not isinstance(meta.get("blobs"), list):
        raise WireError("malformed message")
    spans = meta["blobs"]
    count = [0]

    def get_blob(i) -> bytes:
        if type(i) is not int or not 0 <= i < len(spans):
            raise WireError("malformed message: bad blob reference")
        start, length = spans[i]
        if type(start) is not int or type(length) is not int or start < 0 or length < 0 or start + length > len(body):
            raise WireError("malformed message: bad blob span")
        return bytes(body[start:start + length])

    def dec(x, depth):
        count[0] += 1
        if count[0] > MAX_NODES or depth > MAX_DEPTH:
            raise WireError("message too large or too deeply nested")
        if x is None or type(x) in (bool, int, float, str):
            return x
        if type(x) is not dict or type(x.get("t")) is not str:
            raise WireError("malformed message")
        t = x["t"]
        v = x.get("v")
        if t == "int":
            return int(str(v))
        if t == "float":
            if v not in ("inf", "-inf", "nan"):
                raise WireError("malformed float")
            return float(v)
        if t == "complex":
            return complex(dec(v[0], depth + 1), dec(v[1], depth + 1))
        if t == "bytes":
            return get_blob(x.get("b"))
        if t in ("list", "tuple", "set", "frozenset"):
            if type(v) is not list:
                raise WireError("malformed sequence")
            items = [dec(i, depth + 1) for i in v]
            return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[t](items)
        if t == "nt":
            fields = x.get("f")
            if type(v) is not list or type(fields) is not list or len(fields) != len(v) or \
                    not all(type(f) is str and f.isidentifier() and not f.startswith("_") for f in fields):
                raise WireError("malformed record")
            return _namedtuple(str(x.get("name", "Record")), tuple(fields))(*[dec(i, depth + 1) for i in v])
        if t == "dict":
            keys, vals = x.get("k"), v
            if type(keys) is not list or type(vals) is not list or len(keys) != len(vals):
                raise WireError("malformed dict")
            return {dec(k, depth + 1): dec(i, depth + 1) for k, i in zip(keys, vals)}
        if t == "slice":
            return slice(*[dec(i, depth + 1) for i in v])
        if t == "tensor":
            return _dec_tensor(x, get_blob, device)
        if t == "ndarray":
            return _dec_array(x, get_blob)
        if t == "dtype":
            import torch

            if v not in _DTYPES:
                raise WireError("unknown dtype")
            return getattr(torch, v)
        if t == "device":
            import torch

            return torch.device(str(v))
        if t == "handle":
            h = Handle(int(x.get("id")), str(x.get("n", "object"))[:100])
            return from_handle(h) if from_handle is not None else h
        raise WireError(f"unknown value kind {t!r}")

    try:
        return dec(meta.get("root"), 0)
    except WireError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, RecursionError) as exc:
        raise WireError(f"malformed message: {type(exc).__name__}") from None


def _shape(s) -> list[int]:
    if type(s) is not list or len(s) > 16 or not all(type(d) is int and 0 <= d < 2**40 for d in s):
        raise WireError("malformed shape")
    return s


def _dec_tensor(x: dict, get_blob, device):
    import torch

    dtype = x.get("d")
    if dtype not in _DTYPES:
        raise WireError("unknown tensor dtype")
    shape = _shape(x.get("s"))
    dt = getattr(torch, dtype)
    data = get_blob(x.get("b"))
    n = math.prod(shape)
    itemsize = torch.empty((), dtype=dt).element_size()
    if len(data) != n * itemsize:
        raise WireError("tensor size does not match its shape")
    if n == 0:
        t = torch.empty(shape, dtype=dt)
    else:
        t = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dt).reshape(shape).clone()
    if device is not None:
        t = t.to(device)
    return t


def _dec_array(x: dict, get_blob):
    import numpy as np

    dtype = x.get("d")
    if dtype not in _DTYPES or dtype == "bfloat16":
        raise WireError("unknown array dtype")
    shape = _shape(x.get("s"))
    data = get_blob(x.get("b"))
    if len(data) != math.prod(shape) * np.dtype(dtype).itemsize:
        raise WireError("array size does not match its shape")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def tensor_requires_grad(x: dict) -> bool:
    return bool(x.get("rg"))


# -- framing -------------------------------------------------------------------------------------------------------
def send(fd: int, payload: bytes) -> None:
    """Write one frame to file descriptor ``fd``."""
    data = struct.pack("<Q", len(payload)) + payload
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def recv(fd: int, limit: int = MAX_BYTES + 2**20) -> bytes:
    """Read one frame from ``fd``; raises EOFError at end of stream, :class:`WireError` past ``limit``."""
    head = _read_exact(fd, 8)
    (n,) = struct.unpack("<Q", head)
    if n > limit:
        raise WireError(f"message of {n} bytes exceeds the limit")
    return _read_exact(fd, n)


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("the other process closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
