#!/usr/bin/env python3
"""Encode throughput inside Spark `local[2]` and Ray Data (2 CPUs) against the CLI, on the same
data and quantizer (docs/benchmarks.md).

  sidtool bench gen --n 400000 --d 256 --out /tmp/eng.parquet
  sidtool train /tmp/eng.parquet --codebook-sizes 256,256,256 --balanced=false --out /tmp/eng-q
  python3 bench/engines_bench.py --data /tmp/eng.parquet --quantizer /tmp/eng-q [--sidtool BIN]

Each measurement encodes every row and writes the raw codes: the CLI with `sidtool assign
--dedup none` (all cores), Spark with `mapInArrow` over 2 tasks and Ray with `map_batches` over
2 actors, each writing Parquet. Two more Spark runs split Spark's time: `spark-noop` (the same
pipeline, constant codes instead of encode: what Spark itself costs) and `spark-files` (only the
part files' paths enter the JVM; each task reads its vectors with pyarrow and encodes them).
Prints one JSON line per tool: seconds, rows/s, rows/s per core, the peak RSS of one worker
process (the Spark Python worker or the Ray actor; the CLI's whole process) and, for Spark, the
seconds spent inside encode. Needs pyspark (Java 17), ray, pyarrow and the sidtool wheel.
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
    return s, int(r.stderr.strip().splitlines()[-1]) * 1024, None


def spark_session(a):
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    return (SparkSession.builder.master("local[2]").appName("sidtool-bench")
            .config("spark.ui.enabled", "false").config("spark.driver.memory", "4g")
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(a.batch_rows)).getOrCreate())


def spark(a, out, mode="encode"):
    """`mode`: "encode", the recipe (vectors JVM -> Python, codes back); "noop", the same
    pipeline with the encode replaced by constant codes (what Spark itself costs); "files",
    only part-file paths go through the JVM and each task reads its vectors with pyarrow."""
    sp = spark_session(a)
    try:
        sp.sparkContext.addFile(a.quantizer, recursive=True)
        name = os.path.basename(os.path.normpath(a.quantizer))

        def result(pa, raw, spent):
            import resource

            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            n = raw.num_rows
            # The batch's encode seconds on its first row, so that a sum gives the total.
            return pa.RecordBatch.from_arrays(
                [raw.column(0), raw.column(1).cast(pa.list_(pa.int32())),
                 pa.array([rss] * n, pa.int64()), pa.array([spent] + [0.0] * (n - 1), pa.float64())],
                ["item_id", "codes", "rss", "encode_s"])

        def encode(batches):
            import time

            import numpy as np
            import pyarrow as pa
            from pyspark import SparkFiles

            import sidtool

            q = sidtool.Quantizer.load(SparkFiles.get(name))
            for b in batches:
                t = time.perf_counter()
                if mode == "noop":
                    zeros = pa.array(np.zeros(3 * b.num_rows, np.uint16))
                    raw = pa.RecordBatch.from_arrays(
                        [b.column(0), pa.FixedSizeListArray.from_arrays(zeros, 3)], ["item_id", "codes"])
                else:
                    raw = q.encode(b)
                yield result(pa, raw, time.perf_counter() - t)

        def encode_files(batches):
            import time

            import pyarrow as pa
            import pyarrow.parquet as pq
            from pyspark import SparkFiles

            import sidtool

            q = sidtool.Quantizer.load(SparkFiles.get(name))
            for paths in batches:
                for path in paths.column(0).to_pylist():
                    for b in pq.ParquetFile(path).iter_batches(a.batch_rows, columns=["item_id", "embedding"]):
                        t = time.perf_counter()
                        raw = q.encode(b)
                        yield result(pa, raw, time.perf_counter() - t)

        schema = "item_id long, codes array<int>, rss long, encode_s double"
        if mode == "files":
            files = sorted(os.path.join(a.parts, f) for f in os.listdir(a.parts) if f.endswith(".parquet"))
            df = sp.createDataFrame([(f,) for f in files], "path string").repartition(len(files)).cache()
            df.count()
            t = time.perf_counter()
            df.mapInArrow(encode_files, schema).write.parquet(out)
        else:
            df = sp.read.parquet(a.data).repartition(2).cache()
            df.count()  # read and shuffled before the clock starts, as the CLI's read is not free either
            t = time.perf_counter()
            df.mapInArrow(encode, schema).write.parquet(out)
        s = time.perf_counter() - t
        row = sp.read.parquet(out).agg({"rss": "max", "encode_s": "sum"}).collect()[0]
    finally:
        sp.stop()
    return s, row["max(rss)"], row["sum(encode_s)"]


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
    return s, rss, None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--quantizer", required=True)
    ap.add_argument("--sidtool", default="target/release/sidtool")
    ap.add_argument("--tools", default="cli,spark,spark-noop,spark-files,ray",
                    help="spark-noop: Spark's own cost (constant codes, no encode); spark-files: "
                         "the tasks read their part files themselves, only paths and codes cross the JVM")
    ap.add_argument("--batch-rows", type=int, default=10000, help="rows per Arrow batch handed to encode")
    ap.add_argument("--parts", type=int, default=8, help="part files for spark-files")
    a = ap.parse_args()
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(a.data).metadata.num_rows
    cores = 2
    tools = {"cli": cli, "spark": spark, "ray": ray_data,
             "spark-noop": lambda a, out: spark(a, out, "noop"),
             "spark-files": lambda a, out: spark(a, out, "files")}
    parts_dir = None
    if "spark-files" in a.tools:
        # The same rows as a directory of part files, as a data lake holds them (before the clock).
        parts_dir = tempfile.mkdtemp()
        t = pq.read_table(a.data)
        step = -(-rows // a.parts)
        for k in range(a.parts):
            pq.write_table(t.slice(k * step, step), os.path.join(parts_dir, f"part-{k:05}.parquet"))
        del t
    a.parts = parts_dir
    try:
        run_all(a, tools, rows, cores)
    finally:
        if parts_dir:
            shutil.rmtree(parts_dir)


def run_all(a, tools, rows, cores):
    for tool in a.tools.split(","):
        d = tempfile.mkdtemp()
        out = os.path.join(d, "raw.parquet" if tool == "cli" else "raw")
        try:
            s, rss, enc = tools[tool](a, out)
        finally:
            shutil.rmtree(d)
        line = {"tool": tool, "rows": rows, "seconds": round(s, 3),
                "rows_per_s": round(rows / s), "rows_per_s_per_core": round(rows / s / cores),
                "peak_rss_mb_per_worker": round(rss / 2**20)}
        if enc is not None:
            # Seconds inside encode (or its stand-in), summed over the 2 tasks, as a share of
            # the 2 cores' wall time: the rest is Spark (transfer, conversion, writer).
            line["encode_seconds"] = round(enc, 3)
            line["encode_share_of_2_cores"] = round(enc / (2 * s), 3)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
