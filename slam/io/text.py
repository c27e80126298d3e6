"""Input files as text: the one place where OS, compression and encoding problems become ``FormatError``.

- ``read_bytes(path)``: the file's bytes.  A missing file stays ``FileNotFoundError`` (its message
  names the path); a directory, a device (``/dev/zero`` would never end), a file we may not read or
  a failing read is a ``FormatError``; pipes are read as given.
- ``bunzip2(path, data, max_bytes)``: bzip2 data decompressed, at most ``max_bytes`` of it (a
  decompression bomb stops there, fast and in bounded memory); truncated or corrupt data, and bytes
  after the last stream, are a ``FormatError``.
- ``decode(path, data)``: UTF-8 text without a leading byte-order mark.  Bytes that are not UTF-8
  are a ``FormatError`` naming the line and the byte offset.
- ``split_lines(text)``: lines split at ``\\n`` only, so line numbers are what an editor shows (a
  ``\\r`` of CRLF stays on the line, where ``str.split()`` drops it as whitespace).
- ``strict_tokens_ok(text)``: a C-speed test that every number in ``text`` obeys the ASCII grammar
  of ``errors.NUMBER``; when it fails, readers search the tokens one by one (``parse_number``).
"""

from __future__ import annotations

import bz2
import codecs
import os
import stat

from .errors import FormatError

__all__ = ["read_bytes", "bunzip2", "decode", "read_text", "split_lines", "strict_tokens_ok"]


def read_bytes(path: str) -> bytes:
    """The bytes of ``path``; ``FormatError`` (naming it) when it is a directory or cannot be read."""
    try:
        if stat.S_ISCHR(os.stat(path).st_mode) or stat.S_ISBLK(os.stat(path).st_mode):
            # /dev/zero or a disk would be read without end; pipes (<(zcat f)) stay readable.
            raise FormatError(path, 0, "is a device, not a file")
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise FormatError(path, 0, "is a directory, not a file") from None
    except PermissionError:
        raise FormatError(path, 0, "cannot be read: permission denied") from None
    except OSError as error:
        raise FormatError(path, 0, f"cannot be read: {error.strerror or error}") from None


def bunzip2(path: str, data: bytes, max_bytes: int, raise_hint: str = "") -> bytes:
    """``data`` (one or more concatenated bzip2 streams) decompressed, refusing more than ``max_bytes``.

    Output is produced in steps capped by ``max_length``, so a bomb costs at most ``max_bytes`` of
    memory and the time to produce them.  ``raise_hint`` is appended to the size-limit message (how
    to raise the limit).
    """
    pieces: list[bytes] = []
    total, rest = 0, data
    while True:
        decompressor = bz2.BZ2Decompressor()
        try:
            piece = decompressor.decompress(rest, max_length=max_bytes + 1 - total)
            while True:
                total += len(piece)
                pieces.append(piece)
                if total > max_bytes:
                    raise FormatError(path, 0, f"decompresses to more than {max_bytes} bytes, the limit for "
                                               f"{len(data)} compressed bytes (a decompression bomb?){raise_hint}")
                if decompressor.eof or decompressor.needs_input:
                    break
                piece = decompressor.decompress(b"", max_length=max_bytes + 1 - total)
        except OSError as error:  # "Invalid data stream" and the like
            raise FormatError(path, 0, f"not a readable bzip2 file ({error})") from None
        if not decompressor.eof:
            raise FormatError(path, 0, f"truncated bzip2 file: the {len(data)} bytes end inside a compressed stream")
        rest = decompressor.unused_data
        if not rest:
            return b"".join(pieces)
        if not rest.startswith(b"BZh"):  # bz2.open ignores such bytes; they may be a damaged stream
            raise FormatError(path, 0, f"{len(rest)} bytes after the end of the bzip2 data are not a bzip2 stream")


def decode(path: str, data: bytes) -> str:
    """``data`` as UTF-8 text, one leading byte-order mark dropped; ``FormatError`` if not UTF-8."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return (data[start:] if start else data).decode("utf-8")
    except UnicodeDecodeError as error:
        offset = start + error.start
        line = data.count(b"\n", 0, offset) + 1
        raise FormatError(path, line, f"not UTF-8 text: byte 0x{data[offset]:02x} at byte offset {offset} "
                                      f"({error.reason}){_binary_hint(data)}") from None


def read_text(path: str) -> str:
    """``decode(path, read_bytes(path))``."""
    return decode(path, read_bytes(path))


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` split at ``\\n`` (without the empty string after a final newline)."""
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def strict_tokens_ok(text: str) -> bool:
    """Whether every token of ``text`` that Python's ``float()`` accepts is in our ASCII grammar.

    ``float()`` (and numpy's string casts, which call it) also accept ``1_0.5`` and non-ASCII
    digits such as ``٣`` or ``３``; for ASCII text without ``_`` the two grammars agree except
    for inf/nan, which the readers refuse as non-finite.
    """
    return text.isascii() and "_" not in text


def _binary_hint(data: bytes) -> str:
    if data.startswith(b"\x1f\x8b"):
        return "; it looks gzip-compressed: decompress it first"
    if data.startswith(b"BZh"):
        return "; it looks bzip2-compressed: decompress it first"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "; it looks like UTF-16: convert it to UTF-8"
    return ""
