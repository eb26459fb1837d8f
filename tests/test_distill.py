"""bindkit distill: a student reproduces a teacher's vectors for one modality and searches the teacher's indexes.

Tiny sizes and few steps throughout: these tests check the pipeline and its guarantees (the teacher-vector cache
is computed once and resumed, the student directory loads and records its teacher, an index built with the
teacher accepts the student's queries of its modality only and refuses its additions, eval reports cosine and
R@k, a student of the wrong dimension is refused), not how good a student gets (benchmarks/bench_distill.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bindkit
from bindkit.cli import main
from bindkit.datasets.synthetic.captions import caption
from bindkit.datasets.synthetic.world import draw_scene, streams
from bindkit.distill import DistillError
from bindkit.errors import CardError, CheckpointError, IndexStoreError, StudentModelError


def captions(n: int, seed: int = 0, split: str = "train") -> list[str]:
    out = []
    for i in range(n):
        r = streams(seed, split, i, 3)
        out.append(caption(draw_scene(r[0], seed, split, i), r[2]))
    return out


def text_student_card(dim: int = 128, context: int = 32) -> dict:
    """A very small text encoder (width 16, one block) projecting into ``dim``."""
    card = bindkit.load_card("bindkit_toy_text_student").to_dict()
    card["name"] = "tiny_text_student"
    card["out_embed_dim"] = dim
    card["modalities"]["text"].update(embed_dim=16, num_blocks=1, num_heads=2, context_length=context, mlp_ratio=4)
    card["preprocess"]["text"]["context_length"] = context
    return card


def quiet(msg: str) -> None:
    pass


FAST = dict(batch_size=16, epochs=2, lr=3e-3, val_split=0.1, progress=False, log=quiet)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A text student of bindkit_toy (a few steps), its data, and an index of texts built with the teacher."""
    root = tmp_path_factory.mktemp("distill")
    (root / "train.txt").write_text("\n".join(captions(80)) + "\n")
    (root / "held.txt").write_text("\n".join(captions(12, seed=1, split="test")) + "\n")
    logs: list[str] = []
    result = bindkit.distill("bindkit_toy", root / "train.txt", root / "student", student_card=text_student_card(),
                             cache_chunk=32, **{**FAST, "log": logs.append})
    teacher = bindkit.load_model("bindkit_toy", modalities=["text"])
    with bindkit.Index.create(root / "index", model=teacher) as idx:
        idx.add(captions(20, seed=2, split="test"), modality="text")
    return root, result, logs, teacher


def test_student_directory_loads_and_records_its_teacher(toy_run):
    root, result, logs, teacher = toy_run
    assert result.finished and result.step == result.total_steps == 2 * 5  # 72 training texts / 16 per step
    student = bindkit.load_model(root / "student")
    assert student.modalities == ("text",) and student.dim == 128
    rec = student.card.weights["distilled"]
    assert rec["teacher"] == "bindkit_toy" and rec["modality"] == "text" and rec["teacher_dim"] == 128
    assert rec["teacher_fingerprint"] == teacher.fingerprint("text")
    manifest = json.loads((root / "student" / "manifest.json").read_text())
    assert manifest["source"] == "bindkit distill" and manifest["distilled"] == rec
    record = json.loads((root / "student" / "distill_record.json").read_text())
    assert record["status"] == "finished" and record["data"]["items"] == 80
    assert len(record["epochs"]) == 2 and all(0 < e["val_cosine"] <= 1 for e in record["epochs"])
    v = student.embed(text=["a red metal star"])["text"]
    assert v.shape == (1, 128) and abs(float(np.linalg.norm(v)) - 1) < 1e-5


def test_teacher_cache_is_written_once_and_reused(toy_run, tmp_path):
    root, result, logs, _ = toy_run
    cache = root / "student" / "teacher_cache"
    assert result.cache["computed"] == 80 and result.cache["reused"] == 0
    assert sorted(p.name for p in cache.glob("chunk_*.npz")) == ["chunk_00000.npz", "chunk_00001.npz",
                                                                  "chunk_00002.npz"]  # 80 items, 32 per chunk
    with np.load(cache / "chunk_00000.npz") as z:
        vectors = z["vectors"]
    teacher = bindkit.load_model("bindkit_toy", modalities=["text"])
    first = (root / "train.txt").read_text().splitlines()[:4]
    np.testing.assert_allclose(vectors[:4], teacher.embed(text=first)["text"], atol=1e-5)
    # another run on the same data and teacher, sharing the cache: no teacher forward pass at all
    again = bindkit.distill("bindkit_toy", root / "train.txt", tmp_path / "s2", student_card=text_student_card(),
                            cache=cache, cache_chunk=32, max_steps=1, **{**FAST, "epochs": 1})
    assert again.cache["computed"] == 0 and again.cache["reused"] == 80
    # a cache of other data is refused, not mixed
    (tmp_path / "other.txt").write_text("\n".join(captions(40, seed=5)) + "\n")
    with pytest.raises(CheckpointError, match="other data or another teacher"):
        bindkit.distill("bindkit_toy", tmp_path / "other.txt", tmp_path / "s3", student_card=text_student_card(),
                        cache=cache, cache_chunk=32, **FAST)


def test_interrupted_cache_fill_resumes_with_the_missing_chunks_only(tmp_path, monkeypatch):
    (tmp_path / "t.txt").write_text("\n".join(captions(50)) + "\n")
    teacher = bindkit.load_model("bindkit_toy", modalities=["text"])
    calls = {"n": 0}
    embed = type(teacher).embed

    def dies_on_third_chunk(self, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return embed(self, **kw)

    monkeypatch.setattr(type(teacher), "embed", dies_on_third_chunk)
    args = dict(student_card=text_student_card(), cache_chunk=10, **FAST)
    with pytest.raises(KeyboardInterrupt):
        bindkit.distill(teacher, tmp_path / "t.txt", tmp_path / "out", **args)
    chunks = sorted(p.name for p in (tmp_path / "out" / "teacher_cache").glob("chunk_*"))
    assert chunks == ["chunk_00000.npz", "chunk_00001.npz"]  # whole chunks only, no temporary files left
    with pytest.raises(CheckpointError, match="--resume"):
        bindkit.distill(teacher, tmp_path / "t.txt", tmp_path / "out", **args)
    done = bindkit.distill(teacher, tmp_path / "t.txt", tmp_path / "out", resume=True, **args)
    assert done.finished and done.cache["computed"] == 30 and done.cache["reused"] == 20


def test_resumed_training_matches_an_uninterrupted_run(tmp_path):
    (tmp_path / "t.txt").write_text("\n".join(captions(48)) + "\n")
    args = dict(student_card=text_student_card(), **{**FAST, "epochs": 3, "val_split": 0.0})
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        full = bindkit.distill("bindkit_toy", tmp_path / "t.txt", tmp_path / "full", **args)
        part = bindkit.distill("bindkit_toy", tmp_path / "t.txt", tmp_path / "part", stop_after=4, **args)
        assert not part.finished and part.step == 4
        with pytest.raises(CheckpointError, match="lr"):
            bindkit.distill("bindkit_toy", tmp_path / "t.txt", tmp_path / "part", resume=True, **{**args, "lr": 1e-3})
        rest = bindkit.distill("bindkit_toy", tmp_path / "t.txt", tmp_path / "part", resume=True, **args)
    finally:
        torch.set_num_threads(before)
    assert rest.finished and rest.step == full.step == 9 and rest.cache["computed"] == 0
    a = bindkit.load_model(tmp_path / "full").encoders.state_dict()
    b = bindkit.load_model(tmp_path / "part").encoders.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_teacher_index_accepts_student_text_queries(toy_run):
    root, _, _, teacher = toy_run
    student = bindkit.load_model(root / "student")
    with bindkit.Index.open(root / "index", model=student) as idx:
        hits = idx.search(text="a small red wooden circle", k=5)
        batch = idx.search(text=["a star", "a blue square"], k=3)
    assert len(hits["text"]) == 5 and all(-1 <= h.score <= 1 for h in hits["text"])
    assert [len(b["text"]) for b in batch] == [3, 3]
    with bindkit.Index.open(root / "index") as idx:  # the student's fingerprint was not recorded as the index's
        assert idx.stats()["model"]["fingerprints"]["text"] == teacher.fingerprint("text")


def test_adding_with_the_student_is_refused(toy_run):
    root, _, _, _ = toy_run
    student = bindkit.load_model(root / "student")
    with bindkit.Index.open(root / "index", model=student) as idx:
        n = len(idx)
        with pytest.raises(StudentModelError, match="add them with the teacher") as err:
            idx.add(["a new caption"], modality="text")
        assert "bindkit_toy" in str(err.value) and isinstance(err.value, IndexStoreError)
        assert len(idx) == n
    with pytest.raises(StudentModelError):  # the offline build path too
        with bindkit.Index.create(root / "index", model=student, exist_ok=True) as idx:
            idx.add(["another caption"], modality="text")



def test_index_build_with_the_student_stops_at_once(toy_run, tmp_path, capsys):
    root, _, _, _ = toy_run
    import shutil

    shutil.copytree(root / "index", tmp_path / "index")
    (tmp_path / "m.csv").write_text("text\na blue cube\na red star moving\n")
    with bindkit.Index.open(tmp_path / "index") as idx:
        n = len(idx)
    assert main(["index", "build", str(tmp_path / "m.csv"), "--out", str(tmp_path / "index"), "--model",
                 str(root / "student"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "student distilled from 'bindkit_toy'" in err and "retrying" not in err and "failed" not in err
    with bindkit.Index.open(tmp_path / "index") as idx:
        assert len(idx) == n


def test_other_modality_queries_with_the_student_are_refused(toy_run):
    root, _, _, _ = toy_run
    student = bindkit.load_model(root / "student")
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    with bindkit.Index.open(root / "index", model=student) as idx:
        with pytest.raises(StudentModelError, match="text queries only"):
            idx.search(image=image, k=3)
        with pytest.raises(StudentModelError, match="image queries need the teacher"):
            idx.search(text="a star", image=image, k=3)


def test_student_of_another_teacher_or_other_weights_is_refused(toy_run, tmp_path, tiny_model):
    root, _, _, _ = toy_run
    student = bindkit.load_model(root / "student")
    other = bindkit.build_model("imagebind_tiny", modalities=["text"])
    with bindkit.Index.create(tmp_path / "tiny_index", model=other):
        pass
    with pytest.raises(IndexStoreError, match="student distilled from 'bindkit_toy'"):
        bindkit.Index.open(tmp_path / "tiny_index", model=student)
    # a student of the fixture weights on an index of random imagebind_tiny weights: same card, other weights
    (tmp_path / "t.txt").write_text("\n".join(captions(20)) + "\n")
    bindkit.distill(tiny_model, tmp_path / "t.txt", tmp_path / "s", student_card=text_student_card(32, 16),
                    max_steps=1, **FAST)
    with pytest.raises(IndexStoreError, match="other weights"):
        bindkit.Index.open(tmp_path / "tiny_index", model=bindkit.load_model(tmp_path / "s"))


def test_student_of_the_wrong_dimension_is_refused_before_any_work(tmp_path):
    (tmp_path / "t.txt").write_text("\n".join(captions(20)) + "\n")
    with pytest.raises(CardError, match=r"64-d space.*128-d.*\"out_embed_dim\": 128"):
        bindkit.distill("bindkit_toy", tmp_path / "t.txt", tmp_path / "out", student_card=text_student_card(64),
                        **FAST)
    assert not (tmp_path / "out").exists()
    no_text = bindkit.load_card("imagebind_tiny").to_dict()
    no_text["out_embed_dim"] = 128
    del no_text["modalities"]["text"]
    with pytest.raises(CardError, match="no text encoder"):
        bindkit.distill("bindkit_toy", tmp_path / "t.txt", tmp_path / "out", student_card=no_text, **FAST)


def test_data_sources(tmp_path):
    from bindkit.distill.data import read_items

    (tmp_path / "a.csv").write_text("id,text\n1,a red star\n2,\n3,a blue disc\n4,a red star\n")
    (tmp_path / "b.jsonl").write_text('{"caption": "a green cross"}\n{"caption": "a blue disc"}\n')
    (tmp_path / "c.txt").write_text("a blue disc\n\na yellow hexagon\n")
    items = read_items([tmp_path / "a.csv", tmp_path / "c.txt"], "text")
    assert items.items == ["a red star", "a blue disc", "a yellow hexagon"]
    assert items.duplicates == 2 and len(items.skipped) == 2  # repeated texts; an empty cell and an empty line
    assert read_items(tmp_path / "b.jsonl", "text", column="caption").items == ["a green cross", "a blue disc"]
    with pytest.raises(DistillError, match="no text column"):
        read_items(tmp_path / "b.jsonl", "text")
    with pytest.raises(DistillError, match="folder"):
        read_items(tmp_path, "text")
    with pytest.raises(DistillError, match="does not exist"):
        read_items(tmp_path / "nope.txt", "text")
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for name in ("x.png", "sub/y.jpg"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    media = read_items(folder, "image")
    assert [Path(p).relative_to(folder).as_posix() for p in media.items] == ["x.png", "sub/y.jpg"]
    assert media.ignored == 1  # notes.txt


def test_eval_prints_cosine_and_recall_vs_teacher(toy_run, capsys):
    root, _, _, _ = toy_run
    assert main(["eval", str(root / "student"), "--distill", str(root / "held.txt"), "--index",
                 str(root / "index"), "-q"]) == 0
    text = capsys.readouterr().out
    assert "student-teacher cosine" in text and "mean" in text and "R@10" in text
    assert "held-out text (11 candidates)" in text and "index text (20 candidates)" in text
    assert main(["eval", str(root / "student"), "--distill", str(root / "held.txt"), "--index",
                 str(root / "index"), "--k", "10", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n"] == 12 and rep["teacher"] == "bindkit_toy" and -1 <= rep["mean_cosine"] <= 1
    for name in ("held-out text", "index text"):
        assert 0 <= rep["recall_vs_teacher"][name]["R@10"] <= 1


def test_distill_scores_on_constructed_vectors():
    from bindkit.evaluate import distill_scores

    rng = np.random.default_rng(0)
    t = rng.standard_normal((30, 8))
    same = distill_scores(t, t, ks=(1, 5))
    assert same["mean_cosine"] == pytest.approx(1.0) and same["recall_vs_teacher"] == {"R@1": 1.0, "R@5": 1.0}
    flipped = distill_scores(-t, t, ks=(5,))  # the reverse ranking: the student's top-5 are the teacher's last
    assert flipped["mean_cosine"] == pytest.approx(-1.0) and flipped["recall_vs_teacher"]["R@5"] == 0.0
    cands = rng.standard_normal((50, 8))
    assert distill_scores(t, t, cands, ks=(10,))["candidates"] == 50


def test_cli_distill_and_help(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("\n".join(captions(24)) + "\n")
    card = tmp_path / "student.json"
    card.write_text(json.dumps(text_student_card()))
    assert main(["distill", "--teacher", "bindkit_toy", "--student-card", str(card), "--data",
                 str(tmp_path / "t.txt"), "--out", str(tmp_path / "s"), "--epochs", "1", "--batch-size", "8",
                 "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "s")
    assert bindkit.load_model(tmp_path / "s").card.weights["distilled"]["teacher_source"] == "bindkit_toy"
    assert main(["distill", "--teacher", "bindkit_toy", "--student-card", str(card), "--data",
                 str(tmp_path / "missing.txt"), "--out", str(tmp_path / "s2"), "-q"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["distill", "--teacher", "bindkit_toy", "--student-card", str(card), "--data",
                 str(tmp_path / "t.txt"), "--out", str(tmp_path / "s3"), "--teacher-blocks", "0,3", "-q"]) == 1
    assert "one teacher block per student block" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["distill", "--teacher", "t", "--student-card", "c", "--data", "d", "--out", "o", "--teacher-blocks",
              "first"])
    assert "like 0,3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    assert "--student-card" in capsys.readouterr().out


def test_imagebind_tiny_teacher_text_and_image_students(tiny_model, tmp_path):
    """The same pipeline with the imagebind_tiny reference fixture as teacher: a text student, and an image
    student (smaller input, 32 px) trained from a folder of images, both searching an index the teacher built."""
    (tmp_path / "t.txt").write_text("\n".join(captions(24)) + "\n")
    text = bindkit.distill(tiny_model, tmp_path / "t.txt", tmp_path / "text_student",
                           student_card=text_student_card(32, 16), **{**FAST, "epochs": 1})
    assert text.finished
    rec = bindkit.load_model(tmp_path / "text_student").card.weights["distilled"]
    assert rec["teacher"] == "imagebind_tiny" and rec["teacher_fingerprint"] == tiny_model.fingerprint("text")

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    card = bindkit.load_card("imagebind_tiny").to_dict()
    card["name"] = "tiny_image_student"
    card["modalities"] = {"vision": {**card["modalities"]["vision"], "embed_dim": 16, "num_blocks": 1,
                                     "num_heads": 2, "image_size": 32, "patch_size": [2, 8, 8]}}
    card["preprocess"] = {"image": {**card["preprocess"]["image"], "size": 32}}
    image = bindkit.distill(tiny_model, folder, tmp_path / "image_student", student_card=card, modality="image",
                            **{**FAST, "batch_size": 4, "epochs": 1})
    assert image.finished and image.cache["computed"] == 12
    student = bindkit.load_model(tmp_path / "image_student")
    assert student.modalities == ("vision",)
    with bindkit.Index.create(tmp_path / "index", model=tiny_model) as idx:
        idx.add(sorted(str(p) for p in folder.iterdir()), modality="image")
    with bindkit.Index.open(tmp_path / "index", model=student) as idx:
        assert len(idx.search(image=str(folder / "00.png"), k=4)["image"]) == 4
        with pytest.raises(StudentModelError):
            idx.add([str(folder / "00.png")], modality="image", metadata={"again": True})


def test_student_starts_from_the_teacher_whole_or_sliced():
    from bindkit.distill.student import copy_teacher_tensors

    teacher = bindkit.load_model("bindkit_toy", modalities=["text"]).encoders["text"]
    t = teacher.state_dict()
    one_block = bindkit.load_card("bindkit_toy_text_student").to_dict()
    one_block["modalities"]["text"].update(embed_dim=64, num_blocks=1, mlp_ratio=4)
    same_width = bindkit.build_model(one_block).encoders["text"]  # 1 block of the teacher's 4, its width
    whole, sliced = copy_teacher_tensors(same_width, teacher)
    assert not sliced and "trunk.blocks.0.attn.qkv.weight" in whole and "stem.token_embedding.weight" in whole
    assert all(torch.equal(same_width.state_dict()[k], t[k]) for k in whole)
    narrow = bindkit.build_model(text_student_card()).encoders["text"]  # width 16 of 64, 2 heads of 16 (of 4)
    whole, sliced = copy_teacher_tensors(narrow, teacher)
    s = narrow.state_dict()
    assert "trunk.blocks.0.attn.qkv.weight" in sliced and "head.proj.weight" in sliced
    assert torch.equal(s["stem.token_embedding.weight"], t["stem.token_embedding.weight"][:, :16])
    qkv = t["trunk.blocks.0.attn.qkv.weight"]  # (192, 64): q, k, v of 64 rows each; the student keeps head 0 of each
    assert torch.equal(s["trunk.blocks.0.attn.qkv.weight"], torch.cat([qkv[0:16, :16], qkv[64:80, :16],
                                                                       qkv[128:144, :16]]))
    assert torch.equal(s["head.proj.weight"], t["head.proj.weight"][:, :16])



def test_student_blocks_from_chosen_teacher_blocks_and_a_grown_mlp():
    from bindkit.distill.student import copy_teacher_tensors
    from bindkit.inputs.text import tokenize
    from bindkit.inputs.batch import resolve_params

    teacher_model = bindkit.load_model("bindkit_toy", modalities=["text"])
    teacher = teacher_model.encoders["text"]
    t = teacher.state_dict()
    card = bindkit.load_card("bindkit_toy_text_student").to_dict()
    card["modalities"]["text"].update(embed_dim=64, num_blocks=2, mlp_ratio=4)
    two = bindkit.build_model(card).encoders["text"]
    copy_teacher_tensors(two, teacher, teacher_blocks=[0, 3])  # the first and the last of four
    s = two.state_dict()
    for part in ("attn.qkv.weight", "mlp.fc2.weight", "norm1.weight"):
        assert torch.equal(s[f"trunk.blocks.0.{part}"], t[f"trunk.blocks.0.{part}"])
        assert torch.equal(s[f"trunk.blocks.1.{part}"], t[f"trunk.blocks.3.{part}"])
        assert not torch.equal(s[f"trunk.blocks.1.{part}"], t[f"trunk.blocks.1.{part}"])
    with pytest.raises(DistillError, match="not 7"):
        copy_teacher_tensors(two, teacher, teacher_blocks=[0, 7])
    # a wider MLP (mlp_ratio 8 > the teacher's 4) starts as the teacher's: its extra units feed nothing yet
    card["modalities"]["text"].update(num_blocks=4, mlp_ratio=8)
    wide = bindkit.build_model(card)
    whole, grown = copy_teacher_tensors(wide.encoders["text"], teacher)
    assert "trunk.blocks.0.mlp.fc1.weight" in grown and "trunk.blocks.0.attn.qkv.weight" in whole
    fc1 = wide.encoders["text"].state_dict()["trunk.blocks.0.mlp.fc1.weight"]
    assert fc1.shape == (512, 64) and fc1[256:].abs().sum() > 0  # new units are initialised, not zero
    ids = tokenize(captions(6), resolve_params("text", teacher_model))
    with torch.no_grad():
        assert (wide.encode("text", ids) - teacher_model.encode("text", ids)).abs().max() < 1e-5


def test_teacher_blocks_must_match_the_student_before_any_work(tmp_path):
    (tmp_path / "t.txt").write_text("\n".join(captions(20)) + "\n")
    with pytest.raises(DistillError, match="one teacher block per student block.*has 1"):
        bindkit.distill("bindkit_toy", tmp_path / "t.txt", tmp_path / "out", student_card=text_student_card(),
                        teacher_blocks=[0, 3], **FAST)
    assert not (tmp_path / "out").exists()
    res = bindkit.distill("bindkit_toy", tmp_path / "t.txt", tmp_path / "ok", student_card=text_student_card(),
                          teacher_blocks=[3], max_steps=1, **FAST)
    rec = json.loads((tmp_path / "ok" / "distill_record.json").read_text())
    assert res.finished and rec["arguments"]["teacher_blocks"] == [3]
