"""The files in clusters/ and the job upload: launcher YAMLs against Ray's own schema, the
KubeRay RayJob's structure and entrypoint (parsed by raysum's command line), local.sh, and
the size of what `ray job submit --working-dir .` uploads."""

from __future__ import annotations

import json
import shlex
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = ROOT / "clusters"
LAUNCHER_FILES = ["aws-gpu.yaml", "gcp-gpu.yaml"]


def _header(path: Path) -> str:
    return "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))


def _raysum_command(command: str):
    """Parse and validate a `raysum train ...` command with raysum's own parser and config checks."""
    from raysum.cli import build_parser, resolve_from_args

    words = shlex.split(command)
    assert words[:2] == ["raysum", "train"], command
    ns = build_parser().parse_args(words[1:])
    return resolve_from_args(ns)


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_launcher_yaml_matches_rays_schema(name):
    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((CLUSTERS / name).read_text())
    jsonschema.validate(config, schema)

    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    workers = [n for key, n in nodes.items() if key != config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert workers and all(w["resources"]["GPU"] >= 1 and w["max_workers"] >= 1 for w in workers)
    assert any("raysum[gpu]" in c and "pip install" in c for c in config["setup_commands"])
    assert any(target.endswith("data") for target in config["file_mounts"])
    header = _header(CLUSTERS / name)
    assert f"ray up clusters/{name}" in header and "ray job submit" in header
    command = header[header.index("raysum train"):header.index("--max_failures")] + "--max_failures 2"
    command = " ".join(line.lstrip("# ").rstrip("\\ ") for line in command.splitlines())
    cfg = _raysum_command(command)
    assert cfg.experiment.k_folds == 5 and len(cfg.models) == 3 and cfg.experiment.storage_path.startswith(("s3://", "gs://"))


def test_kuberay_rayjob_structure():
    job = yaml.safe_load((CLUSTERS / "kuberay-rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    cfg = _raysum_command(spec["entrypoint"])
    assert cfg.experiment.mode == "full" and set(cfg.models) == {"kobart", "llama-3.2-korean-3b", "qwen3-4b"}
    assert cfg.experiment.output_dir.startswith("/mnt/shared/")
    cluster = spec["rayClusterSpec"]
    import ray

    assert cluster["rayVersion"] == ray.__version__
    head_pod = cluster["headGroupSpec"]["template"]["spec"]
    (gpu_group,) = cluster["workerGroupSpecs"]
    worker_pod = gpu_group["template"]["spec"]
    (worker,) = worker_pod["containers"]
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    for pod in (head_pod, worker_pod):  # every pod mounts the shared claim where the experiment lives
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
        mounts = {m["mountPath"]: m["name"] for c in pod["containers"] for m in c["volumeMounts"]}
        assert claims.get(mounts["/mnt/shared"]) == "raysum-shared"
    assert "kubectl apply -f clusters/kuberay-rayjob.yaml" in _header(CLUSTERS / "kuberay-rayjob.yaml")


def test_local_sh_wraps_raysum_cluster():
    script = CLUSTERS / "local.sh"
    text = script.read_text()
    assert script.stat().st_mode & 0o111 and "clusters/local.sh up" in text and "clusters/local.sh down" in text
    assert 'exec "$RAYSUM" cluster "$@"' in text and "ray stop" not in text.replace("never `ray stop`", "")


def test_job_upload_is_small(tmp_path):
    """Package the repository the way `ray job submit --working-dir .` does (Ray's own
    packaging, its default excludes, .gitignore and .rayignore): under 5 MiB, no outputs,
    checkpoints or virtual environment, but the code and the bundled data."""
    from ray._private import ray_constants
    from ray._private.runtime_env.packaging import create_package

    planted = ROOT / "outputs" / "_upload_probe"
    planted.mkdir(parents=True, exist_ok=True)
    big = planted / "model.safetensors"
    big.write_bytes(b"\0" * (6 * 1024 * 1024))  # an experiment's checkpoint: must not travel
    try:
        target = tmp_path / "pkg.zip"
        create_package(str(ROOT), target, include_gitignore=True,
                       excludes=ray_constants.get_runtime_env_default_excludes())
    finally:
        big.unlink()
        planted.rmdir()
    size = target.stat().st_size
    names = zipfile.ZipFile(target).namelist()
    assert size < 5 * 1024 * 1024, f"upload is {size / 2**20:.1f} MiB"
    assert not [n for n in names if n.startswith(("outputs/", ".git/", ".venv/", ".raysum-cluster/"))]
    assert not [n for n in names if n.endswith((".safetensors", ".parquet"))]
    assert "raysum/cli/__init__.py" in names and "raysum/resources/data/train.csv" in names and ".rayignore" in names


def test_rayignore_alone_keeps_outputs_out(tmp_path):
    """Without .gitignore (RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1) the committed .rayignore still
    keeps experiments, checkpoints and environments out."""
    from ray._private.runtime_env.packaging import create_package

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / ".rayignore").write_text((ROOT / ".rayignore").read_text())
    for rel in ("raysum/x.py", "outputs/run/units/m/fold0/checkpoint/model.safetensors", ".venv/lib/a.py",
                "inputs/train.parquet", ".raysum-cluster/auth_token"):
        path = tmp_path / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    create_package(str(tmp_path / "src"), tmp_path / "pkg.zip", include_gitignore=False, excludes=[])
    names = [n for n in zipfile.ZipFile(tmp_path / "pkg.zip").namelist() if not n.endswith("/")]
    assert sorted(names) == [".rayignore", "raysum/x.py"]


# --------------------------------------------------------------------------- output_dir inside a Ray job


def _config_show(capsys, *flags) -> tuple[int, dict | None, str]:
    from raysum.cli import main

    code = main(["config", "show", "--models", "tiny-bart", "--json", *flags])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else None, captured.err


def test_a_job_without_output_dir_gets_an_absolute_default(monkeypatch, tmp_path, capsys):
    """Inside a job (Ray sets RAY_JOB_CONFIG_JSON_ENV_VAR) output_dir's default is not the
    job's temporary working directory: ~/raysum-outputs, or <storage_path>/outputs."""
    from raysum.storage import RAY_JOB_ENV

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _config_show(capsys)[1]["output_dir"] == {"value": "outputs", "source": "default"}  # not a job
    monkeypatch.setenv(RAY_JOB_ENV, "{}")
    code, shown, _ = _config_show(capsys)
    assert code == 0 and shown["output_dir"] == {"value": str(tmp_path / "home" / "raysum-outputs"),
                                                 "source": "default inside a Ray job"}
    shared = tmp_path / "shared"
    code, shown, _ = _config_show(capsys, "--storage_path", str(shared))
    assert shown["output_dir"]["value"] == str(shared / "outputs")
    code, shown, _ = _config_show(capsys, "--storage_path", "s3://bucket/raysum")  # not a path: the home default
    assert shown["output_dir"]["value"] == str(tmp_path / "home" / "raysum-outputs")
    code, shown, _ = _config_show(capsys, "--output_dir", str(tmp_path / "mine"))
    assert shown["output_dir"] == {"value": str(tmp_path / "mine"), "source": "cli"}


@pytest.mark.parametrize("flags, says", [
    (["--output_dir", "outputs"], "output_dir 'outputs' is relative: inside a Ray job"),
    (["--storage_path", "ray_runs"], "storage_path 'ray_runs' is relative: inside a Ray job"),
])
def test_a_job_refuses_an_explicit_relative_path(monkeypatch, capsys, flags, says):
    from raysum.storage import RAY_JOB_ENV

    monkeypatch.setenv(RAY_JOB_ENV, "{}")
    code, _, err = _config_show(capsys, *flags)
    assert code == 2 and says in err and "Traceback" not in err


def test_train_in_a_job_says_where_experiments_go_before_any_work(monkeypatch, tmp_path, capsys):
    from raysum.cli import main
    from raysum.storage import RAY_JOB_ENV

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(RAY_JOB_ENV, "{}")
    code = main(["train", "--models", "tiny-bart", "--train_data", str(tmp_path / "missing.csv")])
    err = capsys.readouterr().err
    assert code != 0 and "missing.csv" in err  # stopped at the data, before Ray
    assert f"inside a Ray job, experiment directories go to {tmp_path / 'home' / 'raysum-outputs'}" in err
    assert not (tmp_path / "home" / "raysum-outputs").exists()
