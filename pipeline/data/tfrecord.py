"""TFRecord files and ``tf.train.Example`` protos, written without TensorFlow.

Importing TensorFlow costs seconds and hundreds of megabytes per process, and records
are written in a process pool; both formats are small and stable, so they are
written by hand here and checked against TensorFlow in the tests.

Wire format of the messages involved (all fields length-delimited unless noted)::

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }   # entries: key = 1, value = 2
    Feature  { oneof { BytesList bytes_list = 1; FloatList float_list = 2;
                       Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed]; }  # float32 little-endian
    Int64List { repeated int64 value = 1 [packed]; }  # varints
"""

from __future__ import annotations

import numbers
import operator
import os
import struct
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import google_crc32c

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MASK = (1 << 64) - 1
_CRC_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<Q")
_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class Bytes:
    """A bytes_list feature; needed explicitly only when the list may be empty."""

    values: tuple[bytes | str, ...] = ()

    def __init__(self, values: Iterable[bytes | str] = ()):
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class Ints:
    """An int64_list feature; needed explicitly only when the list may be empty."""

    values: tuple[int, ...] = ()

    def __init__(self, values: Iterable[int] = ()):
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class Floats:
    """A float_list feature (float32); needed explicitly when the list may be empty."""

    values: tuple[float, ...] = ()

    def __init__(self, values: Iterable[float] = ()):
        object.__setattr__(self, "values", tuple(values))


Scalar = bytes | str | int | float
FeatureValue = Scalar | Sequence[Scalar] | Bytes | Ints | Floats


def encode_example(features: Mapping[str, FeatureValue]) -> bytes:
    """Serialise a ``tf.train.Example``; keys are sorted so equal input gives equal bytes.

    A scalar becomes a one-element list. The list type follows the Python type:
    bytes/str -> bytes_list, int/bool -> int64_list, float -> float_list. An empty
    plain sequence has no type, so it must be wrapped in ``Bytes``/``Ints``/``Floats``.
    """
    entries: list[bytes] = []
    for key in sorted(features):
        if not isinstance(key, str):
            raise TypeError(f"feature keys must be str, got {key!r}")
        feature = _encode_feature(key, features[key])
        entry = _field(1, [key.encode("utf-8")]) + _field(2, feature)
        entries += _field(1, entry)
    return b"".join(_field(1, entries))


def _field(number: int, chunks: list[bytes]) -> list[bytes]:
    """A length-delimited field, kept as chunks so big images are copied only once."""
    size = sum(len(chunk) for chunk in chunks)
    return [_varint(number << 3 | 2) + _varint(size), *chunks]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode_feature(key: str, value: FeatureValue) -> list[bytes]:
    typed = _typed(key, value)
    if isinstance(typed, Bytes):
        items = [_as_bytes(key, item) for item in typed.values]
        return _field(1, [chunk for item in items for chunk in _field(1, [item])])
    if isinstance(typed, Floats):
        try:
            packed = struct.pack(f"<{len(typed.values)}f", *typed.values)
        except (struct.error, OverflowError) as exc:
            raise ValueError(f"feature {key!r}: not float32 values ({exc})") from None
        return _field(2, _field(1, [packed]) if packed else [])
    packed = b"".join(_varint(_as_int64(key, item) & _UINT64_MASK) for item in typed.values)
    return _field(3, _field(1, [packed]) if packed else [])


def _typed(key: str, value: FeatureValue) -> Bytes | Ints | Floats:
    if isinstance(value, (Bytes, Ints, Floats)):
        return value
    if _kind(value) is not None:
        value = (value,)
    if not isinstance(value, Sequence):
        raise TypeError(f"feature {key!r}: unsupported value {type(value).__name__}")
    kinds = {_kind(item) for item in value}
    if not kinds:
        raise TypeError(f"feature {key!r}: an empty list needs a type: Bytes/Ints/Floats([])")
    if len(kinds) > 1 or None in kinds:
        raise TypeError(f"feature {key!r}: mixed or unsupported items; wrap them in Bytes/Ints/Floats")
    return kinds.pop()(value)


def _kind(item) -> type[Bytes] | type[Ints] | type[Floats] | None:
    # numbers.* rather than int/float so NumPy scalars work without importing NumPy.
    if isinstance(item, (bytes, bytearray, memoryview, str)):
        return Bytes
    if isinstance(item, numbers.Integral):
        return Ints
    if isinstance(item, numbers.Real):
        return Floats
    return None


def _as_bytes(key: str, item) -> bytes:
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    raise TypeError(f"feature {key!r}: {type(item).__name__} in a bytes list")


def _as_int64(key: str, item) -> int:
    value = operator.index(item)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"feature {key!r}: {value} does not fit in int64")
    return value


def masked_crc32c(data: bytes) -> int:
    """CRC32C as TFRecord stores it, masked so CRCs of CRCs stay well distributed."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


class TFRecordWriter:
    """Write one TFRecord file; it appears under its name only when closed cleanly.

    Records go to a temporary file next to the target that is renamed on close, so a
    crash or an exception never leaves a truncated shard that looks finished.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.records = 0
        self.bytes_written = 0
        self._tmp = self.path.with_suffix(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self._file = open(self._tmp, "wb")

    def write(self, record: bytes) -> None:
        header = _HEADER.pack(len(record))
        self._file.write(header)
        self._file.write(_CRC.pack(masked_crc32c(header)))
        self._file.write(record)
        self._file.write(_CRC.pack(masked_crc32c(record)))
        self.records += 1
        self.bytes_written += len(record) + 16

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        # Without fsync a power cut after the rename can leave an empty file under the final name.
        os.fsync(self._file.fileno())
        self._file.close()
        self._tmp.replace(self.path)

    def abort(self) -> None:
        """Drop everything written; the target path is left as it was."""
        if not self._file.closed:
            self._file.close()
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def iter_records(path: Path | str) -> Iterator[bytes]:
    """Yield each record's bytes, checking both CRCs; ValueError names file and offset."""
    path = Path(path)
    with open(path, "rb") as file:
        offset = 0
        while True:
            header = file.read(_HEADER.size + _CRC.size)
            if not header:
                return
            if len(header) < _HEADER.size + _CRC.size:
                raise ValueError(f"{path}: truncated record header at offset {offset}")
            length_bytes, length_crc = header[: _HEADER.size], header[_HEADER.size :]
            if _CRC.unpack(length_crc)[0] != masked_crc32c(length_bytes):
                raise ValueError(f"{path}: corrupt record length at offset {offset}")
            (length,) = _HEADER.unpack(length_bytes)
            data = file.read(length)
            footer = file.read(_CRC.size)
            if len(data) < length or len(footer) < _CRC.size:
                raise ValueError(f"{path}: truncated record at offset {offset}")
            if _CRC.unpack(footer)[0] != masked_crc32c(data):
                raise ValueError(f"{path}: corrupt record data at offset {offset}")
            yield data
            offset += length + 16
