"""API keys: where they come from, how they are held, and how they reload.

Two sources, either or both (see the README's Security section):

- ``MMSERVE_API_KEYS``: comma-separated, each ``name=key`` or a bare key (named ``key1``,
  ``key2``, ... by position). A key that itself contains ``=`` must be given a name.
- ``MMSERVE_API_KEYS_FILE``: one key per line, ``<name> sha256:<64 hex digits>``; blank lines
  and ``#`` comments are skipped. The file holds digests only, never a key.

Only SHA-256 digests are kept. A presented key is hashed and its digest looked up in a dict:
one hash and one lookup per request, however many keys there are. The lookup's timing depends
only on the digest of what the client sent, never on a key's characters, so it cannot be used
to guess a key byte by byte (what ``hmac.compare_digest`` guards against when keys are compared
directly); learning how many leading bytes of a stored *digest* one's own digest matches would
need SHA-256 preimages to exploit and would still not give the key. The names, never the keys,
label metrics and logs.

The file is re-read when its modification time, size or inode changes (checked at most once a
``reload_interval_s``, on the next request) or at once after SIGHUP. A file that no longer
parses keeps the previous keys and logs the error; a file that was removed drops its keys.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from service.settings import Settings

log = logging.getLogger(__name__)

ANONYMOUS: Final = "anonymous"  # the metrics label of a request that presented no valid key
MIN_KEY_CHARS: Final = 16
_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_FILE_LINE: Final = re.compile(r"(\S+)\s+sha256:([0-9a-fA-F]{64})")


class KeyConfigError(ValueError):
    """The keys as configured cannot be used; the message never contains a key."""


def digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def parse_inline(value: str) -> dict[str, bytes]:
    """``MMSERVE_API_KEYS`` -> digest by name."""
    entries: list[tuple[str, bytes]] = []
    parts = [p.strip() for p in value.split(",") if p.strip()]
    for index, part in enumerate(parts, start=1):
        name, equals, key = part.partition("=")
        if not (equals and _NAME.fullmatch(name) and key):
            name, key = f"key{index}", part
        if len(key) < MIN_KEY_CHARS:
            raise KeyConfigError(
                f"MMSERVE_API_KEYS entry {index} ({name}) is shorter than {MIN_KEY_CHARS} "
                "characters"
            )
        entries.append((name, digest(key.encode())))
    return _by_name(entries, "MMSERVE_API_KEYS")


def parse_file(text: str, source: str) -> dict[str, bytes]:
    """The key file's text -> digest by name."""
    entries: list[tuple[str, bytes]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _FILE_LINE.fullmatch(line)
        if match is None or not _NAME.fullmatch(match.group(1)):
            raise KeyConfigError(
                f"{source} line {number}: expected '<name> sha256:<64 hex digits>', the name "
                "of letters, digits, '.', '_' or '-'"
            )
        entries.append((match.group(1), bytes.fromhex(match.group(2))))
    return _by_name(entries, source)


def _by_name(entries: Iterable[tuple[str, bytes]], source: str) -> dict[str, bytes]:
    result: dict[str, bytes] = {}
    for name, value in entries:
        if name in result:
            raise KeyConfigError(f"{source}: the name {name!r} is given twice")
        result[name] = value
    return result


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class KeyRing:
    """The valid keys' digests, each mapped to its name; reloads the key file when it changes."""

    def __init__(
        self,
        inline: str = "",
        path: Path | None = None,
        reload_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inline = parse_inline(inline)
        self._path = path
        self._interval = reload_interval_s
        self._clock = clock
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = clock() + reload_interval_s
        self._names: dict[bytes, str] = {}
        if path is not None and _stamp(path) is None:
            raise KeyConfigError(f"MMSERVE_API_KEYS_FILE: no file at {path}")
        self._load()  # errors at start are raised, not logged: the server must not start

    @property
    def names(self) -> list[str]:
        return sorted(set(self._names.values()))

    def request_reload(self) -> None:
        """Re-read the file on the next request (safe to call from a signal handler)."""
        self._next_check = 0.0
        self._stamp = None

    def name_for(self, key: bytes) -> str | None:
        """The name of ``key`` if it is valid now, else ``None``."""
        if self._path is not None and self._clock() >= self._next_check:
            self._reload_if_changed()
        return self._names.get(digest(key))

    def _reload_if_changed(self) -> None:
        assert self._path is not None
        self._next_check = self._clock() + self._interval
        if _stamp(self._path) == self._stamp:
            return
        try:
            self._load()
        except (OSError, UnicodeDecodeError, KeyConfigError) as exc:
            log.error("API keys not reloaded, the previous ones stay valid: %s", exc)
            return
        log.info("API keys reloaded: %d valid (%s)", len(self._names), ", ".join(self.names))

    def _load(self) -> None:
        by_name = dict(self._inline)
        if self._path is not None:
            stamp = _stamp(self._path)
            from_file = {} if stamp is None else parse_file(self._path.read_text(), str(self._path))
            if stamp is None:
                log.warning("API key file %s is gone: its keys are no longer valid", self._path)
            clashes = set(from_file) & set(by_name)
            if clashes:
                raise KeyConfigError(
                    f"{self._path}: {', '.join(sorted(clashes))} also named in MMSERVE_API_KEYS"
                )
            by_name |= from_file
            self._stamp = stamp
        self._names = {value: name for name, value in by_name.items()}


def key_ring(settings: Settings) -> KeyRing | None:
    """The API keys of ``settings``, or ``None`` when none are configured (open access)."""
    if not settings.keys_configured:
        return None
    inline = settings.api_keys.get_secret_value() if settings.api_keys else ""
    return KeyRing(inline, settings.api_keys_file, settings.auth.reload_interval_s)


def hash_key(key: str) -> str:
    """A key file line's value for ``key`` (``python -m service.keys NAME`` prints a line)."""
    return "sha256:" + digest(key.encode()).hex()


def main(argv: list[str] | None = None) -> int:
    """Make a new random key: prints the key (give it to the client) and its key-file line."""
    import secrets
    import sys

    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args else "client"
    if not _NAME.fullmatch(name):
        print("the name must be letters, digits, '.', '_' or '-'", file=sys.stderr)
        return 2
    key = secrets.token_urlsafe(32)
    print(f"key (give to the client, store nowhere else): {key}", file=sys.stderr)
    print(f"{name} {hash_key(key)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
