"""Ed25519 signatures in minisign's formats, made with ``cryptography``.

Signatures are prehashed (algorithm ``ED``: Ed25519 over BLAKE2b-512 of the file) and carry
a trusted comment, so the standard ``minisign -Vm manifest.json -p outlet.pub`` checks
what mirrorkit signs.  Key files are minisign's too: a public key is
``base64("Ed" || key id || public key)``; a secret key is minisign's secret-key box,
either unencrypted (as ``minisign -W`` writes it, for unattended signers) or encrypted with
scrypt from ``MIRRORKIT_PASSPHRASE``.

The secret key is only ever held in :class:`SecretKey`, whose repr hides it; no error
message or log line contains key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from mirrorkit.errors import KeyFileError, KeyLockedError, VerifyError

PASSPHRASE_ENV = "MIRRORKIT_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)

_SIG_ALG = b"Ed"
_PREHASHED_ALG = b"ED"
_KDF_SCRYPT = b"Sc"
_KDF_NONE = b"\0\0"
_CHK_ALG = b"B2"
# minisign's own defaults, so that minisign can use a key that mirrorkit encrypted.
_OPSLIMIT = 1 << 25
_MEMLIMIT = 1 << 30
_SK_BOX = struct.Struct("<2s2s2s32sQQ104s")


@dataclass(frozen=True)
class PublicKey:
    key_id: bytes
    raw: bytes

    @property
    def key_id_hex(self) -> str:
        """The key id as minisign prints it (little-endian 64-bit, upper-case hex)."""
        return self.key_id[::-1].hex().upper()

    def to_text(self) -> str:
        blob = base64.b64encode(_SIG_ALG + self.key_id + self.raw).decode()
        return f"untrusted comment: minisign public key {self.key_id_hex}\n{blob}\n"

    @classmethod
    def from_text(cls, text: str, where: str = "public key") -> PublicKey:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines and lines[0].startswith("untrusted comment:"):
            lines = lines[1:]
        try:
            blob = base64.b64decode(lines[0], validate=True)
        except (IndexError, binascii.Error) as e:
            raise KeyFileError("not a minisign public key", where=where) from e
        if len(blob) != 42 or blob[:2] != _SIG_ALG:
            if blob[2:4] in (_KDF_SCRYPT, _KDF_NONE) and len(blob) > 42:
                # Given where the public key goes (verify --key outlet.key): say so, and
                # nothing of what it holds.
                raise KeyFileError("this is the secret key, not the public key",
                                   where=where, hint="give the .pub file beside it")
            raise KeyFileError("not a minisign Ed25519 public key", where=where)
        return cls(key_id=blob[2:10], raw=blob[10:])

    def verify_raw(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class SecretKey:
    key_id: bytes
    seed: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> SecretKey:
        return cls(key_id=secrets.token_bytes(8), seed=secrets.token_bytes(32))

    @property
    def public(self) -> PublicKey:
        raw = Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes_raw()
        return PublicKey(key_id=self.key_id, raw=raw)

    def sign_raw(self, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)

    def to_text(self, passphrase: str | None) -> str:
        sk = self.seed + self.public.raw
        chk = hashlib.blake2b(_SIG_ALG + self.key_id + sk, digest_size=32).digest()
        keynum_sk = self.key_id + sk + chk
        salt = secrets.token_bytes(32)
        if passphrase:
            kdf = _KDF_SCRYPT
            keynum_sk = _xor(keynum_sk, _scrypt_stream(passphrase, salt, _OPSLIMIT, _MEMLIMIT))
            comment = "minisign encrypted secret key"
        else:
            kdf = _KDF_NONE
            comment = "minisign secret key (unencrypted)"
        box = _SK_BOX.pack(_SIG_ALG, kdf, _CHK_ALG, salt, _OPSLIMIT, _MEMLIMIT, keynum_sk)
        return f"untrusted comment: {comment}\n{base64.b64encode(box).decode()}\n"

    @classmethod
    def from_text(cls, text: str, passphrase: str | None, where: str) -> SecretKey:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        try:
            box = base64.b64decode(lines[-1], validate=True)
            sig_alg, kdf, chk_alg, salt, ops, mem, keynum_sk = _SK_BOX.unpack(box)
        except (IndexError, binascii.Error, struct.error) as e:
            raise KeyFileError("not a minisign secret key", where=where) from e
        if sig_alg != _SIG_ALG or chk_alg != _CHK_ALG:
            raise KeyFileError("unsupported secret key algorithm", where=where)
        if kdf == _KDF_SCRYPT:
            if not passphrase:
                raise KeyLockedError(
                    "secret key is encrypted", where=where,
                    hint=f"set {PASSPHRASE_ENV} to its passphrase",
                )
            keynum_sk = _xor(keynum_sk, _scrypt_stream(passphrase, salt, ops, mem))
        elif kdf != _KDF_NONE:
            raise KeyFileError("unsupported key derivation", where=where)
        key_id, sk, chk = keynum_sk[:8], keynum_sk[8:72], keynum_sk[72:]
        expected = hashlib.blake2b(_SIG_ALG + key_id + sk, digest_size=32).digest()
        # minisign -W leaves the checksum of an unencrypted key zero.
        if chk != expected and not (kdf == _KDF_NONE and chk == bytes(32)):
            reason = "wrong passphrase" if kdf == _KDF_SCRYPT else "checksum mismatch"
            raise KeyFileError(f"cannot unlock secret key: {reason}", where=where)
        key = cls(key_id=key_id, seed=sk[:32])
        if key.public.raw != sk[32:]:
            raise KeyFileError("secret key is corrupt", where=where)
        return key


def _xor(data: bytes, stream: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))


def _scrypt_params(opslimit: int, memlimit: int) -> tuple[int, int, int]:
    """libsodium's pickparams(): the (N, r, p) that minisign derives from its limits."""
    opslimit = max(opslimit, 32768)
    r = 8
    if opslimit < memlimit // 32:
        p = 1
        max_n = opslimit // (r * 4)
    else:
        max_n = memlimit // (r * 128)
    n_log2 = 1
    while n_log2 < 63 and (1 << n_log2) <= max_n // 2:
        n_log2 += 1
    if opslimit >= memlimit // 32:
        maxrp = min((opslimit // 4) // (1 << n_log2), 0x3FFFFFFF)
        p = maxrp // r
    return 1 << n_log2, r, p


def _scrypt_stream(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    n, r, p = _scrypt_params(opslimit, memlimit)
    return Scrypt(salt=salt, length=104, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


# -- signatures ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Signature:
    key_id: bytes
    signature: bytes
    trusted_comment: str
    global_signature: bytes

    def to_bytes(self, untrusted_comment: str = "signature from mirrorkit secret key") -> bytes:
        return (
            f"untrusted comment: {untrusted_comment}\n"
            f"{base64.b64encode(_PREHASHED_ALG + self.key_id + self.signature).decode()}\n"
            f"trusted comment: {self.trusted_comment}\n"
            f"{base64.b64encode(self.global_signature).decode()}\n"
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "signature") -> Signature:
        try:
            lines = data.decode("utf-8").splitlines()
            if not lines[0].startswith("untrusted comment:"):
                raise ValueError("no untrusted comment line")
            blob = base64.b64decode(lines[1].strip(), validate=True)
            prefix = "trusted comment: "
            if not lines[2].startswith(prefix):
                raise ValueError("no trusted comment line")
            global_sig = base64.b64decode(lines[3].strip(), validate=True)
        except (UnicodeDecodeError, IndexError, ValueError, binascii.Error) as e:
            raise VerifyError(f"malformed signature: {e}", where=where) from e
        if len(blob) != 74 or blob[:2] != _PREHASHED_ALG or len(global_sig) != 64:
            raise VerifyError("unsupported signature (want prehashed Ed25519)", where=where)
        return cls(key_id=blob[2:10], signature=blob[10:], trusted_comment=lines[2][len(prefix):],
                   global_signature=global_sig)


def sign(message: bytes, key: SecretKey, trusted_comment: str) -> Signature:
    if "\n" in trusted_comment or "\r" in trusted_comment:
        raise ValueError("a trusted comment is one line")
    sig = key.sign_raw(hashlib.blake2b(message, digest_size=64).digest())
    global_sig = key.sign_raw(sig + trusted_comment.encode("utf-8"))
    return Signature(key.key_id, sig, trusted_comment, global_sig)


def verify(message: bytes, signature: Signature, key: PublicKey, where: str = "signature") -> str:
    """Check ``signature`` over ``message``; returns the trusted comment or raises."""
    if signature.key_id != key.key_id:
        raise VerifyError(
            f"signed by key {signature.key_id[::-1].hex().upper()}, "
            f"not by the given key {key.key_id_hex}",
            where=where,
        )
    if not key.verify_raw(signature.signature, hashlib.blake2b(message, digest_size=64).digest()):
        raise VerifyError("signature does not match the signed file", where=where)
    comment = signature.trusted_comment.encode("utf-8")
    if not key.verify_raw(signature.global_signature, signature.signature + comment):
        raise VerifyError("trusted comment was altered", where=where)
    return signature.trusted_comment


# -- key files ----------------------------------------------------------------------------

def write_keypair(prefix: Path, passphrase: str | None = None, *, force: bool = False) -> PublicKey:
    """Write PREFIX.key (mode 0600) and PREFIX.pub; refuses to overwrite unless ``force``."""
    secret_path, public_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(
        prefix.name + ".pub")
    for path in (secret_path, public_path):
        if path.exists() and not force:
            raise KeyFileError("already exists; not overwriting a key", where=str(path))
    key = SecretKey.generate()
    secret_path.parent.mkdir(parents=True, exist_ok=True)
    # Create with 0600 from the start: the key is never readable by others, even briefly.
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key.to_text(passphrase))
    secret_path.chmod(0o600)
    public_path.write_text(key.public.to_text(), encoding="utf-8")
    return key.public


def load_secret_key(path: Path, passphrase: str | None = None) -> SecretKey:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise KeyFileError("not a minisign secret key (not text)", where=str(path)) from e
    except OSError as e:
        # A runner that lacks the key (a Secret not mounted) needs the outlet's own key:
        # a new one from keygen would sign copies its readers' verifiers do not trust.
        raise KeyFileError(
            f"cannot read secret key: {e.strerror}", where=str(path),
            hint="make it readable by this user" if isinstance(e, PermissionError) else
                 "put the outlet's secret key there (on a runner: mount its Secret) or fix "
                 "[signing] secret_key; 'mirrorkit keygen' is for a new outlet",
        ) from e
    if passphrase is None:
        passphrase = os.environ.get(PASSPHRASE_ENV) or None
    return SecretKey.from_text(text, passphrase, str(path))


def load_public_key(path: Path) -> PublicKey:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise KeyFileError("not a minisign public key (not text)", where=str(path)) from e
    except OSError as e:
        raise KeyFileError(f"cannot read public key: {e.strerror}", where=str(path)) from e
    return PublicKey.from_text(text, str(path))


def check_key_pair(secret_path: Path, public_path: Path) -> PublicKey:
    """The public key, once the secret key is known to be its pair: what is signed with
    one must verify with the other.  :class:`KeyFileError` names what is wrong."""
    public = load_public_key(public_path)
    secret = load_secret_key(secret_path).public
    if (secret.key_id, secret.raw) != (public.key_id, public.raw):
        raise KeyFileError(
            f"secret key (key id {secret.key_id_hex}) is not the pair of public key "
            f"{public_path} (key id {public.key_id_hex})", where=str(secret_path),
            hint="point [signing] secret_key and public_key at the two files of one "
                 "'mirrorkit keygen'")
    return public
