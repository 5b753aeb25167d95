"""One place that builds the SparkSession (local[*] by default, spark-submit's master when present).

On a cluster the executors are other processes, started by the cluster's workers with the workers'
environment and cwd, not the driver's.  What they need from the driver's side travels with the job as
``spark.executorEnv.*`` (``executor_env``): the code the driver runs (its source root, when it is not an
installed package) and the rexdrug cache (the converted embedded model), so an executor never imports
another copy of the code or converts the model again into its own home.  A value given explicitly
(``conf``, or ``spark-submit --conf spark.executorEnv.X=...``) wins.  Every path must exist on every node:
one checkout/venv path and a shared cache (or set ``REXDRUG_CACHE`` to one), the warehouse on a shared mount.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path


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
    submitted = _submitted_conf_keys() if under_submit else set()
    for name, value in executor_env().items():
        key = f"spark.executorEnv.{name}"
        if key not in submitted:
            defaults[key] = value
    for key, value in {**defaults, **(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def code_root() -> Path:
    """The folder holding the rexdrug packages this process imports (``etl``, ``model``, ``jobs``...)."""
    return Path(__file__).resolve().parents[1]


def executor_env() -> dict[str, str]:
    """Environment the executors' Python workers get from the driver (``spark.executorEnv.*``).

    ``REXDRUG_CACHE``: the driver's cache folder, absolute (``etl.paths.cache_location``), where the embedded
    model is converted once; without it every executor converts its own copy under its own user's home.
    ``PYTHONPATH``: the driver's source root, unless the code is an installed package (site-packages,
    which the executors' interpreter has anyway); without it an executor imports whatever copy of
    rexdrug its interpreter finds (another checkout's editable install), or none.
    """
    from etl.paths import cache_location

    env = {"REXDRUG_CACHE": str(cache_location())}
    root = code_root()
    if root.name not in ("site-packages", "dist-packages"):
        env["PYTHONPATH"] = str(root)
    return env


def _submitted_conf_keys() -> set[str]:
    """Keys spark-submit set (its ``--conf``/properties file): they are the user's and are not overridden."""
    from pyspark import SparkConf

    return {key for key, _ in SparkConf().getAll()}


_HADOOP_GLOB_CHARS = re.compile(r"([\\\[\]{}*?^])")


def literal_path(path: str | os.PathLike[str]) -> str:
    """``path`` for ``spark.read``, which expands Hadoop globs: a warehouse called ``wh[1]`` or ``wh*``
    must read its own folder, not ``wh1`` or every sibling (writes take the path literally)."""
    return _HADOOP_GLOB_CHARS.sub(r"\\\1", str(path))
