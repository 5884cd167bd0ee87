"""The recipes of docs/distributed.md, run: Spark `mapInArrow` on `local[2]` and Ray Data
`map_batches` with 2 CPUs code a catalogue of 5 000 items in partitions with
`Quantizer.encode`, their own Parquet writers write the parts (without sidtool's footer), and
`resolve` with the quantizer gives every item the final ID the single-machine `sidtool assign`
gives it; so does the Spark recipe in which tasks read their part files themselves. Spark's
`mapInArrow` also embeds item text with `Embedder`, as `sidtool embed` does.

They need pyspark (with Java 17) and ray; scripts/python-tests.sh installs both. Without them
the tests skip, unless CI=true, where they fail.
"""

import importlib
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sidtool
from test_api import MODEL, TEXT, cli

ROWS = 5000


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """5 000 items (a Gaussian mixture, int64 ids), a quantizer with many collisions, and the
    single-machine IDs."""
    d = tmp_path_factory.mktemp("catalogue")
    cli("bench", "gen", "--n", str(ROWS), "--d", "32", "--out", str(d / "items.parquet"))
    cli("train", str(d / "items.parquet"), "--codebook-sizes", "32,8", "--out", str(d / "q"))
    cli("assign", str(d / "items.parquet"), "--quantizer", str(d / "q"), "--out", str(d / "sids.parquet"))
    return d


def need(module):
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"{module} is not installed")


def final_ids(path):
    t = pq.read_table(path, columns=["item_id", "sid"])
    return dict(zip(t.column("item_id").to_pylist(), t.column("sid").to_pylist()))


def spark_session():
    need("pyspark")
    from pyspark.sql import SparkSession

    # The workers run this interpreter (with sidtool and pyarrow), not the system's python3.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    return (
        SparkSession.builder.master("local[2]")
        .appName("sidtool-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )


def test_spark_map_in_arrow_then_resolve_gives_the_single_machine_ids(catalogue, tmp_path):
    spark = spark_session()
    try:
        # Shipped to every executor; SparkFiles.get finds the local copy.
        spark.sparkContext.addFile(str(catalogue / "q"), recursive=True)

        def encode_partition(batches):
            import pyarrow as pa
            from pyspark import SparkFiles

            import sidtool

            q = sidtool.Quantizer.load(SparkFiles.get("q"))
            for b in batches:
                raw = q.encode(b)
                # Spark has no unsigned integers: the codes travel as array<int>.
                yield pa.RecordBatch.from_arrays(
                    [raw.column(0), raw.column(1).cast(pa.list_(pa.int32()))], ["item_id", "codes"]
                )

        df = spark.read.parquet(str(catalogue / "items.parquet")).repartition(4)
        raw = df.mapInArrow(encode_partition, "item_id long, codes array<int>")
        raw.write.parquet(str(tmp_path / "raw"))
    finally:
        spark.stop()
    q = sidtool.Quantizer.load(catalogue / "q")
    stats = sidtool.resolve(tmp_path / "raw", tmp_path / "sids.parquet", quantizer=q)
    assert stats["after"]["distinct_ids"] == ROWS
    assert stats["before"]["collision_rate"] > 0.5, "the test needs collisions across partitions"
    assert final_ids(tmp_path / "sids.parquet") == final_ids(catalogue / "sids.parquet")


def test_spark_tasks_reading_their_part_files_give_the_single_machine_ids(catalogue, tmp_path):
    # The vectors stay out of the JVM: only paths go in, only ids and codes come back.
    lake = tmp_path / "lake"
    lake.mkdir()
    items = pq.read_table(catalogue / "items.parquet")
    for k in range(4):
        pq.write_table(items.slice(k * 1250, 1250), lake / f"part-{k:05}.parquet")
    spark = spark_session()
    try:
        spark.sparkContext.addFile(str(catalogue / "q"), recursive=True)

        def encode_files(batches):
            import pyarrow as pa
            import pyarrow.parquet as pq
            from pyspark import SparkFiles

            import sidtool

            q = sidtool.Quantizer.load(SparkFiles.get("q"))
            for paths in batches:
                for path in paths.column(0).to_pylist():
                    for b in pq.ParquetFile(path).iter_batches(500, columns=["item_id", "embedding"]):
                        raw = q.encode(b)
                        yield pa.RecordBatch.from_arrays(
                            [raw.column(0), raw.column(1).cast(pa.list_(pa.int32()))], ["item_id", "codes"]
                        )

        files = sorted(str(p) for p in lake.glob("part-*.parquet"))
        paths = spark.createDataFrame([(f,) for f in files], "path string").repartition(len(files))
        paths.mapInArrow(encode_files, "item_id long, codes array<int>").write.parquet(str(tmp_path / "raw"))
    finally:
        spark.stop()
    q = sidtool.Quantizer.load(catalogue / "q")
    stats = sidtool.resolve(tmp_path / "raw", tmp_path / "sids.parquet", quantizer=q)
    assert stats["after"]["distinct_ids"] == ROWS
    assert final_ids(tmp_path / "sids.parquet") == final_ids(catalogue / "sids.parquet")


def test_spark_map_in_arrow_embeds_as_the_cli_does(tmp_path):
    cli("embed", TEXT, "--model", MODEL, "--out", str(tmp_path / "cli.parquet"))
    spark = spark_session()
    try:
        spark.sparkContext.addFile(MODEL, recursive=True)
        name = os.path.basename(MODEL)

        def embed_partition(batches):
            import pyarrow as pa
            from pyspark import SparkFiles

            import sidtool

            e = sidtool.Embedder(SparkFiles.get(name))
            for b in batches:
                v = e.embed(b)
                # Spark has no fixed-size lists: the vectors travel as array<float>.
                yield pa.RecordBatch.from_arrays(
                    [v.column(0), v.column(1).cast(pa.list_(pa.float32()))], ["item_id", "embedding"]
                )

        df = spark.read.parquet(TEXT).repartition(3)
        out = df.mapInArrow(embed_partition, "item_id string, embedding array<float>")
        out.write.parquet(str(tmp_path / "emb"))
    finally:
        spark.stop()
    got = pq.read_table(tmp_path / "emb")
    want = pq.read_table(tmp_path / "cli.parquet")
    g = dict(zip(got.column("item_id").to_pylist(), got.column("embedding").to_pylist()))
    w = dict(zip(want.column("item_id").to_pylist(), want.column("embedding").to_pylist()))
    assert g.keys() == w.keys()
    keys = sorted(w)
    np.testing.assert_allclose(np.array([g[k] for k in keys]), np.array([w[k] for k in keys]), atol=1e-5)


def test_ray_map_batches_then_resolve_gives_the_single_machine_ids(catalogue, tmp_path):
    ray = need("ray")

    class Encoder:
        """A Ray Data callable class: the quantizer is loaded once per worker. (Defined here so
        that Ray ships it by value: workers cannot import the test module.)"""

        def __init__(self, quantizer_dir):
            import sidtool

            self.q = sidtool.Quantizer.load(quantizer_dir)

        def __call__(self, table):
            import pyarrow as pa

            batches = [self.q.encode(b) for b in table.combine_chunks().to_batches()]
            return pa.Table.from_batches(batches)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.read_parquet(str(catalogue / "items.parquet")).repartition(4).map_batches(
            Encoder,
            fn_constructor_args=(str(catalogue / "q"),),
            batch_format="pyarrow",
            batch_size=500,
            concurrency=2,
            # Two encoder actors and the read tasks share the 2 CPUs: whole-CPU actors would
            # leave the reads none and the pipeline would wait forever.
            num_cpus=0.5,
        )
        ds.write_parquet(str(tmp_path / "raw"))
    finally:
        ray.shutdown()
    q = sidtool.Quantizer.load(catalogue / "q")
    sidtool.resolve(tmp_path / "raw", tmp_path / "sids.parquet", quantizer=q)
    assert final_ids(tmp_path / "sids.parquet") == final_ids(catalogue / "sids.parquet")
