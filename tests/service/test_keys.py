"""Key sources and the Host allowlist as functions; the start-up refusals as a user sees them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.hosts import HostAllowlist, host_name
from service.keys import KeyConfigError, KeyRing, hash_key, parse_file, parse_inline
from service.settings import REPO_ROOT, Settings, is_loopback
from tests.logcheck import secret
from tests.service.conftest import _free_port

LONG = secret("k" * 16 + "-unit-test-key")


def test_inline_keys_named_or_bare() -> None:
    keys = parse_inline(f"alice={LONG}1, {LONG}2 ,,{LONG}/3==")
    # Base64 padding in a bare key: what precedes "=" is no name (it has a "/"), so no split.
    assert set(keys) == {"alice", "key2", "key3"}
    ring = KeyRing(f"alice={LONG}1, {LONG}2")
    assert ring.name_for(f"{LONG}1".encode()) == "alice"
    assert ring.name_for(f"{LONG}2".encode()) == "key2"
    assert ring.name_for(b"alice") is None and ring.name_for(b"") is None


def test_a_short_key_is_refused_without_showing_it() -> None:
    with pytest.raises(KeyConfigError, match="entry 2 \\(bob\\) is shorter") as info:
        parse_inline(f"{LONG},bob=tooshort")
    assert "tooshort" not in str(info.value)


def test_key_file_lines() -> None:
    text = f"# comment\n\nbob {hash_key(LONG)}  # trailing comment\n"
    assert parse_file(text, "keys") == {"bob": bytes.fromhex(hash_key(LONG)[7:])}
    with pytest.raises(KeyConfigError, match="keys line 2"):
        parse_file(f"bob {hash_key(LONG)}\ncarol {LONG}\n", "keys")
    with pytest.raises(KeyConfigError, match="'bob' is given twice"):
        parse_file(f"bob {hash_key(LONG)}\nbob {hash_key(LONG + 'x')}\n", "keys")


def test_file_reloads_on_change_at_most_once_an_interval(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "keys"
    path.write_text(f"bob {hash_key(LONG)}\n")
    ring = KeyRing("", path, reload_interval_s=1.0, clock=lambda: now[0])
    assert ring.name_for(LONG.encode()) == "bob"
    path.write_text(f"carol {hash_key(LONG)}\n")
    assert ring.name_for(LONG.encode()) == "bob"  # not checked again within the interval
    now[0] = 1.0
    assert ring.name_for(LONG.encode()) == "carol"
    path.unlink()
    now[0] = 2.0
    assert ring.name_for(LONG.encode()) is None  # a removed file revokes its keys
    path.write_text(f"dave {hash_key(LONG)}\n")
    ring.request_reload()  # what SIGHUP does
    assert ring.name_for(LONG.encode()) == "dave"


def test_a_name_in_both_sources_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"bob {hash_key(LONG)}\n")
    with pytest.raises(KeyConfigError, match="bob also named in MMSERVE_API_KEYS"):
        KeyRing(f"bob={LONG}x", path)


@pytest.mark.parametrize(
    ("header", "name"),
    [(b"localhost:8000", "localhost"), (b"[::1]:80", "[::1]"), (b"Example.COM", "example.com"),
     (b"[::1]", "[::1]"), (b"127.0.0.1", "127.0.0.1")],
)  # fmt: skip
def test_host_name_drops_the_port(header: bytes, name: str) -> None:
    assert host_name(header) == name


def test_allowlist_patterns() -> None:
    allowlist = HostAllowlist(["api.example.com", "*.internal.example"])
    assert allowlist.allows(b"api.example.com:443")
    assert allowlist.allows(b"a.b.internal.example") and allowlist.allows(b"internal.example")
    assert not allowlist.allows(b"evil-internal.example") and not allowlist.allows(None)
    assert HostAllowlist(["*"]).allows(None)


def test_bind_decides_the_defaults() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")
    assert Settings(host="127.0.0.1").trusted_hosts == ["localhost", "127.0.0.1", "[::1]"]
    open_bind = Settings(host="0.0.0.0", auth={"allow_anonymous": True})
    assert open_bind.trusted_hosts == ["*"]


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MMSERVE_")}
    command = [sys.executable, "-m", "service", "serve", "--port", str(_free_port()), *args]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=clean | (env or {}), capture_output=True, text=True, timeout=60
    )


def test_a_public_bind_without_keys_refuses_to_start() -> None:
    result = serve("--host", "0.0.0.0", "--workers", "1")
    assert result.returncode == 2
    assert "MMSERVE_AUTH__ALLOW_ANONYMOUS=true" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_key_file_refuses_to_start_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"bob {LONG}\n")  # a key where its digest belongs
    result = serve("--api-keys-file", str(path), "--workers", "1")
    assert result.returncode == 2
    assert "line 1" in result.stderr and LONG not in result.stderr
