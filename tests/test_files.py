import pytest

from stages.files import atomic_dir, atomic_path, write_text


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_dir_swaps_the_whole_folder(tmp_path):
    target = tmp_path / "logs"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError
    assert [p.name for p in target.iterdir()] == ["a"]
    with atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
    assert [p.name for p in target.iterdir()] == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]


def test_leftovers_of_a_killed_run_are_cleared(tmp_path):
    (tmp_path / ".model.abc123.tmp.keras").write_text("partial")
    (tmp_path / ".fit.xyz.tmp").mkdir()
    with atomic_path(tmp_path / "model.keras") as tmp:
        tmp.write_text("whole")
    with atomic_dir(tmp_path / "fit"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit", "model.keras"]
