"""Saving fitted layers and networks in a portable format: one ``.npz`` file holding the arrays
and a JSON description of everything else, with a format version.

Unlike pickle, loading executes no code from the file: only the library's own classes listed in
``_registry`` can be rebuilt, and arrays are read with ``allow_pickle=False``.
"""

import json
import zipfile

import numpy as np

from ._memory import check_allocation, memory_budget

FORMAT = "dccnn"
FORMAT_VERSION = 1
MODELS = ("ConvexLayer", "Network")  # what a file holds at its top


def _registry():
    from .feature_maps import LinearMap, NystroemMap, RandomFourierMap
    from .kernels import KernelParams
    from .layer import ConvexLayer
    from .network import LayerSpec, Network
    from .pooling import Pooling
    return {cls.__name__: cls for cls in (ConvexLayer, Network, LayerSpec, Pooling, KernelParams,
                                          LinearMap, NystroemMap, RandomFourierMap)}


def _encode(value, arrays, registry):
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("save: object arrays cannot be stored portably")
        key = f"array_{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, np.generic):
        return {"__scalar__": value.dtype.str, "value": value.item()}
    if isinstance(value, np.dtype):
        return {"__dtype__": value.str}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_encode(v, arrays, registry) for v in value]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {"__dict__": [[k, _encode(v, arrays, registry)] for k, v in value.items()]}
    name = type(value).__name__
    if registry.get(name) is type(value):
        return {"__object__": name, "state": _encode(dict(vars(value)), arrays, registry)}
    raise TypeError(f"save: cannot store a value of type {name}")


def _decode(value, arrays, registry):
    if isinstance(value, list):
        return [_decode(v, arrays, registry) for v in value]
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        return arrays[value["__array__"]]
    if "__scalar__" in value:
        return np.dtype(value["__scalar__"]).type(value["value"])
    if "__dtype__" in value:
        return np.dtype(value["__dtype__"])
    if "__tuple__" in value:
        return tuple(_decode(v, arrays, registry) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: _decode(v, arrays, registry) for k, v in value["__dict__"]}
    cls = registry.get(value.get("__object__"))
    if cls is None:
        raise ValueError(f"load: unknown object type {value.get('__object__')!r} in the file")
    state = _decode(value["state"], arrays, registry)
    if not isinstance(state, dict):
        raise ValueError(f"load: the state of a {cls.__name__} must be a mapping")
    obj = object.__new__(cls)
    # frozen dataclasses included: the state is restored as it was saved
    obj.__dict__.update(state)
    if hasattr(obj, "check_consistent"):
        obj.check_consistent()
    return obj


def save(obj, path):
    """Write a fitted ``ConvexLayer`` or ``Network`` to ``path`` (an .npz file)."""
    registry = _registry()
    if type(obj).__name__ not in MODELS:
        raise TypeError(f"obj: expected a fitted ConvexLayer or Network, got {type(obj).__name__}")
    if not hasattr(obj, "linear_weights_") and not hasattr(obj, "layers_"):
        raise ValueError("obj: fit it before saving")
    arrays = {}
    header = {"format": FORMAT, "version": FORMAT_VERSION,
              "object": _encode(obj, arrays, registry)}
    with open(path, "wb") as f:
        np.savez(f, __header__=np.array(json.dumps(header)), **arrays)


def _declared_bytes(npz):
    """Bytes the arrays of an open .npz will take once read, from their headers alone."""
    total = 0
    for name in npz.zip.namelist():
        with npz.zip.open(name) as member:
            version = np.lib.format.read_magic(member)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(member)
        total += int(np.prod(shape, dtype=object)) * dtype.itemsize
    return total


def load(path, *, max_memory=None):
    """Read a layer or network written by ``save`` (or ``obj.save``).

    A file that is not one (another format, damaged, or altered so that its arrays no longer
    fit together where the compiled kernels index with them) raises ValueError; arrays that
    would exceed the memory budget (``max_memory`` bytes, default half of the available
    memory) raise MemoryError before they are read.
    """
    budget = memory_budget(max_memory)  # a bad max_memory is named before the file is read
    try:
        data = np.load(path, allow_pickle=False)
    except (EOFError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"path: {path!r} is not a dccnn file ({e})") from e
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"path: {path!r} is not a dccnn file (a single array, not an .npz)")
    with data:
        try:
            check_allocation((_declared_bytes(data),), np.uint8, f"loading {path!r}",
                             max_memory=budget)
            if "__header__" not in data.files:
                raise ValueError("no header")
            header = json.loads(str(data["__header__"]))
            arrays = {k: data[k] for k in data.files if k != "__header__"}
        except (EOFError, RecursionError, ValueError, zipfile.BadZipFile) as e:
            raise ValueError(f"path: {path!r} is not a dccnn file ({e})") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"path: {path!r} is not a dccnn file")
    if header.get("version") != FORMAT_VERSION:
        raise ValueError(f"path: {path!r} has format version {header.get('version')}; this "
                         f"dccnn reads version {FORMAT_VERSION}")
    try:
        obj = _decode(header.get("object"), arrays, _registry())
    except (AttributeError, KeyError, RecursionError, TypeError, ValueError) as e:
        raise ValueError(f"path: {path!r} holds a damaged dccnn object "
                         f"({type(e).__name__}: {e})") from e
    if type(obj).__name__ not in MODELS:
        raise ValueError(f"path: {path!r} holds a {type(obj).__name__}, not a ConvexLayer or "
                         f"Network")
    return obj
