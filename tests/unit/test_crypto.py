"""Personal data at rest (db/crypto.py): the key file, wrapped data keys, sealed records."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from conveyor.db import crypto
from conveyor.db.crypto import (
    PiiError,
    PiiIntegrityError,
    PiiKeyError,
    add_key,
    insecure_permissions,
    load_keyring,
    new_data_key,
    new_key_file,
    open_sealed,
    seal,
)

EMAIL = "ada.lovelace@example.com"
RECORD = {"email": EMAIL, "name": "Ada Lovelace", "address": "12 St James's Square, London"}
KEY_A = base64.b64encode(b"a" * 32).decode()
KEY_B = base64.b64encode(b"b" * 32).decode()


def write_key_file(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def one_line_error(path: Path) -> str:
    with pytest.raises(PiiKeyError) as raised:
        load_keyring(path)
    message = str(raised.value)
    assert "\n" not in message
    return message


# --- wrapped data keys ---------------------------------------------------------------------


def test_a_wrapped_data_key_unwraps_to_itself(tmp_path: Path) -> None:
    # Given a key file and a customer's data key
    keyring = new_key_file(tmp_path / "pii.json", "k1")
    dek = new_data_key()

    # When it is wrapped and unwrapped
    key_id, wrapped = keyring.wrap(dek)

    # Then it comes back, wrapped under the current key, and never in the clear
    assert key_id == "k1"
    assert keyring.unwrap(key_id, wrapped) == dek
    assert dek not in wrapped


def test_wrapping_twice_gives_different_bytes(tmp_path: Path) -> None:
    keyring = new_key_file(tmp_path / "pii.json", "k1")
    dek = new_data_key()
    assert keyring.wrap(dek)[1] != keyring.wrap(dek)[1]  # a fresh nonce each time


def test_a_key_file_that_does_not_decrypt_says_so(tmp_path: Path) -> None:
    # Given a data key wrapped under one key file's 'k1'
    _, wrapped = new_key_file(tmp_path / "one.json", "k1").wrap(new_data_key())
    other = new_key_file(tmp_path / "other.json", "k1")

    # When another key file with the same key id tries to unwrap it
    with pytest.raises(PiiKeyError) as raised:
        other.unwrap("k1", wrapped)

    # Then the error names the key and the file
    assert str(raised.value) == f"key 'k1' in {other.path} does not decrypt this data key: wrong key file?"


def test_an_unknown_key_id_is_named_with_the_ids_the_file_holds(tmp_path: Path) -> None:
    keyring = new_key_file(tmp_path / "pii.json", "k1")
    _, wrapped = keyring.wrap(new_data_key())

    with pytest.raises(PiiKeyError) as raised:
        keyring.unwrap("k0", wrapped)

    assert str(raised.value) == f"data key wrapped under key 'k0', which {keyring.path} does not hold (it holds k1)"


def test_a_wrapped_key_does_not_unwrap_under_another_key_id(tmp_path: Path) -> None:
    # Given a key file with two keys and a data key wrapped under the current one
    path = tmp_path / "pii.json"
    new_key_file(path, "k1")
    keyring = add_key(path, "k2")
    _, wrapped = keyring.wrap(new_data_key())

    # Then claiming it was wrapped under the other id fails (the id is the associated data)
    with pytest.raises(PiiKeyError, match="does not decrypt"):
        keyring.unwrap("k1", wrapped)


@pytest.mark.parametrize("wrapped", [b"", b"\x01", b"\x01" + b"\x00" * 12, b"\x02" + b"\x00" * 60])
def test_a_truncated_or_foreign_wrapped_key_is_a_key_error(tmp_path: Path, wrapped: bytes) -> None:
    keyring = new_key_file(tmp_path / "pii.json", "k1")
    with pytest.raises(PiiKeyError, match="does not decrypt"):
        keyring.unwrap("k1", wrapped)


def test_only_32_byte_data_keys_are_wrapped(tmp_path: Path) -> None:
    keyring = new_key_file(tmp_path / "pii.json", "k1")
    with pytest.raises(ValueError, match="32 bytes"):
        keyring.wrap(b"short")


# --- sealed records --------------------------------------------------------------------------


def test_a_sealed_record_opens_to_the_same_record() -> None:
    dek = new_data_key()
    blob = seal(dek, RECORD, context="order-1")
    assert open_sealed(dek, blob, context="order-1") == RECORD


def test_unicode_and_empty_values_round_trip() -> None:
    dek = new_data_key()
    record = {"name": "Zoë Ærøskøbing 山田", "phone": ""}
    assert open_sealed(dek, seal(dek, record, context="o"), context="o") == record


def test_the_plaintext_email_is_not_in_the_sealed_bytes() -> None:
    blob = seal(new_data_key(), RECORD, context="order-1")
    assert EMAIL.encode() not in blob
    assert b"ada" not in blob.lower()


def test_a_record_sealed_for_one_row_does_not_open_for_another() -> None:
    # Given a record sealed for order-1
    dek = new_data_key()
    blob = seal(dek, RECORD, context="order-1")

    # When it is copied to order-2's row
    # Then it does not open there
    with pytest.raises(PiiIntegrityError):
        open_sealed(dek, blob, context="order-2")


def test_a_tampered_blob_does_not_open() -> None:
    dek = new_data_key()
    blob = bytearray(seal(dek, RECORD, context="order-1"))
    blob[len(blob) // 2] ^= 0x01
    with pytest.raises(PiiIntegrityError):
        open_sealed(dek, bytes(blob), context="order-1")


def test_a_blob_under_another_data_key_does_not_open() -> None:
    blob = seal(new_data_key(), RECORD, context="order-1")
    with pytest.raises(PiiIntegrityError):
        open_sealed(new_data_key(), blob, context="order-1")


def test_a_truncated_blob_does_not_open() -> None:
    dek = new_data_key()
    blob = seal(dek, RECORD, context="order-1")
    for length in (0, 1, 13, len(blob) - 1):
        with pytest.raises(PiiIntegrityError):
            open_sealed(dek, blob[:length], context="order-1")


def test_integrity_errors_are_pii_errors_and_leak_nothing() -> None:
    dek = new_data_key()
    with pytest.raises(PiiError) as raised:
        open_sealed(dek, seal(dek, RECORD, context="a"), context="b")
    assert EMAIL not in str(raised.value)


def test_an_empty_context_is_refused() -> None:
    with pytest.raises(ValueError, match="context"):
        seal(new_data_key(), RECORD, context="")


def test_only_strings_are_sealed() -> None:
    with pytest.raises(TypeError):
        seal(new_data_key(), {"age": 36}, context="o")  # type: ignore[dict-item]


def test_the_sealed_json_is_sorted_and_compact(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the encryption step captured
    seen: list[bytes] = []

    def capture(key: bytes, plaintext: bytes, *, aad: bytes) -> bytes:
        seen.append(plaintext)
        return b""

    monkeypatch.setattr(crypto, "_encrypt", capture)

    # When a record is sealed
    seal(new_data_key(), {"b": "2", "a": "1"}, context="o")

    # Then the plaintext is the sorted, compact JSON
    assert seen == [b'{"a":"1","b":"2"}']


# --- the key file --------------------------------------------------------------------------


def test_a_new_key_file_is_private_and_loads(tmp_path: Path) -> None:
    # Given a new key file
    path = tmp_path / "pii.json"
    created = new_key_file(path, "k1")

    # Then it is mode 0600, holds one key, and loads to the same keyring
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not insecure_permissions(path)
    loaded = load_keyring(path)
    assert (loaded.current, loaded.key_ids, loaded.path) == ("k1", ("k1",), path)
    assert loaded.unwrap(*created.wrap(dek := new_data_key())) == dek
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_a_new_key_file_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "pii.json"
    path.write_text("keep me")
    with pytest.raises(PiiKeyError) as raised:
        new_key_file(path, "k1")
    assert str(raised.value) == f"PII key file {path} already exists: not overwritten"
    assert path.read_text() == "keep me"
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("key_id", ["", "x" * 33, "has space", "slash/", "ü"])
def test_a_bad_key_id_is_refused(tmp_path: Path, key_id: str) -> None:
    with pytest.raises(PiiKeyError, match="is not 1-32 characters"):
        new_key_file(tmp_path / "pii.json", key_id)
    assert not (tmp_path / "pii.json").exists()


def test_add_key_keeps_the_old_keys_and_makes_the_new_one_current(tmp_path: Path) -> None:
    # Given a key file with k1 and a data key wrapped under it
    path = tmp_path / "pii.json"
    old_id, old_wrapped = new_key_file(path, "k1").wrap(dek := new_data_key())

    # When k2 is added
    returned = add_key(path, "k2")

    # Then k2 is current, k1 still unwraps what it wrapped, and the file stays private
    loaded = load_keyring(path)
    assert (returned.current, loaded.current, loaded.key_ids) == ("k2", "k2", ("k1", "k2"))
    assert loaded.unwrap(old_id, old_wrapped) == dek
    assert loaded.wrap(dek)[0] == "k2"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [path]


def test_add_key_makes_a_loose_file_private_again(tmp_path: Path) -> None:
    path = tmp_path / "pii.json"
    new_key_file(path, "k1")
    path.chmod(0o644)
    assert insecure_permissions(path)

    add_key(path, "k2")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_add_key_refuses_an_id_already_present(tmp_path: Path) -> None:
    path = tmp_path / "pii.json"
    new_key_file(path, "k1")
    before = path.read_bytes()

    with pytest.raises(PiiKeyError) as raised:
        add_key(path, "k1")

    assert str(raised.value) == f"key 'k1' is already in {path}: choose a new key id"
    assert path.read_bytes() == before


def test_a_failed_rename_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a key file and a rename that fails (a full disk, a read-only mount)
    path = tmp_path / "pii.json"
    new_key_file(path, "k1")
    before = path.read_bytes()

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)

    # When a key is added
    with pytest.raises(PiiKeyError) as raised:
        add_key(path, "k2")

    # Then the error says so, the old file is byte for byte the same, and no temporary remains
    assert str(raised.value) == f"PII key file {path} cannot be written: No space left on device"
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_a_failed_write_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pii.json"
    new_key_file(path, "k1")
    before = path.read_bytes()

    def fail(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail)

    with pytest.raises(PiiKeyError, match="cannot be written: Input/output error"):
        add_key(path, "k2")
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_a_missing_directory_is_a_key_error(tmp_path: Path) -> None:
    with pytest.raises(PiiKeyError, match="cannot be written"):
        new_key_file(tmp_path / "absent" / "pii.json", "k1")


# --- bad key files: one clear line each -------------------------------------------------------


def test_a_missing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    assert one_line_error(path) == f"PII key file {path} does not exist"


def test_an_unreadable_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod 000 does not stop root (the tests may run as root): refuse the read itself
    path = write_key_file(tmp_path / "pii.json", {"current": "k1", "keys": {"k1": KEY_A}})

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert one_line_error(path) == f"PII key file {path} is not readable (permission denied)"


def test_a_directory_is_not_a_key_file(tmp_path: Path) -> None:
    assert one_line_error(tmp_path).startswith(f"PII key file {tmp_path} cannot be read: ")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is not JSON (line 1 column 1)"),
        (b'{"current": "k1",\n "keys": {', "is not JSON (line 2 column 11)"),
        (b"\xff\xfe\xfd", "is not JSON (not UTF-8 text)"),
        (b"[]", "is not a JSON object with 'current' and 'keys'"),
        (f'{{"current": "k1", "keys": {{"k1": "{KEY_A}", "k1": "{KEY_B}"}}}}'.encode(), "repeats the name 'k1'"),
    ],
)
def test_a_key_file_that_is_not_json(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "pii.json"
    path.write_bytes(content)
    assert one_line_error(path) == f"PII key file {path} {expected}"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"keys": {"k1": KEY_A}}, "names no current key ('current')"),
        ({"current": "", "keys": {"k1": KEY_A}}, "names no current key ('current')"),
        ({"current": 1, "keys": {"k1": KEY_A}}, "names no current key ('current')"),
        ({"current": "k1"}, "has no keys ('keys': an object of key id to base64 key)"),
        ({"current": "k1", "keys": {}}, "has no keys ('keys': an object of key id to base64 key)"),
        ({"current": "k1", "keys": [KEY_A]}, "has no keys ('keys': an object of key id to base64 key)"),
        ({"current": "k9", "keys": {"k1": KEY_A, "k2": KEY_B}}, ": current key 'k9' is not among its keys (k1, k2)"),
        ({"current": "k 1", "keys": {"k 1": KEY_A}}, ": key id 'k 1' is not 1-32 characters of A-Z a-z 0-9 . _ -"),
    ],
)
def test_a_key_file_with_a_bad_structure(tmp_path: Path, document: object, expected: str) -> None:
    path = write_key_file(tmp_path / "pii.json", document)
    assert one_line_error(path) == f"PII key file {path}{'' if expected[0] == ':' else ' '}{expected}"


@pytest.mark.parametrize(
    "encoded",
    [
        base64.b64encode(b"k" * 16).decode(),  # 16 bytes: AES-128, not ours
        base64.b64encode(b"k" * 33).decode(),
        "not base64 at all!",
        KEY_A[:-2],  # padding cut off
        "",
        32,
        None,
    ],
)
def test_a_key_that_is_not_32_bytes_of_base64(tmp_path: Path, encoded: object) -> None:
    path = write_key_file(tmp_path / "pii.json", {"current": "k1", "keys": {"k1": encoded}})
    message = one_line_error(path)
    assert message == f"PII key file {path}: key 'k1' is not the base64 of 32 bytes"
    if isinstance(encoded, str) and encoded:
        assert encoded not in message  # the value is never quoted: it may be a real key


# --- nothing secret in reprs ---------------------------------------------------------------------


def test_the_keyring_repr_shows_the_path_and_key_ids_only(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "pii.json", {"current": "k2", "keys": {"k1": KEY_A, "k2": KEY_B}})
    keyring = load_keyring(path)

    shown = repr(keyring) + str(keyring)

    assert repr(keyring) == f"Keyring(path={str(path)!r}, current='k2', key_ids=['k1', 'k2'])"
    for key in (KEY_A, KEY_B):
        assert key not in shown
        assert repr(base64.b64decode(key)) not in shown


def test_insecure_permissions_flags_any_group_or_other_access(tmp_path: Path) -> None:
    path = tmp_path / "pii.json"
    new_key_file(path, "k1")
    for mode, insecure in [(0o600, False), (0o400, False), (0o640, True), (0o604, True), (0o620, True)]:
        path.chmod(mode)
        assert insecure_permissions(path) is insecure, oct(mode)
