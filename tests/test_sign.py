"""Signatures and keys are minisign's own formats: the real minisign command agrees."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mirrorkit.errors import KeyFileError, VerifyError
from mirrorkit.sign import (
    Signature,
    _scrypt_params,
    load_public_key,
    load_secret_key,
    sign,
    verify,
    write_keypair,
)


def minisign(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    exe = shutil.which("minisign")
    assert exe, "the minisign command is required (apt-get install minisign)"
    return subprocess.run([exe, *args], capture_output=True, text=True, input=stdin,
                          timeout=120, check=False)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    write_keypair(tmp_path / "outlet")
    return tmp_path / "outlet"


def test_minisign_accepts_our_signature_and_rejects_a_changed_byte(keys: Path) -> None:
    message = keys.parent / "manifest.json"
    message.write_bytes(b'{"outlet":"x","version":1}\n')
    sig = sign(message.read_bytes(), load_secret_key(keys.with_suffix(".key")),
               "outlet:x version:1")
    (keys.parent / "manifest.json.minisig").write_bytes(sig.to_bytes())

    ok = minisign("-Vm", str(message), "-p", str(keys.with_suffix(".pub")))
    assert ok.returncode == 0, ok.stderr
    assert "Trusted comment: outlet:x version:1" in ok.stdout

    message.write_bytes(b'{"outlet":"x","version":2}\n')
    bad = minisign("-Vm", str(message), "-p", str(keys.with_suffix(".pub")))
    assert bad.returncode != 0


def test_minisign_signs_with_our_unencrypted_secret_key(keys: Path) -> None:
    data = keys.parent / "file.txt"
    data.write_bytes(b"hello")
    result = minisign("-S", "-s", str(keys.with_suffix(".key")), "-m", str(data))
    assert result.returncode == 0, result.stderr
    signature = Signature.from_bytes((keys.parent / "file.txt.minisig").read_bytes())
    verify(b"hello", signature, load_public_key(keys.with_suffix(".pub")))


def test_encrypted_key_round_trip_and_minisign_can_unlock_it(tmp_path: Path) -> None:
    prefix = tmp_path / "enc"
    write_keypair(prefix, passphrase="correct horse")
    with pytest.raises(KeyFileError, match="MIRRORKIT_PASSPHRASE"):
        load_secret_key(prefix.with_suffix(".key"), passphrase=None)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_secret_key(prefix.with_suffix(".key"), passphrase="wrong")
    key = load_secret_key(prefix.with_suffix(".key"), passphrase="correct horse")
    assert key.public == load_public_key(prefix.with_suffix(".pub"))

    data = tmp_path / "f"
    data.write_bytes(b"x")
    result = minisign("-S", "-s", str(prefix.with_suffix(".key")), "-m", str(data),
                      stdin="correct horse\n")
    assert result.returncode == 0, result.stderr


def test_we_read_keys_minisign_made(tmp_path: Path) -> None:
    pub, sec = tmp_path / "m.pub", tmp_path / "m.key"
    made = minisign("-G", "-W", "-p", str(pub), "-s", str(sec))
    assert made.returncode == 0, made.stderr
    key = load_secret_key(sec)
    assert key.public == load_public_key(pub)


def test_secret_key_file_is_private_and_never_overwritten(keys: Path) -> None:
    assert keys.with_suffix(".key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(KeyFileError, match="already exists"):
        write_keypair(keys)


@pytest.mark.parametrize("passphrase", [None, "a passphrase"], ids=["plain", "encrypted"])
def test_a_secret_key_given_as_the_public_key_is_named_so(
        tmp_path: Path, passphrase: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    import mirrorkit.sign

    monkeypatch.setattr(mirrorkit.sign, "_OPSLIMIT", 1 << 16)
    monkeypatch.setattr(mirrorkit.sign, "_MEMLIMIT", 1 << 22)
    write_keypair(tmp_path / "outlet", passphrase)
    secret = tmp_path / "outlet.key"
    with pytest.raises(KeyFileError, match="this is the secret key") as e:
        load_public_key(secret)
    assert e.value.hint == "give the .pub file beside it"
    blob = secret.read_text().splitlines()[1]
    assert blob[:20] not in str(e.value)


def test_secret_key_repr_hides_the_key(keys: Path) -> None:
    key = load_secret_key(keys.with_suffix(".key"))
    assert key.seed.hex() not in repr(key)
    assert "seed" not in repr(key)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(lambda s: s.replace(b"version:1", b"version:9"), "trusted comment",
                     id="trusted-comment-edited"),
        pytest.param(lambda s: s.replace(b"trusted comment:", b"trusted commentary:"),
                     "malformed", id="garbled"),
    ],
)
def test_tampered_signatures_are_refused(keys: Path, change: object, message: str) -> None:
    sig = sign(b"m", load_secret_key(keys.with_suffix(".key")), "outlet:x version:1")
    raw = change(sig.to_bytes())  # type: ignore[operator]
    with pytest.raises(VerifyError, match=message):
        verify(b"m", Signature.from_bytes(raw), load_public_key(keys.with_suffix(".pub")))


def test_a_different_key_is_named(keys: Path, tmp_path: Path) -> None:
    other = write_keypair(tmp_path / "other")
    sig = sign(b"m", load_secret_key(keys.with_suffix(".key")), "c")
    with pytest.raises(VerifyError, match=f"not by the given key {other.key_id_hex}"):
        verify(b"m", sig, other)


def test_scrypt_parameters_match_libsodium_for_minisign_defaults() -> None:
    # minisign's limits (2^25 ops, 1 GiB) give N=2^20, r=8, p=1 in libsodium.
    assert _scrypt_params(1 << 25, 1 << 30) == (1 << 20, 8, 1)
