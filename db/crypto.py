"""Customers' personal data at rest: envelope encryption with crypto-shredding (AES-256-GCM).

Owns the PII key file and every encryption step; pure (files only, no database, no logging).

- The key file (``CONVEYOR_PII_KEY_FILE``, read by the caller) holds the key-encryption keys:
  ``{"current": "<key id>", "keys": {"<key id>": "<base64 of 32 random bytes>", ...}}``.
  ``load_keyring`` reads it; ``new_key_file`` creates one, ``add_key`` rotates (a fresh key
  becomes current, the old ones stay to unwrap what they wrapped). Both write mode 0600,
  atomically (temporary file in the same directory, fsync, rename).
- Each customer has a data key (``new_data_key``), stored only wrapped: ``Keyring.wrap``
  encrypts it under the current key (the key id is the associated data) and ``Keyring.unwrap``
  decrypts it. Deleting a customer's wrapped data key shreds all their sealed fields at once.
- ``seal`` / ``open_sealed`` encrypt a small dict of strings under a data key, bound to a
  ``context`` (e.g. the order id) so a ciphertext cannot be copied to another row.

Blobs are ``version byte || 12-byte random nonce || ciphertext and tag``. Errors are
``PiiError``s (``PiiKeyError`` for the key file and wrapped keys, ``PiiIntegrityError`` for a
sealed record that does not open); no message, and no repr, carries plaintext or key material.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tempfile
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KeyFilePath = str | os.PathLike[str]

KEY_BYTES = 32
NONCE_BYTES = 12
FORMAT_VERSION = b"\x01"
KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")
KEY_ID_RULE = "1-32 characters of A-Z a-z 0-9 . _ -"
KEY_FILE_MODE = 0o600


class PiiError(Exception):
    """Base of every error raised by Conveyor's personal-data encryption."""


class PiiKeyError(PiiError):
    """The key file is missing, unreadable or malformed, or a wrapped data key does not unwrap."""


class PiiIntegrityError(PiiError):
    """A sealed record does not open: tampered, sealed for another context, or another data key."""


class Keyring:
    """The key file's keys: wraps data keys under the current one, unwraps under any."""

    def __init__(self, path: Path, current: str, keys: Mapping[str, bytes]) -> None:
        self.path = path
        self.current = current
        self._keys = dict(keys)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def __repr__(self) -> str:
        return f"Keyring(path={str(self.path)!r}, current={self.current!r}, key_ids={list(self._keys)!r})"

    def wrap(self, dek: bytes) -> tuple[str, bytes]:
        _check_data_key(dek)
        return self.current, _encrypt(self._keys[self.current], dek, aad=self.current.encode())

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        if key_id not in self._keys:
            raise PiiKeyError(f"data key wrapped under key {key_id!r}, which {self.path} does not hold"
                              f" (it holds {', '.join(self._keys)})")
        try:
            return _decrypt(self._keys[key_id], wrapped, aad=key_id.encode())
        except InvalidTag:
            raise PiiKeyError(f"key {key_id!r} in {self.path} does not decrypt this data key:"
                              " wrong key file?") from None


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def seal(dek: bytes, record: Mapping[str, str], *, context: str) -> bytes:
    _check_data_key(dek)
    return _encrypt(dek, _record_json(record), aad=_context_bytes(context))


def open_sealed(dek: bytes, blob: bytes, *, context: str) -> dict[str, str]:
    _check_data_key(dek)
    try:
        plaintext = _decrypt(dek, blob, aad=_context_bytes(context))
    except InvalidTag:
        raise PiiIntegrityError("sealed record does not open: tampered, another row's, or another data key") from None
    record: dict[str, str] = json.loads(plaintext)
    return record


def load_keyring(path: KeyFilePath) -> Keyring:
    target = Path(path)
    document = _parse_key_file(target, _read_key_file(target))
    keys = _decode_keys(target, document.get("keys"))
    current = document.get("current")
    if not isinstance(current, str) or not current:
        raise PiiKeyError(f"PII key file {target} names no current key ('current')")
    if current not in keys:
        raise PiiKeyError(f"PII key file {target}: current key {current!r} is not among its keys ({', '.join(keys)})")
    return Keyring(target, current, keys)


def insecure_permissions(path: KeyFilePath) -> bool:
    """True when group or others have any access to the key file (it should be 0600 or 0400)."""
    return bool(os.stat(path).st_mode & 0o077)


def new_key_file(path: KeyFilePath, key_id: str) -> Keyring:
    """Create a key file holding one fresh key; an existing file is never overwritten."""
    keyring = Keyring(Path(path), _checked_key_id(key_id), {key_id: new_data_key()})
    _write_key_file(keyring, replace=False)
    return keyring


def add_key(path: KeyFilePath, key_id: str) -> Keyring:
    """Add a fresh key to the key file and make it current; the old keys stay to unwrap."""
    old = load_keyring(path)
    if _checked_key_id(key_id) in old.key_ids:
        raise PiiKeyError(f"key {key_id!r} is already in {old.path}: choose a new key id")
    keyring = Keyring(old.path, key_id, {**old._keys, key_id: new_data_key()})
    _write_key_file(keyring, replace=True)
    return keyring


# --- AES-GCM -----------------------------------------------------------------------------


def _encrypt(key: bytes, plaintext: bytes, *, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _decrypt(key: bytes, blob: bytes, *, aad: bytes) -> bytes:
    """Raises ``InvalidTag`` for anything that is not ours, intact, under this key and aad."""
    header = len(FORMAT_VERSION) + NONCE_BYTES
    if len(blob) <= header or not blob.startswith(FORMAT_VERSION):
        raise InvalidTag()
    return AESGCM(key).decrypt(blob[len(FORMAT_VERSION) : header], blob[header:], aad)


def _check_data_key(dek: bytes) -> None:
    if not isinstance(dek, bytes) or len(dek) != KEY_BYTES:
        raise ValueError(f"a data key is {KEY_BYTES} bytes (see new_data_key)")


def _record_json(record: Mapping[str, str]) -> bytes:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in record.items()):
        raise TypeError("a sealed record maps strings to strings")
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _context_bytes(context: str) -> bytes:
    # An empty context would bind nothing: a ciphertext could then move between rows.
    if not isinstance(context, str) or not context:
        raise ValueError("context must be a non-empty string (e.g. the order id)")
    return context.encode()


# --- the key file ------------------------------------------------------------------------


def _read_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PiiKeyError(f"PII key file {path} does not exist") from None
    except PermissionError:
        raise PiiKeyError(f"PII key file {path} is not readable (permission denied)") from None
    except OSError as error:
        raise PiiKeyError(f"PII key file {path} cannot be read: {error.strerror}") from None


def _parse_key_file(path: Path, content: bytes) -> dict[str, Any]:
    try:
        document = json.loads(content, object_pairs_hook=_refuse_repeated_names)
    except json.JSONDecodeError as error:
        raise PiiKeyError(f"PII key file {path} is not JSON (line {error.lineno} column {error.colno})") from None
    except _RepeatedName as error:
        raise PiiKeyError(f"PII key file {path} repeats the name {error}") from None
    except ValueError:
        raise PiiKeyError(f"PII key file {path} is not JSON (not UTF-8 text)") from None
    if not isinstance(document, dict):
        raise PiiKeyError(f"PII key file {path} is not a JSON object with 'current' and 'keys'")
    return document


class _RepeatedName(ValueError):
    """A JSON object names a member twice (``json`` would keep the last silently)."""


def _refuse_repeated_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        names = [name for name, _ in pairs]
        raise _RepeatedName(next(repr(name) for name in names if names.count(name) > 1))
    return document


def _decode_keys(path: Path, keys: object) -> dict[str, bytes]:
    if not isinstance(keys, dict) or not keys:
        raise PiiKeyError(f"PII key file {path} has no keys ('keys': an object of key id to base64 key)")
    return {_key_id_in(path, key_id): _key_bytes_in(path, key_id, encoded) for key_id, encoded in keys.items()}


def _key_id_in(path: Path, key_id: str) -> str:
    if not KEY_ID.fullmatch(key_id):
        raise PiiKeyError(f"PII key file {path}: key id {key_id!r} is not {KEY_ID_RULE}")
    return key_id


def _key_bytes_in(path: Path, key_id: str, encoded: object) -> bytes:
    # The message never quotes the value: it may be a real key with a typo.
    try:
        key = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else b""
    except binascii.Error:
        key = b""
    if len(key) != KEY_BYTES:
        raise PiiKeyError(f"PII key file {path}: key {key_id!r} is not the base64 of {KEY_BYTES} bytes")
    return key


def _checked_key_id(key_id: str) -> str:
    if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
        raise PiiKeyError(f"key id {key_id!r} is not {KEY_ID_RULE}")
    return key_id


def _key_file_json(keyring: Keyring) -> bytes:
    keys = {key_id: base64.b64encode(key).decode() for key_id, key in keyring._keys.items()}
    return (json.dumps({"current": keyring.current, "keys": keys}, indent=2) + "\n").encode()


def _write_key_file(keyring: Keyring, *, replace: bool) -> None:
    try:
        _install(keyring.path, _key_file_json(keyring), replace=replace)
    except FileExistsError:
        raise PiiKeyError(f"PII key file {keyring.path} already exists: not overwritten") from None
    except OSError as error:
        raise PiiKeyError(f"PII key file {keyring.path} cannot be written: {error.strerror or error}") from None


def _install(path: Path, content: bytes, *, replace: bool) -> None:
    """Write the whole file under a temporary name, then rename it into place (``replace``) or
    hard-link it (creating: never overwrites): a reader sees the old file or the new one."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _write_private(fd, content, owner_of=path if replace else None)
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
    fsync_directory(path.parent)


def _write_private(fd: int, content: bytes, *, owner_of: Path | None) -> None:
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), KEY_FILE_MODE)
        if owner_of is not None:
            # Rotated by root for a service user: the new file must stay readable by that user.
            old = os.stat(owner_of)
            if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(file.fileno(), old.st_uid, old.st_gid)
        file.write(content)
        file.flush()
        os.fsync(file.fileno())


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (the key file's, the archive's). Without it a
    crash can bring the old file back: data keys wrapped under a new key would then have no
    key to unwrap them."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
