"""One place that builds the SparkSession (local[*] by default, spark-submit's master when present)."""

from __future__ import annotations

import os
import re
import sys


def get_spark(app_name: str = "rexdrug", master: str | None = None, conf: dict[str, str] | None = None):
    # Executors must run the same interpreter (and venv) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    # Under spark-submit (which launches Python with PYSPARK_GATEWAY_PORT set) the master comes from
    # the submit command; only default it when we start the JVM ourselves.
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if master:
        builder = builder.master(master)
    elif not under_submit and "spark.master" not in (conf or {}):
        builder = builder.master(os.environ.get("REXDRUG_SPARK_MASTER", "local[*]"))
    defaults = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.shuffle.partitions": os.environ.get("REXDRUG_SHUFFLE_PARTITIONS", "4"),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": os.environ.get("REXDRUG_DRIVER_MEMORY", "2g"),
        "spark.python.worker.reuse": "true",
    }
    for key, value in {**defaults, **(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


_HADOOP_GLOB_CHARS = re.compile(r"([\\\[\]{}*?^])")


def literal_path(path: str | os.PathLike[str]) -> str:
    """``path`` for ``spark.read``, which expands Hadoop globs: a warehouse called ``wh[1]`` or ``wh*``
    must read its own folder, not ``wh1`` or every sibling (writes take the path literally)."""
    return _HADOOP_GLOB_CHARS.sub(r"\\\1", str(path))
