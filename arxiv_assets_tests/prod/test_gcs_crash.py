"""A write to GCS cut off mid-upload is never read as a complete artifact.

The emulator is SIGKILLed while a writer process (standing in for a step's pod) is uploading a
large model directory, the writer dies too, and the emulator restarts from its on-disk state
(``GCSEmulator.crash`` picks an instant where the emulator's own bookkeeping is whole).
Some payload objects of the new version made it into the bucket; the version is still invisible:
no manifest, ``LATEST`` on the previous version, ``versions()`` without it, loading it refused.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from arxiv_assets.storage.artifacts import LATEST, MANIFEST, PAYLOAD, ArtifactNotFoundError, ArtifactStore

from .conftest import GCSEmulator, subprocess_env

KEY = "model"
FILES = 120
FILE_BYTES = 256 * 1024  # 30 MiB in all

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from arxiv_assets.storage.artifacts import ArtifactStore

    root, key, files, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    model = Path(sys.argv[5])
    model.mkdir(parents=True)
    for i in range(files):
        (model / f"shard-{i:04d}.bin").write_bytes(bytes([i % 256]) * size)
    print("uploading", flush=True)
    ArtifactStore(root).publish(key, model)
    print("published", flush=True)
""")


def _small_model(path: Path, marker: str) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(f'{{"marker": "{marker}"}}')
    (path / "weights.bin").write_bytes(b"\x01" * 1024)
    return path


def test_emulator_killed_mid_upload_leaves_previous_version_latest(gcs_emulator: GCSEmulator, tmp_path: Path):
    root = f"gs://{gcs_emulator.bucket}/crash"
    store = ArtifactStore(root, cache_dir=str(tmp_path / "cache"))
    first_uri = store.publish(KEY, _small_model(tmp_path / "v1", "first"))
    first_version = first_uri.rsplit("/", 1)[-1]

    # The killed writer cannot remove its local staging copy (30 MiB): keep it under tmp_path, not the machine's /tmp.
    writer_tmp = tmp_path / "writer-tmp"
    writer_tmp.mkdir()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, root, KEY, str(FILES), str(FILE_BYTES), str(tmp_path / "v2")],
        env=subprocess_env(STORAGE_EMULATOR_HOST=gcs_emulator.endpoint, TMPDIR=str(writer_tmp)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen_mid_write: list[int] = []
    watcher_errors: list[BaseException] = []

    def kill_when_half_uploaded() -> None:
        """Watch the emulator's disk (no HTTP request waits in its queue behind the uploads) and crash it
        once some, not all, shards of the new version are there."""
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and writer.poll() is None:
                shards = [n for n in gcs_emulator.stored_names(f"crash/{KEY}/versions")
                          if f"/{PAYLOAD}/" in n and first_version not in n]
                if len(shards) >= 10:
                    gcs_emulator.crash()
                    seen_mid_write.append(len(shards))
                    return
                time.sleep(0.01)
        except BaseException as error:  # reported by the assertion below, with the writer's output
            watcher_errors.append(error)

    killer = threading.Thread(target=kill_when_half_uploaded)
    killer.start()
    killer.join(timeout=150)
    writer.kill()  # the pod goes down with it (otherwise gcsfs would retry for ~30 s, then fail)
    output = writer.communicate(timeout=30)[0]
    assert seen_mid_write, (f"the emulator was never killed mid-upload ({watcher_errors!r}); writer said:\n{output}\n"
                            f"emulator log:\n{gcs_emulator.log_tail()}")
    assert "published" not in output

    gcs_emulator.start()  # same port, same on-disk state
    names = gcs_emulator.object_names("crash/")
    orphans = {n.split("/")[3] for n in names if n.startswith(f"crash/{KEY}/versions/")} - {first_version}
    assert len(orphans) == 1, names
    orphan = orphans.pop()
    orphan_shards = [n for n in names if n.startswith(f"crash/{KEY}/versions/{orphan}/{PAYLOAD}/")]
    assert 0 < len(orphan_shards) < FILES  # really cut off mid-write: some shards committed, not all
    assert f"crash/{KEY}/versions/{orphan}/{MANIFEST}" not in names

    reader = ArtifactStore(root, cache_dir=str(tmp_path / "cache-after"))
    assert reader.latest_uri(KEY) == first_uri
    assert reader.fs.cat_file(f"{gcs_emulator.bucket}/crash/{KEY}/{LATEST}").decode() == first_version
    assert reader.versions(KEY) == [first_version]
    assert (reader.load_latest(KEY) / "config.json").read_text() == '{"marker": "first"}'
    with pytest.raises(ArtifactNotFoundError):
        reader.load(f"{root}/{KEY}/versions/{orphan}")

    # The store keeps working after the crash: the next complete version becomes LATEST.
    third_uri = reader.publish(KEY, _small_model(tmp_path / "v3", "third"))
    assert reader.latest_uri(KEY) == third_uri
    assert reader.versions(KEY) == [first_version, third_uri.rsplit("/", 1)[-1]]
    assert (reader.load_latest(KEY) / "config.json").read_text() == '{"marker": "third"}'
