"""Golden vectors: every file holds the codes it was given, read back by readers written here.

References are independent of qextract's readers: the ``.mem`` words are
parsed and sign-extended in NumPy here, the testbench files are read the way
hls4ml's myproject_test.cpp reads them (getline, strtok on " ", atof into a
float) by a C++ program compiled with g++, and hashes are recomputed with
hashlib. Then every way a folder can be damaged or misused is refused by name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from qextract.errors import ExportError, NotAnExportError, UsageError, VerificationError
from qextract.network import testbench
from qextract.network.vector_manifest import VectorsManifest
from qextract.network.vectors import LayerVectors, read_vectors, write_vectors
from qextract.numformat import FLOAT32, Binary, FixedPoint, PowerOfTwo, Ternary

N = 5
RNG = np.random.default_rng(7)
X = RNG.integers(-128, 128, (N, 4, 4, 3))  # conv input, fixed<8,0> at 2**-7
H = RNG.integers(0, 64, (N, 2, 2, 8))  # conv output, unsigned, per-channel scale
H_SCALE = np.array([2.0**-k for k in range(8)])
P_CODES = RNG.integers(-6, 1, (N, 32))  # po2 exponents
P_SIGNS = RNG.integers(-1, 2, (N, 32))
T = RNG.integers(-1, 2, (N, 16))
B = np.where(RNG.random((N, 16)) < 0.5, -1, 1)
Z = (RNG.standard_normal((N, 10)) * 3).astype(np.float32)
Z[0, 0] = -0.0
PO2 = PowerOfTwo(bits=4, exponent_min=-7, exponent_max=0)


def _layers() -> list[LayerVectors]:
    return [
        LayerVectors("conv1", X, FixedPoint(8, 0), 2.0**-7, H, FixedPoint(6, 2, False), H_SCALE),
        LayerVectors(
            "enc/po2", H.reshape(N, -1), FixedPoint(6, 2, False), 0.25, P_CODES, PO2, 0.5, output_signs=P_SIGNS
        ),
        LayerVectors("tern", P_CODES, PO2, 0.5, T, Ternary(), 0.75, input_signs=P_SIGNS),
        LayerVectors("bin", T, Ternary(), 0.75, B, Binary(), 1.0),
        LayerVectors("out", B, Binary(), 1.0, None, FLOAT32, 1.0, output_values=Z),
    ]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("v") / "vectors"
    write_vectors(_layers(), out, samples=3, model_name="m")
    return out


def _copy(written: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(written, dst)
    return dst


def _manifest(root: Path) -> dict:
    return json.loads((root / "vectors.json").read_text())


def _rehash(root: Path, rel: str) -> None:
    """Make vectors.json agree with the file's new bytes, so only the cross-check can catch the change."""
    m = _manifest(root)
    for f in m["files"]:
        if f["path"] == rel:
            data = (root / rel).read_bytes()
            f["sha256"], f["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (root / "vectors.json").write_text(json.dumps(m))


def _mem_words(path: Path) -> np.ndarray:
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("//")]
    return np.array([int(ln, 16) for ln in lines], np.int64)


def _twos(words: np.ndarray, bits: int) -> np.ndarray:
    return np.where(words >= 2 ** (bits - 1), words - 2**bits, words)


# --- every file holds the codes, by independent readers ------------------------------------


def test_mem_words_are_the_codes_sample_after_sample(written: Path) -> None:
    assert np.array_equal(_twos(_mem_words(written / "conv1.input.mem"), 8), X[:3].reshape(-1))
    assert np.array_equal(_mem_words(written / "conv1.output.mem"), H[:3].reshape(-1))  # unsigned: plain binary
    assert np.array_equal(_twos(_mem_words(written / "tern.output.mem"), 2), T[:3].reshape(-1))
    assert np.array_equal(_mem_words(written / "bin.output.mem"), (B[:3].reshape(-1) > 0).astype(int))
    floats = _mem_words(written / "out.output.mem").astype(np.uint32).view(np.float32)
    assert np.array_equal(floats.view(np.uint32), Z[:3].reshape(-1).view(np.uint32))
    e = PO2.exponent_bits  # zero << e+1 | negative << e | exponent
    w = _mem_words(written / "enc_po2.output.mem")
    s, c = P_SIGNS[:3].reshape(-1), P_CODES[:3].reshape(-1)
    assert np.array_equal((w >> (e + 1)) & 1, (s == 0).astype(int))
    assert np.array_equal((w >> e) & 1, (s < 0).astype(int))
    assert np.array_equal(_twos(w & (2**e - 1), e)[s != 0], c[s != 0])


def test_mem_comment_says_layout_format_and_scale(written: Path) -> None:
    head = [ln for ln in (written / "conv1.output.mem").read_text().splitlines() if ln.startswith("//")]
    text = "\n".join(head)
    assert "conv1/output" in text and "NHWC" in text and "3x2x2x8" in text
    assert "ufixed<6,2>" in text and "scale[channel]" in text and "6-bit unsigned" in text


def test_npz_holds_codes_scales_signs_and_values(written: Path) -> None:
    with np.load(written / "vectors.npz") as z:
        assert np.array_equal(z["conv1/input:codes"], X[:3]) and z["conv1/input:codes"].dtype == np.int8
        assert np.array_equal(z["conv1/output:scale"], H_SCALE)
        assert np.array_equal(z["enc/po2/output:signs"], P_SIGNS[:3])
        assert np.array_equal(z["conv1/output"], (H[:3] * H_SCALE).astype(np.float32))
        po2 = P_SIGNS[:3] * np.exp2(P_CODES[:3].astype(np.float64)) * 0.5
        assert np.array_equal(z["enc/po2/output"], po2.astype(np.float32))
        assert "out/output:codes" not in z.files and np.array_equal(z["out/output"], Z[:3])


def test_testbench_files_one_sample_per_line_decoded(written: Path) -> None:
    lines = (written / "tb_data/tb_input_features.dat").read_text().splitlines()
    assert len(lines) == 3
    first = np.array([np.float32(float(t)) for t in lines[0].split(" ") if t])
    assert np.array_equal(first, (X[0].reshape(-1) * 2.0**-7).astype(np.float32))  # C order, channels last
    out = (written / "tb_data/tb_output_predictions.dat").read_text().splitlines()
    assert [len(ln.split()) for ln in out] == [10, 10, 10]
    assert out[0].split()[0] == "-0.0"


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler")
def test_testbench_files_read_as_hls4ml_reads_them(written: Path, tmp_path: Path) -> None:
    """A C++ reader doing what myproject_test.cpp does: getline, strtok(" "), atof into std::vector<float>."""
    source = r"""
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>
int main(int argc, char **argv) {
    std::ifstream in(argv[1]);
    std::string line;
    while (std::getline(in, line)) {
        std::vector<float> v;
        for (char *tok = strtok(const_cast<char *>(line.c_str()), " "); tok; tok = strtok(NULL, " "))
            v.push_back(atof(tok));
        for (float f : v) { unsigned u; std::memcpy(&u, &f, 4); std::printf("%08x ", u); }
        std::printf("\n");
    }
}
"""
    (tmp_path / "tb.cpp").write_text(source)
    subprocess.run(["g++", "-std=c++11", "-O1", "-o", "tb", "tb.cpp"], cwd=tmp_path, check=True)

    def read(name: str) -> np.ndarray:
        run = subprocess.run([str(tmp_path / "tb"), str(written / "tb_data" / name)], capture_output=True, check=True)
        rows = [[int(w, 16) for w in ln.split()] for ln in run.stdout.decode().splitlines()]
        return np.array(rows, np.uint32)

    expected_in = (X[:3] * np.float32(2.0**-7)).astype(np.float32).reshape(3, -1)
    assert np.array_equal(read("tb_input_features.dat"), expected_in.view(np.uint32))
    assert np.array_equal(read("tb_output_predictions.dat"), Z[:3].view(np.uint32))


def test_manifest_describes_every_file(written: Path) -> None:
    m = _manifest(written)
    assert m["kind"] == "vectors" and m["layout"] == "NHWC" and m["samples"] == 3
    assert m["layers"] == ["conv1", "enc/po2", "tern", "bin", "out"]
    on_disk = sorted(
        p.relative_to(written).as_posix() for p in written.rglob("*") if p.is_file() and p.name != "vectors.json"
    )
    assert sorted(f["path"] for f in m["files"]) == on_disk
    for f in m["files"]:
        assert f["sha256"] == hashlib.sha256((written / f["path"]).read_bytes()).hexdigest()
    t = {x["key"]: x for x in m["tensors"]}
    assert t["conv1/input"]["shape"] == [3, 4, 4, 3] and t["conv1/input"]["axes"] == "NHWC"
    assert t["conv1/input"]["ap_type"] == "ap_fixed<8,1>" and t["conv1/output"]["scale"]["axis"] == 3
    assert t["out/output"]["exact_integer"] is False and t["out/output"]["format"]["kind"] == "float"
    assert m["testbench"]["input"] == "conv1/input" and m["testbench"]["output"] == "out/output"
    assert VectorsManifest.from_json(m).to_json() == m


def test_read_back_gives_every_layer(written: Path) -> None:
    back = read_vectors(written)
    assert list(back) == ["conv1", "enc/po2", "tern", "bin", "out"]
    assert np.array_equal(back["conv1"].input_codes, X[:3]) and np.array_equal(back["conv1"].output_scale, H_SCALE)
    assert np.array_equal(back["enc/po2"].output_signs, P_SIGNS[:3])
    assert back["out"].output_codes is None and np.array_equal(back["out"].output_values, Z[:3])
    assert back["bin"].output_format == Binary() and back["conv1"].input_format == FixedPoint(8, 0)


# --- damaged folders: refused by file name -------------------------------------------------


def test_a_changed_mem_word_is_named(written: Path, tmp_path: Path) -> None:
    root = _copy(written, tmp_path)
    path = root / "conv1.input.mem"
    lines = path.read_text().splitlines(keepends=True)
    i = next(k for k, ln in enumerate(lines) if not ln.startswith("//")) + 5
    lines[i] = f"{(int(lines[i], 16) + 1) % 256:02x}\n"
    path.write_text("".join(lines))
    _rehash(root, "conv1.input.mem")
    with pytest.raises(VerificationError, match=r"conv1\.input\.mem: conv1/input holds code .* at index 5"):
        read_vectors(root)


def test_a_changed_testbench_value_is_named(written: Path, tmp_path: Path) -> None:
    root = _copy(written, tmp_path)
    path = root / "tb_data/tb_output_predictions.dat"
    lines = path.read_text().splitlines()
    lines[1] = " ".join(["0.5", *lines[1].split()[1:]])
    path.write_text("\n".join(lines) + "\n")
    _rehash(root, "tb_data/tb_output_predictions.dat")
    with pytest.raises(
        VerificationError, match=r"tb_output_predictions\.dat: out/output holds value 0\.5 .*\(sample 1\)"
    ):
        read_vectors(root)


def test_npz_values_must_be_the_decode_of_its_codes(written: Path, tmp_path: Path) -> None:
    root = _copy(written, tmp_path)
    with np.load(root / "vectors.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["tern/output"] = arrays["tern/output"] * 2
    np.savez(root / "vectors.npz", **arrays)
    _rehash(root, "vectors.npz")
    with pytest.raises(VerificationError, match=r"vectors\.npz: tern/output .* decode of its own codes"):
        read_vectors(root)


def test_changed_bytes_fail_the_hash(written: Path, tmp_path: Path) -> None:
    root = _copy(written, tmp_path)
    with open(root / "bin.output.mem", "a") as f:
        f.write("1\n")
    with pytest.raises(VerificationError, match=r"bin\.output\.mem: missing or changed"):
        read_vectors(root)


@pytest.mark.parametrize("path", ["../outside.mem", "/etc/passwd", "tb_data/../../x.mem"])
def test_listed_paths_must_stay_inside(written: Path, tmp_path: Path, path: str) -> None:
    root = _copy(written, tmp_path)
    m = _manifest(root)
    m["files"][1]["path"] = m["tensors"][0]["files"][1] = path  # consistently: only the path rule can refuse it
    (root / "vectors.json").write_text(json.dumps(m))
    with pytest.raises(VerificationError, match="inside the vectors folder"):
        read_vectors(root)


def test_a_symlink_out_of_the_folder_is_refused(written: Path, tmp_path: Path) -> None:
    root = _copy(written, tmp_path)
    outside = tmp_path / "elsewhere.mem"
    shutil.move(root / "tern.input.mem", outside)
    os.symlink(outside, root / "tern.input.mem")
    with pytest.raises(VerificationError, match="leads outside the vectors folder"):
        read_vectors(root)


def test_an_unlisted_file_is_refused(written: Path, tmp_path: Path) -> None:
    root = _copy(written, tmp_path)
    (root / "extra.mem").write_text("00\n")
    with pytest.raises(VerificationError, match=r"vectors\.json: the folder holds extra\.mem, which the manifest"):
        read_vectors(root)


def test_an_edited_manifest_is_named(written: Path, tmp_path: Path) -> None:
    root = _copy(written, tmp_path)
    m = _manifest(root)
    m["tensors"][0]["shape"][0] = 4
    (root / "vectors.json").write_text(json.dumps(m))
    with pytest.raises(VerificationError, match=r"vectors\.json: field \$\.tensors\[0\]\.shape"):
        read_vectors(root)


def test_not_a_vectors_folder(tmp_path: Path) -> None:
    with pytest.raises(NotAnExportError, match="no such folder"):
        read_vectors(tmp_path / "none")
    with pytest.raises(NotAnExportError, match="no vectors.json"):
        read_vectors(tmp_path)
    (tmp_path / "vectors.json").write_text('{"qextract_version": "1", "layers": []}')  # an export-like manifest
    with pytest.raises(NotAnExportError, match="not written by qextract for a vectors folder"):
        read_vectors(tmp_path)
    (tmp_path / "vectors.json").write_bytes(b"\xff\xfe")
    with pytest.raises(NotAnExportError, match="not a readable manifest"):
        read_vectors(tmp_path)


# --- writing: atomic, force only over previous vectors, arguments checked -----------------------


def test_samples_cut_and_checked(tmp_path: Path) -> None:
    write_vectors(_layers(), tmp_path / "all")
    assert read_vectors(tmp_path / "all")["tern"].samples == N
    for bad in (0, N + 1, 2.5, True):
        with pytest.raises(UsageError, match="samples must be"):
            write_vectors(_layers(), tmp_path / "bad", samples=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "bad").exists()


def test_force_replaces_only_previous_vectors(written: Path, tmp_path: Path) -> None:
    root = _copy(written, tmp_path)
    with pytest.raises(ExportError, match="not empty"):
        write_vectors(_layers()[:1], root)
    write_vectors(_layers()[:1], root, force=True)
    assert list(read_vectors(root)) == ["conv1"]
    (root / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"not part of its previous vectors folder \(notes\.txt\)"):
        write_vectors(_layers(), root, force=True)
    assert (root / "notes.txt").read_text() == "mine" and list(read_vectors(root)) == ["conv1"]
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_text('{"qextract_version": "1", "files": []}')
    with pytest.raises(ExportError, match="not a qextract vectors folder"):
        write_vectors(_layers(), export, force=True)
    data = tmp_path / "data.npy"
    np.save(data, X)
    with pytest.raises(ExportError, match="holds the input"):
        write_vectors(_layers(), tmp_path, force=True, protect=[data])


def test_a_failure_leaves_the_previous_folder(written: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _copy(written, tmp_path)
    before = {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}

    def broken(values: np.ndarray) -> bytes:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(testbench, "render", broken)
    with pytest.raises(ExportError, match="writing failed"):
        write_vectors(_layers(), root, force=True)
    assert {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no temporary folder left


def test_layer_vectors_are_checked() -> None:
    fx = FixedPoint(4, 0)
    with pytest.raises(UsageError, match=r"layer 'a' input: code 8 .* outside"):
        LayerVectors("a", np.array([[8]]), fx, 1.0, np.array([[0]]), fx, 1.0)
    with pytest.raises(UsageError, match="not on a grid; give its float values"):
        LayerVectors("a", np.array([[1]]), fx, 1.0, np.array([[0]]), FLOAT32, 1.0)
    with pytest.raises(UsageError, match="give its codes and no values"):
        LayerVectors("a", np.array([[1]]), fx, 1.0, np.array([[0]]), fx, 1.0, input_values=np.ones((1, 1)))
    with pytest.raises(UsageError, match="integer array"):
        LayerVectors("a", np.array([[0.5]]), fx, 1.0, np.array([[0]]), fx, 1.0)
    with pytest.raises(UsageError, match="one per channel"):
        LayerVectors("a", np.zeros((2, 3), int), fx, np.ones(2), np.zeros((2, 1), int), fx, 1.0)
    with pytest.raises(UsageError, match="needs signs"):
        LayerVectors("a", np.zeros((2, 3), int), PO2, 1.0, np.zeros((2, 1), int), fx, 1.0)
    with pytest.raises(UsageError, match="2 input samples but 3 output"):
        LayerVectors("a", np.zeros((2, 3), int), fx, 1.0, np.zeros((3, 1), int), fx, 1.0)
    with pytest.raises(UsageError, match="positive and finite"):
        LayerVectors("a", np.zeros((2, 3), int), fx, 0.0, np.zeros((2, 1), int), fx, 1.0)
    one = LayerVectors("a", np.zeros((2, 3), int), fx, 1.0, np.zeros((2, 1), int), fx, 1.0)
    with pytest.raises(UsageError, match="'a' given more than once"):
        write_vectors([one, one], "unused")
    other = LayerVectors("b", np.zeros((3, 3), int), fx, 1.0, np.zeros((3, 1), int), fx, 1.0)
    with pytest.raises(UsageError, match="different sample counts"):
        write_vectors([one, other], "unused")
