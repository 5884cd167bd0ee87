#!/usr/bin/env python3
"""Encode throughput inside Spark `local[2]` and Ray Data (2 CPUs) against the CLI, on the same
data and quantizer (docs/benchmarks.md).

  sidtool bench gen --n 400000 --d 256 --out /tmp/eng.parquet
  sidtool train /tmp/eng.parquet --codebook-sizes 256,256,256 --out /tmp/eng-q
  python3 bench/engines_bench.py --data /tmp/eng.parquet --quantizer /tmp/eng-q [--sidtool BIN]

Each measurement encodes every row and writes the raw codes: the CLI with `sidtool assign
--dedup none` (all cores), Spark with `mapInArrow` over 2 tasks and Ray with `map_batches` over
2 actors, each writing Parquet. Prints one JSON line per tool: seconds, rows/s, rows/s per core
and the peak RSS of one worker process (the Spark Python worker or the Ray actor; the CLI's
whole process). Needs pyspark (Java 17), ray, pyarrow and the sidtool wheel.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time


def cli(a, out):
    t = time.perf_counter()
    r = subprocess.run(
        ["/usr/bin/time", "-f", "%M", a.sidtool, "assign", a.data, "--quantizer", a.quantizer,
         "--dedup", "none", "--out", out, "-q"],
        capture_output=True, text=True, check=True)
    s = time.perf_counter() - t
    return s, int(r.stderr.strip().splitlines()[-1]) * 1024


def spark(a, out):
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    sp = (SparkSession.builder.master("local[2]").appName("sidtool-bench")
          .config("spark.ui.enabled", "false").config("spark.driver.memory", "4g")
          .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(a.batch_rows)).getOrCreate())
    try:
        sp.sparkContext.addFile(a.quantizer, recursive=True)
        name = os.path.basename(os.path.normpath(a.quantizer))

        def encode(batches):
            import resource

            import pyarrow as pa
            from pyspark import SparkFiles

            import sidtool

            q = sidtool.Quantizer.load(SparkFiles.get(name))
            for b in batches:
                raw = q.encode(b)
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                yield pa.RecordBatch.from_arrays(
                    [raw.column(0), raw.column(1).cast(pa.list_(pa.int32())),
                     pa.array([rss] * raw.num_rows, pa.int64())],
                    ["item_id", "codes", "rss"])

        df = sp.read.parquet(a.data).repartition(2).cache()
        df.count()  # read and shuffled before the clock starts, as the CLI's read is not free either
        t = time.perf_counter()
        df.mapInArrow(encode, "item_id long, codes array<int>, rss long").write.parquet(out)
        s = time.perf_counter() - t
        rss = sp.read.parquet(out).agg({"rss": "max"}).collect()[0][0]
    finally:
        sp.stop()
    return s, rss


def ray_data(a, out):
    import ray

    class Encoder:
        def __init__(self, qdir):
            import sidtool

            self.q = sidtool.Quantizer.load(qdir)

        def __call__(self, table):
            import resource

            import pyarrow as pa

            t = pa.Table.from_batches([self.q.encode(b) for b in table.combine_chunks().to_batches()])
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            return t.append_column("rss", pa.array([rss] * t.num_rows, pa.int64()))

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.read_parquet(a.data).repartition(8).materialize()
        t = time.perf_counter()
        ds.map_batches(Encoder, fn_constructor_args=(a.quantizer,), batch_format="pyarrow",
                       batch_size=a.batch_rows, concurrency=2, num_cpus=0.5).write_parquet(out)
        s = time.perf_counter() - t
    finally:
        ray.shutdown()
    import pyarrow.parquet as pq

    rss = max(pq.read_table(out, columns=["rss"]).column("rss").to_pylist())
    return s, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--quantizer", required=True)
    ap.add_argument("--sidtool", default="target/release/sidtool")
    ap.add_argument("--tools", default="cli,spark,ray")
    ap.add_argument("--batch-rows", type=int, default=10000, help="rows per Arrow batch handed to encode")
    a = ap.parse_args()
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(a.data).metadata.num_rows
    cores = 2
    for tool in a.tools.split(","):
        d = tempfile.mkdtemp()
        out = os.path.join(d, "raw.parquet" if tool == "cli" else "raw")
        s, rss = {"cli": cli, "spark": spark, "ray": ray_data}[tool](a, out)
        shutil.rmtree(d)
        print(json.dumps({"tool": tool, "rows": rows, "seconds": round(s, 3),
                          "rows_per_s": round(rows / s), "rows_per_s_per_core": round(rows / s / cores),
                          "peak_rss_mb_per_worker": round(rss / 2**20)}), flush=True)


if __name__ == "__main__":
    main()
