"""The recipes of docs/distributed.md, run: Spark `mapInArrow` on `local[2]` and Ray Data
`map_batches` with 2 CPUs code the catalogue in partitions with `Quantizer.encode`, their own
Parquet writers write the parts (without sidtool's footer), and `resolve` with the quantizer
gives every item the final ID the single-machine `sidtool assign` gives it.

They need pyspark (with Java 17) and ray; scripts/python-tests.sh installs both. Without them
the tests skip, unless CI=true, where they fail.
"""

import importlib
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sidtool
from test_api import ITEMS, trained  # noqa: F401  (the fixture)


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


def test_spark_map_in_arrow_then_resolve_gives_the_single_machine_ids(trained, tmp_path):
    need("pyspark")
    from pyspark.sql import SparkSession

    # The workers run this interpreter (with sidtool and pyarrow), not the system's python3.
    os.environ["PYSPARK_PYTHON"] = sys.executable

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("sidtool-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    try:
        # Shipped to every executor; SparkFiles.get finds the local copy.
        spark.sparkContext.addFile(str(trained / "q"), recursive=True)

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

        df = spark.read.parquet(ITEMS).repartition(4)
        raw = df.mapInArrow(encode_partition, "item_id string, codes array<int>")
        raw.write.parquet(str(tmp_path / "raw"))
    finally:
        spark.stop()
    q = sidtool.Quantizer.load(trained / "q")
    stats = sidtool.resolve(tmp_path / "raw", tmp_path / "sids.parquet", quantizer=q)
    assert stats["after"]["distinct_ids"] == 400
    assert final_ids(tmp_path / "sids.parquet") == final_ids(trained / "sids.parquet")


def test_ray_map_batches_then_resolve_gives_the_single_machine_ids(trained, tmp_path):
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
        ds = ray.data.read_parquet(ITEMS).repartition(4).map_batches(
            Encoder,
            fn_constructor_args=(str(trained / "q"),),
            batch_format="pyarrow",
            batch_size=100,
            concurrency=2,
            # Two encoder actors and the read tasks share the 2 CPUs: whole-CPU actors would
            # leave the reads none and the pipeline would wait forever.
            num_cpus=0.5,
        )
        ds.write_parquet(str(tmp_path / "raw"))
    finally:
        ray.shutdown()
    q = sidtool.Quantizer.load(trained / "q")
    sidtool.resolve(tmp_path / "raw", tmp_path / "sids.parquet", quantizer=q)
    assert final_ids(tmp_path / "sids.parquet") == final_ids(trained / "sids.parquet")
