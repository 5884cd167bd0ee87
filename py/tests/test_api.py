"""The Python API against the command line, bit for bit (run by scripts/python-tests.sh).

SIDTOOL_BIN names the CLI binary; the repository root is the working directory.
"""

import json
import os
import subprocess
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file

import sidtool

ROOT = os.getcwd()
BIN = os.environ.get("SIDTOOL_BIN", os.path.join(ROOT, "target/release/sidtool"))
ITEMS = os.path.join(ROOT, "testdata/items.parquet")


def cli(*args):
    r = subprocess.run([BIN, *args, "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A quantizer with few codes for 400 items (many collisions), and the CLI's outputs."""
    d = tmp_path_factory.mktemp("cli")
    q = d / "q"
    cli("train", ITEMS, "--codebook-sizes", "8,4", "--out", str(q))
    cli("assign", ITEMS, "--quantizer", str(q), "--dedup", "none", "--out", str(d / "raw.parquet"))
    cli("assign", ITEMS, "--quantizer", str(q), "--out", str(d / "sids.parquet"))
    return d


def batches(size=100):
    return pq.ParquetFile(ITEMS).iter_batches(batch_size=size, columns=["item_id", "embedding"])


def test_encode_gives_the_clis_raw_codes(trained):
    q = sidtool.Quantizer.load(trained / "q")
    assert q.info["method"] == "rq-kmeans"
    assert q.info["codebook_sizes"] == [8, 4]
    assert q.info["dim"] == 64
    out = [q.encode(b) for b in batches()]
    assert out[0].schema.field("codes").type == pa.list_(pa.field("item", pa.uint16(), False), 2)
    got = pa.Table.from_batches(out)
    want = pq.read_table(trained / "raw.parquet")
    assert got.column("item_id").to_pylist() == want.column("item_id").to_pylist()
    assert got.column("codes").to_pylist() == want.column("codes").to_pylist()


def test_parts_written_with_pyarrow_resolve_to_the_single_machine_table(trained, tmp_path):
    q = sidtool.Quantizer.load(trained / "q")
    parts = tmp_path / "raw"
    parts.mkdir()
    for i, b in enumerate(batches()):
        pq.write_table(pa.Table.from_batches([q.encode(b)]), parts / f"part-{i:05}.parquet")
    (parts / "_SUCCESS").write_text("")
    out = tmp_path / "sids.parquet"
    stats = sidtool.resolve(parts, out, stats=tmp_path / "stats.json")
    assert stats["after"]["distinct_ids"] == 400
    assert out.read_bytes() == (trained / "sids.parquet").read_bytes()
    # The command line reads the same parts the same way.
    cli("resolve", str(parts), "--out", str(tmp_path / "cli.parquet"))
    assert (tmp_path / "cli.parquet").read_bytes() == out.read_bytes()


def test_resolve_takes_encoded_batches_and_returns_a_table(trained):
    q = sidtool.Quantizer.load(trained / "q")
    raw = [q.encode(b) for b in batches()]
    want = pq.read_table(trained / "sids.parquet")
    for codes in (raw, pa.Table.from_batches(raw), raw[0], (b for b in raw)):
        got = sidtool.resolve(codes)
        n = codes.num_rows if isinstance(codes, pa.RecordBatch) else 400
        assert got.num_rows == n
        if n == 400:
            assert got.equals(want, check_metadata=True)
    # The table carries the footer later steps read: it writes the CLI's bytes.
    assert sidtool.resolve(raw).schema.metadata == want.schema.metadata


def test_reassign_over_parts_gives_the_single_machine_table(trained, tmp_path):
    q = sidtool.Quantizer.load(trained / "q")
    parts = tmp_path / "raw"
    parts.mkdir()
    for i, b in enumerate(batches()):
        pq.write_table(pa.Table.from_batches([q.encode(b)]), parts / f"part-{i:05}.parquet")
    want = tmp_path / "cli.parquet"
    cli("assign", ITEMS, "--quantizer", str(trained / "q"), "--dedup", "reassign", "--out", str(want))
    out = tmp_path / "sids.parquet"
    stats = sidtool.resolve(parts, out, dedup="reassign", quantizer=q, embeddings=ITEMS)
    assert stats["resolution"]["moved_items"] > 0
    assert out.read_bytes() == want.read_bytes()
    # Without the vectors, reassign cannot move anything: refused, nothing written.
    with pytest.raises(sidtool.SidtoolError, match="embeddings="):
        sidtool.resolve(parts, tmp_path / "x.parquet", dedup="reassign")
    assert not (tmp_path / "x.parquet").exists()


def test_decode_sums_the_codewords(trained):
    q = sidtool.Quantizer.load(trained / "q")
    books = load_file(str(trained / "q" / "model.safetensors"))
    codes = [[3, 1], [7, 0, 5]]  # the second with a suffix code, which decoding ignores
    got = np.array(q.decode(codes).to_pylist(), dtype=np.float32)
    want = np.stack([books["codebooks.0"][c[0]] + books["codebooks.1"][c[1]] for c in codes])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(sidtool.SidtoolError, match="not below the codebook size 4"):
        q.decode([[0, 4]])


def test_bad_batches_raise_with_the_column_and_row(trained):
    q = sidtool.Quantizer.load(trained / "q")
    b = next(batches(10))
    with pytest.raises(sidtool.SidtoolError, match="no such column"):
        q.encode(b, embedding_column="vec")
    vecs = b.column("embedding").to_pylist()
    vecs[3][5] = float("nan")
    bad = pa.RecordBatch.from_arrays(
        [b.column("item_id"), pa.array(vecs, pa.list_(pa.float32()))], ["item_id", "embedding"]
    )
    with pytest.raises(sidtool.SidtoolError, match=r"row 3.*NaN"):
        q.encode(bad)
    short = pa.RecordBatch.from_arrays(
        [b.column("item_id"), pa.array([v[:8] for v in b.column("embedding").to_pylist()])],
        ["item_id", "embedding"],
    )
    with pytest.raises(sidtool.SidtoolError, match="8 dimensions but the quantizer was trained on 64"):
        q.encode(short)
    with pytest.raises(sidtool.SidtoolError):
        sidtool.Quantizer.load(trained / "nowhere")


def test_threads_encode_at_once_with_the_same_result(trained):
    q = sidtool.Quantizer.load(trained / "q")
    data = list(batches(50))
    want = [q.encode(b).column("codes").to_pylist() for b in data]
    got = [None] * len(data)

    def work(i):
        got[i] = q.encode(data[i]).column("codes").to_pylist()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(data))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want


TEXT = os.path.join(ROOT, "testdata/items_text.parquet")
MODEL = os.path.join(ROOT, "testdata/tiny-qwen3")


def test_embedder_gives_the_clis_vectors(tmp_path):
    cli("embed", TEXT, "--model", MODEL, "--out", str(tmp_path / "e.parquet"))
    want = pq.read_table(tmp_path / "e.parquet")
    e = sidtool.Embedder(MODEL)
    assert e.info["dim"] == len(want.column("embedding")[0])
    table = pq.read_table(TEXT)
    # The whole file as one batch: the CLI's windows and length-sorted batches exactly.
    got = e.embed(table.to_batches(max_chunksize=len(table))[0])
    assert got.column("item_id").to_pylist() == want.column("item_id").to_pylist()
    assert got.column("embedding").to_pylist() == want.column("embedding").to_pylist()
    assert b"sidtool:embed" in got.schema.metadata
    # Smaller batches pad differently; the vectors agree to rounding.
    parts = [e.embed(b) for b in table.to_batches(max_chunksize=37)]
    small = np.array(pa.Table.from_batches(parts).column("embedding").to_pylist())
    np.testing.assert_allclose(small, np.array(want.column("embedding").to_pylist()), atol=1e-5)
    with pytest.raises(sidtool.SidtoolError, match="no such column"):
        sidtool.Embedder(MODEL, template="{nope}").embed(table.to_batches()[0])
    with pytest.raises(sidtool.SidtoolError, match="unknown variant"):
        sidtool.Embedder(MODEL, pooling="max")


def test_wrappers_write_what_the_commands_write(tmp_path):
    small = {"quantizer": {"codebook_sizes": [8, 4]}}
    # build
    cli("build", ITEMS, "--codebook-sizes", "8,4", "--out", str(tmp_path / "cli-build"))
    st = sidtool.build(ITEMS, tmp_path / "py-build", settings=small)
    assert st["after"]["distinct_ids"] == 400
    for f in ["sids.parquet", "stats.json"]:
        assert (tmp_path / "py-build" / f).read_bytes() == (tmp_path / "cli-build" / f).read_bytes(), f
    # train + assign (+ stats, with the reconstruction error)
    cli("train", ITEMS, "--codebook-sizes", "8,4", "--out", str(tmp_path / "cli-q"))
    q = sidtool.train(ITEMS, tmp_path / "py-q", settings=small)
    assert q.info["fingerprint"] == sidtool.Quantizer.load(tmp_path / "cli-q").info["fingerprint"]
    cli("assign", ITEMS, "--quantizer", str(tmp_path / "cli-q"), "--dedup", "reassign",
        "--out", str(tmp_path / "cli.parquet"))
    st = sidtool.assign(ITEMS, q, tmp_path / "py.parquet", settings={"ids": {"dedup": "reassign"}})
    assert (tmp_path / "py.parquet").read_bytes() == (tmp_path / "cli.parquet").read_bytes()
    r = subprocess.run([BIN, "stats", str(tmp_path / "cli.parquet"), "--embeddings", ITEMS,
                        "--quantizer", str(tmp_path / "cli-q"), "--json", "-"],
                       capture_output=True, text=True, check=True)
    assert sidtool.stats(tmp_path / "py.parquet", ITEMS, tmp_path / "py-q") == json.loads(r.stdout)
    assert sidtool.stats(tmp_path / "py.parquet")["after"] == st["after"]
    # vocab
    cli("vocab", "--sids", str(tmp_path / "cli.parquet"), "--llm", MODEL, "--out", str(tmp_path / "cli-v"))
    rep = sidtool.vocab(tmp_path / "py.parquet", tmp_path / "py-v", llm=MODEL)
    assert rep["added"] > 0
    for f in ["tokenizer.json", "sid_tokens.json"]:
        assert (tmp_path / "py-v" / f).read_bytes() == (tmp_path / "cli-v" / f).read_bytes(), f
    # embed (file)
    cli("embed", TEXT, "--model", MODEL, "--out", str(tmp_path / "cli-e.parquet"))
    rep = sidtool.embed(TEXT, tmp_path / "py-e.parquet", settings={"embed": {"model": MODEL}})
    assert rep["items"] == 400
    assert (tmp_path / "py-e.parquet").read_bytes() == (tmp_path / "cli-e.parquet").read_bytes()
    # Bad settings fail as the config file would.
    with pytest.raises(sidtool.SidtoolError, match="codebok_sizes"):
        sidtool.train(ITEMS, tmp_path / "bad", settings={"quantizer": {"codebok_sizes": [4]}})
    assert not (tmp_path / "bad").exists()


def test_gensar_batches_resolve_to_the_single_machine_sids_and_cids(tmp_path):
    # Items with a collaborative vector column: GenSAR codes both.
    t = pq.read_table(ITEMS)
    rng = np.random.default_rng(0)
    collab = rng.standard_normal((len(t), 6)).astype(np.float32)
    t = t.append_column("collab_embedding", pa.FixedSizeListArray.from_arrays(pa.array(collab.ravel()), 6))
    items = tmp_path / "items.parquet"
    pq.write_table(t, items)
    cli("train", str(items), "--method", "gensar", "--codebook-sizes", "4", "--epochs", "3",
        "--hidden", "16", "--latent-dim", "4", "--out", str(tmp_path / "q"))
    cli("assign", str(items), "--quantizer", str(tmp_path / "q"), "--out", str(tmp_path / "cli.parquet"))
    q = sidtool.Quantizer.load(tmp_path / "q")
    parts = tmp_path / "raw"
    parts.mkdir()
    for i, b in enumerate(pq.ParquetFile(items).iter_batches(batch_size=150)):
        raw = q.encode(b)
        assert raw.schema.names == ["item_id", "codes", "cid_codes"]
        pq.write_table(pa.Table.from_batches([raw]), parts / f"part-{i}.parquet")
    stats = sidtool.resolve(parts, tmp_path / "py.parquet")
    assert stats["cid"]["after"]["distinct_ids"] == 400
    assert (tmp_path / "py.parquet").read_bytes() == (tmp_path / "cli.parquet").read_bytes()
    with pytest.raises(sidtool.SidtoolError, match="collab_embedding"):
        q.encode(pq.read_table(ITEMS).to_batches()[0])
