"""``bindkit.evaluate`` and ``bindkit eval``: scoring on constructed vectors (where the right answer is known),
manifest plumbing with a tiny random model, and the command end to end on the synthetic world."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bindkit
from bindkit.cli import main
from bindkit.datasets import synthetic as S
from bindkit.evaluate import (
    EvalError,
    average_prompts,
    load_templates,
    modality_columns,
    parse_label,
    read_table,
    retrieval_scores,
    zero_shot,
    zero_shot_scores,
)


def _unit(*v: float) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


# ------------------------------------------------------------------------------------------ scoring


def test_zero_shot_scores_on_constructed_vectors():
    classes = np.stack([_unit(1, 0, 0), _unit(0, 1, 0), _unit(0, 0, 1), _unit(-1, -1, -1)]) * 5.0  # scale-free
    items = np.array([
        [1.0, 0.1, 0.0],   # label 0 -> 0
        [0.9, 0.0, 0.2],   # label 0 -> 0
        [0.2, 1.0, 0.0],   # label 0 -> 1 (wrong)
        [0.0, 1.0, 0.3],   # label 1 -> 1
        [0.0, 0.1, 1.0],   # label 2 -> 2
        [0.8, 0.0, 0.1],   # label 2 -> 0 (wrong)
    ]) * np.array([[1], [3], [0.5], [2], [1], [7]])  # item norms do not matter
    labels = [0, 0, 0, 1, 2, 2]
    r = zero_shot_scores(items, classes, labels, ["a", "b", "c", "d"])
    assert r["n"] == 6
    assert r["predictions"] == [0, 0, 1, 1, 2, 0]
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["per_class"] == pytest.approx({"a": 2 / 3, "b": 1.0, "c": 0.5, "d": None})
    assert r["per_class_n"] == {"a": 3, "b": 1, "c": 2, "d": 0}
    assert r["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert r["chance"] == 0.25
    assert r["confusion"][0] == [2, 1, 0, 0] and r["confusion"][2] == [1, 0, 1, 0]
    with pytest.raises(ValueError, match="labels must be in"):
        zero_shot_scores(items, classes, [0, 0, 0, 1, 2, 4])


def test_prompt_averaging_normalises_each_prompt_then_the_mean():
    prompts = np.array([[[3.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [2.0, 2.0]]])  # (classes, templates, dim)
    out = average_prompts(prompts)
    assert out[0] == pytest.approx(_unit(1, 1))  # (1,0) and (0,1) weigh the same whatever their length
    assert out[1] == pytest.approx(_unit(1, 1))
    assert np.linalg.norm(out, axis=1) == pytest.approx([1.0, 1.0])


def test_retrieval_scores_on_constructed_vectors():
    a = np.eye(3)
    b = np.stack([_unit(0.9, 0.3, 0.1), _unit(0.8, 0.3, 0.5), _unit(0.1, 0.2, 0.95)])
    # cosine(a_i, b_j) = b_j[i]; a->b true-match ranks (0-based): 0, 1, 0; b->a: 0, 2, 0
    r = retrieval_scores(a, b, ks=(1, 2, 3), names=("image", "audio"))
    assert r["n"] == 3
    assert r["image_to_audio"]["R@1"] == pytest.approx(2 / 3)
    assert r["image_to_audio"]["R@2"] == 1.0
    assert r["audio_to_image"]["R@1"] == pytest.approx(2 / 3)
    assert r["audio_to_image"]["R@2"] == pytest.approx(2 / 3)
    assert r["audio_to_image"]["R@3"] == 1.0
    assert r["audio_to_image"]["median_rank"] == 1.0
    assert r["chance"] == pytest.approx({"R@1": 1 / 3, "R@2": 2 / 3, "R@3": 1.0})


def test_a_collapsed_model_gets_no_credit_from_ties():
    same = np.ones((5, 4))
    r = retrieval_scores(same, same, ks=(1, 5))
    assert r["a_to_b"]["R@1"] == 0.0 and r["a_to_b"]["R@5"] == 1.0


# ------------------------------------------------------------------------------------------ parsing


def test_labels_templates_and_tables(tmp_path):
    classes = ["metal", "wood", "glass"]
    assert [parse_label(v, classes) for v in ("wood", " Glass ", "0", 2, "7", "steel", None)] == [
        1, 2, 0, 2, None, None, None]
    assert load_templates(None) == ["a photo of a {}."]
    (tmp_path / "t.json").write_text(json.dumps(["a {} object", "made of {}"]))
    assert load_templates(["x {}", str(tmp_path / "t.json")]) == ["x {}", "a {} object", "made of {}"]
    with pytest.raises(EvalError, match="has no"):
        load_templates(["a photo"])
    (tmp_path / "m.jsonl").write_text('{"vision": "a.png", "label": 1}\n\n{"vision": "b.png", "label": "wood"}\n')
    cols, rows = read_table(tmp_path / "m.jsonl")
    assert cols == ["vision", "label"] and len(rows) == 2
    assert modality_columns(["note", "vision", "label"]) == {"image": "vision"}
    with pytest.raises(EvalError, match="both mean image"):
        modality_columns(["image", "vision"])
    with pytest.raises(EvalError, match="no such file"):
        read_table(tmp_path / "absent.csv")


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def tiny_random():
    torch.manual_seed(0)
    return bindkit.build_model("imagebind_tiny")


def test_zero_shot_skips_and_counts_bad_rows(tmp_path, tiny_random):
    for i in range(3):
        Image.fromarray(S.sample(i, 0, size=32)["image"]).save(tmp_path / f"{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "test.csv").write_text(
        "image,label,note\n0.png,circle,x\n1.png,1,y\nmissing.png,circle,z\nbroken.png,square,w\n"
        "2.png,dodecahedron,v\n2.png,square,u\n")
    r = zero_shot(tiny_random, tmp_path / "test.csv", ["circle", "square"], ["a {}", "a photo of a {}"])
    assert r["modality"] == "image" and r["rows"] == 6
    assert r["n"] == 3 and r["skipped"] == 3
    reasons = {s["row"]: s["reason"] for s in r["skipped_rows"]}
    assert set(reasons) == {3, 4, 5}
    assert "no such file" in reasons[3] and "image" in reasons[4] and "dodecahedron" in reasons[5]
    assert 0.0 <= r["accuracy"] <= 1.0 and set(r["per_class"]) == {"circle", "square"}
    assert sum(r["per_class_n"].values()) == 3


def _reference_weights(model, path: Path) -> Path:
    from bindkit.models import reference_layout

    torch.save({reference_layout.to_reference(k): v for k, v in model.encoders.state_dict().items()}, path)
    return path


def test_eval_command_on_the_synthetic_world(tmp_path, tiny_random, capsys):
    world = tmp_path / "world"
    S.generate(world, seed=1, splits={"train": 1, "test": 10}, size=32, show_progress=False)
    weights = str(_reference_weights(tiny_random, tmp_path / "tiny.pt"))
    test = world / "test" / "imu_motion.csv"
    with open(test, "a") as f:
        f.write("imu/none.csv,still\n")
    base = ["eval", "imagebind_tiny", "--weights", weights, "-q"]

    assert main(base + ["--zero-shot", str(test), "--classes", str(world / "classes_motion.json"),
                        "--templates", str(world / "templates_motion.json"), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["n"] == 10 and report["skipped"] == 1 and report["rows"] == 11
    assert set(report["per_class"]) == set(S.classes("motion")) and 0 <= report["accuracy"] <= 1
    assert len(report["templates"]) == len(S.templates("motion"))
    assert "skipped 1 of 11" in captured.err and "none.csv" in captured.err

    assert main(base + ["--zero-shot", str(test), "--classes", str(world / "classes_motion.json")]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "per class:" in out and "spinning" in out and "items 10 of 11" in out

    assert main(base + ["--retrieval", str(world / "test" / "image_audio.csv"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 10 and report["modalities"] == ["image", "audio"]
    assert set(report["image_to_audio"]) == {"R@1", "R@5", "R@10", "median_rank"}
    assert 0 <= report["audio_to_image"]["R@1"] <= report["audio_to_image"]["R@10"] <= 1

    assert main(base + ["--zero-shot", str(test)]) == 1
    assert "--classes" in capsys.readouterr().err
    assert main(base + ["--zero-shot", str(world / "image_text.csv"), "--classes",
                        str(world / "classes_motion.json")]) == 1
    assert "modality columns" in capsys.readouterr().err


def test_eval_help_teaches():
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--help"])
    assert exc.value.code == 0
