"""Parsers of the published data-set layouts, on tiny trees of real image files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from ccreid.core.errors import CCReIDError
from ccreid.core.registry import registry
from ccreid.data.layouts.base import SAMPLE_COLUMNS, ParsedDataset, Protocol
from ccreid.data.layouts.celeb import parse_celeb
from ccreid.data.layouts.deepchange import parse_deepchange
from ccreid.data.layouts.last import parse_last
from ccreid.data.layouts.ltcc import parse_ltcc
from ccreid.data.layouts.prcc import parse_prcc
from ccreid.data.layouts.validate import format_summary, protocol_samples, validate
from ccreid.data.layouts.vcclothes import parse_vcclothes
from helpers import member


def write_image(path: Path, shade: int = 0) -> Path:
    """A real 4x8 (w x h) image, JPEG or PNG after the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 8), (shade % 256, 40, 90)).save(path)
    return path


def write_images(root: Path, relpaths: list[str]) -> None:
    for index, rel in enumerate(relpaths):
        write_image(root / rel, shade=index * 7)


def labels(parsed: ParsedDataset) -> dict[str, tuple]:
    """path -> (pid, camid, clothes, split)."""
    s = parsed.samples
    return {r.path: (r.pid, r.camid, r.clothes, r.split) for r in s.itertuples(index=False)}


def protocol_names(parsed: ParsedDataset) -> dict[str, Protocol]:
    return {p.name: p for p in parsed.protocols}


def check_table(parsed: ParsedDataset, root: Path) -> None:
    s = parsed.samples
    assert tuple(s.columns) == SAMPLE_COLUMNS
    assert all(not Path(p).is_absolute() and "\\" not in p for p in s["path"])
    assert all((root / p).is_file() for p in s["path"])
    assert s["pid"].dtype.kind == "i" and s["camid"].dtype.kind == "i"
    assert all(isinstance(c, str) for c in s["clothes"])


def test_registry_names_every_layout():
    layouts = {"prcc", "ltcc", "vcclothes", "deepchange", "last", "celeb", "celeb_light"}
    assert layouts <= set(registry().names("layout"))
    assert member("layout", "celeb_light") is member("layout", "celeb") is parse_celeb


# --------------------------------------------------------------------------------------- PRCC

PRCC_FILES = [
    "rgb/train/001/A_cropped_rgb001.jpg",
    "rgb/train/001/B_cropped_rgb002.jpg",
    "rgb/train/001/C_cropped_rgb003.jpg",
    "rgb/train/002/A_cropped_rgb010.jpg",
    "rgb/train/002/C_cropped_rgb011.jpg",
    "rgb/val/001/B_cropped_rgb020.jpg",
    "rgb/test/A/003/cropped_rgb100.jpg",
    "rgb/test/A/003/cropped_rgb101.jpg",
    "rgb/test/A/004/cropped_rgb110.jpg",
    "rgb/test/B/003/cropped_rgb120.jpg",
    "rgb/test/B/004/cropped_rgb121.jpg",
    "rgb/test/C/003/cropped_rgb130.jpg",
    "rgb/test/C/004/cropped_rgb131.jpg",
]


@pytest.fixture
def prcc_root(tmp_path):
    root = tmp_path / "prcc"
    write_images(root, PRCC_FILES)
    return root


def test_prcc_labels_splits_protocols(prcc_root):
    parsed = parse_prcc(prcc_root)
    check_table(parsed, prcc_root)
    got = labels(parsed)
    # train/val: camera from the file name's first letter; clothes <pid> for A/B, <pid>C for C
    assert got["rgb/train/001/A_cropped_rgb001.jpg"] == (1, 0, "1", "train")
    assert got["rgb/train/001/B_cropped_rgb002.jpg"] == (1, 1, "1", "train")
    assert got["rgb/train/001/C_cropped_rgb003.jpg"] == (1, 2, "1C", "train")
    assert got["rgb/val/001/B_cropped_rgb020.jpg"] == (1, 1, "1", "val")
    # test: camera from the folder
    assert got["rgb/test/A/003/cropped_rgb100.jpg"] == (3, 0, "3", "gallery")
    assert got["rgb/test/B/004/cropped_rgb121.jpg"] == (4, 1, "4", "query_sc")
    assert got["rgb/test/C/004/cropped_rgb131.jpg"] == (4, 2, "4C", "query_cc")
    protocols = protocol_names(parsed)
    assert protocols["cc"] == Protocol("cc", "query_cc", "gallery", "cc")
    assert protocols["sc"] == Protocol("sc", "query_sc", "gallery", "sc")
    assert protocols["cc_single"].single_shot and protocols["sc_single"].single_shot
    summary = validate(parsed, "prcc")
    assert summary["gallery"] == {"ids": 2, "images": 3, "cameras": 1, "outfits": 2}
    assert summary["train"] == {"ids": 2, "images": 5, "cameras": 3, "outfits": 4}
    assert summary["unanswerable_queries"] == {"cc": 0, "sc": 0, "cc_single": 0, "sc_single": 0}


def test_prcc_non_integer_id_folder(prcc_root):
    write_image(prcc_root / "rgb/train/person7/A_x.jpg")
    with pytest.raises(CCReIDError, match="person7"):
        parse_prcc(prcc_root)


def test_prcc_stray_text_file(prcc_root):
    (prcc_root / "rgb/test/C/003/notes.txt").write_text("hello")
    with pytest.raises(CCReIDError, match="notes.txt") as err:
        parse_prcc(prcc_root)
    assert str(prcc_root / "rgb/test/C/003") in str(err.value)


def test_prcc_empty_identity_folder(prcc_root):
    (prcc_root / "rgb/test/A/005").mkdir()
    with pytest.raises(CCReIDError, match="no images") as err:
        parse_prcc(prcc_root)
    assert str(prcc_root / "rgb/test/A/005") in str(err.value)


def test_prcc_missing_root(tmp_path):
    with pytest.raises(CCReIDError, match="not found") as err:
        parse_prcc(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


# --------------------------------------------------------------------------------------- LTCC

LTCC_FILES = [
    "train/001_1_c1_000001.png",
    "train/001_2_c12_006327.png",
    "train/002_1_c3_000010.png",
    "query/013_2_c12_006327.png",
    "query/014_1_c4_000100.png",
    "test/013_1_c1_000200.png",
    "test/013_2_c5_000300.png",
    "test/014_1_c5_000400.png",
    "test/014_1_c4_000500.png",
]


def make_ltcc(base: Path, files=LTCC_FILES) -> Path:
    root = base / "LTCC_ReID"
    write_images(root, files)
    (root / "info").mkdir()
    (root / "info/cloth-change_id_test.txt").write_text("13\n")
    return root


def test_ltcc_labels_splits_protocols(tmp_path):
    root = make_ltcc(tmp_path)
    parsed = parse_ltcc(root)
    check_table(parsed, root)
    got = labels(parsed)
    assert got["train/001_1_c1_000001.png"] == (1, 1, "001_1", "train")
    # two-digit camera ids
    assert got["train/001_2_c12_006327.png"] == (1, 12, "001_2", "train")
    assert got["query/013_2_c12_006327.png"] == (13, 12, "013_2", "query")
    assert got["test/014_1_c4_000500.png"] == (14, 4, "014_1", "gallery")
    assert set(parsed.samples["split"]) == {"train", "query", "gallery"}
    protocols = protocol_names(parsed)
    assert set(protocols) == {"standard", "cc"}
    assert protocols["standard"] == Protocol("standard", "query", "gallery", "standard")
    assert protocols["cc"] == Protocol("cc", "query", "gallery", "cc")
    summary = validate(parsed, "ltcc")
    # 014 never changes clothes in the gallery: no valid clothes-changing match for its query
    assert summary["unanswerable_queries"] == {"standard": 0, "cc": 1}
    assert summary["query"] == {"ids": 2, "images": 2, "cameras": 2, "outfits": 2}


@pytest.mark.parametrize("parents", ["001_9_c9_000000", "my_code", "001_9_c9_000000/my_code/12_3_c4_x"])
def test_ltcc_parent_folders_do_not_change_labels(tmp_path, parents):
    plain = parse_ltcc(make_ltcc(tmp_path / "plain")).samples
    trapped_root = make_ltcc(tmp_path / parents)
    trapped = parse_ltcc(trapped_root).samples
    pd.testing.assert_frame_equal(plain, trapped)


def test_ltcc_name_not_matching_pattern(tmp_path):
    root = make_ltcc(tmp_path)
    write_image(root / "query/13_c2_frame.png")
    with pytest.raises(CCReIDError) as err:
        parse_ltcc(root)
    message = str(err.value)
    assert str(root / "query/13_c2_frame.png") in message
    assert "<pid>_<clothes>_c<cam>_<frame>.png" in message


def test_ltcc_stray_text_file(tmp_path):
    root = make_ltcc(tmp_path)
    (root / "test/readme.txt").write_text("x")
    with pytest.raises(CCReIDError, match="readme.txt") as err:
        parse_ltcc(root)
    assert str(root / "test") in str(err.value)


def test_ltcc_missing_root_and_missing_split(tmp_path):
    with pytest.raises(CCReIDError, match="LTCC_ReID") as err:
        parse_ltcc(tmp_path / "LTCC_ReID")
    assert str(tmp_path / "LTCC_ReID") in str(err.value)
    root = make_ltcc(tmp_path)
    for image in (root / "query").iterdir():
        image.unlink()
    (root / "query").rmdir()
    with pytest.raises(CCReIDError) as err:
        parse_ltcc(root)
    assert str(root / "query") in str(err.value)


# --------------------------------------------------------------------------------- VC-Clothes

VC_FILES = [
    "train/0001-01-01-01.jpg",
    "train/0001-03-02-01.jpg",
    "train/0002-02-01-01.jpg",
    "query/0003-02-01-01.jpg",  # cam 2, outfit 01
    "query/0003-04-02-01.jpg",  # cam 4, outfit 02
    "query/0004-01-01-01.jpg",  # cam 1: in no camera subset
    "gallery/0003-03-01-02.jpg",  # cam 3, outfit 01 (same clothes as cam 2)
    "gallery/0003-01-01-03.jpg",
    "gallery/0004-02-01-02.jpg",
    "gallery/0004-04-01-03.jpg",
]


def test_vcclothes_labels_and_camera_subsets(tmp_path):
    root = tmp_path / "VC-Clothes"
    write_images(root, VC_FILES)
    parsed = parse_vcclothes(root)
    check_table(parsed, root)
    got = labels(parsed)
    assert got["train/0001-03-02-01.jpg"] == (1, 3, "000102", "train")
    assert got["query/0003-04-02-01.jpg"] == (3, 4, "000302", "query")
    assert got["gallery/0004-02-01-02.jpg"] == (4, 2, "000401", "gallery")
    protocols = protocol_names(parsed)
    assert protocols["standard"] == Protocol("standard", "query", "gallery", "standard")
    assert protocols["sc"] == Protocol("sc", "query", "gallery", "standard", cameras=(2, 3))
    assert protocols["cc"] == Protocol("cc", "query", "gallery", "standard", cameras=(3, 4))
    sc_query, sc_gallery = protocol_samples(parsed.samples, protocols["sc"])
    assert list(sc_query["path"]) == ["query/0003-02-01-01.jpg"]
    assert set(sc_gallery["camid"]) == {2, 3}
    cc_query, cc_gallery = protocol_samples(parsed.samples, protocols["cc"])
    assert list(cc_query["path"]) == ["query/0003-04-02-01.jpg"]
    assert set(cc_gallery["path"]) == {"gallery/0003-03-01-02.jpg", "gallery/0004-04-01-03.jpg"}
    summary = validate(parsed, "vcclothes")
    assert summary["unanswerable_queries"] == {"standard": 0, "sc": 0, "cc": 0}


def test_vcclothes_name_not_matching(tmp_path):
    root = tmp_path / "VC-Clothes"
    write_images(root, VC_FILES + ["gallery/0004_01_01_04.jpg"])
    with pytest.raises(CCReIDError, match="<pid>-<cam>-<clothes>-<idx>") as err:
        parse_vcclothes(root)
    assert str(root / "gallery/0004_01_01_04.jpg") in str(err.value)


# --------------------------------------------------------------------------------- DeepChange

DEEPCHANGE = {
    "train-set": [("P00001_C01_D01_F0001.jpg", 11), ("P00001_C02_D02_F0002.jpg", 12), ("P00002_C03_D01_F0003.jpg", 13)],
    "val-set-query": [("P00005_C04_D03_F0004.jpg", 21)],
    "val-set-gallery": [("P00005_C04_D03_F0005.jpg", 22)],
    "test-set-query": [("P00008_C05_D04_F0006.jpg", 31), ("P00009_C06_D05_F0007.jpg", 33)],
    "test-set-gallery": [
        ("P00008_C05_D04_F0008.jpg", 32),
        ("P00008_C07_D06_F0009.jpg", 34),
        ("P00009_C06_D05_F0010.jpg", 33),
    ],
}


def make_deepchange(tmp_path: Path) -> Path:
    root = tmp_path / "DeepChangeDataset"
    for folder, entries in DEEPCHANGE.items():
        write_images(root / folder, [name for name, _ in entries])
        (root / f"{folder}-bbox.txt").write_text("".join(f"{n},{t}\n" for n, t in entries))
    return root


def test_deepchange_labels_tracklets_protocols(tmp_path):
    root = make_deepchange(tmp_path)
    parsed = parse_deepchange(root)
    check_table(parsed, root)
    got = labels(parsed)
    # camid is the tracklet id from the list file; clothes = first + third token
    assert got["train-set/P00001_C02_D02_F0002.jpg"] == (1, 12, "P00001D02", "train")
    assert got["val-set-query/P00005_C04_D03_F0004.jpg"] == (5, 21, "P00005D03", "val_query")
    assert got["test-set-query/P00008_C05_D04_F0006.jpg"] == (8, 31, "P00008D04", "query")
    assert got["test-set-gallery/P00009_C06_D05_F0010.jpg"] == (9, 33, "P00009D05", "gallery")
    assert set(parsed.samples["split"]) == {"train", "val_query", "val_gallery", "query", "gallery"}
    protocols = protocol_names(parsed)
    assert protocols["standard"] == Protocol("standard", "query", "gallery", "standard")
    assert protocols["val"] == Protocol("val", "val_query", "val_gallery", "standard")
    summary = validate(parsed, "deepchange")
    # P00009's only gallery image is from the query's own tracklet: junk, no valid match
    assert summary["unanswerable_queries"] == {"standard": 1, "val": 0}


def test_deepchange_image_not_listed(tmp_path):
    root = make_deepchange(tmp_path)
    write_image(root / "test-set-gallery/P00008_C05_D04_F0099.jpg")
    with pytest.raises(CCReIDError, match="P00008_C05_D04_F0099.jpg") as err:
        parse_deepchange(root)
    assert "test-set-gallery-bbox.txt" in str(err.value)


def test_deepchange_listed_image_missing(tmp_path):
    root = make_deepchange(tmp_path)
    (root / "val-set-gallery/P00005_C04_D03_F0005.jpg").unlink()
    write_image(root / "val-set-gallery/P00005_C04_D03_F0006.jpg")
    with pytest.raises(CCReIDError, match="missing") as err:
        parse_deepchange(root)
    assert "P00005_C04_D03_F0005.jpg" in str(err.value)


def test_deepchange_bad_list_line_and_missing_list(tmp_path):
    root = make_deepchange(tmp_path)
    list_file = root / "train-set-bbox.txt"
    list_file.write_text(list_file.read_text() + "P00002_C03_D01_F0003.jpg;13\n")
    with pytest.raises(CCReIDError, match="line 4") as err:
        parse_deepchange(root)
    assert str(list_file) in str(err.value)
    list_file.unlink()
    with pytest.raises(CCReIDError, match="list file not found") as err:
        parse_deepchange(root)
    assert str(list_file) in str(err.value)


def test_deepchange_name_not_matching(tmp_path):
    root = make_deepchange(tmp_path)
    write_image(root / "train-set/00003_C01_D01.jpg")
    with (root / "train-set-bbox.txt").open("a") as f:
        f.write("00003_C01_D01.jpg,14\n")
    with pytest.raises(CCReIDError, match="<letter><pid>") as err:
        parse_deepchange(root)
    assert str(root / "train-set/00003_C01_D01.jpg") in str(err.value)


# --------------------------------------------------------------------------------------- LaST

LAST_FILES = [
    "train/000001/000001_0_00_1.jpg",
    "train/000001/000001_0_01_2.jpg",
    "train/000002/000002_1_00_1.jpg",
    "val/query/000010_0_00_1.jpg",
    "val/gallery/000010/000010_1_00_2.jpg",
    "test/query/000020_0_00_1.jpg",
    "test/query/000021_0_00_1.jpg",
    "test/gallery/000020/000020_3_00_1.jpg",
    "test/gallery/000020/000020_4_00_2.jpg",
    "test/gallery/000022/000022_0_00_1.jpg",
]


def test_last_labels_unique_cameras(tmp_path):
    root = tmp_path / "last"
    # a gallery identity folder whose name is not the id: labels come from file names only
    write_images(root, LAST_FILES + ["test/gallery/000021_c1_0/000021_5_00_3.jpg"])
    parsed = parse_last(root)
    check_table(parsed, root)
    got = labels(parsed)
    assert got["train/000001/000001_0_01_2.jpg"][::2] == (1, "000001_2")
    assert got["train/000002/000002_1_00_1.jpg"][::2] == (2, "000002_1")
    assert got["test/gallery/000020/000020_4_00_2.jpg"][::2] == (20, "20")  # test clothes = pid
    assert got["test/gallery/000021_c1_0/000021_5_00_3.jpg"][0] == 21
    assert got["val/query/000010_0_00_1.jpg"][::3] == (10, "val_query")
    assert parsed.samples["camid"].is_unique  # every image its own camera
    protocols = protocol_names(parsed)
    assert protocols["standard"] == Protocol("standard", "query", "gallery", "standard")
    assert protocols["val"] == Protocol("val", "val_query", "val_gallery", "standard")
    summary = validate(parsed, "last")
    assert summary["gallery"]["cameras"] == summary["gallery"]["images"] == 4
    assert summary["unanswerable_queries"] == {"standard": 0, "val": 0}


def test_last_empty_identity_folder_and_loose_file(tmp_path):
    root = tmp_path / "last"
    write_images(root, LAST_FILES)
    (root / "train/000003").mkdir()
    with pytest.raises(CCReIDError, match="no images") as err:
        parse_last(root)
    assert str(root / "train/000003") in str(err.value)
    (root / "train/000003").rmdir()
    write_image(root / "test/gallery/000022_0_00_9.jpg")
    with pytest.raises(CCReIDError, match="000022_0_00_9.jpg") as err:
        parse_last(root)
    assert str(root / "test/gallery") in str(err.value)


def test_last_name_not_matching(tmp_path):
    root = tmp_path / "last"
    write_images(root, LAST_FILES + ["train/000002/000002.jpg"])
    with pytest.raises(CCReIDError, match="<pid>_<...>_<clothes>") as err:
        parse_last(root)
    assert str(root / "train/000002/000002.jpg") in str(err.value)


# --------------------------------------------------------------------------------- Celeb-reID

CELEB_FILES = [
    "train/1_1_0.jpg",
    "train/1_2_0.jpg",
    "train/2_1_0.jpg",
    "query/3_1_0.jpg",
    "query/5_1_0.jpg",
    "gallery/3_2_0.jpg",
    "gallery/3_3_1.jpg",
    "gallery/4_1_0.jpg",
]


@pytest.mark.parametrize("layout,folder", [("celeb", "Celeb-reID"), ("celeb_light", "Celeb-reID-light")])
def test_celeb_labels_unique_cameras(tmp_path, layout, folder):
    root = tmp_path / folder
    write_images(root, CELEB_FILES)
    parsed = member("layout", layout)(root)
    check_table(parsed, root)
    got = labels(parsed)
    assert got["train/1_2_0.jpg"][::2] == (1, "1")
    assert got["gallery/3_3_1.jpg"][::2] == (3, "3")
    assert got["query/5_1_0.jpg"][3] == "query"
    assert parsed.samples["camid"].is_unique
    assert parsed.protocols == [Protocol("standard", "query", "gallery", "standard")]
    summary = validate(parsed, layout)
    # query id 5 has no image in the gallery: counted, not an error
    assert summary["unanswerable_queries"] == {"standard": 1}


def test_celeb_name_not_matching(tmp_path):
    root = tmp_path / "Celeb-reID"
    write_images(root, CELEB_FILES + ["gallery/person_3.jpg"])
    with pytest.raises(CCReIDError, match="<id>_<n>") as err:
        parse_celeb(root)
    assert str(root / "gallery/person_3.jpg") in str(err.value)


# ----------------------------------------------------------------------------------- validate


def test_validate_train_test_overlap_names_files(tmp_path):
    root = make_ltcc(tmp_path, LTCC_FILES + ["train/013_1_c2_000001.png"])
    parsed = parse_ltcc(root)
    with pytest.raises(CCReIDError) as err:
        validate(parsed, "ltcc")
    message = str(err.value)
    assert "ltcc" in message and "13" in message
    assert "train/013_1_c2_000001.png" in message
    assert "query/013_2_c12_006327.png" in message or "test/013_1_c1_000200.png" in message


def test_validate_query_id_absent_from_gallery_is_counted(tmp_path):
    root = make_ltcc(tmp_path, LTCC_FILES + ["query/015_1_c3_000001.png"])
    summary = validate(parse_ltcc(root), "ltcc")
    assert summary["unanswerable_queries"] == {"standard": 1, "cc": 2}
    assert summary["query"]["ids"] == 3


def _table(rows):
    return pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))


def test_validate_empty_splits():
    samples = _table([("a.png", 1, 1, "1", "train"), ("b.png", 2, 1, "2", "gallery")])
    parsed = ParsedDataset(samples, [Protocol("standard", "query", "gallery")])
    with pytest.raises(CCReIDError, match="'query'.*'standard'"):
        validate(parsed, "x")
    no_train = ParsedDataset(samples[samples["split"] != "train"], [])
    with pytest.raises(CCReIDError, match="train"):
        validate(no_train, "x")
    only_cam1 = ParsedDataset(
        _table(
            [
                ("a.png", 1, 1, "1", "train"),
                ("q.png", 2, 1, "2", "query"),
                ("g.png", 2, 2, "2", "gallery"),
            ]
        ),
        [Protocol("cc", "query", "gallery", cameras=(3, 4))],
    )
    with pytest.raises(CCReIDError, match=r"cameras \(3, 4\)"):
        validate(only_cam1, "x")


def test_format_summary_is_aligned(tmp_path):
    summary = validate(parse_ltcc(make_ltcc(tmp_path)), "ltcc")
    text = format_summary(summary)
    lines = text.splitlines()
    assert lines[0].split() == ["split", "ids", "images", "cameras", "outfits"]
    assert [line.split()[0] for line in lines[1:4]] == ["train", "query", "gallery"]
    assert len({len(line) for line in lines[:4]}) == 1
    assert lines[1].split() == ["train", "2", "3", "3", "3"]
    assert "cc 1" in lines[-1]
