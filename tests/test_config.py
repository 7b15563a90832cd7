"""Config: schema, presets, precedence with provenance, validation, CLI flags."""

from __future__ import annotations

import dataclasses

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from raysum.cli import build_parser, main
from raysum.cli._args import given_settings
from raysum.config import available_models, load_preset
from raysum.config.resolve import config_from_tree, resolve
from raysum.pipeline import validate
from raysum.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SEED_COMMANDS = [
    # seed report §1.3
    "--mode full --models kobart llama-3.2-korean-3b qwen3-4b --epochs 2 --batch_size 10 --learning_rate 2e-5 "
    "--gradient_accumulation_steps 1 --warmup_ratio 0.1 --use_augmentation --augmentation_methods back_translation "
    "--augmentation_ratio 0.1 --k_folds 2 --fold_seed 42 --ensemble_strategy stacking --use_tta "
    "--tta_strategies paraphrase --tta_num_aug 2 --max_train_samples 2500 --num_beams 4 --save_visualizations "
    "--experiment_name test_strategy3_triple --seed 42",
    # seed report §8.3
    "--mode full --models kobart llama-3.2-korean-3b qwen3-4b --epochs 5 --batch_size 10 --learning_rate 2e-5 "
    "--gradient_accumulation_steps 1 --warmup_ratio 0.1 --use_augmentation --augmentation_methods back_translation "
    "paraphrase --augmentation_ratio 0.3 --k_folds 5 --fold_seed 42 --ensemble_strategy weighted_avg "
    "--ensemble_weights 0.7 0.15 0.15 --use_tta --tta_strategies paraphrase reorder --tta_num_aug 3 "
    "--max_train_samples 5000 --num_beams 2 --max_length 150 --save_visualizations "
    "--experiment_name strategy3_triple_optimized --seed 42",
]


def _show_json(capsys, *args: str) -> dict:
    assert main(["config", "show", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_presets_carry_the_seed_values():
    assert {"kobart", "llama-3.2-korean-3b", "qwen3-4b", "tiny-bart", "tiny-llama", "tiny-qwen3"} <= set(available_models())
    kobart, llama, qwen = load_preset("kobart"), load_preset("llama-3.2-korean-3b"), load_preset("qwen3-4b")
    assert kobart.batch_size == 50 and kobart.kind == "seq2seq" and kobart.lora is None
    assert (llama.batch_size, llama.gradient_accumulation_steps) == (8, 4)
    assert (qwen.batch_size, qwen.gradient_accumulation_steps) == (6, 10)
    for preset in (llama, qwen):
        assert (preset.lora.r, preset.lora.alpha) == (16, 32)
        assert preset.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    for name in ("tiny-bart", "tiny-llama", "tiny-qwen3"):
        tiny = load_preset(name)
        assert tiny.from_config and tiny.checkpoint is None and not tiny.resources.use_gpu


def test_cli_beats_preset_and_records_source(capsys):
    tree = _show_json(capsys, "--models", "qwen3-4b", "--gradient_accumulation_steps", "1")
    assert tree["models"]["qwen3-4b"]["gradient_accumulation_steps"] == {"value": 1, "source": "cli"}
    tree = _show_json(capsys, "--models", "qwen3-4b")
    leaf = tree["models"]["qwen3-4b"]["gradient_accumulation_steps"]
    assert leaf["value"] == 10 and leaf["source"] == "preset:raysum/config/presets/qwen3-4b.yaml"
    assert tree["models"]["qwen3-4b"]["weight_decay"]["source"] == "default"
    assert tree["mode"] == {"value": "single", "source": "default"}


def test_full_precedence_chain(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({
        "mode": "full", "k_folds": 3, "epochs": 4, "learning_rate": 1e-4,
        "models": {"qwen3-4b": {"gradient_accumulation_steps": 2, "epochs": 7}, "kobart": {}},
    }, sort_keys=False))
    tree = _show_json(capsys, "--config", str(exp), "--learning_rate", "2e-5",
                      "--set", "models.kobart.batch_size=32")
    qwen, kobart = tree["models"]["qwen3-4b"], tree["models"]["kobart"]
    src = f"experiment:{exp}"
    assert tree["k_folds"] == {"value": 3, "source": src}
    assert qwen["gradient_accumulation_steps"] == {"value": 2, "source": src}   # experiment per-model > preset
    assert qwen["epochs"] == {"value": 7, "source": src}                        # per-model > global, same layer
    assert kobart["epochs"] == {"value": 4, "source": src}                      # experiment global > preset
    assert qwen["learning_rate"] == {"value": 2e-5, "source": "cli"}            # cli > experiment
    assert kobart["batch_size"] == {"value": 32, "source": "cli"}               # --set per model
    assert kobart["max_source_length"]["source"].startswith("preset:")
    assert list(tree["models"]) == ["qwen3-4b", "kobart"]


def test_cli_global_beats_experiment_per_model(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("models:\n  qwen3-4b:\n    gradient_accumulation_steps: 5\n")
    cfg = resolve({"gradient_accumulation_steps": 1}, config_file=exp)
    assert cfg.models["qwen3-4b"].gradient_accumulation_steps == 1


def test_set_creates_lora_block_and_coerces_types():
    cfg = resolve({"models": ["tiny-llama"]}, overrides=["models.tiny-llama.lora.r=8", "learning_rate=1e-3"])
    assert cfg.models["tiny-llama"].lora.r == 8 and cfg.models["tiny-llama"].lora.alpha == 32
    assert cfg.models["tiny-llama"].learning_rate == pytest.approx(1e-3)  # YAML reads "1e-3" as a string
    assert cfg.sources["models.tiny-llama.lora.r"] == "cli"
    assert cfg.sources["models.tiny-llama.lora.alpha"] == "default"


def test_validation_collects_every_problem(capsys):
    rc = main(["config", "show", "--models", "nope", "kobart", "--mode", "full", "--k_folds", "1",
               "--learning_rate", "-1", "--ensemble_weights", "1", "2", "3", "--ensemble_strategy", "magic",
               "--augmentation_methods", "dance", "--tta_strategies", "spin",
               "--set", "models.kobart.lora.r=4", "--set", "models.kobart.bogus=1"])
    err = capsys.readouterr().err
    assert rc == 2
    for text in ("unknown model 'nope'", "k_folds must be >= 2", "learning_rate must be in (0, 1]",
                 "ensemble_weights has 3 values", "ensemble_strategy 'magic'", "augmentation method 'dance'",
                 "TTA strategy 'spin'", "LoRA settings do not apply", "unknown model setting 'models.kobart.bogus'"):
        assert text in err, text


def test_mode_rules_and_warnings():
    with pytest.raises(ConfigError, match="trains one model"):
        validate(resolve({"mode": "single", "models": ["tiny-bart", "tiny-llama"]}))
    cfg = validate(resolve({"mode": "single", "models": ["tiny-bart"], "k_folds": 3,
                            "augmentation_methods": ["synonym"]}))
    assert any("k_folds is not used in mode single" in w for w in cfg.warnings)
    assert any("use_augmentation is off" in w for w in cfg.warnings)


def test_qlora_preset_is_the_bf16_one_with_a_4bit_base():
    qwen, qlora = load_preset("qwen3-4b"), load_preset("qwen3-4b-qlora")
    assert qwen.quantization is None and qlora.quantization == "nf4"
    differing = {f.name for f in dataclasses.fields(qwen) if getattr(qwen, f.name) != getattr(qlora, f.name)}
    assert differing == {"name", "quantization"}


def test_scheduler_clipping_and_generation_batch_reach_the_trainer(capsys):
    from raysum.training.arguments import training_arguments_kwargs

    tree = _show_json(capsys, "--mode", "multi_model", "--models", "tiny-bart", "tiny-llama",
                      "--generation_batch_size", "7", "--set", "models.tiny-llama.lr_scheduler=cosine", "--set", "models.tiny-llama.max_grad_norm=0.5")
    llama, bart = tree["models"]["tiny-llama"], tree["models"]["tiny-bart"]
    assert llama["generation_batch_size"] == bart["generation_batch_size"] == {"value": 7, "source": "cli"}
    assert llama["lr_scheduler"] == {"value": "cosine", "source": "cli"}
    assert bart["lr_scheduler"] == {"value": "linear", "source": "default"}
    cfg = validate(resolve({"models": ["tiny-llama"]}, overrides=["models.tiny-llama.lr_scheduler=cosine",
                                                                   "models.tiny-llama.max_grad_norm=0.5"]))
    args = training_arguments_kwargs(cfg.models["tiny-llama"], "/tmp/x", num_examples=10, has_eval=False,
                                     precision="fp32", cuda=False, seed=1)
    assert (args["lr_scheduler_type"], args["max_grad_norm"]) == ("cosine", 0.5)
    with pytest.raises(ConfigError, match="lr_scheduler 'step': choose linear, cosine, constant_with_warmup"):
        validate(resolve({"models": ["tiny-llama"]}, overrides=["models.tiny-llama.lr_scheduler=step"]))
    with pytest.raises(ConfigError, match="max_grad_norm must be"):
        validate(resolve({"models": ["tiny-llama"]}, overrides=["models.tiny-llama.max_grad_norm=-1"]))


def test_model_level_problems():
    problems = []
    for override in ("models.qwen3-4b.quantization=nf4", "models.qwen3-4b.deepspeed=zero3"):
        problems.append(override)
    with pytest.raises(ConfigError, match="ZeRO-3 with QLoRA is refused"):
        validate(resolve({"models": ["qwen3-4b"]}, overrides=problems))
    with pytest.raises(ConfigError, match="exactly one of checkpoint"):
        validate(resolve({"models": ["tiny-bart"]}, overrides=["models.tiny-bart.checkpoint=x/y"]))


def test_bad_experiment_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: [full\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve(config_file=bad)
    with pytest.raises(ConfigError, match="file not found"):
        resolve(config_file=tmp_path / "missing.yaml")
    other = tmp_path / "other.yaml"
    other.write_text("models:\n  tiny-bart: {}\n  ghost: {}\n")
    with pytest.raises(ConfigError, match="unknown model 'ghost'"):
        validate(resolve(config_file=other))


def test_resolved_yaml_is_a_valid_experiment_file(tmp_path):
    cfg = validate(resolve({"models": ["qwen3-4b", "tiny-bart"], "mode": "full", "learning_rate": 2e-5}))
    text = cfg.to_yaml()
    assert "# cli" in text and "# preset:raysum/config/presets/qwen3-4b.yaml" in text
    file = tmp_path / "config.yaml"
    file.write_text(text)
    again = validate(resolve(config_file=file))
    assert again.models == cfg.models and again.experiment == cfg.experiment
    rebuilt = config_from_tree(json.loads(json.dumps(cfg.tree())))
    assert rebuilt.models == cfg.models and rebuilt.experiment == cfg.experiment


@pytest.mark.parametrize("command", SEED_COMMANDS)
def test_seed_command_lines_parse_completely(command):
    ns = build_parser().parse_args(["train", *command.split()])
    given = given_settings(ns)
    assert given["models"] == ["kobart", "llama-3.2-korean-3b", "qwen3-4b"]
    assert given["use_augmentation"] is True and given["use_tta"] is True
    cfg = validate(resolve(given))
    assert all(m.gradient_accumulation_steps == 1 for m in cfg.models.values())
    assert all(m.batch_size == 10 for m in cfg.models.values())


def test_unknown_flag_is_an_error(capsys):
    assert main(["train", "--gradient_accum", "1", "--bogus"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_mode_optuna_without_a_space_stops_before_any_work(tmp_path, capsys):
    rc = main(["train", "--models", "tiny-bart", "--mode", "optuna", "--output_dir", str(tmp_path / "out")])
    assert rc == 2
    assert "--mode optuna searches training settings: give --space" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_script_entry_point_is_the_same_command(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--models", "tiny-bart",
                             "--mode", "optuna", "--output_dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--mode optuna searches training settings" in result.stderr


def test_import_raysum_stays_light():
    code = ("import sys, raysum, raysum.config, raysum.cli, raysum.data, raysum.pipeline; "
            "heavy = [m for m in ('deepspeed', 'bitsandbytes', 'optuna', 'ray.tune', 'torch', 'transformers') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_example_experiment_file_resolves():
    cfg = validate(resolve(config_file=ROOT / "examples" / "experiment.yaml"))
    assert cfg.experiment.mode == "full" and list(cfg.models) == ["tiny-bart", "tiny-llama", "tiny-qwen3"]


def test_model_names_with_dots_survive_set_tree_and_yaml(tmp_path, capsys):
    name = "llama-3.2-korean-3b"
    cfg = validate(resolve({"mode": "full", "models": [name, "qwen3-4b"]},
                           overrides=[f"models.{name}.gradient_accumulation_steps=1", f"models.{name}.lora.r=8"]))
    assert cfg.models[name].gradient_accumulation_steps == 1 and cfg.models[name].lora.r == 8
    tree = _show_json(capsys, "--mode", "full", "--models", name, "--set", f"models.{name}.batch_size=2")
    assert tree["models"][name]["batch_size"] == {"value": 2, "source": "cli"}
    rebuilt = config_from_tree(json.loads(json.dumps(cfg.tree())))
    assert rebuilt.models == cfg.models and rebuilt.sources[f"models.{name}.lora.r"] == "cli"
    file = tmp_path / "config.yaml"
    file.write_text(cfg.to_yaml())
    assert validate(resolve(config_file=file)).models[name] == cfg.models[name]


def test_every_number_in_the_schema_declares_its_range():
    import typing
    from dataclasses import fields

    from raysum.config.schema import ExperimentConfig, LoraSettings, ModelSettings, ResourceSettings, field_bounds

    unbounded = []
    for cls in (ExperimentConfig, ModelSettings, LoraSettings, ResourceSettings):
        hints, bounds = typing.get_type_hints(cls), field_bounds(cls)
        for f in fields(cls):
            text = str(hints[f.name])
            if any(t in text for t in ("int", "float")) and "dict" not in text and f.name not in bounds:
                unbounded.append(f"{cls.__name__}.{f.name}")
    assert unbounded == []


def test_negative_numbers_are_values_and_ranges_are_named(capsys):
    for value in ("-1e-4", "-.5", "-3", "-inf"):
        assert main(["config", "show", "--learning_rate", value]) == 2
        err = capsys.readouterr().err
        assert "expected one argument" not in err
        assert "learning_rate must be" in err, (value, err)


def test_trust_remote_code_warns_with_the_checkpoint(capsys):
    assert main(["config", "show", "--models", "tiny-bart", "--set", "models.tiny-bart.trust_remote_code=true"]) == 0
    err = capsys.readouterr().err
    assert "trust_remote_code is on" in err and "tiny-bart" in err


def test_ensemble_strategy_default_is_auto_with_folds_and_voting_without(capsys):
    for mode, expected in (("full", "auto"), ("kfold", "auto"), ("single", "voting"), ("multi_model", "voting")):
        shown = _show_json(capsys, "--mode", mode, "--models", "tiny-bart")
        assert shown["ensemble_strategy"] == {"value": expected, "source": "default"}, mode
    assert _show_json(capsys, "--mode", "full", "--ensemble_strategy", "voting")["ensemble_strategy"] == {
        "value": "voting", "source": "cli"}
    assert main(["config", "show", "--mode", "full", "--ensemble_strategy", "auto"]) == 0
    assert "auto" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="ensemble_strategy auto compares by the score of out-of-fold candidates"):
        validate(resolve({"mode": "single", "ensemble_strategy": "auto"}))
    cfg = validate(resolve({"mode": "full", "models": ["tiny-bart", "tiny-llama"], "ensemble_weights": [1, 2]}))
    assert any("ensemble_weights do not apply to auto" in w for w in cfg.warnings)
    tree = resolve({"mode": "kfold"}).tree()  # what config.json stores, and a resume reads back
    assert config_from_tree(tree).experiment.ensemble_strategy == "auto"
